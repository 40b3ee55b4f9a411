//! The delivery worker. One per node: it claims due messages with a lease (so two nodes never
//! send the same message at once, and a crashed node's lease runs out), sends them through the
//! active [`Mailer`] and records every attempt. Transient failures (4xx, connection problems,
//! timeouts) retry with exponential backoff and jitter up to a limit; permanent ones stop as
//! failed. Nothing is deleted. A message sent just before a crash, but not yet marked sent, is
//! sent again after the lease runs out: delivery is at-least-once.

use super::OutboxEntry;
use crate::{
    auth::ssr::require_admin,
    db::now_ms,
    error::AppError,
    mail::{
        SmtpFailure,
        ssr::{Mailer, OutgoingMessage, TargetAuth, new_message_id},
    },
    smtp_health::ssr::DELIVERY,
    smtp_settings::ssr::{decrypt, encrypt, load_stored, target_from},
    state::{AppState, app_state},
};
use futures::StreamExt;
use lettre::message::Mailbox;
use secrecy::ExposeSecret;
use std::{sync::Arc, time::Duration};
use surrealdb::types::{RecordId, SurrealValue};

/// How the worker retries; from configuration.
#[derive(Clone, Debug)]
pub struct OutboxPolicy {
    pub max_attempts: i64,
    pub retry_base: Duration,
    pub lease: Duration,
    /// Messages sent at once (and the size of the SMTP connection pool).
    pub concurrency: usize,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, retry_base: Duration::from_secs(30), lease: Duration::from_secs(120), concurrency: 4 }
    }
}

/// An email to queue.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub kind: &'static str,
    pub to_addr: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// An outbox record as stored.
#[derive(Debug, Clone, SurrealValue)]
pub struct OutboxRow {
    pub kind: String,
    pub message_id: String,
    pub to_addr: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub last_hint: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl NewMail {
    /// The record to write, queued for now, its bodies sealed with the instance key (they can
    /// hold one-time links). Bind it and `CREATE outbox CONTENT $row` inside the transaction of
    /// the change that causes the mail.
    pub fn queued(self, key: &[u8; 32]) -> OutboxRow {
        let now = now_ms();
        OutboxRow {
            kind: self.kind.to_owned(),
            message_id: new_message_id(),
            to_addr: self.to_addr,
            to_name: self.to_name,
            subject: self.subject,
            text: encrypt(key, BODY_PURPOSE, &self.text),
            html: encrypt(key, BODY_PURPOSE, &self.html),
            status: "queued".into(),
            attempts: 0,
            next_attempt_at: now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            last_hint: None,
            created_at: now,
            sent_at: None,
        }
    }
}

const BODY_PURPOSE: &str = "outbox.body";

/// Wakes this node's worker after a commit that queued mail.
pub fn wake(state: &AppState) {
    state.shared.outbox_wake.notify_one();
}

/// The wait before attempt `attempts + 1`: base × 2^(attempts−1), at most an hour, ±20 %.
pub fn backoff(policy: &OutboxPolicy, attempts: i64) -> Duration {
    use rand::Rng;
    let exponent = (attempts.max(1) - 1).min(16) as u32;
    let base = policy.retry_base.saturating_mul(2u32.pow(exponent)).min(Duration::from_secs(3600));
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

pub async fn list(status: Option<String>) -> Result<Vec<OutboxEntry>, AppError> {
    if let Some(status) = &status {
        crate::error::ssr::bounded("Status", status, 16)?;
    }
    require_admin().await?;
    let state = app_state()?;
    let fields = "record::id(id) AS id, kind, to_addr, subject, status, attempts, next_attempt_at, last_error, last_hint, created_at, sent_at";
    let mut response = match status.filter(|s| super::STATUSES.contains(&s.as_str())) {
        Some(status) => {
            state
                .db()
                .query(format!("SELECT {fields} FROM outbox WHERE status = $status ORDER BY created_at DESC LIMIT 500"))
                .bind(("status", status))
                .await?
        }
        None => state.db().query(format!("SELECT {fields} FROM outbox ORDER BY created_at DESC LIMIT 500")).await?,
    };
    Ok(response.take(0)?)
}

pub async fn retry_now(id: String) -> Result<(), AppError> {
    crate::error::ssr::bounded("Message id", &id, 64)?;
    let admin = require_admin().await?;
    let state = app_state()?;
    let mut response = state
        .db()
        .query("UPDATE $id SET status = 'retrying', next_attempt_at = $now WHERE status = 'failed' RETURN VALUE record::id(id)")
        .bind(("id", RecordId::new("outbox", id.as_str())))
        .bind(("now", now_ms()))
        .await?;
    let updated: Vec<String> = response.take(0)?;
    if updated.is_empty() {
        return Err(AppError::Conflict("Only a failed message can be retried.".into()));
    }
    tracing::info!(admin = %admin.id, message = %id, "outbox retry requested");
    wake(&state);
    Ok(())
}

/// Records a message sent synchronously (Send Test Email) with its one attempt.
pub async fn record_sent_now(state: &AppState, mail: NewMail, result: &Result<(), SmtpFailure>) {
    let mut row = mail.queued(state.shared.secret_key.expose_secret());
    row.attempts = 1;
    match result {
        Ok(()) => {
            row.status = "sent".into();
            row.sent_at = Some(now_ms());
        }
        Err(failure) => {
            row.status = "failed".into();
            row.last_error = Some(failure.to_string());
            row.last_hint = Some(failure.hint());
        }
    }
    let written = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             LET $created = (CREATE outbox CONTENT $row RETURN VALUE record::id(id))[0];
             CREATE outbox_attempt CONTENT { outbox: $created, at: $now, node: $node, ok: $ok, error: $error };
             COMMIT TRANSACTION;",
        )
        .bind(("row", row.clone()))
        .bind(("now", now_ms()))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("ok", result.is_ok()))
        .bind(("error", row.last_error.clone()))
        .await
        .and_then(crate::db::check_transaction);
    if let Err(err) = written {
        tracing::error!(error = %err, "cannot record the test email in the outbox");
    }
}

/// The Mailer for the saved settings and the From to send with; rebuilt when they (or the
/// OAuth 2.0 token) change.
pub async fn active_mailer(state: &AppState) -> Result<(Arc<Mailer>, i64, Mailbox), SmtpFailure> {
    let mail = &state.settings().mail;
    let unusable = |err: AppError| SmtpFailure::Other { detail: format!("the saved settings cannot be used: {err}") };
    let stored = load_stored(state.db()).await.map_err(unusable)?.unwrap_or_default();
    let default_from = || {
        state
            .settings()
            .default_from
            .parse::<Mailbox>()
            .map_err(|e| SmtpFailure::Other { detail: format!("MAILROOM_DEFAULT_FROM: {e}") })
    };
    if stored.mode != "custom" {
        let key = format!("default:{}", stored.version);
        let mailer = state.shared.mailers.get_or_build(key, async || Ok(Mailer::default_service(state))).await?;
        return Ok((mailer, stored.version, default_from()?));
    }
    let target = target_from(&stored, state.shared.secret_key.expose_secret()).map_err(unusable)?;
    let from = stored
        .from_mailbox
        .parse::<Mailbox>()
        .map_err(|e| SmtpFailure::Other { detail: format!("the saved From cannot be used: {e}") })?;
    // A new token (or new settings) means a new pool: the connections log in with it.
    let token = match &target.auth {
        TargetAuth::OAuth2 { .. } => Some(state.shared.tokens.token(&target, mail, false).await?),
        _ => None,
    };
    let token_mark = token.as_ref().map(|t| crate::auth::ssr::fingerprint(t.expose_secret())).unwrap_or_default();
    let key = format!("custom:{}:{token_mark}", stored.version);
    let concurrency = state.settings().outbox.concurrency as u32;
    let tokens = state.shared.tokens.clone();
    let mailer = state.shared.mailers.get_or_build(key, async || Ok(Mailer::smtp(target, tokens, concurrency))).await?;
    Ok((mailer, stored.version, from))
}

/// The worker of this node: runs until the server stops.
pub async fn run_worker(state: AppState) {
    loop {
        let worked = work_once(&state).await;
        if worked == 0 {
            tokio::select! {
                () = state.shared.outbox_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

#[derive(Debug, SurrealValue)]
struct Due {
    id: String,
}

/// Claims what is due and sends it; answers how many messages it tried.
pub async fn work_once(state: &AppState) -> usize {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let due = state
        .db()
        .query(
            "SELECT record::id(id) AS id, next_attempt_at FROM outbox
             WHERE ((status = 'queued' OR status = 'retrying') AND next_attempt_at <= $now)
                OR (status = 'sending' AND lease_until < $now)
             ORDER BY next_attempt_at LIMIT $limit",
        )
        .bind(("now", now))
        .bind(("limit", (policy.concurrency * 4) as i64))
        .await
        .and_then(|mut r| r.take::<Vec<Due>>(0));
    let due = match due {
        Ok(due) if !due.is_empty() => due,
        Ok(_) => return 0,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the outbox");
            return 0;
        }
    };
    let (mailer, version, from) = match active_mailer(state).await {
        Ok(active) => active,
        Err(failure) => {
            // Nothing can be sent with these settings: count an attempt on each due message.
            for message in &due {
                if let Some(row) = claim(state, &message.id, policy).await {
                    settle(state, &message.id, &row, Err(failure.clone()), -1).await;
                }
            }
            return due.len();
        }
    };
    let tried = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(policy.concurrency.max(1), |message| {
            let (mailer, from) = (mailer.clone(), from.clone());
            async move {
                let Some(row) = claim(state, &message.id, policy).await else { return };
                let result = send(&mailer, state, &row, from).await;
                settle(state, &message.id, &row, result, version).await;
            }
        })
        .await;
    tried
}

/// Takes the message for this node if it is still due; `None` if another node has it.
async fn claim(state: &AppState, id: &str, policy: &OutboxPolicy) -> Option<OutboxRow> {
    let now = now_ms();
    let claimed = state
        .db()
        .query(
            "UPDATE $id SET status = 'sending', lease_owner = $node, lease_until = $until
             WHERE ((status = 'queued' OR status = 'retrying') AND next_attempt_at <= $now)
                OR (status = 'sending' AND lease_until < $now)
             RETURN AFTER",
        )
        .bind(("id", RecordId::new("outbox", id)))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("until", now + policy.lease.as_millis() as i64))
        .bind(("now", now))
        .await
        .and_then(|mut r| r.take::<Vec<OutboxRow>>(0));
    match claimed {
        Ok(mut rows) => rows.pop(),
        Err(err) => {
            // A concurrent claim by another node conflicts: that node has it.
            tracing::debug!(error = %err, message = id, "claim lost");
            None
        }
    }
}

async fn send(mailer: &Mailer, state: &AppState, row: &OutboxRow, from: Mailbox) -> Result<(), SmtpFailure> {
    let to = match row.to_addr.parse() {
        Ok(address) => Mailbox::new(row.to_name.clone(), address),
        Err(err) => return Err(SmtpFailure::Other { detail: format!("bad recipient {}: {err}", row.to_addr) }),
    };
    let key = state.shared.secret_key.expose_secret();
    let open = |sealed: &str| {
        decrypt(key, BODY_PURPOSE, sealed)
            .map(|body| body.expose_secret().to_owned())
            .map_err(|err| SmtpFailure::Other { detail: err.to_string() })
    };
    let message = OutgoingMessage {
        from,
        to,
        subject: row.subject.clone(),
        text: open(&row.text)?,
        html: Some(open(&row.html)?),
        message_id: Some(row.message_id.clone()),
    };
    mailer.send(&message, &state.settings().mail).await
}

/// Records the attempt and the message's next state; feeds the SMTP status.
async fn settle(state: &AppState, id: &str, row: &OutboxRow, result: Result<(), SmtpFailure>, version: i64) {
    let policy = &state.settings().outbox;
    let attempts = row.attempts + 1;
    let now = now_ms();
    let (status, next_at) = match &result {
        Ok(()) => ("sent", now),
        Err(failure) if failure.is_transient() && attempts < policy.max_attempts => {
            ("retrying", now + backoff(policy, attempts).as_millis() as i64)
        }
        Err(_) => ("failed", now),
    };
    let error = result.as_ref().err().map(ToString::to_string);
    let hint = result.as_ref().err().map(SmtpFailure::hint);
    let written = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             UPDATE $id SET status = $status, attempts = $attempts, next_attempt_at = $next_at, lease_owner = NONE,
                 lease_until = NONE, last_error = $error, last_hint = $hint,
                 sent_at = IF $status = 'sent' THEN $now ELSE sent_at END;
             CREATE outbox_attempt CONTENT { outbox: $key, at: $now, node: $node, ok: $ok, error: $error };
             COMMIT TRANSACTION;",
        )
        .bind(("id", RecordId::new("outbox", id)))
        .bind(("key", id.to_owned()))
        .bind(("status", status))
        .bind(("attempts", attempts))
        .bind(("next_at", next_at))
        .bind(("error", error))
        .bind(("hint", hint))
        .bind(("now", now))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("ok", result.is_ok()))
        .await
        .and_then(crate::db::check_transaction);
    if let Err(err) = written {
        tracing::error!(error = %err, message = id, "cannot record a delivery attempt");
    }
    match &result {
        Ok(()) => tracing::info!(message = id, kind = %row.kind, "mail sent"),
        Err(failure) => tracing::warn!(message = id, kind = %row.kind, status, failure = %failure, "mail not sent"),
    }
    if version >= 0 {
        crate::smtp_health::ssr::record_if_changed(state, DELIVERY, version, &result).await;
    }
}

/// Where links in emails point: `MAILROOM_PUBLIC_URL`, else this server's own address. Never
/// the request's Host header, which a caller chooses (password-reset poisoning).
pub fn public_base(state: &AppState) -> String {
    state.settings().public_origin.clone().unwrap_or_else(|| format!("http://{}", state.leptos_options.site_addr))
}
