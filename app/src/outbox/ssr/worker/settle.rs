//! Settling what a send did: each message by what its failure means, in groups, and only with
//! the lease it was claimed under.

use super::*;

/// What became of one claimed message.
pub(super) enum Attempt {
    /// It was sent, or sending failed.
    Tried(Result<(), SmtpFailure>),
    /// Not tried: the queue was held (by this failure) or the server is stopping. It goes back
    /// as it was, attempts kept.
    Released(Option<SmtpFailure>),
}

/// The most outcomes one settle writes.
pub(super) const SETTLE_GROUP: usize = 256;

/// How long a settle waits for more outcomes to share its transaction. A settle costs about
/// 1.3 ms of server CPU however few messages it writes (its statements parsed and planned, the
/// table's definitions loaded, the commit; release build, BENCHMARKS.md), more than a message's
/// own share of it, while a lease lasts minutes: 25 ms more before a message shows as sent is
/// cheap.
pub(super) const SETTLE_LINGER: Duration = Duration::from_millis(25);

/// Settles outcomes as they arrive, each group in one transaction: a group gathers for
/// [`SETTLE_LINGER`] after its first outcome (or until it is full, or every sender has ended),
/// and while one commits, the next gathers. Answers the first database failure, if any.
pub(super) async fn settle_as_they_come(
    state: &AppState,
    mut settling: tokio::sync::mpsc::UnboundedReceiver<(Claimed, Attempt)>,
) -> Option<String> {
    let mut failure = None;
    let mut group = Vec::with_capacity(SETTLE_GROUP);
    while gather(&mut settling, &mut group, SETTLE_LINGER).await > 0 {
        if let Err(cause) = settle(state, &group).await {
            failure.get_or_insert(cause);
        }
        group.clear();
    }
    failure
}

/// Waits for an outcome, then gathers more into `group` for `linger` (or until it holds
/// [`SETTLE_GROUP`], or the channel is closed). Answers how many it holds; 0 once every sender
/// has ended and nothing is left.
pub(super) async fn gather<T>(
    settling: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    group: &mut Vec<T>,
    linger: Duration,
) -> usize {
    if settling.recv_many(group, SETTLE_GROUP).await == 0 {
        return 0;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while group.len() < SETTLE_GROUP {
        let room = SETTLE_GROUP - group.len();
        match tokio::time::timeout_at(deadline, settling.recv_many(group, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    group.len()
}

/// One message's next state, as the settle writes it.
#[derive(Debug, Clone)]
pub(super) struct Settlement {
    /// The lease the claim took: the settle changes the message only while it is still this.
    pub(super) token: Option<String>,
    pub(super) status: OutboxStatus,
    pub(super) attempts: i64,
    pub(super) next_at: i64,
    pub(super) error: Option<String>,
    pub(super) hint: Option<String>,
    /// The failure itself (JSON), for readers in other languages.
    pub(super) failure: Option<String>,
    pub(super) sent_at: Option<i64>,
    /// Whether an attempt is recorded (not for a message released untried).
    pub(super) attempt: bool,
    pub(super) ok: bool,
}

impl Settlement {
    /// Whether `other` writes the same next state under the same lease and records the same
    /// attempt (or none): the two then share one UPDATE and one INSERT.
    pub(super) fn same_as(&self, other: &Settlement) -> bool {
        let (a, b) = (self, other);
        (&a.token, a.status, a.attempts, a.next_at, &a.error, &a.hint, &a.failure, a.sent_at, a.attempt, a.ok)
            == (&b.token, b.status, b.attempts, b.next_at, &b.error, &b.hint, &b.failure, b.sent_at, b.attempt, b.ok)
    }
}

pub(super) fn settlement(policy: &OutboxPolicy, row: &OutboxRow, attempt: &Attempt, now: i64) -> Settlement {
    let token = row.lease_token.clone();
    let result = match attempt {
        Attempt::Released(failure) => {
            return Settlement {
                token,
                status: if failure.is_some() { OutboxStatus::Held } else { OutboxStatus::Retrying },
                attempts: row.attempts,
                next_at: now,
                error: failure.as_ref().map(ToString::to_string).or_else(|| row.last_error.clone()),
                hint: failure.as_ref().map(SmtpFailure::hint).or_else(|| row.last_hint.clone()),
                failure: failure.as_ref().map_or_else(|| row.last_failure.clone(), SmtpFailure::to_json),
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
        status,
        attempts,
        next_at,
        error: result.as_ref().err().map(|f| match &expired {
            Some(expired) => format!("{expired}: {f}"),
            None => f.to_string(),
        }),
        hint: result.as_ref().err().map(SmtpFailure::hint),
        // A message that ran out of time keeps only the English text, which says so.
        failure: result.as_ref().err().filter(|_| expired.is_none()).and_then(SmtpFailure::to_json),
        sent_at: result.is_ok().then_some(now),
        attempt: true,
        ok: result.is_ok(),
    }
}

/// One UPDATE per distinct next state: in a drain nearly every message of a group settles the
/// same way under the same claim, so a group of 50 is one statement over 50 records, not 50
/// lookups of each message's own values. Each message changes only if its lease is still the one
/// its claim took, and the messages that changed get their attempt record.
///
/// Every value is a parameter of its own: SurrealDB clones a parameter's whole value each time
/// an expression reads it, so reading `$group.state.status` from one parameter that also held
/// the group's ids copied up to 256 ids per field per message (BENCHMARKS.md, fifth round).
fn group_statements(n: usize, records_attempts: bool) -> String {
    let mut sql = format!(
        "LET $m{n} = (UPDATE $ids{n} SET status = $status{n}, attempts = $attempts{n},
             next_attempt_at = $next_at{n}, lease_owner = NONE, lease_token = NONE, lease_until = NONE,
             last_error = $error{n}, last_hint = $hint{n}, last_failure = $failure{n},
             sent_at = $sent_at{n} ?? sent_at
         WHERE status = 'sending' AND lease_owner = $node AND lease_token = $token{n}
         RETURN VALUE record::id(id));\n"
    );
    if records_attempts {
        // Keyed [message, time, claim] (migration 5): no index to write beside each record.
        sql.push_str(&format!(
            "IF array::len($m{n}) > 0 {{
                 INSERT INTO outbox_attempt array::map($m{n}, |$key| {{
                     id: [$key, $now, $token{n}], outbox: $key, at: $now, node: $node, ok: $ok{n}, error: $error{n}
                 }});
             }};\n"
        ));
    }
    sql
}

/// The settle as it runs, for groups that each record an attempt or not: per group `n`,
/// `$ids{n}` and its next state (`$status{n}`, `$token{n}`, …) bound, and `$node` and `$now`.
pub(crate) fn settle_statement(attempts: &[bool]) -> String {
    let mut query = String::from("BEGIN TRANSACTION;\n");
    for (n, attempt) in attempts.iter().enumerate() {
        query.push_str(&group_statements(n, *attempt));
    }
    let changed: Vec<String> = (0..attempts.len()).map(|n| format!("$m{n}")).collect();
    query.push_str(&format!("COMMIT TRANSACTION;\nRETURN array::flatten([{}]);", changed.join(", ")));
    query
}

/// The fenced group settle, in one transaction: each message changes (and its attempt is
/// recorded) only if its lease is still the one its claim took; answers the keys that changed,
/// in order.
pub(super) async fn write_settlements(
    db: &crate::state::Db,
    node: &str,
    now: i64,
    settlements: BTreeMap<String, Settlement>,
) -> Result<Vec<String>, surrealdb::Error> {
    let mut groups: Vec<(Vec<RecordId>, Settlement)> = Vec::new();
    for (key, settlement) in settlements {
        let id = RecordId::new("outbox", key);
        match groups.iter_mut().find(|(_, s)| s.same_as(&settlement)) {
            Some((ids, _)) => ids.push(id),
            None => groups.push((vec![id], settlement)),
        }
    }
    let attempts: Vec<bool> = groups.iter().map(|(_, s)| s.attempt).collect();
    let mut request = db.query(settle_statement(&attempts)).bind(("node", node.to_owned())).bind(("now", now));
    for (n, (ids, s)) in groups.into_iter().enumerate() {
        request = request
            .bind((format!("ids{n}"), ids))
            .bind((format!("token{n}"), s.token))
            .bind((format!("status{n}"), s.status))
            .bind((format!("attempts{n}"), s.attempts))
            .bind((format!("next_at{n}"), s.next_at))
            .bind((format!("error{n}"), s.error))
            .bind((format!("hint{n}"), s.hint))
            .bind((format!("failure{n}"), s.failure))
            .bind((format!("sent_at{n}"), s.sent_at))
            .bind((format!("ok{n}"), s.ok));
    }
    let mut response = request.await.and_then(crate::db::check_transaction)?;
    let last = response.num_statements().saturating_sub(1);
    let mut mine = response.take::<Vec<String>>(last)?;
    mine.sort();
    Ok(mine)
}

/// Records the attempts and the messages' next states — each only while its lease is ours.
pub(super) async fn settle(state: &AppState, group: &[(Claimed, Attempt)]) -> Result<(), String> {
    let policy = &state.settings().outbox;
    let now = now_ms();
    let started = Instant::now();
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
            tracing::debug!(count = group.len(), ms = started.elapsed().as_secs_f64() * 1e3, "outbox settle");
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

/// Who a stored message goes to; an address that no longer parses makes it a bad message.
pub(super) fn recipient(row: &OutboxRow) -> Result<Mailbox, SmtpFailure> {
    let address: EmailAddress = row
        .to_addr
        .parse()
        .map_err(|err| SmtpFailure::BadMessage { detail: format!("The recipient address cannot be used: {err}") })?;
    Ok(Mailbox::new(row.to_name.clone(), address.into()))
}

pub(super) async fn send(mailer: &Mailer, state: &AppState, row: &OutboxRow, from: Mailbox) -> Result<(), SmtpFailure> {
    let to = recipient(row)?;
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
pub(super) fn next_state(
    policy: &OutboxPolicy,
    row: &OutboxRow,
    result: &Result<(), SmtpFailure>,
    now: i64,
) -> (OutboxStatus, i64, i64, Option<String>) {
    let attempts = row.attempts + 1;
    let too_old = now - row.created_at >= policy.max_age.as_millis() as i64;
    let Err(failure) = result else { return (OutboxStatus::Sent, attempts, now, None) };
    if too_old && failure.class() != FailureClass::Recipient {
        return (
            OutboxStatus::Failed,
            row.attempts,
            now,
            Some(format!("Not delivered within {}", age_text(policy.max_age))),
        );
    }
    match failure.class() {
        // Held: the attempt does not count against the message.
        _ if failure.holds_queue() => (OutboxStatus::Held, row.attempts, now, None),
        FailureClass::Transient if attempts < policy.max_attempts => {
            (OutboxStatus::Retrying, attempts, now + backoff(policy, attempts).as_millis() as i64, None)
        }
        _ => (OutboxStatus::Failed, attempts, now, None),
    }
}

pub(super) fn age_text(age: Duration) -> String {
    match age.as_secs() {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}
