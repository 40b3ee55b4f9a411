//! `GET /healthz`, for load balancers: 200 `ok` when this node's database answers a trivial
//! query within two seconds, 503 otherwise. It needs no session and reads nothing else, so a
//! balancer checking every node every few seconds costs one round trip to the database each.
//! A node that cannot reach the database can serve nothing useful, which is why this is the
//! one thing checked. Failures are logged at debug level only: the node's heartbeat already
//! warns when the database is gone, and a balancer would repeat the same line every few seconds.

use app::state::AppState;
use axum::{extract::State, http::StatusCode};
use std::time::Duration;

const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let answer = tokio::time::timeout(DATABASE_TIMEOUT, async {
        state.db().query("RETURN 1").await.and_then(|response| response.check())
    })
    .await;
    match answer {
        Ok(Ok(_)) => (StatusCode::OK, "ok"),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "health check: the database refused a trivial query");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(_) => {
            tracing::debug!("health check: the database did not answer within {DATABASE_TIMEOUT:?}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
