//! The delivery worker, one per node, supervised. It claims due messages with a fenced lease
//! (owner + token, on the database's clock), sends them through the active [`Mailer`] and
//! settles each by what its failure means ([`FailureClass`]):
//! - *recipient*: the message fails, the queue goes on;
//! - *transient*: the message is retried with backoff and spends an attempt;
//! - *configuration*: the queue is held — messages keep their attempts and show as "held", every
//!   admin sees the error, and the queue tries again on a slow timer or at once when the
//!   settings change.
//!
//! A transient failure of the server itself (refused, timed out or closed before any message
//! was offered, the token endpoint down) also holds the queue, with a short pause that grows
//! from the retry base to 30 s (at most the hold timer): an outage costs one probe per pause,
//! not every message's attempts.
//!
//! A message not delivered within `max_age` fails for good. A settle whose lease was lost (the
//! send outlived it and another node took the message) changes nothing. Database errors skip
//! the batch and back off; they never change a message.

use super::{BODY_PURPOSE, OutboxPolicy, OutboxRow, backoff};
use crate::{
    db::{is_conflict, now_ms},
    mail::{
        FailureClass, SmtpFailure,
        ssr::{Mailer, OutgoingMessage, TargetAuth},
    },
    smtp_health::ssr::{DELIVERY, record_if_changed},
    smtp_settings::ssr::{decrypt, load_stored, target_from},
    state::AppState,
};
use futures::{FutureExt, StreamExt};
use lettre::message::Mailbox;
use secrecy::ExposeSecret;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use surrealdb::types::{RecordId, SurrealValue};

/// The database's clock in milliseconds, for leases: every node compares against one clock.
const DB_NOW_MS: &str = "(time::unix(time::now()) * 1000)";

/// What the worker sends with: the Mailer for the saved settings, their version and the From.
pub struct Active {
    pub mailer: Arc<Mailer>,
    pub version: i64,
    pub from: Mailbox,
}

/// Why the worker cannot send right now.
pub enum NotReady {
    /// The database failed: skip the batch, change nothing, back off.
    Database(String),
    /// Sending cannot work now: a configuration failure holds the queue; a transient one
    /// (the token endpoint down) waits.
    Failure(SmtpFailure),
}

/// The Mailer for the saved settings and the From to send with; rebuilt when they (or the
/// OAuth 2.0 token) change.
pub async fn active_mailer(state: &AppState) -> Result<Active, NotReady> {
    let mail = &state.settings().mail;
    let stored = load_stored(state.db()).await.map_err(|err| NotReady::Database(err.to_string()))?.unwrap_or_default();
    let unusable = |detail: String| NotReady::Failure(SmtpFailure::Unusable { detail });
    if stored.mode != "custom" {
        let from = state
            .settings()
            .default_from
            .parse::<Mailbox>()
            .map_err(|e| unusable(format!("MAILROOM_DEFAULT_FROM cannot be used: {e}")))?;
        let key = format!("default:{}", stored.version);
        let mailer = state
            .shared
            .mailers
            .get_or_build(key, async || Ok(Mailer::default_service(state)))
            .await
            .map_err(NotReady::Failure)?;
        return Ok(Active { mailer, version: stored.version, from });
    }
    let target = target_from(&stored, state.shared.secret_key.expose_secret())
        .map_err(|err| unusable(format!("The saved settings cannot be used: {err}")))?;
    let from =
        stored.from_mailbox.parse::<Mailbox>().map_err(|e| unusable(format!("The saved From cannot be used: {e}")))?;
    // A new token (or new settings) means a new pool: the connections log in with it.
    let token = match &target.auth {
        TargetAuth::OAuth2 { .. } => {
            Some(state.shared.tokens.token(&target, mail, false).await.map_err(NotReady::Failure)?)
        }
        _ => None,
    };
    let token_mark = token.as_ref().map(|t| crate::auth::ssr::fingerprint(t.expose_secret())).unwrap_or_default();
    let key = format!("custom:{}:{token_mark}", stored.version);
    let concurrency = state.settings().outbox.concurrency as u32;
    let tokens = state.shared.tokens.clone();
    let mailer = state
        .shared
        .mailers
        .get_or_build(key, async || Ok(Mailer::smtp(target, tokens, concurrency)))
        .await
        .map_err(NotReady::Failure)?;
    Ok(Active { mailer, version: stored.version, from })
}

/// The worker of this node, restarted if it panics, until the server stops. Aborting this
/// task aborts the worker too.
pub async fn run_worker(state: AppState) {
    loop {
        let mut worker = AbortOnDrop(tokio::spawn(worker_loop(state.clone())));
        match (&mut worker.0).await {
            Ok(()) => return,
            Err(err) if err.is_panic() => {
                let panic = err.into_panic();
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %reason, "the outbox worker panicked; restarting it");
                release_own_leases(&state).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn worker_loop(state: AppState) {
    let mut stopping = state.shared.stopping.subscribe();
    let mut errors = ErrorLog::default();
    let mut database_backoff = Duration::ZERO;
    loop {
        if *stopping.borrow() {
            return;
        }
        let pause = match work_once(&state).await {
            Pass::DatabaseFailed(cause) => {
                errors.error(&cause);
                database_backoff = (database_backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                database_backoff
            }
            Pass::Worked(_) => Duration::ZERO,
            Pass::Idle => Duration::from_millis(250),
            Pass::Waiting(wait) => wait,
        };
        if pause != database_backoff {
            database_backoff = Duration::ZERO;
        }
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = state.shared.outbox_wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// One `error` line per distinct cause per minute.
#[derive(Default)]
struct ErrorLog {
    last: HashMap<String, Instant>,
}

impl ErrorLog {
    fn error(&mut self, cause: &str) {
        self.last.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        if !self.last.contains_key(cause) {
            tracing::error!(cause, "the outbox cannot use the database; nothing was changed, retrying");
            self.last.insert(cause.to_owned(), Instant::now());
        }
    }
}

/// What one pass of the worker did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Nothing was due.
    Idle,
    /// This many messages were tried.
    Worked(usize),
    /// Held or waiting for the token endpoint: look again after this long (or when woken).
    Waiting(Duration),
    /// The database failed; nothing was changed.
    DatabaseFailed(String),
}

/// The queue's hold: why nothing is sent, for which settings, and when to try again.
#[derive(Debug, Clone, SurrealValue)]
struct Hold {
    reason: String,
    hint: String,
    settings_version: i64,
    since: i64,
    retry_at: i64,
    /// Probes that found the cause still there.
    probes: i64,
}

const HOLD: (&str, &str) = ("outbox_hold", "queue");

/// What a claim may take once due. With no hold in force "held" messages are due too (another
/// node may have parked them while this one lifted the hold).
const WAITING: [&str; 3] = ["queued", "retrying", "held"];

/// The longest pause for an unreachable server: mail flows within this long of its return.
const MAX_SERVER_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, SurrealValue)]
struct Due {
    id: String,
}

/// Claims what is due and sends it.
pub async fn work_once(state: &AppState) -> Pass {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let (hold, version) = match hold_and_version(state).await {
        Ok(found) => found,
        Err(err) => return Pass::DatabaseFailed(err.to_string()),
    };
    // A held queue waits for its timer, or for new settings.
    let probing = match &hold {
        Some(hold) if hold.settings_version == version && now < hold.retry_at => {
            return match park(state, hold, policy).await {
                Ok(()) => Pass::Waiting(Duration::from_millis((hold.retry_at - now).max(0) as u64)),
                Err(err) => Pass::DatabaseFailed(err.to_string()),
            };
        }
        Some(_) => true,
        None => false,
    };
    // A probe sends one message: if the cause is still there, it costs one connection.
    let limit = if probing { 1 } else { (policy.concurrency * 4) as i64 };
    // Two queries, each an index scan of `outbox_due` (status, next_attempt_at): the waiting
    // messages that are due, oldest first, and the leases that ran out. One query with OR
    // between them is planned as a scan of the whole table, every body included.
    let due = state
        .db()
        .query(format!(
            "SELECT record::id(id) AS id FROM outbox
                 WHERE status IN $waiting AND next_attempt_at <= $now ORDER BY next_attempt_at LIMIT $limit;
             SELECT record::id(id) AS id FROM outbox
                 WHERE status = 'sending' AND lease_until < {DB_NOW_MS} LIMIT $limit;"
        ))
        .bind(("now", now))
        .bind(("waiting", WAITING))
        .bind(("limit", limit))
        .await
        .and_then(|mut r| {
            let mut due = r.take::<Vec<Due>>(1)?;
            due.extend(r.take::<Vec<Due>>(0)?);
            due.truncate(limit as usize);
            Ok(due)
        });
    let due = match due {
        Ok(due) if due.is_empty() => {
            if probing && let Err(err) = lift_hold(state).await {
                return Pass::DatabaseFailed(err.to_string());
            }
            return Pass::Idle;
        }
        Ok(due) => due,
        Err(err) => return Pass::DatabaseFailed(err.to_string()),
    };
    let active = match active_mailer(state).await {
        Ok(active) => active,
        Err(NotReady::Database(cause)) => return Pass::DatabaseFailed(cause),
        Err(NotReady::Failure(failure)) => {
            record_if_changed(state, DELIVERY, version, &Err(failure.clone())).await;
            return match hold_queue(state, &failure, version, hold.as_ref()).await {
                Ok(wait) => Pass::Waiting(wait),
                Err(err) => Pass::DatabaseFailed(err.to_string()),
            };
        }
    };
    let batch = Batch::default();
    let tried = due.len();
    let stopping = state.shared.stopping.subscribe();
    futures::stream::iter(due)
        .for_each_concurrent(policy.concurrency.max(1), |message| {
            let (active, batch, stopping) = (&active, &batch, stopping.clone());
            async move {
                // A held queue or a stopping server claims nothing more.
                if batch.held().is_some() || *stopping.borrow() {
                    return;
                }
                let row = match claim(state, &message.id, policy).await {
                    Ok(Some(row)) => row,
                    Ok(None) => return,
                    Err(cause) => return batch.database_failed(cause),
                };
                let result = send(&active.mailer, state, &row, active.from.clone()).await;
                if let Err(failure) = &result
                    && failure.holds_queue()
                {
                    batch.hold(failure.clone());
                }
                if let Err(cause) = settle(state, &message.id, &row, &result).await {
                    batch.database_failed(cause);
                }
                let about_the_server = result.as_ref().err().is_none_or(SmtpFailure::is_about_the_server);
                if about_the_server {
                    record_if_changed(state, DELIVERY, active.version, &result).await;
                }
                if result.is_ok() {
                    batch.sent();
                }
            }
        })
        .await;
    let outcome = batch.into_outcome();
    let settled = match (&outcome.held, probing) {
        (Some(failure), _) => hold_queue(state, failure, active.version, hold.as_ref()).await.map(Some),
        (None, true) => lift_hold(state).await.map(|()| None),
        (None, false) => Ok(None),
    };
    match (settled, outcome.database) {
        (Err(err), _) => Pass::DatabaseFailed(err.to_string()),
        (Ok(_), Some(cause)) if outcome.sent == 0 => Pass::DatabaseFailed(cause),
        (Ok(Some(wait)), _) => Pass::Waiting(wait),
        (Ok(None), _) => Pass::Worked(tried),
    }
}

/// What the messages of one batch found out.
#[derive(Default)]
struct Batch {
    state: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    held: Option<SmtpFailure>,
    database: Option<String>,
    sent: usize,
}

impl Batch {
    fn held(&self) -> Option<SmtpFailure> {
        self.state.lock().expect("batch lock").held.clone()
    }

    fn hold(&self, failure: SmtpFailure) {
        self.state.lock().expect("batch lock").held.get_or_insert(failure);
    }

    fn database_failed(&self, cause: String) {
        self.state.lock().expect("batch lock").database.get_or_insert(cause);
    }

    fn sent(&self) {
        self.state.lock().expect("batch lock").sent += 1;
    }

    fn into_outcome(self) -> Outcome {
        self.state.into_inner().expect("batch lock")
    }
}

async fn hold_and_version(state: &AppState) -> Result<(Option<Hold>, i64), surrealdb::Error> {
    let mut response = state
        .db()
        .query(
            "SELECT reason, hint, settings_version, since, retry_at, probes FROM ONLY $hold;
             RETURN (SELECT VALUE version FROM ONLY smtp_settings:current) ?? 0;",
        )
        .bind(("hold", RecordId::new(HOLD.0, HOLD.1)))
        .await?;
    let hold: Option<Hold> = response.take(0)?;
    let version: Option<i64> = response.take(1)?;
    Ok((hold, version.unwrap_or_default()))
}

/// Holds the queue: records why (for every node), marks what is waiting as held with the reason
/// and answers how long until the next probe: the slow timer for a configuration failure; for
/// an unreachable server a pause that doubles with each failed probe, from the retry base up
/// to the slow timer.
async fn hold_queue(
    state: &AppState,
    failure: &SmtpFailure,
    version: i64,
    previous: Option<&Hold>,
) -> Result<Duration, surrealdb::Error> {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let probes = previous.filter(|h| h.settings_version == version).map_or(0, |h| h.probes + 1);
    let wait = if failure.class() == FailureClass::Configuration {
        policy.hold_retry
    } else {
        let pause = policy.retry_base.saturating_mul(2u32.saturating_pow(probes.min(20) as u32));
        pause.min(policy.hold_retry).min(MAX_SERVER_PAUSE)
    };
    let hold = Hold {
        reason: failure.to_string(),
        hint: failure.hint(),
        settings_version: version,
        since: previous.map_or(now, |h| h.since),
        retry_at: now + wait.as_millis() as i64,
        probes,
    };
    state
        .db()
        .query("UPSERT $id CONTENT $hold")
        .bind(("id", RecordId::new(HOLD.0, HOLD.1)))
        .bind(("hold", hold.clone()))
        .await?
        .check()?;
    match (previous.is_none(), failure.class()) {
        (true, FailureClass::Configuration) => {
            tracing::warn!(failure = %failure, "outbox held: nothing is sent until the SMTP settings work")
        }
        (true, _) => {
            tracing::warn!(failure = %failure, "outbox paused: the server cannot be reached; probing with one message")
        }
        (false, _) => {}
    }
    park(state, &hold, policy).await?;
    Ok(wait)
}

/// While held: what is waiting shows as held with the reason; what is older than the limit
/// fails for good.
async fn park(state: &AppState, hold: &Hold, policy: &OutboxPolicy) -> Result<(), surrealdb::Error> {
    let now = now_ms();
    let too_old = now - policy.max_age.as_millis() as i64;
    state
        .db()
        .query(
            "UPDATE outbox SET status = 'held', last_error = $reason, last_hint = $hint
                 WHERE status IN ['queued', 'retrying'] AND next_attempt_at <= $now;
             UPDATE outbox SET status = 'failed', last_error = $expired WHERE status = 'held' AND created_at < $too_old;",
        )
        .bind(("reason", hold.reason.clone()))
        .bind(("hint", hold.hint.clone()))
        .bind(("now", now))
        .bind(("too_old", too_old))
        .bind(("expired", format!("Not delivered within {}: {}", age_text(policy.max_age), hold.reason)))
        .await?
        .check()?;
    Ok(())
}

/// The cause went away (or new settings came): held messages are due again, at once.
async fn lift_hold(state: &AppState) -> Result<(), surrealdb::Error> {
    state
        .db()
        .query(
            "BEGIN TRANSACTION;
             DELETE $hold;
             UPDATE outbox SET status = 'queued', next_attempt_at = $now WHERE status = 'held';
             COMMIT TRANSACTION;",
        )
        .bind(("hold", RecordId::new(HOLD.0, HOLD.1)))
        .bind(("now", now_ms()))
        .await
        .and_then(crate::db::check_transaction)?;
    Ok(())
}

/// Frees the leases this node holds, so its messages are sent at once (by any node): at
/// start-up (after a crash) and when a shutdown cannot wait for a send to finish.
pub async fn release_own_leases(state: &AppState) {
    let released = state
        .db()
        .query(
            "UPDATE outbox SET status = 'retrying', lease_owner = NONE, lease_token = NONE, lease_until = NONE,
                 next_attempt_at = $now
             WHERE status = 'sending' AND lease_owner = $node RETURN VALUE record::id(id)",
        )
        .bind(("now", now_ms()))
        .bind(("node", state.settings().node_id.clone()))
        .await
        .and_then(|mut r| r.take::<Vec<String>>(0));
    match released {
        Ok(ids) if ids.is_empty() => {}
        Ok(ids) => tracing::info!(count = ids.len(), "released this node's outbox leases"),
        Err(err) => tracing::error!(error = %err, "cannot release this node's outbox leases"),
    }
}

/// Takes the message for this node if it is still due: `Ok(None)` if another node has it.
async fn claim(state: &AppState, id: &str, policy: &OutboxPolicy) -> Result<Option<OutboxRow>, String> {
    let claimed = state
        .db()
        .query(format!(
            "UPDATE $id SET status = 'sending', lease_owner = $node, lease_token = $claim_token,
                 lease_until = {DB_NOW_MS} + $lease_ms
             WHERE (status IN $waiting AND next_attempt_at <= $now) OR (status = 'sending' AND lease_until < {DB_NOW_MS})
             RETURN AFTER"
        ))
        .bind(("id", RecordId::new("outbox", id)))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("claim_token", crate::auth::ssr::random_token(16)))
        .bind(("lease_ms", policy.lease.as_millis() as i64))
        .bind(("waiting", WAITING))
        .bind(("now", now_ms()))
        .await
        .and_then(|mut r| r.take::<Vec<OutboxRow>>(0));
    match claimed {
        Ok(mut rows) => Ok(rows.pop()),
        // Another node claimed it in the same instant: that node has it.
        Err(err) if is_conflict(&err) => Ok(None),
        Err(err) => Err(err.to_string()),
    }
}

async fn send(mailer: &Mailer, state: &AppState, row: &OutboxRow, from: Mailbox) -> Result<(), SmtpFailure> {
    let to = match row.to_addr.parse() {
        Ok(address) => Mailbox::new(row.to_name.clone(), address),
        Err(err) => return Err(SmtpFailure::BadMessage { detail: format!("Bad recipient {}: {err}", row.to_addr) }),
    };
    let key = state.shared.secret_key.expose_secret();
    let open = |sealed: &str| {
        decrypt(key, BODY_PURPOSE, sealed)
            .map(|body| body.expose_secret().to_owned())
            .map_err(|err| SmtpFailure::BadMessage { detail: format!("The stored message cannot be opened: {err}") })
    };
    let message = OutgoingMessage {
        from,
        to,
        subject: row.subject.clone(),
        text: open(&row.text)?,
        html: Some(open(&row.html)?),
        message_id: Some(row.message_id.clone()),
    };
    // A panic while sending must not leave the lease to run out: it becomes a transient failure.
    std::panic::AssertUnwindSafe(mailer.send(&message, &state.settings().mail)).catch_unwind().await.unwrap_or_else(
        |_| {
            tracing::error!(message = %row.message_id, "sending panicked");
            Err(SmtpFailure::Local { detail: "Sending failed inside Mailroom".into() })
        },
    )
}

/// The message's next state after an attempt, by what the failure means.
fn next_state(
    policy: &OutboxPolicy,
    row: &OutboxRow,
    result: &Result<(), SmtpFailure>,
    now: i64,
) -> (&'static str, i64, i64, Option<String>) {
    let attempts = row.attempts + 1;
    let too_old = now - row.created_at >= policy.max_age.as_millis() as i64;
    let Err(failure) = result else { return ("sent", attempts, now, None) };
    if too_old && failure.class() != FailureClass::Recipient {
        return ("failed", row.attempts, now, Some(format!("Not delivered within {}", age_text(policy.max_age))));
    }
    match failure.class() {
        // Held: the attempt does not count against the message.
        _ if failure.holds_queue() => ("held", row.attempts, now, None),
        FailureClass::Transient if attempts < policy.max_attempts => {
            ("retrying", attempts, now + backoff(policy, attempts).as_millis() as i64, None)
        }
        _ => ("failed", attempts, now, None),
    }
}

fn age_text(age: Duration) -> String {
    match age.as_secs() {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

/// The fenced settle: the message changes (and the attempt is recorded) only if the lease is
/// still the one this claim took; the last statement answers how many messages changed.
const SETTLE: &str = "BEGIN TRANSACTION;
    LET $mine = (UPDATE $id SET status = $status, attempts = $attempts, next_attempt_at = $next_at,
            lease_owner = NONE, lease_token = NONE, lease_until = NONE, last_error = $error, last_hint = $hint,
            sent_at = IF $status = 'sent' THEN $now ELSE sent_at END
        WHERE status = 'sending' AND lease_owner = $node AND lease_token = $claim_token
        RETURN VALUE record::id(id));
    IF array::len($mine) > 0 {
        CREATE outbox_attempt CONTENT { outbox: $key, at: $now, node: $node, ok: $ok, error: $error };
    };
    COMMIT TRANSACTION;
    RETURN array::len($mine);";

/// Records the attempt and the message's next state — only while the lease is still ours.
async fn settle(state: &AppState, id: &str, row: &OutboxRow, result: &Result<(), SmtpFailure>) -> Result<(), String> {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let (status, attempts, next_at, expired) = next_state(policy, row, result, now);
    let error = result.as_ref().err().map(|f| match &expired {
        Some(expired) => format!("{expired}: {f}"),
        None => f.to_string(),
    });
    let hint = result.as_ref().err().map(SmtpFailure::hint);
    let written = state
        .db()
        .query(SETTLE)
        .bind(("id", RecordId::new("outbox", id)))
        .bind(("key", id.to_owned()))
        .bind(("status", status))
        .bind(("attempts", attempts))
        .bind(("next_at", next_at))
        .bind(("error", error))
        .bind(("hint", hint))
        .bind(("now", now))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("claim_token", row.lease_token.clone()))
        .bind(("ok", result.is_ok()))
        .await
        .and_then(crate::db::check_transaction)
        .and_then(|mut r| {
            let last = r.num_statements().saturating_sub(1);
            r.take::<Option<i64>>(last)
        });
    let mine = match written {
        Ok(count) => count.unwrap_or_default() > 0,
        Err(err) => {
            tracing::error!(error = %err, message = id, "cannot record a delivery attempt; the lease will run out and the message be tried again");
            return Err(err.to_string());
        }
    };
    if !mine {
        tracing::warn!(
            message = id,
            status,
            "lease lost before the attempt was recorded: another node has the message; nothing changed"
        );
        return Ok(());
    }
    match result {
        Ok(()) => tracing::info!(message = id, kind = %row.kind, "mail sent"),
        Err(failure) => {
            tracing::warn!(message = id, kind = %row.kind, status, class = ?failure.class(), failure = %failure, "mail not sent")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(attempts: i64, created_at: i64) -> OutboxRow {
        let mut row = super::super::NewMail {
            kind: "test",
            to_addr: "a@example.com".into(),
            to_name: None,
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
        }
        .queued(&[7; 32]);
        row.attempts = attempts;
        row.created_at = created_at;
        row
    }

    #[test]
    fn each_class_moves_the_message_its_own_way() {
        let policy = OutboxPolicy::default();
        let now = 1_000_000_000;
        let fresh = row(2, now);
        let auth = Err(SmtpFailure::AuthRejected { code: 535, text: "no".into() });
        let greylisted = Err(SmtpFailure::RecipientRejected { code: 451, text: "later".into() });
        let unknown = Err(SmtpFailure::RecipientRejected { code: 550, text: "unknown".into() });
        assert_eq!(next_state(&policy, &fresh, &Ok(()), now).0, "sent");
        let (status, attempts, _, _) = next_state(&policy, &fresh, &auth, now);
        assert_eq!((status, attempts), ("held", 2), "held keeps its attempts");
        let (status, attempts, next_at, _) = next_state(&policy, &fresh, &greylisted, now);
        assert_eq!((status, attempts), ("retrying", 3));
        assert!(next_at > now);
        assert_eq!(next_state(&policy, &fresh, &unknown, now).0, "failed");
        let spent = row(policy.max_attempts - 1, now);
        assert_eq!(next_state(&policy, &spent, &greylisted, now).0, "failed");
        let old = row(0, now - policy.max_age.as_millis() as i64);
        let (status, _, _, expired) = next_state(&policy, &old, &auth, now);
        assert_eq!((status, expired.as_deref()), ("failed", Some("Not delivered within 3 days")));
    }

    #[tokio::test]
    async fn a_settle_changes_the_message_only_with_the_lease_it_claimed() {
        let db = crate::db::connect(crate::db::DbOptions {
            url: "mem://",
            namespace: "test",
            database: "test",
            credentials: None,
        })
        .await
        .unwrap();
        let mut queued = row(0, now_ms());
        queued.status = "sending".into();
        queued.lease_owner = Some("node-a".into());
        queued.lease_token = Some("ours".into());
        db.query("CREATE outbox:m CONTENT $row").bind(("row", queued)).await.unwrap().check().unwrap();
        let settle = |token: &'static str| {
            let db = db.clone();
            async move {
                let mut response = db
                    .query(SETTLE)
                    .bind(("id", RecordId::new("outbox", "m")))
                    .bind(("key", "m"))
                    .bind(("status", "sent"))
                    .bind(("attempts", 1))
                    .bind(("next_at", 0))
                    .bind(("error", None::<String>))
                    .bind(("hint", None::<String>))
                    .bind(("now", 1))
                    .bind(("node", "node-a"))
                    .bind(("claim_token", token))
                    .bind(("ok", true))
                    .await
                    .and_then(crate::db::check_transaction)
                    .unwrap();
                let last = response.num_statements() - 1;
                response.take::<Option<i64>>(last).unwrap()
            }
        };
        assert_eq!(settle("theirs").await, Some(0), "a lost lease changes nothing");
        let status: Option<String> = db.query("SELECT VALUE status FROM ONLY outbox:m").await.unwrap().take(0).unwrap();
        assert_eq!(status.as_deref(), Some("sending"));
        assert_eq!(settle("ours").await, Some(1));
        let status: Option<String> = db.query("SELECT VALUE status FROM ONLY outbox:m").await.unwrap().take(0).unwrap();
        assert_eq!(status.as_deref(), Some("sent"));
        let attempts: Vec<i64> = db.query("SELECT VALUE at FROM outbox_attempt").await.unwrap().take(0).unwrap();
        assert_eq!(attempts, vec![1], "one attempt recorded, by the settle that held the lease");
    }
}
