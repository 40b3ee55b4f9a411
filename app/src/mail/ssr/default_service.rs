//! What "Use default email settings" sends through on this deployment.

use super::Mailer;
use crate::state::AppState;
use secrecy::ExposeSecret;

impl AppState {
    /// What "Use default email settings" means on this deployment: the relay of
    /// `MAILROOM_DEFAULT_SMTP_URL`, else the local mailbox.
    pub fn default_mailer(&self) -> Mailer {
        match &self.settings().mail.default_relay {
            Some(relay) => {
                Mailer::smtp(relay.clone(), self.shared.tokens.clone(), self.settings().outbox.concurrency as u32)
            }
            None => Mailer::LocalMailbox {
                db: self.db().clone(),
                key: secrecy::SecretBox::new(Box::new(*self.shared.secret_key.expose_secret())),
            },
        }
    }
}
