//! Rate limits: per-client limiters in each node's memory, and per-minute quotas counted in the
//! database for the whole instance.

use crate::{db::Db, error::AppError};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use std::num::NonZeroU32;
use surrealdb::types::SurrealValue;

/// A keyed GCRA limiter (governor) that answers with [`AppError::RateLimited`]. Keys are kept
/// as 128-bit SHA-256 prefixes, so a caller cannot make the limiter hold large strings.
pub struct Limiter(DefaultKeyedRateLimiter<[u8; 16]>);

pub fn limiter_key(key: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

impl Limiter {
    pub fn per_minute(quota: NonZeroU32) -> Self {
        Self(DefaultKeyedRateLimiter::keyed(Quota::per_minute(quota)))
    }

    pub fn per_hour(quota: NonZeroU32) -> Self {
        Self(DefaultKeyedRateLimiter::keyed(Quota::per_hour(quota)))
    }

    pub fn check(&self, key: &str) -> Result<(), AppError> {
        self.0.check_key(&limiter_key(key)).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            AppError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
        })
    }

    pub fn prune(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// A per-minute quota counted in the database, so it holds for the whole instance however many
/// nodes serve it. For the rare, costly actions only: the per-client limits on hot paths stay in
/// each node's memory ([`Limiter`]).
///
/// A sliding window: each key counts per calendar minute, and an action is refused when this
/// minute's count plus the share of the previous minute's that still lies within the last 60
/// seconds exceeds the quota. Fixed windows alone would let twice the quota through across a
/// minute boundary. One record per key holds both counts (`n` for `minute`, `previous` for the
/// minute before it), so counting is one write and no second read.
pub struct SharedQuota {
    name: &'static str,
    per_minute: NonZeroU32,
}

impl SharedQuota {
    pub fn per_minute(name: &'static str, per_minute: NonZeroU32) -> Self {
        Self { name, per_minute }
    }

    fn record(&self, key: &str) -> surrealdb::types::RecordId {
        let hashed = hex::encode(limiter_key(key));
        surrealdb::types::RecordId::new("quota", format!("{}-{hashed}", self.name))
    }

    /// Whether this minute's count plus the part of the previous minute's still inside the
    /// last 60 seconds is within the quota; if not, how long until it is.
    fn verdict(&self, counted: QuotaCount, into_window: f64) -> Result<(), AppError> {
        let current = counted.current.unwrap_or_default() as f64;
        let previous = counted.previous as f64;
        let quota = f64::from(self.per_minute.get());
        if current + previous * (1.0 - into_window) <= quota {
            return Ok(());
        }
        // When the count falls to the quota again: later in this minute as the previous one
        // slides out, or once this minute's count has slid out far enough in the next.
        let wait_minutes = if current <= quota {
            (1.0 - (quota - current) / previous) - into_window
        } else {
            (1.0 - into_window) + (1.0 - quota / current)
        };
        let retry_after_secs = (wait_minutes * 60.0).ceil().clamp(1.0, 120.0) as u64;
        Err(AppError::RateLimited { retry_after_secs })
    }
}

#[derive(Debug, SurrealValue)]
struct QuotaCount {
    /// This minute's count, with this action; NONE when an earlier quota refused it.
    current: Option<i64>,
    previous: i64,
}

/// Counts one action against each quota in turn, in one database round trip. A quota is
/// counted only while every one before it allows the action, so an admin past their own quota
/// does not spend the instance's. The first refusal is the answer.
pub async fn check_quotas(db: &Db, quotas: &[(&SharedQuota, &str)]) -> Result<(), AppError> {
    check_quotas_at(db, quotas, crate::db::now_ms()).await
}

/// [`check_quotas`] at a given time (milliseconds since the Unix epoch).
async fn check_quotas_at(db: &Db, quotas: &[(&SharedQuota, &str)], now: i64) -> Result<(), AppError> {
    let window = now / 60_000;
    let into_window = (now % 60_000) as f64 / 60_000.0;
    // One transaction: a conflict (two nodes counting the same key at once, or creating its
    // record at once) undoes every count, and the whole chain is counted again.
    //
    // Each UPDATE rolls the key's record into this minute first: the count of the minute before
    // becomes `previous` (0 when the record is older), then this action is counted in `n`. The
    // assignments run in order, each seeing the ones before it. A key with no record yet gets
    // one by CREATE. Not UPSERT: on a record that exists, SurrealDB 3's UPSERT first tries to
    // create it (every SET evaluated, the schema checked, the write refused), then updates it.
    //
    // The first quota is always counted; each later one only while every one before it allows
    // the action (`$go`).
    let mut sql = String::from("BEGIN TRANSACTION;");
    for i in 0..quotas.len() {
        let count = format!(
            "(UPDATE $id{i} SET
                 previous = IF minute = $minute {{ previous }} ELSE IF minute = $minute - 1 {{ n }} ELSE {{ 0 }},
                 n = IF minute = $minute {{ n + 1 }} ELSE {{ 1 }},
                 minute = $minute, expires_at = $expires
               RETURN n, previous)[0]
             ?? (CREATE $id{i} SET previous = 0, n = 1, minute = $minute, expires_at = $expires RETURN n, previous)[0]"
        );
        // The same comparison as `SharedQuota::verdict`, so a later quota is counted exactly
        // when the earlier ones pass there.
        let allows = format!("$c{i}.n + $c{i}.previous * $remaining <= $quota{i}");
        sql.push_str(&match i {
            0 => format!("LET $c0 = {count};"),
            _ => format!("LET $c{i} = IF $go {{ {count} }};"),
        });
        if i + 1 < quotas.len() {
            let before = if i == 0 { "" } else { "$go AND " };
            sql.push_str(&format!("LET $go = {before}{allows};"));
        }
    }
    let counts: Vec<String> =
        (0..quotas.len()).map(|i| format!("{{ current: $c{i}.n, previous: $c{i}.previous ?? 0 }}")).collect();
    sql.push_str(&format!("LET $counted = [{}]; COMMIT TRANSACTION; RETURN $counted;", counts.join(", ")));
    let mut last = None;
    for _ in 0..5 {
        let mut query = db
            .query(sql.as_str())
            .bind(("minute", window))
            .bind(("expires", (window + 2) * 60_000))
            .bind(("remaining", 1.0 - into_window));
        for (i, (quota, key)) in quotas.iter().enumerate() {
            query = query
                .bind((format!("id{i}"), quota.record(key)))
                .bind((format!("quota{i}"), i64::from(quota.per_minute.get())));
        }
        let counted = query.await.and_then(crate::db::check_transaction).and_then(|mut response| {
            let last = response.num_statements().saturating_sub(1);
            response.take::<Vec<QuotaCount>>(last)
        });
        match counted {
            Ok(counted) => {
                for ((quota, _), counted) in quotas.iter().zip(counted) {
                    if counted.current.is_none() {
                        // Refused by an earlier quota in the database's reckoning though not in
                        // ours (cannot happen with the same arithmetic; never let it through).
                        return Err(AppError::RateLimited { retry_after_secs: 1 });
                    }
                    quota.verdict(counted, into_window)?;
                }
                return Ok(());
            }
            Err(err) if crate::db::is_conflict(&err) => last = Some(err),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last.map(AppError::from).unwrap_or(AppError::Internal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_past_its_quota_and_names_the_wait() {
        let limiter = Limiter::per_minute(NonZeroU32::new(2).unwrap());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        match limiter.check("a") {
            Err(AppError::RateLimited { retry_after_secs }) => assert!((1..=60).contains(&retry_after_secs)),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(limiter.check("b").is_ok(), "keys are limited separately");
    }

    #[tokio::test]
    async fn a_chain_of_quotas_counts_the_later_ones_only_for_actions_the_earlier_let_through() {
        let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
        let db = crate::db::connect(options).await.unwrap();
        let by_admin = SharedQuota::per_minute("admin", NonZeroU32::new(2).unwrap());
        let instance = SharedQuota::per_minute("instance", NonZeroU32::new(3).unwrap());
        let act = |admin: &'static str| {
            let (db, by_admin, instance) = (&db, &by_admin, &instance);
            async move { check_quotas(db, &[(by_admin, admin), (instance, "instance")]).await }
        };
        assert!(act("a").await.is_ok());
        assert!(act("a").await.is_ok());
        for _ in 0..3 {
            assert!(matches!(act("a").await, Err(AppError::RateLimited { .. })), "past a's own quota");
        }
        // a's refused tries did not spend the instance's quota: one more action fits.
        assert!(act("b").await.is_ok());
        match act("c").await {
            Err(AppError::RateLimited { retry_after_secs }) => assert!((1..=120).contains(&retry_after_secs)),
            other => panic!("expected the instance quota to refuse, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_counts_of_a_new_key_at_once_are_each_counted() {
        let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
        let db = crate::db::connect(options).await.unwrap();
        let quota = std::sync::Arc::new(SharedQuota::per_minute("q", NonZeroU32::new(4).unwrap()));
        let now = 29_000_000 * 60_000;
        // Four at once on a key with no record: their CREATEs conflict, and the losers count
        // again against the record the winner made. At most four rounds, within the five tries.
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (db, quota, start) = (db.clone(), quota.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    check_quotas_at(&db, &[(&quota, "k")], now).await
                })
            })
            .collect();
        for task in tasks {
            let counted = task.await.unwrap();
            assert!(counted.is_ok(), "{counted:?}");
        }
        assert!(matches!(check_quotas_at(&db, &[(&quota, "k")], now).await, Err(AppError::RateLimited { .. })));
        let n: Option<i64> =
            db.query("SELECT VALUE n FROM ONLY $id").bind(("id", quota.record("k"))).await.unwrap().take(0).unwrap();
        assert_eq!(n, Some(5), "four counted, then the refused fifth");
    }

    #[tokio::test]
    async fn the_previous_minute_counts_for_the_part_of_it_still_within_the_last_sixty_seconds() {
        let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
        let db = crate::db::connect(options).await.unwrap();
        let quota = SharedQuota::per_minute("q", NonZeroU32::new(4).unwrap());
        let at = |minute: i64, seconds: i64| minute * 60_000 + seconds * 1_000;
        let act = |now: i64| {
            let (db, quota) = (&db, &quota);
            async move { check_quotas_at(db, &[(quota, "k")], now).await }
        };
        let minute = 29_000_000;
        for _ in 0..4 {
            assert!(act(at(minute, 50)).await.is_ok());
        }
        assert!(matches!(act(at(minute, 55)).await, Err(AppError::RateLimited { .. })), "the fifth in one minute");
        // A quarter into the next minute, three quarters of the previous minute's five still
        // count (3.75): none fits.
        match act(at(minute + 1, 15)).await {
            Err(AppError::RateLimited { retry_after_secs }) => assert!((1..=60).contains(&retry_after_secs)),
            other => panic!("expected the previous minute to count, got {other:?}"),
        }
        // Three quarters into it, a quarter of them (1.25), the refused try above (counted in
        // this minute) and this one make 3.25: it fits. The next makes 4.2 and does not.
        assert!(act(at(minute + 1, 45)).await.is_ok());
        assert!(matches!(act(at(minute + 1, 46)).await, Err(AppError::RateLimited { .. })));
        // A minute with no action in between: nothing before counts.
        for _ in 0..4 {
            assert!(act(at(minute + 3, 1)).await.is_ok());
        }
        assert!(matches!(act(at(minute + 3, 2)).await, Err(AppError::RateLimited { .. })));
    }
}
