//! Server state shared by every request: the database, the instance settings and the limiters.

use crate::error::AppError;
use axum::extract::FromRef;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use leptos::prelude::LeptosOptions;
use std::{num::NonZeroU32, sync::Arc};
use surrealdb::{Surreal, engine::any::Any, types::SurrealValue};

pub type Db = Surreal<Any>;

/// What the app needs to know about its deployment; built by the server from its config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub instance_name: String,
    /// Cookies get `Secure` when the public URL is https.
    pub cookie_secure: bool,
    /// Extra origin accepted for POSTs (the public URL behind a proxy).
    pub public_origin: Option<String>,
    pub login_per_minute: NonZeroU32,
    /// Save / Send Test Email per admin, and for the whole instance.
    pub smtp_per_admin_per_minute: NonZeroU32,
    pub smtp_per_instance_per_minute: NonZeroU32,
    pub mail: crate::mail::ssr::MailConfig,
    /// From for mail of the default service when the form has none.
    pub default_from: String,
    /// This server node, in the SMTP status table.
    pub node_id: String,
    pub outbox: crate::outbox::ssr::OutboxPolicy,
    /// How long an invitation link works.
    pub invite_hours: i64,
    /// Password reset requests per hour per address (five times as many per client IP).
    pub reset_per_hour: NonZeroU32,
    /// Proxies whose `X-Forwarded-For` is believed (`MAILROOM_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A session ends this long after sign-in, however active (`MAILROOM_SESSION_MAX_DAYS`).
    pub session_max_age: std::time::Duration,
    /// How often an open status stream checks that its session is still an admin's.
    pub stream_recheck: std::time::Duration,
    /// Open status streams per session.
    pub max_streams_per_session: usize,
    /// A node without a heartbeat for this long is shown as stale (`MAILROOM_STATUS_STALE_SECS`).
    pub status_stale_after: std::time::Duration,
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub shared: Arc<Shared>,
}

pub struct Shared {
    pub db: Db,
    /// The instance key that encrypts stored secrets.
    pub secret_key: secrecy::SecretBox<[u8; 32]>,
    pub settings: Settings,
    pub login_by_ip: Limiter,
    /// Set-password and first-admin attempts per client.
    pub token_by_ip: Limiter,
    /// Open status streams per session (keyed by a hash of the session id).
    pub open_streams: std::sync::Mutex<std::collections::HashMap<[u8; 16], usize>>,
    /// SMTP actions (save, test) per admin and per instance: counted in the database, so they
    /// hold across nodes.
    pub smtp_by_admin: SharedQuota,
    pub smtp_instance: SharedQuota,
    pub tokens: Arc<crate::mail::ssr::oauth::TokenCache>,
    pub mailers: crate::mail::ssr::MailerCache,
    /// Every change of the SMTP health, for the open admin streams.
    pub health_tx: tokio::sync::broadcast::Sender<crate::smtp_health::SmtpHealth>,
    /// The last status this node wrote: (settings version, ok).
    pub last_status: tokio::sync::Mutex<Option<(i64, bool)>>,
    /// The newest settings version this node has started checking (at start, after a save here,
    /// or one seen on another node; -1 before the first): each node checks each version once.
    pub checked_version: std::sync::atomic::AtomicI64,
    pub outbox_wake: tokio::sync::Notify,
    /// Set when the server starts to shut down: status streams end, the worker claims nothing.
    pub stopping: tokio::sync::watch::Sender<bool>,
    pub reset_by_email: Limiter,
    pub reset_by_ip: Limiter,
    /// An admin exists (see `auth::ssr::admin_seen`); never goes back to false.
    pub admin_seen: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn new(leptos_options: LeptosOptions, db: Db, settings: Settings, secret_key: [u8; 32]) -> Self {
        let per_minute = settings.login_per_minute;
        let by_ip = per_minute.saturating_mul(NonZeroU32::new(3).expect("3 is not zero"));
        Self {
            leptos_options,
            shared: Arc::new(Shared {
                db,
                secret_key: secrecy::SecretBox::new(Box::new(secret_key)),
                login_by_ip: Limiter::per_minute(by_ip),
                token_by_ip: Limiter::per_minute(by_ip),
                open_streams: Default::default(),
                smtp_by_admin: SharedQuota::per_minute("smtp_admin", settings.smtp_per_admin_per_minute),
                smtp_instance: SharedQuota::per_minute("smtp_instance", settings.smtp_per_instance_per_minute),
                tokens: Default::default(),
                mailers: Default::default(),
                health_tx: tokio::sync::broadcast::channel(64).0,
                last_status: Default::default(),
                checked_version: std::sync::atomic::AtomicI64::new(-1),
                outbox_wake: Default::default(),
                stopping: tokio::sync::watch::Sender::new(false),
                reset_by_email: Limiter::per_hour(settings.reset_per_hour),
                reset_by_ip: Limiter::per_hour(
                    settings.reset_per_hour.saturating_mul(NonZeroU32::new(5).expect("5 is not zero")),
                ),
                admin_seen: Default::default(),
                settings,
            }),
        }
    }

    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Forgets keys whose quota has fully refilled; call now and then.
    pub fn prune_limiters(&self) {
        self.shared.login_by_ip.prune();
        self.shared.token_by_ip.prune();
        self.shared.reset_by_email.prune();
        self.shared.reset_by_ip.prune();
    }
}

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
/// A sliding window: each key counts per calendar minute (one record per key and minute), and an
/// action is refused when this minute's count plus the share of the previous minute's that still
/// lies within the last 60 seconds exceeds the quota. Fixed windows alone would let twice the
/// quota through across a minute boundary.
pub struct SharedQuota {
    name: &'static str,
    per_minute: NonZeroU32,
}

impl SharedQuota {
    pub fn per_minute(name: &'static str, per_minute: NonZeroU32) -> Self {
        Self { name, per_minute }
    }

    fn record(&self, key: &str, window: i64) -> surrealdb::types::RecordId {
        let hashed = hex::encode(limiter_key(key));
        surrealdb::types::RecordId::new("quota", format!("{}-{hashed}-{window}", self.name))
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
    let now = crate::db::now_ms();
    let window = now / 60_000;
    let into_window = (now % 60_000) as f64 / 60_000.0;
    // The same comparison as `SharedQuota::verdict`, so a later quota is counted exactly when
    // the earlier ones pass there.
    // One transaction: a conflict (two nodes counting the same key at once) undoes every
    // count, and the whole chain is counted again.
    let mut sql = String::from("BEGIN TRANSACTION; LET $go = true;");
    for i in 0..quotas.len() {
        sql.push_str(&format!(
            "LET $c{i} = IF $go {{ (UPSERT $id{i} SET n = (n ?? 0) + 1, expires_at = $expires RETURN VALUE n)[0] }} ELSE {{ NONE }};
             LET $p{i} = (SELECT VALUE n FROM $previous{i})[0] ?? 0;
             LET $go = $go AND $c{i} + $p{i} * $remaining <= $quota{i};"
        ));
    }
    let counts: Vec<String> = (0..quotas.len()).map(|i| format!("{{ current: $c{i}, previous: $p{i} }}")).collect();
    sql.push_str(&format!("LET $counted = [{}]; COMMIT TRANSACTION; RETURN $counted;", counts.join(", ")));
    let mut last = None;
    for _ in 0..5 {
        let mut query =
            db.query(sql.as_str()).bind(("expires", (window + 2) * 60_000)).bind(("remaining", 1.0 - into_window));
        for (i, (quota, key)) in quotas.iter().enumerate() {
            query = query
                .bind((format!("id{i}"), quota.record(key, window)))
                .bind((format!("previous{i}"), quota.record(key, window - 1)))
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

/// What every request's Leptos context holds: the state, and a place for the signed-in user
/// once read.
pub fn provide_request_context(state: AppState) {
    leptos::prelude::provide_context(state);
    leptos::prelude::provide_context(crate::auth::ssr::RequestUser::default());
}

/// The state of the current request, from the Leptos context.
pub fn app_state() -> Result<AppState, AppError> {
    leptos::prelude::use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })
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
}
