//! Settings saved on any node reach every node without a restart: a `LIVE SELECT` on the
//! settings table tells this node that they changed. The node then drops its Mailer (the next
//! send connects with the new settings), wakes its outbox worker, and checks the new settings
//! itself, so the status table holds every node's own verdict on them (a relay may accept one
//! node's address and refuse another's).
//!
//! A live query lives on one database connection. When the connection drops (the database
//! server restarted) the client reconnects and signs in again, but the subscription is gone:
//! the stream ends, and this loop subscribes anew and re-reads the version, so a save made while
//! it was away is not missed.

use crate::{
    smtp_health::{StatusSource, ssr::spawn_check},
    smtp_settings::ssr::load_stored,
    state::AppState,
};

/// Follows the saved settings until the server stops (the task is aborted).
pub async fn follow_settings(state: AppState) {
    // What this node starts with: the settings saved before it started, checked once now so
    // every live node has a status of its own.
    let seen = match load_stored(state.db()).await {
        Ok(stored) => {
            let stored = stored.unwrap_or_default();
            spawn_check(state.clone(), StatusSource::StartUpCheck, stored.clone());
            Some(stored.version)
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the SMTP settings version");
            None
        }
    };
    // On subscribing, whatever was saved before now is read; later saves arrive as notifications.
    // Events come one at a time; the mutex only lets each handler's future borrow `seen`.
    let (state, seen) = (&state, &std::sync::Mutex::new(seen));
    crate::db::follow::on_changes(state.db(), "smtp_settings", |event| async move {
        if !matches!(event, crate::db::follow::TableEvent::Ended) {
            let before = *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = catch_up(state, before).await;
            *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        }
    })
    .await;
}

/// Reads the saved version; if it is not the one this node works with, applies it. Answers the
/// version now seen (the old one if the database could not be read).
async fn catch_up(state: &AppState, seen: Option<i64>) -> Option<i64> {
    let stored = match load_stored(state.db()).await {
        Ok(stored) => stored.unwrap_or_default(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the SMTP settings");
            return seen;
        }
    };
    if seen == Some(stored.version) {
        return seen;
    }
    tracing::info!(version = stored.version, "SMTP settings changed: rebuilding this node's mailer");
    state.shared.mailers.invalidate().await;
    crate::outbox::ssr::wake(state);
    // Unless the save on this node has started it already.
    spawn_check(state.clone(), StatusSource::PostSaveCheck, stored.clone());
    Some(stored.version)
}
