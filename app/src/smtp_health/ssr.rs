//! Recording the SMTP status (one record per server node), the post-save check, and the live
//! feed: a SurrealDB `LIVE SELECT` on the status table feeds a broadcast channel that every
//! open admin stream listens to, so a status written by any node reaches admins on every node.

use super::{NodeStatus, SmtpHealth, StatusSource};
use crate::{
    auth::ssr::{admin_of, session_is_admin},
    db::now_ms,
    error::AppError,
    mail::{SmtpFailure, ssr::deliver},
    smtp_settings::{
        certs::CertSummary,
        ssr::{StoredSettings, target_from},
        types::Mode,
    },
    state::{AppState, Db},
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use secrecy::ExposeSecret;
use std::{convert::Infallible, time::Duration};
use surrealdb::types::{RecordId, SurrealValue};
use tokio_stream::wrappers::BroadcastStream;
use tower_sessions::Session;

/// Every node's status; a node whose heartbeat is older than `stale_after` (database clock) is
/// marked stale and no longer counts.
pub async fn load_health(db: &Db, stale_after: Duration) -> Result<SmtpHealth, surrealdb::Error> {
    let mut response = db
        .query(
            "SELECT node, is_valid, message, hint, failure, source, checked_at, settings_version, heartbeat_at,
                 (heartbeat_at ?? checked_at) < time::unix(time::now()) * 1000 - $stale_ms AS stale
             FROM smtp_status ORDER BY node;
             SELECT VALUE certificates FROM smtp_settings:current WHERE mode = 'custom';",
        )
        .bind(("stale_ms", stale_after.as_millis() as i64))
        .await?;
    let nodes = response.take::<Vec<NodeStatus>>(0)?;
    let certificates = response.take::<Vec<Vec<CertSummary>>>(1)?.into_iter().next().unwrap_or_default();
    Ok(SmtpHealth::from_nodes(nodes, &certificates, now_ms()))
}

/// Writes this node's status: the outcome of a check or of a delivery — only if it is about the
/// settings saved now (a slow check of older settings must not overwrite a newer status).
pub async fn record(state: &AppState, source: StatusSource, settings_version: i64, result: &Result<(), SmtpFailure>) {
    let node = state.settings().node_id.clone();
    let status = NodeStatus {
        node: node.clone(),
        is_valid: result.is_ok(),
        message: result.as_ref().err().map(ToString::to_string),
        hint: result.as_ref().err().map(SmtpFailure::hint),
        failure: result.as_ref().err().and_then(SmtpFailure::to_json),
        source,
        checked_at: now_ms(),
        settings_version,
        heartbeat_at: None,
        stale: false,
    };
    let written = state
        .db()
        .query(
            "LET $current = (SELECT VALUE version FROM ONLY smtp_settings:current) ?? 0;
             IF $current = $status.settings_version {
                 UPSERT $id CONTENT $row;
                 UPDATE $id SET heartbeat_at = time::unix(time::now()) * 1000;
             };
             RETURN $current = $status.settings_version;",
        )
        .bind(("id", RecordId::new("smtp_status", node.as_str())))
        .bind(("row", StoredStatus::from(&status)))
        .bind(("status", status))
        .await
        .and_then(|mut r| r.take::<Option<bool>>(2));
    *state.shared.last_status.lock().await = Some((settings_version, result.is_ok()));
    match written {
        Ok(Some(true)) => tracing::info!(node = %node, source = %source, ok = result.is_ok(), "SMTP status recorded"),
        Ok(_) => {
            tracing::info!(node = %node, source = %source, settings_version, "SMTP status not recorded: newer settings were saved")
        }
        Err(err) => tracing::error!(error = %err, "cannot record the SMTP status"),
    }
}

/// A status as stored: the node's heartbeat is written with it, on the database's clock.
#[derive(Debug, SurrealValue)]
struct StoredStatus {
    node: String,
    is_valid: bool,
    message: Option<String>,
    hint: Option<String>,
    failure: Option<String>,
    source: StatusSource,
    checked_at: i64,
    settings_version: i64,
}

impl From<&NodeStatus> for StoredStatus {
    fn from(status: &NodeStatus) -> Self {
        Self {
            node: status.node.clone(),
            is_valid: status.is_valid,
            message: status.message.clone(),
            hint: status.hint.clone(),
            failure: status.failure.clone(),
            source: status.source,
            checked_at: status.checked_at,
            settings_version: status.settings_version,
        }
    }
}

/// This node is alive: refreshes its status row's heartbeat (database clock).
pub async fn heartbeat(state: &AppState) {
    let beat = state
        .db()
        .query("UPDATE $id SET heartbeat_at = time::unix(time::now()) * 1000")
        .bind(("id", RecordId::new("smtp_status", state.settings().node_id.as_str())))
        .await
        .and_then(|r| r.check());
    if let Err(err) = beat {
        tracing::warn!(error = %err, "cannot write this node's heartbeat");
    }
}

/// Records a delivery's outcome when it changes what this node last said; a delivery made with
/// older settings than the last status never overwrites it.
pub async fn record_if_changed(
    state: &AppState,
    source: StatusSource,
    settings_version: i64,
    result: &Result<(), SmtpFailure>,
) {
    let last = *state.shared.last_status.lock().await;
    match last {
        Some((version, _)) if settings_version < version => {}
        Some((version, ok)) if version == settings_version && ok == result.is_ok() => {}
        _ => record(state, source, settings_version, result).await,
    }
}

/// Checks the saved configuration (connect, TLS, AUTH with the token request; no mail) in the
/// background and records the result as `source`; once per settings version on each node (the
/// node that saved starts it, and every node starts it when it sees the new version, whichever is
/// first).
pub fn spawn_check(state: AppState, source: StatusSource, settings: StoredSettings) {
    let checked = state.shared.checked_version.fetch_max(settings.version, std::sync::atomic::Ordering::SeqCst);
    if checked >= settings.version {
        return;
    }
    tokio::spawn(async move {
        let result = check(&state, &settings).await;
        record(&state, source, settings.version, &result).await;
    });
}

async fn check(state: &AppState, settings: &StoredSettings) -> Result<(), SmtpFailure> {
    let mail = &state.settings().mail;
    if settings.mode != Mode::Custom {
        return state.default_mailer().check(mail).await;
    }
    let target = target_from(settings, state.shared.secret_key.expose_secret())
        .map_err(|err| SmtpFailure::Unusable { detail: format!("The saved settings cannot be used: {err}") })?;
    deliver(&target, mail, &state.shared.tokens, None).await
}

/// Follows the status table with `LIVE SELECT` and publishes the whole health on every change.
/// A live query lives on one database connection: when it drops (the database server
/// restarted), the stream ends and this loop subscribes again and re-reads the table, so a
/// change made meanwhile still reaches every open admin page.
pub async fn run_feed(state: AppState) {
    let state = &state;
    crate::db::follow::on_changes(state.db(), "smtp_status", |event| async move {
        if !matches!(event, crate::db::follow::TableEvent::Ended) {
            publish(state).await;
        }
    })
    .await;
}

async fn publish(state: &AppState) {
    match load_health(state.db(), state.settings().status_stale_after).await {
        Ok(health) => {
            let _ = state.shared.health_tx.send(health);
        }
        Err(err) => tracing::warn!(error = %err, "cannot read the SMTP status"),
    }
}

async fn admin_only(state: &AppState, session: &Session) -> Result<(), Response> {
    admin_of(state, session).await.map(drop).map_err(IntoResponse::into_response)
}

/// Counts a session's open status streams; the count drops when the stream does.
struct StreamSlot {
    state: AppState,
    key: [u8; 16],
}

impl StreamSlot {
    fn take(state: &AppState, session_id: &str) -> Option<Self> {
        let key = crate::limits::limiter_key(session_id);
        let mut open = state.shared.open_streams.lock().expect("stream count lock");
        let count = open.entry(key).or_insert(0);
        if *count >= state.settings().max_streams_per_session {
            return None;
        }
        *count += 1;
        Some(Self { state: state.clone(), key })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.state.shared.open_streams.lock().expect("stream count lock");
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// `GET /api/smtp_status`: `{ is_valid, node_count, nodes: [...] }`, admins only.
pub async fn status_api(State(state): State<AppState>, session: Session) -> Response {
    if let Err(refused) = admin_only(&state, &session).await {
        return refused;
    }
    match load_health(state.db(), state.settings().status_stale_after).await {
        Ok(health) => Json(health).into_response(),
        Err(err) => {
            let _ = crate::error::ssr::internal("cannot read the SMTP status", &err);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /api/smtp_status/stream`: server-sent events, admins only. The first event is the
/// current status; then one event per change. At most `max_streams_per_session` per session; the
/// stream ends when its session ends or loses the admin role (checked every `stream_recheck`).
pub async fn status_stream(State(state): State<AppState>, session: Session) -> Response {
    if let Err(refused) = admin_only(&state, &session).await {
        return refused;
    }
    let Some(id) = session.id() else {
        return AppError::Unauthorized.into_response();
    };
    let Some(slot) = StreamSlot::take(&state, &id.to_string()) else {
        return AppError::RateLimited { retry_after_secs: 30 }.into_response();
    };
    let receiver = state.shared.health_tx.subscribe();
    let current = match load_health(state.db(), state.settings().status_stale_after).await {
        Ok(health) => health,
        Err(err) => {
            let _ = crate::error::ssr::internal("cannot read the SMTP status", &err);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut recheck = tokio::time::interval(state.settings().stream_recheck);
    recheck.reset();
    let mut stopping = state.shared.stopping.subscribe();
    let revoked = {
        let state = state.clone();
        async move {
            loop {
                recheck.tick().await;
                // Boxed: the database query's future is large and runs once a minute; inline,
                // every open stream would carry its size all the time.
                match Box::pin(session_is_admin(&state, &id)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!("status stream ended: its session ended or lost the admin role");
                        return;
                    }
                    // The database is away (restarting): keep the stream, ask again next time.
                    Err(err) => tracing::warn!(error = %err, "cannot recheck a status stream's session"),
                }
            }
        }
    };
    // The stream ends when its session may no longer see it, or when the server shuts down (so
    // that it does not hold the shutdown); its slot is given back with it.
    let ended = async move {
        tokio::select! {
            () = revoked => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
        drop(slot);
    };
    // A receiver that lagged behind skips to the latest changes: each event is the whole status.
    let updates =
        BroadcastStream::new(receiver).filter_map(|received| std::future::ready(received.ok())).take_until(ended);
    let events = futures::stream::once(async move { current }).chain(updates).map(|health| {
        Ok::<_, Infallible>(Event::default().event("smtp_status").json_data(&health).unwrap_or_default())
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// How old this node's copy of the health may be when a page shows it. A change to the status
/// table drops the copy at once (see [`crate::db::follow`]), and so does a save on this node (the
/// health shows the saved certificates); what no write to the table announces (a node's
/// heartbeat growing old, certificates saved on another node before its check reports) is seen
/// this much later at most. The page's live stream starts from the database itself.
const HEALTH_COPY_MS: i64 = 1_000;

/// The health for the Admin area's frame (server functions), from this node's copy when it is
/// fresh enough.
pub async fn current(state: &AppState) -> Result<SmtpHealth, AppError> {
    let now = now_ms();
    let read = async {
        Ok::<_, surrealdb::Error>(Some((now, load_health(state.db(), state.settings().status_stale_after).await?)))
    };
    let kept = state.shared.health.get_or_read("all", |(at, _)| now.saturating_sub(*at) < HEALTH_COPY_MS, read).await?;
    // The read always finds a health (an empty one when no node has reported).
    Ok(kept.map(|(_, health)| health).unwrap_or_default())
}
