//! The SMTP settings as types that can only be built by parsing. The same parsers run in the
//! browser (live validation) and in the server function (the authority).

pub use super::oauth_fields::{TextError, TokenUrl, TokenUrlError, parse_line, parse_scopes};
use crate::{i18n::td_string, language::Locale};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

/// One character the From policy refuses, shown the way an admin can find it.
pub(crate) fn describe(locale: Locale, ch: char) -> String {
    match ch {
        '\r' => td_string!(locale, invalid.char_cr).to_owned(),
        '\n' => td_string!(locale, invalid.char_lf).to_owned(),
        '\t' => td_string!(locale, invalid.char_tab).to_owned(),
        c if c.is_control() => td_string!(locale, invalid.char_control, code = format!("{:04X}", c as u32)).to_string(),
        c => format!("'{c}'"),
    }
}

/// The English text of an error, for `Display` (logs and tests); pages use `message_in`.
macro_rules! english_display {
    ($($error:ty),+) => {$(
        impl fmt::Display for $error {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.message_in(Locale::en))
            }
        }
        impl std::error::Error for $error {}
    )+};
}
pub(crate) use english_display;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromError {
    Empty,
    Character { ch: char, position: usize, part: FromPart },
    SecondAddress { ch: char, position: usize },
    Unclosed,
    TrailingText { position: usize },
    EmptyName,
    MissingAt,
    InvalidAddress(String),
    NonAsciiAddress,
}

impl FromError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.from_empty).to_owned(),
            Self::Character { ch, position, part } => {
                let part = match part {
                    FromPart::Name => td_string!(l, invalid.part_name),
                    FromPart::Address => td_string!(l, invalid.part_address),
                };
                td_string!(l, invalid.from_character, ch = describe(l, *ch), position, part).to_string()
            }
            Self::SecondAddress { ch, position } => td_string!(l, invalid.from_second, ch, position).to_string(),
            Self::Unclosed => td_string!(l, invalid.from_unclosed).to_owned(),
            Self::TrailingText { position } => td_string!(l, invalid.from_trailing, position).to_string(),
            Self::EmptyName => td_string!(l, invalid.from_empty_name).to_owned(),
            Self::MissingAt => td_string!(l, invalid.from_missing_at).to_owned(),
            Self::InvalidAddress(address) => td_string!(l, invalid.from_invalid, address).to_string(),
            Self::NonAsciiAddress => td_string!(l, invalid.from_non_ascii).to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromPart {
    Name,
    Address,
}

impl fmt::Display for FromPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Name => "name",
            Self::Address => "address",
        })
    }
}

/// The From of every email: `Display Name <name@example.com>` or `name@example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromMailbox {
    name: Option<String>,
    address: lettre::Address,
}

impl FromMailbox {
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn address(&self) -> &lettre::Address {
        &self.address
    }

    pub fn mailbox(&self) -> lettre::message::Mailbox {
        lettre::message::Mailbox::new(self.name.clone(), self.address.clone())
    }
}

impl fmt::Display for FromMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} <{}>", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

fn name_char_ok(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || is_mark(c)
}

/// Combining marks, which many scripts need between letters.
fn is_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x0900..=0x0DFF | 0x0E31..=0x0E4E | 0x1AB0..=0x1AFF | 0x200C | 0x200D)
        && !c.is_control()
}

fn address_char_ok(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@')
}

impl FromStr for FromMailbox {
    type Err = FromError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Positions are 1-based and count characters, as an admin would.
        let chars: Vec<char> = input.chars().collect();
        if chars.iter().all(|c| *c == ' ') {
            return Err(FromError::Empty);
        }
        let open = chars.iter().position(|c| *c == '<');
        let close = chars.iter().position(|c| *c == '>');
        let (name_range, address_range) = match (open, close) {
            (None, None) => (0..0, 0..chars.len()),
            (Some(open), Some(close)) if close > open => (0..open, open + 1..close),
            (Some(open), None) => {
                if let Some(i) = (0..open).find(|i| chars[*i] == '@' || !name_char_ok(chars[*i])) {
                    return Err(FromError::Character { ch: chars[i], position: i + 1, part: FromPart::Name });
                }
                return Err(FromError::Unclosed);
            }
            (_, Some(close)) => {
                return Err(FromError::Character { ch: '>', position: close + 1, part: FromPart::Name });
            }
        };
        if let Some(close) = close {
            for (i, c) in chars.iter().enumerate().skip(close + 1) {
                match c {
                    ' ' => {}
                    '<' | '>' | ',' | ';' => return Err(FromError::SecondAddress { ch: *c, position: i + 1 }),
                    _ => return Err(FromError::TrailingText { position: i + 1 }),
                }
            }
        }
        // Name first, then address, so the first offending character is reported.
        for i in name_range.clone() {
            let c = chars[i];
            if c == '@' || !name_char_ok(c) {
                return Err(FromError::Character { ch: c, position: i + 1, part: FromPart::Name });
            }
        }
        let mut address_chars = address_range.clone();
        let trimmed_start = address_chars.clone().find(|i| chars[*i] != ' ').unwrap_or(address_range.end);
        let trimmed_end = address_chars.rfind(|i| chars[*i] != ' ').map_or(trimmed_start, |i| i + 1);
        for (i, &c) in chars.iter().enumerate().take(trimmed_end).skip(trimmed_start) {
            if c == ' ' && open.is_none() {
                // "a@example.com b@example.com": a name needs angle brackets around the address.
                return Err(FromError::SecondAddress { ch: ' ', position: i + 1 });
            }
            if !address_char_ok(c) {
                if c == ',' || c == ';' {
                    return Err(FromError::SecondAddress { ch: c, position: i + 1 });
                }
                return Err(FromError::Character { ch: c, position: i + 1, part: FromPart::Address });
            }
        }
        let address: String = chars[trimmed_start..trimmed_end].iter().collect();
        let name: String = chars[name_range].iter().collect::<String>().trim().to_owned();
        if open.is_some() && name.is_empty() {
            return Err(FromError::EmptyName);
        }
        if !address.is_ascii() {
            return Err(FromError::NonAsciiAddress);
        }
        if address.matches('@').count() != 1 {
            return Err(FromError::MissingAt);
        }
        let parsed = lettre::Address::from_str(&address).map_err(|_| FromError::InvalidAddress(address.clone()))?;
        // lettre accepts dotless domains and stray dots; mail to them never arrives.
        let domain_ok = parsed.domain().contains('.')
            && !parsed.domain().split('.').any(str::is_empty)
            && !parsed.user().starts_with('.')
            && !parsed.user().ends_with('.')
            && !parsed.user().contains("..");
        if !domain_ok {
            return Err(FromError::InvalidAddress(address));
        }
        // The whole value must also be a mailbox lettre accepts (it refuses CR/LF itself).
        let mailbox = if name.is_empty() { address.clone() } else { format!("{name} <{address}>") };
        lettre::message::Mailbox::from_str(&mailbox).map_err(|_| FromError::InvalidAddress(address.clone()))?;
        Ok(Self { name: (!name.is_empty()).then_some(name), address: parsed })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    Empty,
    SchemeOrPath { bare: String },
    HasPort { bare: String },
    Invalid(String),
}

impl HostError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.host_empty).to_owned(),
            Self::SchemeOrPath { bare } => td_string!(l, invalid.host_scheme, bare).to_string(),
            Self::HasPort { bare } => td_string!(l, invalid.host_port, bare).to_string(),
            Self::Invalid(host) => td_string!(l, invalid.host_invalid, host).to_string(),
        }
    }
}

/// The email server: a DNS name, an IPv4 or an IPv6 address.
///
/// Names follow the DNS letter-digit-hyphen rule (IDNs in their `xn--` form), stricter than a
/// URL host (`url::Host::parse` accepts `0x7f` and `127.1` as IPv4, underscores, and maps
/// non-ASCII names): an admin sees exactly the host Mailroom will connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpHost {
    Domain(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for SmtpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(name) => f.write_str(name),
            Self::Ipv4(ip) => write!(f, "{ip}"),
            Self::Ipv6(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for SmtpHost {
    type Err = HostError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let host = input.trim();
        if host.is_empty() {
            return Err(HostError::Empty);
        }
        if host.contains("://") || host.contains('/') {
            // The host as a URL parser reads it (scheme, user, port and path left out).
            let url =
                if host.contains("://") { url::Url::parse(host) } else { url::Url::parse(&format!("smtp://{host}")) };
            let bare = url.ok().and_then(|url| url.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
            let bare =
                bare.filter(|b| !b.is_empty()).unwrap_or_else(|| "the host name, e.g. smtp.example.com".to_owned());
            return Err(HostError::SchemeOrPath { bare });
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return inner.parse().map(Self::Ipv6).map_err(|_| HostError::Invalid(host.to_owned()));
        }
        if let Ok(ip) = host.parse::<Ipv6Addr>() {
            return Ok(Self::Ipv6(ip));
        }
        if let Some(bare) = strip_port(host) {
            return Err(HostError::HasPort { bare: bare.trim_matches(['[', ']']).to_owned() });
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Self::Ipv4(ip));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let labels_ok = name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let last_is_numeric = name.rsplit('.').next().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
        if !labels_ok || last_is_numeric {
            return Err(HostError::Invalid(host.to_owned()));
        }
        Ok(Self::Domain(name))
    }
}

/// `host:port` → `host`, when the part after the last colon is a number.
fn strip_port(authority: &str) -> Option<&str> {
    let (host, port) = authority.rsplit_once(':')?;
    (!port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']')))
        .then_some(host)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortError {
    Empty,
    NotANumber(String),
    OutOfRange(String),
}

impl PortError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.port_empty).to_owned(),
            Self::NotANumber(port) => td_string!(l, invalid.port_nan, port).to_string(),
            Self::OutOfRange(port) => td_string!(l, invalid.port_range, port).to_string(),
        }
    }
}

english_display!(FromError, HostError, PortError);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpPort(u16);

impl SmtpPort {
    pub fn get(self) -> u16 {
        self.0
    }

    /// The conventional port for a TLS choice: 465 implicit TLS, 587 STARTTLS, 25 none.
    pub fn suggested(tls: Option<TlsMode>) -> Self {
        Self(match tls {
            Some(TlsMode::Implicit) => 465,
            Some(TlsMode::StartTls) => 587,
            None => 25,
        })
    }
}

impl fmt::Display for SmtpPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for SmtpPort {
    type Err = PortError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(PortError::Empty);
        }
        if !text.chars().all(|c| c.is_ascii_digit()) {
            return Err(PortError::NotANumber(text.to_owned()));
        }
        match text.parse::<u32>() {
            Ok(port @ 1..=65535) => Ok(Self(port as u16)),
            _ => Err(PortError::OutOfRange(text.to_owned())),
        }
    }
}

// The enums below are stored as the strings the schema asserts (`#[surreal(rename)]`), and read
// back as the same enums: the settings stay typed from the database row to the page.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum MinTlsVersion {
    /// TLS 1.2 or newer.
    #[default]
    #[cfg_attr(feature = "ssr", surreal(rename = "tls12"))]
    Tls12,
    /// TLS 1.3 only.
    #[cfg_attr(feature = "ssr", surreal(rename = "tls13"))]
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum TlsMode {
    #[default]
    #[cfg_attr(feature = "ssr", surreal(rename = "starttls"))]
    StartTls,
    #[cfg_attr(feature = "ssr", surreal(rename = "implicit"))]
    Implicit,
}

impl TlsMode {
    /// The mode an admin most likely means for a port: 465 is implicit TLS.
    pub fn for_port(port: u16) -> Self {
        if port == 465 { Self::Implicit } else { Self::StartTls }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    pub enabled: bool,
    pub min_version: MinTlsVersion,
    pub mode: TlsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum AuthType {
    #[default]
    #[cfg_attr(feature = "ssr", surreal(rename = "basic"))]
    Basic,
    #[cfg_attr(feature = "ssr", surreal(rename = "oauth2"))]
    OAuth2,
    /// A Google Workspace service account with domain-wide delegation: a JWT signed with its
    /// key is exchanged for an access token (RFC 7523), then `AUTH XOAUTH2`.
    #[cfg_attr(feature = "ssr", surreal(rename = "google"))]
    GoogleServiceAccount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum Mode {
    #[default]
    #[cfg_attr(feature = "ssr", surreal(rename = "default"))]
    Default,
    #[cfg_attr(feature = "ssr", surreal(rename = "custom"))]
    Custom,
}
