//! Sign-in slow-down per email: failures make the next attempts wait longer instead of locking
//! the account, so an attacker cannot lock a named admin out, and guessing stays slow. Counted
//! in the database: the slow-down holds on every node behind a balancer.

use crate::{db::now_ms, state::Db};
use std::time::Duration;
use surrealdb::types::RecordId;

/// Failures before any delay.
const FREE_FAILURES: u32 = 3;
/// The first delay; it doubles with every further failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A key with no failure for this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// The wait before an attempt after `failures` recent failures.
pub fn delay_after(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// Sign-in failures per email, counted in the database so the slow-down holds across every node
/// of the instance (a balancer must not multiply an attacker's guesses). Keys are SHA-256
/// prefixes of the normalized email; rows older than [`FORGET_AFTER`] are deleted by
/// housekeeping.
pub struct SignInThrottle;

fn key(email: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(email.as_bytes());
    hex::encode(&digest[..16])
}

fn forget_ms() -> i64 {
    FORGET_AFTER.as_millis() as i64
}

impl SignInThrottle {
    /// How long a sign-in for `email` waits before its password is checked.
    pub async fn delay(db: &Db, email: &str) -> Result<Duration, surrealdb::Error> {
        let count: Option<i64> = db
            .query("SELECT VALUE count FROM ONLY $id WHERE last_at >= $since")
            .bind(("id", RecordId::new("signin_failure", key(email))))
            .bind(("since", now_ms() - forget_ms()))
            .await?
            .take(0)?;
        Ok(delay_after(count.unwrap_or_default().clamp(0, u32::MAX as i64) as u32))
    }

    pub async fn failed(db: &Db, email: &str) -> Result<(), surrealdb::Error> {
        db.query(
            "UPSERT $id SET count = IF last_at != NONE AND last_at >= $since THEN count + 1 ELSE 1 END, last_at = $now",
        )
        .bind(("id", RecordId::new("signin_failure", key(email))))
        .bind(("since", now_ms() - forget_ms()))
        .bind(("now", now_ms()))
        .await?
        .check()?;
        Ok(())
    }

    pub async fn succeeded(db: &Db, email: &str) -> Result<(), surrealdb::Error> {
        db.query("DELETE $id").bind(("id", RecordId::new("signin_failure", key(email)))).await?.check()?;
        Ok(())
    }

    /// Deletes failures nobody remembers any more.
    pub async fn prune(db: &Db) -> Result<(), surrealdb::Error> {
        db.query("DELETE signin_failure WHERE last_at < $since; DELETE quota WHERE expires_at < $now;")
            .bind(("since", now_ms() - forget_ms()))
            .bind(("now", now_ms()))
            .await?
            .check()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_failures_and_stops_growing_at_the_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::from_millis(500));
        assert_eq!(delay_after(4), Duration::from_secs(1));
        assert_eq!(delay_after(6), Duration::from_secs(4));
        assert_eq!(delay_after(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn failures_slow_one_email_on_every_node_and_a_success_clears_them() {
        let db = crate::db::connect(crate::db::DbOptions {
            url: "mem://",
            namespace: "t",
            database: "t",
            credentials: None,
        })
        .await
        .unwrap();
        for _ in 0..5 {
            SignInThrottle::failed(&db, "admin@example.com").await.unwrap();
        }
        assert_eq!(SignInThrottle::delay(&db, "admin@example.com").await.unwrap(), Duration::from_secs(2));
        assert_eq!(SignInThrottle::delay(&db, "other@example.com").await.unwrap(), Duration::ZERO);
        SignInThrottle::succeeded(&db, "admin@example.com").await.unwrap();
        assert_eq!(SignInThrottle::delay(&db, "admin@example.com").await.unwrap(), Duration::ZERO);
    }
}
