//! The queue's hold: while a configuration failure or an unreachable server stands, nothing is
//! sent, waiting messages show as held with the reason, and one probe per pause tries again.

use super::*;

/// The queue's hold: why nothing is sent, for which settings, and when to try again.
#[derive(Debug, Clone, SurrealValue)]
pub(super) struct Hold {
    pub(super) reason: String,
    pub(super) hint: String,
    /// The failure itself (JSON), for readers in other languages.
    pub(super) failure: Option<String>,
    pub(super) settings_version: i64,
    pub(super) since: i64,
    pub(super) retry_at: i64,
    /// Probes that found the cause still there.
    pub(super) probes: i64,
}

pub(super) const HOLD: (&str, &str) = ("outbox_hold", "queue");

pub(super) async fn hold_and_version(state: &AppState) -> Result<(Option<Hold>, i64), surrealdb::Error> {
    let mut response = state
        .db()
        .query(
            "SELECT reason, hint, failure, settings_version, since, retry_at, probes FROM ONLY $hold;
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
pub(super) async fn hold_queue(
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
        failure: failure.to_json(),
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
pub(super) async fn park(state: &AppState, hold: &Hold, policy: &OutboxPolicy) -> Result<(), surrealdb::Error> {
    let now = now_ms();
    let too_old = now - policy.max_age.as_millis() as i64;
    state
        .db()
        .query(
            "UPDATE outbox SET status = 'held', last_error = $reason, last_hint = $hint, last_failure = $failure
                 WHERE status IN ['queued', 'retrying'] AND next_attempt_at <= $now;
             UPDATE outbox SET status = 'failed', last_error = $expired, last_failure = NONE
                 WHERE status = 'held' AND created_at < $too_old;",
        )
        .bind(("reason", hold.reason.clone()))
        .bind(("hint", hold.hint.clone()))
        .bind(("failure", hold.failure.clone()))
        .bind(("now", now))
        .bind(("too_old", too_old))
        .bind(("expired", format!("Not delivered within {}: {}", age_text(policy.max_age), hold.reason)))
        .await?
        .check()?;
    Ok(())
}

/// The cause went away (or new settings came): held messages are due again, at once.
pub(super) async fn lift_hold(state: &AppState) -> Result<(), surrealdb::Error> {
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
