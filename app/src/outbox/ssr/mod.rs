//! The outbox as stored: queuing a message, the admin's list and "Retry now", and the record
//! of a test email. The delivery worker is in [`worker`].

pub mod policy;
mod worker;

pub use policy::OutboxPolicy;
pub use worker::{active_mailer, release_own_leases, run_worker, statements, work_once};

use super::{Delivery, OutboxEntry, OutboxStatus};
use crate::{
    auth::ssr::require_admin,
    db::now_ms,
    error::AppError,
    mail::{SmtpFailure, ssr::new_message_id},
    shared::{email::EmailAddress, seal::encrypt},
    state::{AppState, app_state},
};
use secrecy::ExposeSecret;
use std::time::Duration;
use surrealdb::types::{RecordId, SurrealValue};

/// An email to queue.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub kind: &'static str,
    pub to_addr: EmailAddress,
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
    /// Written from an [`EmailAddress`]; read back as the text stored and parsed per message
    /// when it is sent, so a row that no longer parses fails alone (a bad message) instead of
    /// making its whole claimed batch unreadable.
    pub to_addr: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    /// Who holds the lease this time: a settle must present it (fencing).
    pub lease_token: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub last_hint: Option<String>,
    /// The failure itself (JSON), worded on the page in the reader's language.
    pub last_failure: Option<String>,
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
            to_addr: self.to_addr.into(),
            to_name: self.to_name,
            subject: self.subject,
            text: encrypt(key, BODY_PURPOSE, &self.text),
            html: encrypt(key, BODY_PURPOSE, &self.html),
            status: OutboxStatus::Queued,
            attempts: 0,
            next_attempt_at: now,
            lease_owner: None,
            lease_token: None,
            lease_until: None,
            last_error: None,
            last_hint: None,
            last_failure: None,
            created_at: now,
            sent_at: None,
        }
    }
}

pub(crate) const BODY_PURPOSE: &str = "outbox.body";

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

/// An outbox record as the Outbox page reads it: flat, as stored.
#[derive(Debug, Clone, SurrealValue)]
struct ListedRow {
    id: String,
    kind: String,
    to_addr: EmailAddress,
    subject: String,
    status: OutboxStatus,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    last_hint: Option<String>,
    last_failure: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl From<ListedRow> for OutboxEntry {
    fn from(row: ListedRow) -> Self {
        let (last_error, last_hint, next_attempt_at) = (row.last_error, row.last_hint, row.next_attempt_at);
        let delivery = match row.status {
            OutboxStatus::Queued => Delivery::Queued { next_attempt_at },
            OutboxStatus::Sending => Delivery::Sending,
            OutboxStatus::Sent => Delivery::Sent { sent_at: row.sent_at.unwrap_or(next_attempt_at) },
            OutboxStatus::Retrying => Delivery::Retrying { next_attempt_at, last_error, last_hint },
            OutboxStatus::Held => Delivery::Held { last_error: last_error.unwrap_or_default(), last_hint },
            OutboxStatus::Failed => Delivery::Failed { last_error: last_error.unwrap_or_default(), last_hint },
        };
        Self {
            id: row.id,
            kind: row.kind,
            to_addr: row.to_addr,
            subject: row.subject,
            attempts: row.attempts,
            created_at: row.created_at,
            failure: row.last_failure,
            delivery,
        }
    }
}

pub async fn list(status: Option<OutboxStatus>) -> Result<Vec<OutboxEntry>, AppError> {
    require_admin().await?;
    let state = app_state()?;
    let fields = "record::id(id) AS id, kind, to_addr, subject, status, attempts, next_attempt_at, last_error, last_hint, last_failure, created_at, sent_at";
    let mut response = match status {
        Some(status) => {
            state
                .db()
                .query(format!("SELECT {fields} FROM outbox WHERE status = $status ORDER BY created_at DESC LIMIT 500"))
                .bind(("status", status))
                .await?
        }
        None => state.db().query(format!("SELECT {fields} FROM outbox ORDER BY created_at DESC LIMIT 500")).await?,
    };
    let rows: Vec<ListedRow> = response.take(0)?;
    Ok(rows.into_iter().map(OutboxEntry::from).collect())
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
        return Err(AppError::Conflict(
            crate::i18n::td_string!(crate::language::ssr::request_locale(), invalid.retry_only_failed).to_owned(),
        ));
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
            row.status = OutboxStatus::Sent;
            row.sent_at = Some(now_ms());
        }
        Err(failure) => {
            row.status = OutboxStatus::Failed;
            row.last_error = Some(failure.to_string());
            row.last_hint = Some(failure.hint());
            row.last_failure = failure.to_json();
        }
    }
    // The key is made here (20 random hex characters; SurrealDB's own are 20 letters and
    // digits), so the two records are written by plain CREATEs that return nothing.
    let key = crate::shared::token::random_token(10);
    let error = row.last_error.clone();
    let written = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             CREATE type::record('outbox', $key) CONTENT $row RETURN NONE;
             -- Keyed [message, time, claim] as the worker's attempts are (migration 5); with no
             -- lease to name, a random claim.
             CREATE type::record('outbox_attempt', [$key, $now, $claim])
                 CONTENT { outbox: $key, at: $now, node: $node, ok: $ok, error: $error } RETURN NONE;
             COMMIT TRANSACTION;",
        )
        .bind(("key", key))
        .bind(("claim", crate::shared::token::random_token(8)))
        .bind(("row", row))
        .bind(("now", now_ms()))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("ok", result.is_ok()))
        .bind(("error", error))
        .await
        .and_then(crate::db::check_transaction);
    if let Err(err) = written {
        tracing::error!(error = %err, "cannot record the test email in the outbox");
    }
}

/// Where links in emails point: `MAILROOM_PUBLIC_URL`, else this server's own address. Never
/// the request's Host header, which a caller chooses (password-reset poisoning).
pub fn public_base(state: &AppState) -> String {
    state.settings().public_origin.clone().unwrap_or_else(|| format!("http://{}", state.leptos_options.site_addr))
}
