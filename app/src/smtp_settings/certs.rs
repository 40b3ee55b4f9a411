//! Certificates an admin pastes on the SMTP page: extra CAs to trust for a private relay, and a
//! client certificate for relays that require mutual TLS. The page shows who each one is and
//! when it expires; the health banner warns 14 days before.

use crate::{
    i18n::td_string,
    language::{Locale, format_time},
};
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

/// Warn this long before a certificate expires.
pub const WARN_BEFORE_MS: i64 = 14 * 24 * 3600 * 1000;

/// Which job a certificate does. Stored and sent (the status API, the page) as its noun, which
/// the page and the banner show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum CertRole {
    #[serde(rename = "trusted CA certificate")]
    #[cfg_attr(feature = "ssr", surreal(rename = "trusted CA certificate"))]
    TrustedCa,
    #[serde(rename = "client certificate")]
    #[cfg_attr(feature = "ssr", surreal(rename = "client certificate"))]
    Client,
}

impl CertRole {
    pub fn noun(self, locale: Locale) -> &'static str {
        match self {
            Self::TrustedCa => td_string!(locale, trust.role_ca),
            Self::Client => td_string!(locale, trust.role_client),
        }
    }
}

/// One certificate as the page and the banner show it (never the PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct CertSummary {
    pub role: CertRole,
    pub subject: String,
    pub issuer: String,
    /// Milliseconds since the epoch.
    pub not_after: i64,
}

/// How close a certificate is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    Soon { days: i64 },
    Expired,
}

impl CertSummary {
    pub fn expiry(&self, now_ms: i64) -> Expiry {
        if self.not_after <= now_ms {
            Expiry::Expired
        } else if self.not_after - now_ms <= WARN_BEFORE_MS {
            Expiry::Soon { days: (self.not_after - now_ms) / (24 * 3600 * 1000) }
        } else {
            Expiry::Valid
        }
    }

    /// One line for the page: `CN=Relay CA, issued by CN=Relay CA, expires 2027-01-01 00:00 UTC`.
    pub fn describe(&self, locale: Locale) -> String {
        let (subject, issuer, when) = (&self.subject, &self.issuer, format_time(locale, self.not_after));
        td_string!(locale, trust.describe, subject, issuer, when).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warns_two_weeks_ahead_and_errs_after() {
        let day = 24 * 3600 * 1000;
        let cert = |not_after| CertSummary {
            role: CertRole::TrustedCa,
            subject: "CN=a".into(),
            issuer: "CN=a".into(),
            not_after,
        };
        assert_eq!(cert(100 * day).expiry(0), Expiry::Valid);
        assert_eq!(cert(7 * day + 5).expiry(0), Expiry::Soon { days: 7 });
        assert_eq!(cert(day).expiry(2 * day), Expiry::Expired);
    }
}
