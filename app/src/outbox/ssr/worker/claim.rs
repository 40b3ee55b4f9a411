//! Claiming due messages: one transaction takes a batch under a fenced lease (owner and token,
//! on the database's clock), sized by the connections the mailer may open.

use super::*;

/// Messages claimed per connection in one pass: the claim's commit is shared by this many.
pub(super) const CLAIM_PER_CONNECTION: usize = 16;
/// The most messages one pass claims.
pub(super) const MAX_CLAIM: usize = 256;

pub(super) fn claim_size(policy: &OutboxPolicy) -> usize {
    (policy.concurrency.max(1) * CLAIM_PER_CONNECTION).min(MAX_CLAIM)
}

/// Whether a message claimed at `claimed_at` may still be sent: its lease must outlast the
/// longest a send can take, or another node could take it while it is still being sent. A slow
/// server thus sends fewer of a batch; the rest go back, due at once.
pub(super) fn lease_outlasts_a_send(
    claimed_at: Instant,
    policy: &OutboxPolicy,
    mail: &crate::mail::ssr::MailConfig,
) -> bool {
    claimed_at.elapsed() + mail.overall_timeout < policy.lease
}

/// A message this node holds the lease of: its key and the row as the claim left it.
#[derive(Debug, SurrealValue)]
pub(super) struct Claimed {
    pub(super) key: String,
    pub(super) row: OutboxRow,
}

/// The claim as it runs: `$ids` (the candidates), `$node`, `$claim_token`, `$lease_ms`,
/// `$waiting` and `$now` bound; its third result is the [`Claimed`] messages.
pub(crate) fn claim_statement() -> String {
    format!(
        "LET $db_now = {DB_NOW_MS};
         LET $lease_until = $db_now + $lease_ms;
         UPDATE $ids SET status = 'sending', lease_owner = $node, lease_token = $claim_token,
             lease_until = $lease_until, next_attempt_at = $lease_until
         WHERE (status IN $waiting AND next_attempt_at <= $now) OR (status = 'sending' AND lease_until < $db_now)
         RETURN record::id(id) AS key, $after AS row"
    )
}

/// Takes, in one transaction, those of `ids` that are still due: the rest went to another
/// node. A claim that collides with another node's takes nothing; the next pass looks again.
/// A claimed message is due again when its lease runs out (`next_attempt_at` = `lease_until`),
/// so the scan for expired leases is a range of the `outbox_due` index, not a read of every
/// message being sent.
pub(super) async fn claim(state: &AppState, ids: Vec<String>, policy: &OutboxPolicy) -> Result<Vec<Claimed>, String> {
    let ids: Vec<RecordId> = ids.into_iter().map(|id| RecordId::new("outbox", id)).collect();
    let started = Instant::now();
    let claimed = state
        .db()
        .query(claim_statement())
        .bind(("ids", ids))
        .bind(("node", state.settings().node_id.clone()))
        .bind(("claim_token", crate::shared::token::random_token(16)))
        .bind(("lease_ms", policy.lease.as_millis() as i64))
        .bind(("waiting", WAITING))
        .bind(("now", now_ms()))
        .await
        .and_then(|mut r| r.take::<Vec<Claimed>>(2));
    match claimed {
        Ok(claimed) => {
            tracing::debug!(count = claimed.len(), ms = started.elapsed().as_secs_f64() * 1e3, "outbox claim");
            Ok(claimed)
        }
        Err(err) if is_conflict(&err) => Ok(Vec::new()),
        Err(err) => Err(err.to_string()),
    }
}
