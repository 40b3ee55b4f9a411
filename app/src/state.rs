//! Server state shared by every request: the database, the instance settings and the limiters.

use crate::{
    db::follow::{self, Followed},
    error::AppError,
    limits::{Limiter, SharedQuota},
};
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use std::{num::NonZeroU32, sync::Arc};

pub use crate::db::Db;

/// What the app needs to know about its deployment; built by the server from its config.
#[derive(Clone, Debug)]
pub struct Settings {
    pub instance_name: String,
    /// Email to a user who has not chosen a language goes out in this one.
    pub default_language: crate::language::Locale,
    /// Cookies get `Secure` when the public URL is https.
    pub cookie_secure: bool,
    /// Extra origin accepted for POSTs (the public URL behind a proxy).
    pub public_origin: Option<String>,
    pub login_per_minute: NonZeroU32,
    /// Save / Send Test Email per admin, and for the whole instance.
    pub smtp_per_admin_per_minute: NonZeroU32,
    pub smtp_per_instance_per_minute: NonZeroU32,
    pub mail: crate::mail::ssr::target::MailConfig,
    /// From for mail of the default service when the form has none.
    pub default_from: String,
    /// This server node, in the SMTP status table.
    pub node_id: String,
    pub outbox: crate::outbox::ssr::policy::OutboxPolicy,
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

/// Cloned for every request, often several times (each extractor, each `app_state()`), so it
/// holds only reference counts: the options behind one, not their five.
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: Arc<LeptosOptions>,
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
    pub mailers: crate::mail::ssr::mailer::MailerCache,
    /// Every change of the SMTP health, for the open admin streams.
    pub health_tx: tokio::sync::broadcast::Sender<crate::smtp_health::status::SmtpHealth>,
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
    /// What this node last read of the sessions, the users and the saved SMTP settings, kept
    /// only while a live query says nothing changed (see `db::follow`).
    pub sessions: Arc<Followed<tower_sessions::session::Record>>,
    pub users: Arc<Followed<crate::auth::CurrentUser>>,
    pub smtp_settings: Arc<Followed<Option<crate::smtp_settings::ssr::StoredSettings>>>,
    /// Every node's status as this node last read it, with when (ms).
    pub health: Arc<Followed<(i64, crate::smtp_health::status::SmtpHealth)>>,
}

/// leptos_axum's handlers take the options by value; they clone them once per page.
impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        LeptosOptions::clone(&state.leptos_options)
    }
}

impl AppState {
    pub fn new(leptos_options: LeptosOptions, db: Db, settings: Settings, secret_key: [u8; 32]) -> Self {
        let per_minute = settings.login_per_minute;
        let by_ip = per_minute.saturating_mul(NonZeroU32::new(3).expect("3 is not zero"));
        Self {
            leptos_options: Arc::new(leptos_options),
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
                sessions: Arc::new(Followed::new("session", follow::DEFAULT_CAPACITY)),
                users: Arc::new(Followed::new("user", follow::DEFAULT_CAPACITY)),
                smtp_settings: Arc::new(Followed::new("smtp_settings", 1)),
                health: Arc::new(Followed::new("smtp_status", 1)),
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

    /// Keeps this node's copies of the followed tables true until the task is aborted (one
    /// live query per table).
    pub async fn follow_tables(self) {
        let db = self.db().clone();
        let shared = &self.shared;
        tokio::join!(
            follow::follow(db.clone(), shared.sessions.clone()),
            follow::follow(db.clone(), shared.users.clone()),
            follow::follow(db.clone(), shared.smtp_settings.clone()),
            follow::follow(db, shared.health.clone()),
        );
    }

    /// Forgets keys whose quota has fully refilled; call now and then.
    pub fn prune_limiters(&self) {
        self.shared.login_by_ip.prune();
        self.shared.token_by_ip.prune();
        self.shared.reset_by_email.prune();
        self.shared.reset_by_ip.prune();
    }
}

/// The state of the current request, from the Leptos context.
pub fn app_state() -> Result<AppState, AppError> {
    leptos::prelude::use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })
}
