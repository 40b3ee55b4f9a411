//! The one Mailer of the server: an enum of backends, built once per saved-settings version
//! (not per send) and swapped when the settings change.

use super::{
    Connection, Extensions, MailConfig, OutgoingMessage, Progress, QUIT_WAIT, SmtpTarget, hang_up, mailbox,
    oauth::TokenCache, open, transmit,
};
use crate::{db::Db, mail::SmtpFailure};
use lettre::transport::smtp::commands::Rset;
use secrecy::{ExposeSecret, SecretBox};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

pub enum Mailer {
    /// The admin's own SMTP server — or the default service's `MAILROOM_DEFAULT_SMTP_URL` relay —
    /// with pooled connections, through the same step-wise sender and address policy.
    Smtp { target: Box<SmtpTarget>, pool: Box<SmtpPool> },
    /// The default service without a relay: mail is stored (bodies sealed with the instance key)
    /// and shown under Admin > Mailbox.
    LocalMailbox { db: Db, key: SecretBox<[u8; 32]> },
}

impl Mailer {
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
            Self::LocalMailbox { .. } => Ok(()),
        }
    }

    /// Sends one message under the overall limit.
    pub async fn send(&self, message: &OutgoingMessage, config: &MailConfig) -> Result<(), SmtpFailure> {
        match self {
            Self::Smtp { target, pool } => {
                let limit = config.overall_timeout;
                let progress = Progress::default();
                match tokio::time::timeout(limit, pool.send(target, message, config, &progress)).await {
                    Ok(result) => result,
                    Err(_) => Err(progress.timed_out(limit)),
                }
            }
            Self::LocalMailbox { db, key } => mailbox::store(db, key.expose_secret(), message, &message.build()?).await,
        }
    }
}

/// Open SMTP connections kept between messages, each with the time it was last used.
pub struct SmtpPool {
    idle: AsyncMutex<Vec<(Connection, Instant)>>,
    permits: Semaphore,
    tokens: Arc<TokenCache>,
}

/// A connection idle this long is checked with NOOP before it carries a message.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// A connection idle this long is closed: servers drop idle clients after a minute or so.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(50);

impl SmtpPool {
    /// Sends on an idle connection when one is usable, else on a fresh one. A message is sent
    /// again on a fresh connection only when the reused one failed before the final dot could
    /// have been written: after it, the server may have the message, and a second send could
    /// deliver it twice. A refusal (an SMTP reply) is never retried here.
    async fn send(
        &self,
        target: &SmtpTarget,
        message: &OutgoingMessage,
        config: &MailConfig,
        progress: &Progress,
    ) -> Result<(), SmtpFailure> {
        let _permit =
            self.permits.acquire().await.map_err(|_| SmtpFailure::Local { detail: "the sender is closing".into() })?;
        let limit = config.step_timeout;
        if let Some(mut conn) = self.reusable(limit).await {
            match transmit(&mut conn, message, target, limit, progress).await {
                Ok(()) => {
                    self.idle.lock().await.push((conn, Instant::now()));
                    return Ok(());
                }
                Err(failure) if progress.dot_maybe_written() || is_reply(&failure) => {
                    self.recycle(conn, &failure, limit).await;
                    return Err(failure);
                }
                // Closed while idle, or lost before the message went out: a fresh connection.
                Err(_) => hang_up(&mut conn.smtp).await,
            }
        }
        let mut conn = open(target, config, &self.tokens, progress, Extensions::Ask).await?;
        let result = transmit(&mut conn, message, target, limit, progress).await;
        match &result {
            Ok(()) if !conn.smtp.has_broken() => self.idle.lock().await.push((conn, Instant::now())),
            Ok(()) => hang_up(&mut conn.smtp).await,
            Err(failure) => self.recycle(conn, failure, limit).await,
        }
        result
    }

    /// An idle connection that still works: closed after [`CLOSE_AFTER_IDLE`], checked with NOOP
    /// after [`CHECK_AFTER_IDLE`].
    async fn reusable(&self, limit: Duration) -> Option<Connection> {
        loop {
            let (mut conn, since) = self.idle.lock().await.pop()?;
            let idle = since.elapsed();
            if conn.smtp.has_broken() || idle >= CLOSE_AFTER_IDLE {
                let _ = tokio::time::timeout(QUIT_WAIT, conn.smtp.quit()).await;
                continue;
            }
            if idle < CHECK_AFTER_IDLE
                || matches!(tokio::time::timeout(limit, conn.smtp.test_connected()).await, Ok(true))
            {
                return Some(conn);
            }
            hang_up(&mut conn.smtp).await;
        }
    }

    /// After a refused message the connection is still good once RSET clears the transaction.
    async fn recycle(&self, mut conn: Connection, failure: &SmtpFailure, limit: Duration) {
        if is_reply(failure) && !conn.smtp.has_broken() {
            let reset = tokio::time::timeout(limit, conn.smtp.command(Rset)).await;
            if matches!(reset, Ok(Ok(ref response)) if response.is_positive()) {
                self.idle.lock().await.push((conn, Instant::now()));
                return;
            }
        }
        hang_up(&mut conn.smtp).await;
    }
}

/// A failure the server answered with a reply code (the connection itself still works).
pub(super) fn is_reply(failure: &SmtpFailure) -> bool {
    matches!(
        failure,
        SmtpFailure::SenderRejected { .. } | SmtpFailure::RecipientRejected { .. } | SmtpFailure::Rejected { .. }
    )
}

/// The Mailer for the saved settings, rebuilt only when their version (or the OAuth 2.0 token)
/// changes: the key says which.
#[derive(Default)]
pub struct MailerCache {
    current: AsyncMutex<Option<(String, Arc<Mailer>)>>,
    prepared: AsyncMutex<Option<(i64, Arc<Prepared>)>>,
}

/// What the saved settings of one version send with: built once per version (their secrets
/// opened, their values parsed), not on every pass of the worker.
pub struct Prepared {
    pub target: SmtpTarget,
    pub from: lettre::message::Mailbox,
}

impl MailerCache {
    /// The target and From of settings `version`, built by `build` the first time it is asked.
    pub async fn prepared<E>(
        &self,
        version: i64,
        build: impl FnOnce() -> Result<Prepared, E>,
    ) -> Result<Arc<Prepared>, E> {
        let mut prepared = self.prepared.lock().await;
        if let Some((built_for, ready)) = prepared.as_ref()
            && *built_for == version
        {
            return Ok(ready.clone());
        }
        let ready = Arc::new(build()?);
        *prepared = Some((version, ready.clone()));
        Ok(ready)
    }

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
        *self.prepared.lock().await = None;
    }
}
