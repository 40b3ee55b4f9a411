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
use crate::outbox::OutboxStatus;
use crate::{
    db::{is_conflict, now_ms},
    mail::{
        FailureClass, SmtpFailure,
        ssr::{Mailer, OutgoingMessage, TargetAuth, mailer::Prepared},
    },
    shared::{email::EmailAddress, seal::decrypt},
    smtp_health::{StatusSource, ssr::record_if_changed},
    smtp_settings::{
        ssr::{load_stored, target_from},
        types::Mode,
    },
    state::AppState,
};
use futures::FutureExt;
use lettre::message::Mailbox;
use secrecy::ExposeSecret;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use surrealdb::types::{RecordId, SurrealValue};

mod claim;
mod hold;
mod settle;
use claim::*;
pub use hold::release_own_leases;
use hold::*;
use settle::*;

/// The claim and the settle (of one group of sent messages) exactly as the worker runs them,
/// for `bench/outbox_statements.surql`, which measures what they cost the database.
pub fn statements() -> (String, String) {
    (claim_statement(), settle_statement(&[true]))
}

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
    if stored.mode != Mode::Custom {
        let from = state
            .settings()
            .default_from
            .parse::<Mailbox>()
            .map_err(|e| unusable(format!("MAILROOM_DEFAULT_FROM cannot be used: {e}")))?;
        let key = format!("default:{}", stored.version);
        let mailer = state
            .shared
            .mailers
            .get_or_build(key, async || Ok(state.default_mailer()))
            .await
            .map_err(NotReady::Failure)?;
        return Ok(Active { mailer, version: stored.version, from });
    }
    let prepared = state
        .shared
        .mailers
        .prepared(stored.version, || {
            let target = target_from(&stored, state.shared.secret_key.expose_secret())
                .map_err(|err| unusable(format!("The saved settings cannot be used: {err}")))?;
            let from = stored
                .from_mailbox
                .parse::<Mailbox>()
                .map_err(|e| unusable(format!("The saved From cannot be used: {e}")))?;
            Ok(Prepared { target, from })
        })
        .await?;
    let (target, from) = (&prepared.target, prepared.from.clone());
    // A new token (or new settings) means a new pool: the connections log in with it.
    let token = match &target.auth {
        TargetAuth::OAuth2 { .. } | TargetAuth::Google { .. } => {
            Some(state.shared.tokens.token(target, mail, false).await.map_err(NotReady::Failure)?)
        }
        _ => None,
    };
    let token_mark = token.as_ref().map(|t| crate::shared::token::fingerprint(t.expose_secret())).unwrap_or_default();
    let key = format!("custom:{}:{token_mark}", stored.version);
    let concurrency = state.settings().outbox.concurrency as u32;
    let tokens = state.shared.tokens.clone();
    let mailer = state
        .shared
        .mailers
        .get_or_build(key, async || Ok(Mailer::smtp(target.clone(), tokens, concurrency)))
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

/// A task that ends with its handle: a worker, or a claim made ahead for a pass that ended.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
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

/// What a claim may take once due. With no hold in force "held" messages are due too (another
/// node may have parked them while this one lifted the hold).
const WAITING: [OutboxStatus; 3] = [OutboxStatus::Queued, OutboxStatus::Retrying, OutboxStatus::Held];

/// The longest pause for an unreachable server: mail flows within this long of its return.
const MAX_SERVER_PAUSE: Duration = Duration::from_secs(30);

/// A due message: its key, and when it became due (its lease's end, for a lease that ran out).
#[derive(Debug, SurrealValue)]
struct Due {
    id: String,
    at: i64,
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
    let limit = if probing { 1 } else { claim_size(policy) as i64 };
    let due = due_ids(state.db(), limit).await;
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
            record_if_changed(state, StatusSource::Delivery, version, &Err(failure.clone())).await;
            return match hold_queue(state, &failure, version, hold.as_ref()).await {
                Ok(wait) => Pass::Waiting(wait),
                Err(err) => Pass::DatabaseFailed(err.to_string()),
            };
        }
    };
    // One transaction claims the whole batch; outcomes are settled in groups as they come.
    let claimed_at = Instant::now();
    let mut claimed = match claim(state, due, policy).await {
        Ok(claimed) => claimed,
        Err(cause) => return Pass::DatabaseFailed(cause),
    };
    let mut tried = 0;
    // Each send is a task of its own and so is the settler, so a drain spreads over every core
    // (the embedded database runs its queries on the task that asks).
    let batch = Arc::new(Batch::default());
    let stopping = state.shared.stopping.subscribe();
    let (outcomes, settling) = tokio::sync::mpsc::unbounded_channel();
    let settler = tokio::spawn({
        let state = state.clone();
        async move { settle_as_they_come(&state, settling).await }
    });
    let active = Arc::new(active);
    let connections = Arc::new(tokio::sync::Semaphore::new(policy.concurrency.max(1)));
    let mut sends = tokio::task::JoinSet::new();
    let mut claimed_at = claimed_at;
    loop {
        // The next batch is claimed while this one waits for connections and is sent, so no
        // connection waits for a claim: one batch ahead, never more (a probe claims none).
        let ahead = (!probing).then(|| {
            let (state, active, batch, stopping) = (state.clone(), active.clone(), batch.clone(), stopping.clone());
            AbortOnDrop(tokio::spawn(async move {
                let at = Instant::now();
                next_batch(&state, &active, &batch, &stopping).await.map(|next| next.map(|next| (next, at)))
            }))
        });
        tried += claimed.len();
        for claimed in claimed {
            let permit = connections.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (state, active, batch, stopping, outcomes) =
                (state.clone(), active.clone(), batch.clone(), stopping.clone(), outcomes.clone());
            sends.spawn(async move {
                let _permit = permit;
                let outcome = attempt(&state, &active, &batch, &stopping, claimed_at, &claimed.row).await;
                // The settler outlives every sender: it ends when they have all sent.
                let _ = outcomes.send((claimed, outcome));
            });
            while let Some(joined) = sends.try_join_next() {
                rethrow_panic(joined);
            }
        }
        let Some(mut ahead) = ahead else { break };
        match (&mut ahead.0).await {
            Ok(Ok(Some(next))) => (claimed, claimed_at) = next,
            Ok(Ok(None)) => break,
            Ok(Err(cause)) => {
                batch.database_failed(cause);
                break;
            }
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => {
                batch.database_failed(err.to_string());
                break;
            }
        }
    }
    drop(outcomes);
    while let Some(joined) = sends.join_next().await {
        rethrow_panic(joined);
    }
    let settle_failure = match settler.await {
        Ok(failure) => failure,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Some(err.to_string()),
    };
    if let Some(cause) = settle_failure {
        batch.database_failed(cause);
    }
    let batch = Arc::into_inner(batch).expect("every send has ended");
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

/// The due messages, at most `limit`: leases that ran out first, then the waiting messages
/// that are due, oldest first. Each is an index scan of `outbox_due` (status, next_attempt_at),
/// one per status: one query with `status IN` is planned as a merge of three index scans that
/// each read a thousand entries ahead (`EXPLAIN FULL`; it took 8x the time of one status's scan
/// for a batch of 256), and one with OR as a scan of the whole table, every body included.
async fn due_ids(db: &crate::state::Db, limit: i64) -> Result<Vec<String>, surrealdb::Error> {
    let started = Instant::now();
    // A message being sent is due again when its lease runs out: its claim set next_attempt_at
    // to lease_until (a message claimed by an earlier release did not: lease_until decides).
    let mut query = format!(
        "LET $db_now = {DB_NOW_MS};
         SELECT record::id(id) AS id, lease_until AS at FROM outbox
             WHERE status = 'sending' AND next_attempt_at < $db_now AND lease_until < $db_now
             ORDER BY next_attempt_at LIMIT $limit;"
    );
    for n in 0..WAITING.len() {
        query.push_str(&format!(
            "SELECT record::id(id) AS id, next_attempt_at AS at FROM outbox
                 WHERE status = $waiting{n} AND next_attempt_at <= $now ORDER BY next_attempt_at LIMIT $limit;"
        ));
    }
    let mut request = db.query(query).bind(("now", now_ms())).bind(("limit", limit));
    for (n, status) in WAITING.into_iter().enumerate() {
        request = request.bind((format!("waiting{n}"), status));
    }
    let mut response = request.await?;
    let mut due = response.take::<Vec<Due>>(1)?;
    let mut waiting = Vec::new();
    for n in 2..=WAITING.len() + 1 {
        waiting.extend(response.take::<Vec<Due>>(n)?);
    }
    waiting.sort_by_key(|due| due.at);
    due.extend(waiting);
    due.truncate(limit as usize);
    tracing::debug!(count = due.len(), ms = started.elapsed().as_secs_f64() * 1e3, "outbox due scan");
    Ok(due.into_iter().map(|due| due.id).collect())
}

/// The next batch of a pass, claimed while the last one is still being sent; none once the
/// queue is empty, held (by this batch or another node), stopping, or the settings changed
/// (the next pass builds the new Mailer).
async fn next_batch(
    state: &AppState,
    active: &Active,
    batch: &Batch,
    stopping: &tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Vec<Claimed>>, String> {
    if batch.held().is_some() || *stopping.borrow() {
        return Ok(None);
    }
    let (hold, version) = hold_and_version(state).await.map_err(|err| err.to_string())?;
    if hold.is_some() || version != active.version {
        return Ok(None);
    }
    let policy = &state.settings().outbox;
    let due = due_ids(state.db(), claim_size(policy) as i64).await.map_err(|err| err.to_string())?;
    if due.is_empty() {
        return Ok(None);
    }
    let claimed = claim(state, due, policy).await?;
    Ok((!claimed.is_empty()).then_some(claimed))
}

/// Sends one claimed message, unless the queue is held (by this failure), the server is
/// stopping or the lease is too short for one more send: then it goes back.
async fn attempt(
    state: &AppState,
    active: &Active,
    batch: &Batch,
    stopping: &tokio::sync::watch::Receiver<bool>,
    claimed_at: Instant,
    row: &OutboxRow,
) -> Attempt {
    if let Some(failure) = batch.held() {
        return Attempt::Released(Some(failure));
    }
    if *stopping.borrow() || !lease_outlasts_a_send(claimed_at, &state.settings().outbox, &state.settings().mail) {
        return Attempt::Released(None);
    }
    let result = send(&active.mailer, state, row, active.from.clone()).await;
    if let Err(failure) = &result
        && failure.holds_queue()
    {
        batch.hold(failure.clone());
    }
    if result.as_ref().err().is_none_or(SmtpFailure::is_about_the_server) {
        record_if_changed(state, StatusSource::Delivery, active.version, &result).await;
    }
    if result.is_ok() {
        batch.sent();
    }
    Attempt::Tried(result)
}

/// A panic outside the send (which catches its own) restarts the worker, as before.
fn rethrow_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined
        && err.is_panic()
    {
        std::panic::resume_unwind(err.into_panic());
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

#[cfg(test)]
mod tests;
