//! What one request may cost, checked before anything else runs: its body is read here, up to
//! `MAILROOM_MAX_BODY_BYTES` (413 past it, without reading the rest), and the whole request —
//! body included — must be answered within `MAILROOM_REQUEST_TIMEOUT_SECS` (408), except the
//! status stream, which is meant to stay open.

use crate::config::Limits;
use app::error::AppError;
use axum::{
    body::Body,
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::time::Duration;

/// Routes that stream by design and run without the request timeout.
const STREAMING: &[&str] = &["/api/smtp_status/stream"];

#[derive(Clone)]
pub struct Edge {
    max_body: usize,
    timeout: Duration,
}

impl Edge {
    pub fn new(limits: &Limits) -> Self {
        Self { max_body: limits.max_body_bytes, timeout: Duration::from_secs(limits.request_timeout_secs) }
    }
}

pub async fn limit_request(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > edge.max_body as u64) {
        return too_large(edge.max_body);
    }
    if STREAMING.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let handled = async {
        let (parts, body) = request.into_parts();
        // Chunked bodies declare no length: the cap applies while reading.
        let bytes = match axum::body::to_bytes(body, edge.max_body).await {
            Ok(bytes) => bytes,
            Err(err) if is_length_limit(&err) => return too_large(edge.max_body),
            Err(_) => return AppError::BadRequest("the request body could not be read".into()).into_response(),
        };
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    };
    match tokio::time::timeout(edge.timeout, handled).await {
        Ok(response) => response,
        Err(_) => AppError::RequestTimeout.into_response(),
    }
}

fn too_large(limit_bytes: usize) -> Response {
    let mut response = AppError::TooLarge { limit_bytes }.into_response();
    // The rest of the body is never read: the connection cannot be reused.
    response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    response
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = cause.source();
    }
    false
}
