//! Admin > Platform > SMTP: how the instance sends mail.

pub mod certs;
#[cfg(feature = "ssr")]
pub mod follow;
pub mod form;
mod oauth_fields;
mod page;
pub mod service_account;
#[cfg(feature = "ssr")]
pub mod ssr;
mod trust_fields;
pub mod types;

use crate::error::AppError;
use form::SmtpForm;
use leptos::prelude::*;
pub use lettre::{Address, message::Mailbox};
pub use page::SmtpPage;
use serde::{Deserialize, Serialize};
use server_fn::codec::Json;

/// The settings as the browser sees them: no secret, only whether one is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSettingsView {
    pub form: SmtpForm,
    pub password_set: bool,
    pub client_secret_set: bool,
    pub secrets: SavedSecrets,
    /// Bumped by every save; a save made from an older version is refused.
    pub version: u64,
    pub saved_by: Option<String>,
    pub saved_at: Option<i64>,
    pub default_service: DefaultService,
}

/// What is saved besides the form, described without its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSecrets {
    /// The `client_email` of the saved Google service account key.
    pub service_account: Option<String>,
    pub certificates: Vec<certs::CertSummary>,
    pub client_key_set: bool,
}

/// What "Use default email settings" means on this deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultService {
    /// No relay configured: mail stays in the built-in Mailbox.
    LocalMailbox,
    /// `MAILROOM_DEFAULT_SMTP_URL` points at this host.
    Relay { host: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveOutcome {
    pub version: u64,
    pub saved_by: Option<String>,
    pub saved_at: Option<i64>,
    pub password_set: bool,
    pub client_secret_set: bool,
    pub secrets: SavedSecrets,
    /// Names of the fields this save changed (never their secret values).
    pub changed: Vec<String>,
}

#[server(endpoint = "smtp_load")]
pub async fn load_smtp_settings() -> Result<SmtpSettingsView, AppError> {
    crate::error::ssr::respond(ssr::load().await)
}

#[server(endpoint = "smtp_save", input = Json)]
pub async fn save_smtp_settings(form: SmtpForm, version: u64) -> Result<SaveOutcome, AppError> {
    crate::error::ssr::respond(ssr::save(form, version).await)
}

/// Sends "<Instance> Mail Test" to the admin who asks, through the values on the form (saved or
/// not, under the same re-entry rule). Answers the address it was sent to.
#[server(endpoint = "smtp_test", input = Json)]
pub async fn send_test_email(form: SmtpForm) -> Result<String, AppError> {
    crate::error::ssr::respond(ssr::send_test(form).await)
}

/// Reads pasted PEM certificates (live, while the admin types): who they are and when they expire.
#[server(endpoint = "smtp_certificates")]
pub async fn inspect_certificates(pem: String, role: certs::CertRole) -> Result<Vec<certs::CertSummary>, AppError> {
    crate::error::ssr::respond(ssr::certs::inspect(pem, role).await)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
