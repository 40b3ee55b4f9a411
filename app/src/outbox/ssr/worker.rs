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
    shared::seal::decrypt,
    smtp_health::ssr::{DELIVERY, record_if_changed},
    smtp_settings::ssr::{load_stored, target_from},
    state::AppState,
};
use futures::{FutureExt, StreamExt};
use lettre::message::Mailbox;
use secrecy::ExposeSecret;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
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
        TargetAuth::OAuth2 { .. } | TargetAuth::Google { .. } => {
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
    let limit = if probing { 1 } else { claim_size(policy) as i64 };
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
    // One transaction claims the whole batch; outcomes are settled in groups as they come.
    let claimed_at = Instant::now();
    let claimed = match claim(state, due.into_iter().map(|due| due.id).collect(), policy).await {
        Ok(claimed) => claimed,
        Err(cause) => return Pass::DatabaseFailed(cause),
    };
    let tried = claimed.len();
    let batch = Batch::default();
    let stopping = state.shared.stopping.subscribe();
    let (outcomes, settling) = tokio::sync::mpsc::unbounded_channel();
    let sending = async {
        futures::stream::iter(claimed)
            .for_each_concurrent(policy.concurrency.max(1), |claimed| {
                let (active, batch, stopping, outcomes) = (&active, &batch, stopping.clone(), outcomes.clone());
                async move {
                    // A held queue or a stopping server sends nothing more, nor does a lease too
                    // short for one more send: what it claimed goes back.
                    let outcome = if let Some(failure) = batch.held() {
                        Attempt::Released(Some(failure))
                    } else if *stopping.borrow() || !lease_outlasts_a_send(claimed_at, policy, &state.settings().mail) {
                        Attempt::Released(None)
                    } else {
                        let result = send(&active.mailer, state, &claimed.row, active.from.clone()).await;
                        if let Err(failure) = &result
                            && failure.holds_queue()
                        {
                            batch.hold(failure.clone());
                        }
                        if result.as_ref().err().is_none_or(SmtpFailure::is_about_the_server) {
                            record_if_changed(state, DELIVERY, active.version, &result).await;
                        }
                        if result.is_ok() {
                            batch.sent();
                        }
                        Attempt::Tried(result)
                    };
                    // The settler outlives every sender: it ends when they have all sent.
                    let _ = outcomes.send((claimed, outcome));
                }
            })
            .await;
        drop(outcomes);
    };
    let ((), settle_failure) = tokio::join!(sending, settle_as_they_come(state, settling));
    if let Some(cause) = settle_failure {
        batch.database_failed(cause);
    }
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

/// Messages claimed per connection in one pass: the claim's commit is shared by this many.
const CLAIM_PER_CONNECTION: usize = 16;
/// The most messages one pass claims.
const MAX_CLAIM: usize = 256;

fn claim_size(policy: &OutboxPolicy) -> usize {
    (policy.concurrency.max(1) * CLAIM_PER_CONNECTION).min(MAX_CLAIM)
}

/// Whether a message claimed at `claimed_at` may still be sent: its lease must outlast the
/// longest a send can take, or another node could take it while it is still being sent. A slow
/// server thus sends fewer of a batch; the rest go back, due at once.
fn lease_outlasts_a_send(claimed_at: Instant, policy: &OutboxPolicy, mail: &crate::mail::ssr::MailConfig) -> bool {
    claimed_at.elapsed() + mail.overall_timeout < policy.lease
}

/// A message this node holds the lease of: its key and the row as the claim left it.
#[derive(Debug, SurrealValue)]
struct Claimed {
    key: String,
    row: OutboxRow,
}

/// Takes, in one transaction, those of `ids` that are still due: the rest went to another
/// node. A claim that collides with another node's takes nothing; the next pass looks again.
async fn claim(state: &AppState, ids: Vec<String>, policy: &OutboxPolicy) -> Result<Vec<Claimed>, String> {
    let ids: Vec<RecordId> = ids.into_iter().map(|id| RecordId::new("outbox", id)).collect();
    let claimed = state
        .db()
        .query(format!(
            "UPDATE $ids SET status = 'sending', lease_owner = $node, lease_token = $claim_token,
                 lease_until = {DB_NOW_MS} + $lease_ms
             WHERE (status IN $waiting AND next_attempt_at <= $now) OR (status = 'sending' AND lease_until < {DB_NOW_MS})
             RETURN record::id(id) AS key, $after AS row"
        ))
        .bind(("ids", ids))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("claim_token", crate::auth::ssr::random_token(16)))
        .bind(("lease_ms", policy.lease.as_millis() as i64))
        .bind(("waiting", WAITING))
        .bind(("now", now_ms()))
        .await
        .and_then(|mut r| r.take::<Vec<Claimed>>(0));
    match claimed {
        Ok(claimed) => {
            tracing::debug!(count = claimed.len(), "outbox claim");
            Ok(claimed)
        }
        Err(err) if is_conflict(&err) => Ok(Vec::new()),
        Err(err) => Err(err.to_string()),
    }
}

/// What became of one claimed message.
enum Attempt {
    /// It was sent, or sending failed.
    Tried(Result<(), SmtpFailure>),
    /// Not tried: the queue was held (by this failure) or the server is stopping. It goes back
    /// as it was, attempts kept.
    Released(Option<SmtpFailure>),
}

/// The most outcomes one settle writes.
const SETTLE_GROUP: usize = 256;

/// Settles outcomes as they arrive, each group in one transaction: while one commits, the
/// next group gathers. Answers the first database failure, if any.
async fn settle_as_they_come(
    state: &AppState,
    mut settling: tokio::sync::mpsc::UnboundedReceiver<(Claimed, Attempt)>,
) -> Option<String> {
    let mut failure = None;
    let mut group = Vec::with_capacity(SETTLE_GROUP);
    while settling.recv_many(&mut group, SETTLE_GROUP).await > 0 {
        if let Err(cause) = settle(state, &group).await {
            failure.get_or_insert(cause);
        }
        group.clear();
    }
    failure
}

/// One message's next state, as the settle writes it.
#[derive(Debug, Clone, SurrealValue)]
struct Settlement {
    /// The lease the claim took: the settle changes the message only while it is still this.
    token: Option<String>,
    status: String,
    attempts: i64,
    next_at: i64,
    error: Option<String>,
    hint: Option<String>,
    sent_at: Option<i64>,
    /// Whether an attempt is recorded (not for a message released untried).
    attempt: bool,
    ok: bool,
}

fn settlement(policy: &OutboxPolicy, row: &OutboxRow, attempt: &Attempt, now: i64) -> Settlement {
    let token = row.lease_token.clone();
    let result = match attempt {
        Attempt::Released(failure) => {
            return Settlement {
                token,
                status: if failure.is_some() { "held" } else { "retrying" }.into(),
                attempts: row.attempts,
                next_at: now,
                error: failure.as_ref().map(ToString::to_string).or_else(|| row.last_error.clone()),
                hint: failure.as_ref().map(SmtpFailure::hint).or_else(|| row.last_hint.clone()),
                sent_at: None,
                attempt: false,
                ok: false,
            };
        }
        Attempt::Tried(result) => result,
    };
    let (status, attempts, next_at, expired) = next_state(policy, row, result, now);
    Settlement {
        token,
        status: status.into(),
        attempts,
        next_at,
        error: result.as_ref().err().map(|f| match &expired {
            Some(expired) => format!("{expired}: {f}"),
            None => f.to_string(),
        }),
        hint: result.as_ref().err().map(SmtpFailure::hint),
        sent_at: result.is_ok().then_some(now),
        attempt: true,
        ok: result.is_ok(),
    }
}

/// The fenced group settle: each message changes (and its attempt is recorded) only if its
/// lease is still the one its claim took; answers the keys that changed.
const SETTLE: &str = "BEGIN TRANSACTION;
    LET $mine = (UPDATE $ids SET status = $o[record::id(id)].status, attempts = $o[record::id(id)].attempts,
            next_attempt_at = $o[record::id(id)].next_at, lease_owner = NONE, lease_token = NONE, lease_until = NONE,
            last_error = $o[record::id(id)].error, last_hint = $o[record::id(id)].hint,
            sent_at = $o[record::id(id)].sent_at ?? sent_at
        WHERE status = 'sending' AND lease_owner = $node AND lease_token = $o[record::id(id)].token
        RETURN VALUE record::id(id));
    FOR $key IN $mine {
        IF $o[$key].attempt {
            CREATE outbox_attempt CONTENT { outbox: $key, at: $now, node: $node, ok: $o[$key].ok, error: $o[$key].error };
        };
    };
    COMMIT TRANSACTION;
    RETURN $mine;";

async fn write_settlements(
    db: &crate::state::Db,
    node: &str,
    now: i64,
    settlements: BTreeMap<String, Settlement>,
) -> Result<Vec<String>, surrealdb::Error> {
    let ids: Vec<RecordId> = settlements.keys().map(|key| RecordId::new("outbox", key.as_str())).collect();
    let mut response = db
        .query(SETTLE)
        .bind(("ids", ids))
        .bind(("o", settlements))
        .bind(("node", node.to_owned()))
        .bind(("now", now))
        .await
        .and_then(crate::db::check_transaction)?;
    let last = response.num_statements().saturating_sub(1);
    response.take::<Vec<String>>(last)
}

/// Records the attempts and the messages' next states — each only while its lease is ours.
async fn settle(state: &AppState, group: &[(Claimed, Attempt)]) -> Result<(), String> {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let settlements: BTreeMap<String, Settlement> = group
        .iter()
        .map(|(claimed, attempt)| (claimed.key.clone(), settlement(policy, &claimed.row, attempt, now)))
        .collect();
    let mine: BTreeSet<String> = match write_settlements(
        state.db(),
        &state.settings().node_id,
        now,
        settlements.clone(),
    )
    .await
    {
        Ok(mine) => {
            tracing::debug!(count = group.len(), "outbox settle");
            mine.into_iter().collect()
        }
        Err(err) => {
            tracing::error!(error = %err, messages = group.len(), "cannot record delivery attempts; the leases will run out and the messages be tried again");
            return Err(err.to_string());
        }
    };
    for (claimed, attempt) in group {
        let (id, kind) = (claimed.key.as_str(), claimed.row.kind.as_str());
        let status = settlements[id].status.as_str();
        match attempt {
            _ if !mine.contains(id) => tracing::warn!(
                message = id,
                status,
                "lease lost before the attempt was recorded: another node has the message; nothing changed"
            ),
            Attempt::Tried(Ok(())) => tracing::info!(message = id, kind, "mail sent"),
            Attempt::Tried(Err(failure)) => {
                tracing::warn!(message = id, kind, status, class = ?failure.class(), failure = %failure, "mail not sent")
            }
            Attempt::Released(_) => tracing::debug!(message = id, status, "claimed but not tried; released"),
        }
    }
    Ok(())
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

    async fn memory_db() -> crate::state::Db {
        let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
        crate::db::connect(options).await.unwrap()
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
        let db = memory_db().await;
        let mut queued = row(0, now_ms());
        queued.status = "sending".into();
        queued.lease_owner = Some("node-a".into());
        queued.lease_token = Some("ours".into());
        db.query("CREATE outbox:m CONTENT $row").bind(("row", queued)).await.unwrap().check().unwrap();
        let settle = |token: &'static str| {
            let db = db.clone();
            async move {
                let sent = Settlement {
                    token: Some(token.into()),
                    status: "sent".into(),
                    attempts: 1,
                    next_at: 0,
                    error: None,
                    hint: None,
                    sent_at: Some(1),
                    attempt: true,
                    ok: true,
                };
                let mine = write_settlements(&db, "node-a", 1, BTreeMap::from([("m".to_owned(), sent)])).await.unwrap();
                Some(mine.len() as i64)
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

    #[test]
    fn a_message_is_sent_only_while_its_lease_outlasts_the_longest_send() {
        let policy = OutboxPolicy { lease: Duration::from_secs(120), ..OutboxPolicy::default() };
        let mail = crate::mail::ssr::MailConfig { overall_timeout: Duration::from_secs(20), ..Default::default() };
        assert!(lease_outlasts_a_send(Instant::now(), &policy, &mail));
        if let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(101)) {
            assert!(!lease_outlasts_a_send(long_ago, &policy, &mail), "20 s left of 120: too short for a 20 s send");
        }
        assert_eq!(claim_size(&OutboxPolicy { concurrency: 1, ..policy.clone() }), 16);
        assert_eq!(claim_size(&OutboxPolicy { concurrency: 64, ..policy }), MAX_CLAIM);
    }

    #[tokio::test]
    async fn one_group_settle_changes_each_message_by_its_own_lease() {
        let db = memory_db().await;
        let policy = OutboxPolicy::default();
        let now = now_ms();
        let mut rows = BTreeMap::new();
        for (key, token) in [("sent", "t1"), ("stolen", "t2"), ("released", "t3"), ("refused", "t4")] {
            let mut leased = row(1, now);
            leased.status = "sending".into();
            leased.lease_owner = Some("node-a".into());
            leased.lease_token = Some(token.into());
            db.query("CREATE type::record('outbox', $key) CONTENT $row")
                .bind(("key", key))
                .bind(("row", leased.clone()))
                .await
                .unwrap()
                .check()
                .unwrap();
            rows.insert(key, leased);
        }
        // Another node took this one after our lease ran out.
        db.query("UPDATE outbox:stolen SET lease_token = 'theirs'").await.unwrap().check().unwrap();
        let unknown = SmtpFailure::RecipientRejected { code: 550, text: "unknown".into() };
        let auth = SmtpFailure::AuthRejected { code: 535, text: "no".into() };
        let outcomes = [
            ("sent", Attempt::Tried(Ok(()))),
            ("stolen", Attempt::Tried(Ok(()))),
            ("released", Attempt::Released(Some(auth))),
            ("refused", Attempt::Tried(Err(unknown))),
        ];
        let settlements = outcomes
            .iter()
            .map(|(key, attempt)| (key.to_string(), settlement(&policy, &rows[key], attempt, now)))
            .collect();
        let mine = write_settlements(&db, "node-a", now, settlements).await.unwrap();
        assert_eq!(mine, ["refused", "released", "sent"], "every message whose lease was ours, and only those");

        let states: Vec<(String, String, i64)> = db
            .query("SELECT VALUE [record::id(id), status, attempts] FROM outbox ORDER BY id")
            .await
            .unwrap()
            .take(0)
            .unwrap();
        let expected =
            [("refused", "failed", 2), ("released", "held", 1), ("sent", "sent", 2), ("stolen", "sending", 1)];
        let expected: Vec<(String, String, i64)> =
            expected.iter().map(|(k, s, a)| (k.to_string(), s.to_string(), *a)).collect();
        assert_eq!(states, expected, "a released message keeps its attempts; a stolen one is untouched");
        let attempts: Vec<(String, bool)> =
            db.query("SELECT VALUE [outbox, ok] FROM outbox_attempt ORDER BY outbox").await.unwrap().take(0).unwrap();
        assert_eq!(
            attempts,
            [("refused".to_owned(), false), ("sent".to_owned(), true)],
            "an attempt per message tried"
        );
        let sent_at: Option<i64> =
            db.query("SELECT VALUE sent_at FROM ONLY outbox:sent").await.unwrap().take(0).unwrap();
        assert_eq!(sent_at, Some(now));
    }
}
