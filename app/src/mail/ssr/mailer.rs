//! The one Mailer of the server: an enum of backends, built once per saved-settings version
//! (not per send) and swapped when the settings change.

use super::{MailConfig, OutgoingMessage, SmtpTarget, mailbox, oauth::TokenCache, open, transmit};
use crate::{
    mail::SmtpFailure,
    state::{AppState, Db},
};
use lettre::{Message, transport::smtp::client::AsyncSmtpConnection};
use secrecy::{ExposeSecret, SecretBox};
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

pub enum Mailer {
    /// The admin's own SMTP server — or the default service's `MAILROOM_DEFAULT_SMTP_URL` relay —
    /// with pooled connections, through the same step-wise sender and address policy.
    Smtp { target: Box<SmtpTarget>, pool: Box<SmtpPool> },
    /// The default service without a relay: mail is stored (bodies sealed with the instance key)
    /// and shown under Admin > Mailbox.
    LocalMailbox { db: Db, key: SecretBox<[u8; 32]> },
    /// Unit tests only: keeps what was sent.
    Memory { sent: Arc<Mutex<Vec<Message>>> },
}

impl Mailer {
    /// What "Use default email settings" means on this deployment.
    pub fn default_service(state: &AppState) -> Self {
        match &state.settings().mail.default_relay {
            Some(relay) => {
                Self::smtp(relay.clone(), state.shared.tokens.clone(), state.settings().outbox.concurrency as u32)
            }
            None => Self::LocalMailbox {
                db: state.db().clone(),
                key: SecretBox::new(Box::new(*state.shared.secret_key.expose_secret())),
            },
        }
    }

    /// A pool of up to `pool_size` connections to `target`, opened (and logged in, with tokens
    /// from `tokens`) the step-wise way, so failures keep their step and DATA is one write.
    pub fn smtp(target: SmtpTarget, tokens: Arc<TokenCache>, pool_size: u32) -> Self {
        let pool =
            SmtpPool { idle: AsyncMutex::new(Vec::new()), permits: Semaphore::new(pool_size.max(1) as usize), tokens };
        Self::Smtp { target: Box::new(target), pool: Box::new(pool) }
    }

    /// Connects (and logs in) without sending: the health check of a transport.
    pub async fn check(&self, config: &MailConfig) -> Result<(), SmtpFailure> {
        match self {
            Self::Smtp { target, pool } => super::deliver(target, config, &pool.tokens, None).await,
            Self::LocalMailbox { .. } | Self::Memory { .. } => Ok(()),
        }
    }

    /// Sends one message under the overall limit.
    pub async fn send(&self, message: &OutgoingMessage, config: &MailConfig) -> Result<(), SmtpFailure> {
        let limit = config.overall_timeout;
        let timed_out = || SmtpFailure::Timeout { step: crate::mail::Step::Data, secs: limit.as_secs().max(1) };
        match self {
            Self::Smtp { target, pool } => {
                match tokio::time::timeout(limit, pool.send(target, message, config)).await {
                    Ok(result) => result,
                    Err(_) => Err(timed_out()),
                }
            }
            Self::LocalMailbox { db, key } => mailbox::store(db, key.expose_secret(), message, &message.build()?).await,
            Self::Memory { sent } => {
                sent.lock().expect("memory mailer lock").push(message.build()?);
                Ok(())
            }
        }
    }
}

/// Open SMTP connections kept between messages.
pub struct SmtpPool {
    idle: AsyncMutex<Vec<AsyncSmtpConnection>>,
    permits: Semaphore,
    tokens: Arc<TokenCache>,
}

impl SmtpPool {
    async fn send(
        &self,
        target: &SmtpTarget,
        message: &OutgoingMessage,
        config: &MailConfig,
    ) -> Result<(), SmtpFailure> {
        let _permit = self.permits.acquire().await.map_err(|_| SmtpFailure::Other { detail: "pool closed".into() })?;
        let reused = self.idle.lock().await.pop();
        let limit = config.step_timeout;
        if let Some(mut conn) = reused {
            if !conn.has_broken() && transmit(&mut conn, message, target, limit).await.is_ok() {
                self.idle.lock().await.push(conn);
                return Ok(());
            }
            // The server may have closed an idle connection, or refused this message on it:
            // either way, one more try on a fresh connection says which.
            conn.abort().await;
        }
        let mut conn = open(target, config, &self.tokens).await?;
        let result = transmit(&mut conn, message, target, limit).await;
        if result.is_ok() && !conn.has_broken() {
            self.idle.lock().await.push(conn);
        } else {
            conn.abort().await;
        }
        result
    }
}

/// The Mailer for the saved settings, rebuilt only when their version (or the OAuth 2.0 token)
/// changes: the key says which.
#[derive(Default)]
pub struct MailerCache {
    current: AsyncMutex<Option<(String, Arc<Mailer>)>>,
}

impl MailerCache {
    pub async fn get_or_build(
        &self,
        key: String,
        build: impl AsyncFnOnce() -> Result<Mailer, SmtpFailure>,
    ) -> Result<Arc<Mailer>, SmtpFailure> {
        let mut current = self.current.lock().await;
        if let Some((built_for, mailer)) = current.as_ref()
            && *built_for == key
        {
            return Ok(mailer.clone());
        }
        let mailer = Arc::new(build().await?);
        *current = Some((key, mailer.clone()));
        Ok(mailer)
    }

    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_mailer_keeps_both_parts_and_the_message_id() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mailer = Mailer::Memory { sent: sent.clone() };
        let message = OutgoingMessage {
            from: "Mailroom <mail@example.com>".parse().unwrap(),
            to: "Ann <ann@example.com>".parse().unwrap(),
            subject: "Hello".into(),
            text: "plain body".into(),
            html: Some("<p>html body</p>".into()),
            message_id: Some("<fixed@mailroom.localhost>".into()),
        };
        mailer.send(&message, &MailConfig::default()).await.unwrap();
        mailer.check(&MailConfig::default()).await.unwrap();
        let sent = sent.lock().unwrap();
        let raw = String::from_utf8(sent[0].formatted()).unwrap();
        assert!(raw.contains("Message-ID: <fixed@mailroom.localhost>"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
        assert!(raw.contains("plain body") && raw.contains("Subject: Hello"));
    }
}
