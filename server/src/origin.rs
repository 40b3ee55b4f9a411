//! Cross-site request refusal. State-changing requests (everything but GET/HEAD/OPTIONS) that a
//! browser marks as coming from another site — by `Origin` or `Sec-Fetch-Site` — get 403.
//! Browsers always send `Origin` on cross-origin POSTs, so a forged form or fetch from another
//! site cannot pass; clients that are not browsers carry no victim's cookies. The session
//! cookie is also `SameSite=Strict`.

use app::state::AppState;
use axum::{
    body::Body,
    extract::State,
    http::{Method, Request, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

pub async fn refuse_cross_site(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) || is_same_site(&state, &request) {
        next.run(request).await
    } else {
        tracing::warn!(path = %request.uri().path(), "refused a cross-site request");
        (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response()
    }
}

fn is_same_site(state: &AppState, request: &Request<Body>) -> bool {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let own = [format!("http://{host}"), format!("https://{host}")];
    own.iter().any(|o| o == origin) || state.settings().public_origin.as_deref() == Some(origin)
}
