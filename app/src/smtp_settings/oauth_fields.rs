//! The OAuth 2.0 fields as types: the token endpoint's URL, and the one-line texts (client ID,
//! scopes) the form takes.

use super::types::{describe, english_display};
use crate::{i18n::td_string, language::Locale};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUrlError {
    Empty,
    Invalid(String),
    NotHttps,
    HasCredentials,
    Character { ch: char, position: usize },
}

impl TokenUrlError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.token_url_empty).to_owned(),
            Self::Invalid(url) => td_string!(l, invalid.token_url_invalid, url).to_string(),
            Self::NotHttps => td_string!(l, invalid.token_url_https).to_owned(),
            Self::HasCredentials => td_string!(l, invalid.token_url_credentials).to_owned(),
            Self::Character { ch, position } => {
                td_string!(l, invalid.token_url_character, ch = describe(l, *ch), position).to_string()
            }
        }
    }
}

/// The OAuth 2.0 token endpoint: https, or http on a loopback host for local testing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUrl(url::Url);

impl TokenUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Display for TokenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl FromStr for TokenUrl {
    type Err = TokenUrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(TokenUrlError::Empty);
        }
        // The URL parser silently drops tabs and line breaks (and trims NUL): refuse them instead.
        if let Some((i, ch)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
            return Err(TokenUrlError::Character { ch, position: i + 1 });
        }
        let url = url::Url::parse(text).map_err(|_| TokenUrlError::Invalid(text.to_owned()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TokenUrlError::HasCredentials);
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(TokenUrlError::Invalid(text.to_owned())),
        };
        match url.scheme() {
            "https" => Ok(Self(url)),
            "http" if loopback => Ok(Self(url)),
            "http" => Err(TokenUrlError::NotHttps),
            _ => Err(TokenUrlError::Invalid(text.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    Empty,
    Character { ch: char, position: usize },
    TooLong(usize),
}

impl TextError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.text_empty).to_owned(),
            Self::Character { ch, position } => {
                td_string!(l, invalid.text_character, ch = describe(l, *ch), position).to_string()
            }
            Self::TooLong(max) => td_string!(l, invalid.text_too_long, max).to_string(),
        }
    }
}

english_display!(TokenUrlError, TextError);

/// A single-line value (username, client ID): no control characters, bounded length.
pub fn parse_line(input: &str, required: bool, max: usize) -> Result<String, TextError> {
    let text = input.trim();
    if text.is_empty() && required {
        return Err(TextError::Empty);
    }
    if let Some((i, ch)) = text.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(TextError::Character { ch, position: i + 1 });
    }
    if text.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    Ok(text.to_owned())
}

/// OAuth 2.0 scopes, space separated (RFC 6749 §3.3 scope-tokens).
pub fn parse_scopes(input: &str) -> Result<Vec<String>, TextError> {
    for (i, ch) in input.chars().enumerate() {
        let allowed = ch == ' ' || (ch.is_ascii_graphic() && ch != '"' && ch != '\\');
        if !allowed {
            return Err(TextError::Character { ch, position: i + 1 });
        }
    }
    if input.len() > 1024 {
        return Err(TextError::TooLong(1024));
    }
    Ok(input.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}
