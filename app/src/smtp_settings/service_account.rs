//! A Google service account's JSON key, as Google Cloud hands it out: which account signs, where
//! it trades its signed request for a token, and its private key. Checked in the browser too, so
//! a wrong file is named while the admin pastes it; the key itself is read on the server.

use super::types::TokenUrl;
use crate::{i18n::td_string, language::Locale};
use serde::Deserialize;
use std::fmt;

/// The fields Mailroom uses; the others (project, key id, certificate URLs) are ignored.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
}

/// A key that has every part Mailroom needs. `private_key` is PEM (PKCS#8, RSA).
pub struct ServiceAccountKey {
    pub client_email: String,
    pub token_uri: TokenUrl,
    pub private_key: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccountKey({}, {})", self.client_email, self.token_uri)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    NotJson,
    NotServiceAccount,
    Missing(&'static str),
    TokenUri(super::types::TokenUrlError),
}

impl KeyError {
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Empty => td_string!(l, invalid.key_empty).to_owned(),
            Self::NotJson => td_string!(l, invalid.key_not_json).to_owned(),
            Self::NotServiceAccount => td_string!(l, invalid.key_not_service_account).to_owned(),
            Self::Missing(what) => td_string!(l, invalid.key_missing, what).to_string(),
            Self::TokenUri(err) => td_string!(l, invalid.key_token_uri, reason = err.message_in(l)).to_string(),
        }
    }
}

super::types::english_display!(KeyError);

impl std::str::FromStr for ServiceAccountKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        if text.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        let file: KeyFile = serde_json::from_str(text).map_err(|_| KeyError::NotJson)?;
        if file.kind.as_deref() != Some("service_account") {
            return Err(KeyError::NotServiceAccount);
        }
        let present =
            |value: Option<String>, name| value.filter(|v| !v.trim().is_empty()).ok_or(KeyError::Missing(name));
        let client_email = present(file.client_email, "client_email")?;
        let private_key = present(file.private_key, "private_key")?;
        if !private_key.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(KeyError::Missing("private_key in PEM form"));
        }
        let token_uri = present(file.token_uri, "token_uri")?.parse::<TokenUrl>().map_err(KeyError::TokenUri)?;
        Ok(Self { client_email, token_uri, private_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fields: serde_json::Value) -> String {
        fields.to_string()
    }

    #[test]
    fn a_downloaded_key_names_its_account_and_token_endpoint() {
        let text = key(serde_json::json!({
            "type": "service_account", "project_id": "p", "private_key_id": "k1",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
            "client_email": "mailer@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"
        }));
        let parsed: ServiceAccountKey = text.parse().unwrap();
        assert_eq!(parsed.client_email, "mailer@p.iam.gserviceaccount.com");
        assert_eq!(parsed.token_uri.as_str(), "https://oauth2.googleapis.com/token");
        assert!(!format!("{parsed:?}").contains("BEGIN"), "Debug never shows the key");
    }

    #[test]
    fn other_files_are_named_for_what_they_are() {
        assert_eq!("".parse::<ServiceAccountKey>().unwrap_err(), KeyError::Empty);
        assert_eq!("-----BEGIN PRIVATE KEY-----".parse::<ServiceAccountKey>().unwrap_err(), KeyError::NotJson);
        let oauth_client = key(serde_json::json!({"installed": {"client_id": "x"}}));
        assert_eq!(oauth_client.parse::<ServiceAccountKey>().unwrap_err(), KeyError::NotServiceAccount);
        let no_email =
            key(serde_json::json!({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}));
        assert_eq!(no_email.parse::<ServiceAccountKey>().unwrap_err(), KeyError::Missing("client_email"));
        let plain_http = key(serde_json::json!({
            "type": "service_account", "client_email": "a@b.c", "private_key": "-----BEGIN PRIVATE KEY-----",
            "token_uri": "http://evil.example/token"
        }));
        assert!(matches!(plain_http.parse::<ServiceAccountKey>().unwrap_err(), KeyError::TokenUri(_)));
    }
}
