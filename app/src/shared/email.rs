//! An email address, parsed once where it enters (a form, the first admin, a user row) and
//! carried as this type to the outbox and the SMTP envelope.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// lettre's address grammar (RFC 5321 local part and domain, no display name), trimmed and
/// lower-cased: one spelling per mailbox, so it can be looked up and compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(lettre::Address);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailError(String);

impl EmailError {
    pub fn message_in(&self, locale: crate::language::Locale) -> String {
        crate::i18n::td_string!(locale, invalid.email_detail, detail = &self.0).to_string()
    }
}

impl fmt::Display for EmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_in(crate::language::Locale::en))
    }
}

impl std::error::Error for EmailError {}

impl FromStr for EmailAddress {
    type Err = EmailError;

    fn from_str(text: &str) -> Result<Self, EmailError> {
        Self::normalize(text).parse::<lettre::Address>().map(Self).map_err(|err| EmailError(err.to_string()))
    }
}

impl EmailAddress {
    /// The spelling addresses are stored in: what a sign-in or a reset request looks up, even
    /// when the text typed is no address at all.
    pub fn normalize(text: &str) -> String {
        text.trim().to_lowercase()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = EmailError;

    fn try_from(text: String) -> Result<Self, EmailError> {
        text.parse()
    }
}

impl From<EmailAddress> for String {
    fn from(address: EmailAddress) -> Self {
        address.0.to_string()
    }
}

impl From<EmailAddress> for lettre::Address {
    fn from(address: EmailAddress) -> Self {
        address.0
    }
}

#[cfg(feature = "ssr")]
impl surrealdb::types::SurrealValue for EmailAddress {
    fn kind_of() -> surrealdb::types::Kind {
        String::kind_of()
    }

    fn into_value(self) -> surrealdb::types::Value {
        String::from(self).into_value()
    }

    fn from_value(value: surrealdb::types::Value) -> Result<Self, surrealdb::types::Error> {
        // The error does not repeat the address: it may reach the logs.
        String::from_value(value)?
            .parse()
            .map_err(|err: EmailError| surrealdb::types::Error::internal(format!("a stored email address: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_trimmed_and_lower_cased_once() {
        let address: EmailAddress = "  Ada@Example.COM ".parse().unwrap();
        assert_eq!(address.as_str(), "ada@example.com");
        assert_eq!(serde_json::to_string(&address).unwrap(), "\"ada@example.com\"");
        assert_eq!(serde_json::from_str::<EmailAddress>("\"ADA@example.com\"").unwrap(), address);
    }

    #[test]
    fn what_is_not_an_address_is_refused_with_the_reason() {
        for text in ["", "ada", "ada@", "@example.com", "ada@exa mple.com", "Ada <ada@example.com>"] {
            let err = text.parse::<EmailAddress>().unwrap_err();
            assert!(err.to_string().starts_with("Enter an email address like name@example.com ("), "{text:?}: {err}");
        }
        assert!(serde_json::from_str::<EmailAddress>("\"not an address\"").is_err());
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn it_is_stored_as_its_text_and_read_back_parsed() {
        use surrealdb::types::SurrealValue;
        let address: EmailAddress = "ada@example.com".parse().unwrap();
        let value = address.clone().into_value();
        assert_eq!(String::from_value(value.clone()).unwrap(), "ada@example.com");
        assert_eq!(EmailAddress::from_value(value).unwrap(), address);
        assert!(EmailAddress::from_value("not an address".to_owned().into_value()).is_err());
    }
}
