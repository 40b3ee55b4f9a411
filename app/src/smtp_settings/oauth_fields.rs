//! The OAuth 2.0 fields as types: the token endpoint's URL, and the one-line texts (client ID,
//! scopes) the form takes.

use super::types::describe;
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenUrlError {
    #[error("Enter the token endpoint URL, e.g. https://login.example.com/oauth2/token.")]
    Empty,
    #[error("'{0}' is not a URL.")]
    Invalid(String),
    #[error("The token URL must use https:// (http:// only for a local test server on 127.0.0.1 or localhost).")]
    NotHttps,
    #[error("Leave user name and password out of the token URL; use Client ID and Client Secret.")]
    HasCredentials,
    #[error("{} at position {position} is not allowed in the token URL.", describe(*ch))]
    Character { ch: char, position: usize },
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("Enter a value.")]
    Empty,
    #[error("{} at position {position} is not allowed here.", describe(*ch))]
    Character { ch: char, position: usize },
    #[error("Use at most {0} characters.")]
    TooLong(usize),
}

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
