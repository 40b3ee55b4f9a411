//! Mailroom's server: configuration, start-up and the router. The pages and server functions
//! live in `app`; this crate wires them to axum, SurrealDB and the session layer.

mod assets;
pub mod config;
mod edge;
mod healthz;
mod link_language;
mod listener;
mod origin;
mod secret_key;

use app::{
    auth::ssr::{SurrealSessionStore, ensure_first_admin, ensure_user, issue_setup_code, provide_request_context},
    db::{DbError, DbOptions},
    error::AppError,
    mail::ssr::{MailConfig, address_policy::AddressPolicy, relay_target},
    outbox::ssr::OutboxPolicy,
    state::{AppState, Settings},
};
use axum::{
    Router,
    body::Body,
    extract::State,
    http::{Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use config::Config;
use leptos::{config::errors::LeptosConfigError, prelude::LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list, handle_server_fns_with_context};
use secrecy::ExposeSecret;
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tower_sessions::{
    Expiry, SessionManagerLayer,
    cookie::{SameSite, time::Duration as CookieDuration},
};

pub use secret_key::SecretKeyError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
    #[error("MAILROOM_SMTP_CA_FILE: cannot read {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("cannot listen on {addr} (MAILROOM_BIND): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create the users named by MAILROOM_ADMIN_EMAIL / MAILROOM_USER_EMAIL: {0}")]
    FirstAdmin(app::error::AppError),
    #[error("MAILROOM_DEFAULT_SMTP_URL: {0}")]
    Relay(String),
    #[error("the LEPTOS_* variables: {0}")]
    Leptos(Box<LeptosConfigError>),
}

/// A server that has opened its database and bound its port, ready to serve.
pub struct Server {
    listener: TcpListener,
    router: Router,
    state: AppState,
    limits: config::Limits,
    setup_code: Option<String>,
}

impl Server {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let db = app::db::connect(DbOptions {
            url: &config.database.url,
            namespace: &config.database.namespace,
            database: &config.database.database,
            credentials: config.database.credentials.as_ref().map(|(u, p)| (u.as_str(), p.expose_secret())),
        })
        .await?;
        Self::build_on(config, db).await
    }

    /// Builds a server on a database that is already open (several nodes on one database).
    pub async fn build_on(config: Config, db: app::state::Db) -> Result<Self, StartupError> {
        let ca_pem = match &config.smtp_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|source| StartupError::CaFile { path: path.display().to_string(), source })?,
            ),
            None => None,
        };
        let secret_key = secret_key::load_checked(&config.secret_key_file, &db).await?;

        let listener =
            TcpListener::bind(config.bind).await.map_err(|source| StartupError::Bind { addr: config.bind, source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind { addr: config.bind, source })?;

        let (leptos_options, assets) = leptos_options(addr).map_err(|err| StartupError::Leptos(Box::new(err)))?;
        let settings = Settings {
            instance_name: config.instance_name.clone(),
            default_language: config.default_language,
            cookie_secure: config.cookie_secure(),
            public_origin: config.public_url.clone(),
            login_per_minute: config.login_per_minute,
            smtp_per_admin_per_minute: config.smtp_per_admin_per_minute,
            smtp_per_instance_per_minute: config.smtp_per_instance_per_minute,
            mail: MailConfig {
                ca_pem,
                overall_timeout: Duration::from_secs(config.smtp_timeout_secs),
                step_timeout: Duration::from_secs(config.smtp_timeout_secs.div_ceil(2)),
                default_relay: config
                    .default_smtp_url
                    .as_deref()
                    .map(relay_target)
                    .transpose()
                    .map_err(StartupError::Relay)?,
                address_policy: AddressPolicy::new(config.smtp_allowed_networks.clone()),
            },
            default_from: config.default_from.clone(),
            outbox: OutboxPolicy {
                max_attempts: config.outbox_max_attempts,
                retry_base: Duration::from_millis(config.outbox_retry_base_ms),
                lease: Duration::from_secs(config.outbox_lease_secs),
                concurrency: config.outbox_concurrency,
                max_age: Duration::from_secs(config.outbox_max_age_hours * 3600),
                hold_retry: Duration::from_secs(config.outbox_hold_retry_secs),
            },
            invite_hours: config.invite_hours,
            reset_per_hour: config.reset_per_hour,
            node_id: match &config.node_id {
                Some(id) => id.clone(),
                None => secret_key::node_id(&config.secret_key_file)?,
            },
            trusted_proxies: config.trusted_proxies.clone(),
            session_max_age: Duration::from_secs(config.session_max_days * 86_400),
            stream_recheck: Duration::from_secs(config.stream_recheck_secs),
            max_streams_per_session: config.max_streams_per_session,
            status_stale_after: Duration::from_secs(config.status_stale_secs),
        };
        let state = AppState::new(leptos_options, db, settings, secret_key);

        if let Some((email, password)) = &config.first_admin
            && ensure_first_admin(&state, email, password.expose_secret()).await.map_err(StartupError::FirstAdmin)?
        {
            tracing::info!("created the first admin from MAILROOM_ADMIN_EMAIL");
        }

        if let Some((email, password)) = &config.seed_user {
            ensure_user(&state, email, password.expose_secret()).await.map_err(StartupError::FirstAdmin)?;
        }

        // Without MAILROOM_ADMIN_EMAIL, the "Create the first admin" page asks for this code.
        let setup_code = if config.first_admin.is_none() {
            issue_setup_code(state.db()).await.map_err(StartupError::FirstAdmin)?
        } else {
            None
        };

        let hosts = origin::AllowedHosts::new(config.public_url.as_deref(), addr);
        let router = router(state.clone(), SurrealSessionStore::new(&state), &config.limits, hosts, assets);
        Ok(Self { listener, router, state, limits: config.limits.clone(), setup_code })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The one-time code for "Create the first admin", when no admin existed at start-up.
    pub fn setup_code(&self) -> Option<&str> {
        self.setup_code.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops in under ten seconds: status streams end at
    /// once, requests in flight get five seconds, the worker claims nothing more and its sends
    /// get [`WORKER_DRAIN`] — after that their leases are released, so another node (or the
    /// next start) sends those messages at once.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let state = self.state.clone();
        // What this node held when it last stopped (a crash, a kill) is due again now.
        app::outbox::ssr::release_own_leases(&state).await;
        app::smtp_health::ssr::heartbeat(&state).await;
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let feed = tokio::spawn(app::smtp_health::ssr::run_feed(state.clone()));
        let tables = tokio::spawn(state.clone().follow_tables());
        let settings = tokio::spawn(app::smtp_settings::follow::follow_settings(state.clone()));
        let mut worker = tokio::spawn(app::outbox::ssr::run_worker(state.clone()));
        let stopping = state.shared.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down");
            stopping.send_replace(true);
        };
        let drain = async {
            let mut stopping = state.shared.stopping.subscribe();
            let _ = stopping.wait_for(|stopping| *stopping).await;
            if tokio::time::timeout(WORKER_DRAIN, &mut worker).await.is_err() {
                worker.abort();
                let _ = (&mut worker).await;
                app::outbox::ssr::release_own_leases(&state).await;
            }
        };
        let (result, ()) = tokio::join!(listener::serve(self.listener, self.router, &self.limits, shutdown), drain);
        housekeeping.abort();
        feed.abort();
        tables.abort();
        settings.abort();
        result
    }
}

/// How long a stopping server waits for the sends in flight before releasing their leases.
const WORKER_DRAIN: Duration = Duration::from_secs(4);

/// Where cargo-leptos put the compiled site (Leptos' own `LEPTOS_*` variables, read by
/// `get_configuration`), the address we bound, and the assets, read now: the pages ask for
/// them by their content-hashed names.
fn leptos_options(addr: SocketAddr) -> Result<(LeptosOptions, assets::Assets), LeptosConfigError> {
    let mut options = leptos::config::get_configuration(None)?.leptos_options;
    let pkg = std::path::Path::new(&*options.site_root).join(&*options.site_pkg_dir);
    let (assets, output_name) = assets::Assets::load(&pkg, &options.output_name);
    options.output_name = output_name.into();
    options.site_addr = addr;
    Ok((options, assets))
}

fn router(
    state: AppState,
    store: SurrealSessionStore,
    limits: &config::Limits,
    hosts: origin::AllowedHosts,
    assets: assets::Assets,
) -> Router {
    let sessions = SessionManagerLayer::new(store)
        .with_name("mailroom_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(state.settings().cookie_secure)
        .with_expiry(Expiry::OnInactivity(CookieDuration::days(7)));
    let routes = generate_route_list(app::App);
    let context_state = state.clone();
    let pages = Router::new()
        .route("/healthz", get(healthz::healthz))
        .route("/api/smtp_status", get(app::smtp_health::ssr::status_api))
        .route("/api/smtp_status/stream", get(app::smtp_health::ssr::status_stream))
        .route("/api/{*fn_name}", any(server_fn_handler))
        .leptos_routes_with_context(&state, routes, move || provide_request_context(context_state.clone()), {
            let options = LeptosOptions::clone(&state.leptos_options);
            move || app::shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::shell))
        .layer(axum::middleware::map_response(status_follows_error))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::refuse_cross_site))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(state.clone(), link_language::link_language))
        .layer(axum::middleware::from_fn_with_state(edge::Edge::new(limits), edge::limit_request))
        .layer(axum::middleware::from_fn_with_state(hosts, origin::refuse_unknown_host))
        .with_state(state);
    let static_files = Router::new().route("/pkg/{file}", get(assets::serve)).with_state(assets);
    static_files.merge(pages)
}

async fn server_fn_handler(State(state): State<AppState>, request: Request<Body>) -> Response {
    handle_server_fns_with_context(move || provide_request_context(state.clone()), request).await.into_response()
}

/// A server function that failed before its body ran (arguments of the wrong shape, a body
/// that is not UTF-8) answers 500 from the framework whatever the error; the error it carries
/// says whose fault it was, and the status follows it (400 for bad input).
async fn status_follows_error(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR || !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return AppError::Internal.into_response();
    };
    match serde_json::from_slice::<AppError>(&bytes) {
        Ok(error) if error.http_status() != 500 => error.into_response(),
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Writes this node's heartbeat every minute (more often when stale nodes are judged sooner);
/// prunes rate-limiter keys and expired sessions every five minutes.
async fn housekeeping(state: AppState) {
    let store = SurrealSessionStore::new(&state);
    let beat = (state.settings().status_stale_after / 4).min(Duration::from_secs(60));
    let mut tick = tokio::time::interval(beat);
    let mut last_prune = std::time::Instant::now();
    loop {
        tick.tick().await;
        app::smtp_health::ssr::heartbeat(&state).await;
        if last_prune.elapsed() < Duration::from_secs(300) {
            continue;
        }
        last_prune = std::time::Instant::now();
        state.prune_limiters();
        if let Err(err) = app::auth::throttle::SignInThrottle::prune(state.db()).await {
            tracing::warn!(error = %err, "cannot delete expired sign-in failures and quotas");
        }
        if let Err(err) = store.delete_expired().await {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
