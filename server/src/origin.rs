//! Who may talk to the server at all.
//!
//! - **Host**: every request must name a host this instance answers to — `MAILROOM_PUBLIC_URL`'s
//!   host, the bind address, `localhost` or a loopback address — else 400. (No web page can make
//!   a browser send the latter names for an attacker's origin.)
//!   A page on an attacker's domain that re-resolves to 127.0.0.1 (DNS rebinding) carries the
//!   attacker's name in `Host` and gets nothing.
//! - **Cross-site**: state-changing requests (everything but GET/HEAD/OPTIONS) that a browser
//!   marks as coming from another site — by `Origin` or `Sec-Fetch-Site` — get 403, and one that
//!   carries the session cookie must positively say it is same-origin (`Origin` or
//!   `Sec-Fetch-Site`); browsers always send one of them. The cookie is also `SameSite=Strict`.

use app::{error::AppError, state::AppState};
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method, Request, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::net::{IpAddr, SocketAddr};

const SESSION_COOKIE: &str = "mailroom_session";

/// The host names this instance answers to.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    public: Option<String>,
    bind: Option<IpAddr>,
}

impl AllowedHosts {
    pub fn new(public_url: Option<&str>, bind: SocketAddr) -> Self {
        let public = public_url
            .and_then(|url| url::Url::parse(url).ok())
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase));
        Self { public, bind: (!bind.ip().is_unspecified()).then_some(bind.ip()) }
    }

    pub fn allows(&self, host_header: &str) -> bool {
        let host = strip_port(host_header).to_ascii_lowercase();
        if self.public.as_ref().is_some_and(|public| host == *public) {
            return true;
        }
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        host == "localhost" || ip.is_some_and(|ip| ip.is_loopback() || Some(ip) == self.bind)
    }
}

/// `example.com:3000` → `example.com`, `[::1]:3000` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

pub async fn refuse_unknown_host(State(hosts): State<AllowedHosts>, request: Request<Body>, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri().host());
    match host {
        Some(host) if hosts.allows(host) => next.run(request).await,
        _ => {
            tracing::warn!("refused a request for a host this instance does not answer to");
            AppError::BadRequest(
                "This server does not answer to that host name. The operator sets it with MAILROOM_PUBLIC_URL.".into(),
            )
            .into_response()
        }
    }
}

pub async fn refuse_cross_site(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || is_same_site(&state, request.headers())
    {
        next.run(request).await
    } else {
        tracing::warn!(path = %request.uri().path(), "refused a cross-site request");
        (StatusCode::FORBIDDEN, "Cross-site request refused.").into_response()
    }
}

fn has_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim().split_once('=').is_some_and(|(name, _)| name == SESSION_COOKIE))
}

fn is_same_site(state: &AppState, headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && site != "same-origin"
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        // No Origin: a client that is not a browser, or a browser that said same-origin. With
        // the session cookie, only the latter may change anything.
        return fetch_site.is_some() || !has_session_cookie(headers);
    };
    let Ok(origin) = origin.to_str() else { return false };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let own = [format!("http://{host}"), format!("https://{host}")];
    own.iter().any(|o| o == origin) || state.settings().public_origin.as_deref() == Some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_public_url_only_loopback_names_and_the_bind_address_are_answered() {
        let hosts = AllowedHosts::new(None, "127.0.0.1:3000".parse().unwrap());
        for ok in ["127.0.0.1:3000", "localhost:3000", "LOCALHOST", "[::1]:3000", "127.0.0.2", "::1"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in ["evil.example:3000", "evil.example", "10.0.0.1:3000", "localhost.evil.example", ""] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let lan = AllowedHosts::new(None, "192.168.1.5:3000".parse().unwrap());
        assert!(lan.allows("192.168.1.5:3000"));
        assert!(!lan.allows("192.168.1.6:3000"));
    }

    #[test]
    fn with_a_public_url_only_its_host_is_answered() {
        let hosts = AllowedHosts::new(Some("https://mail.example.com"), "0.0.0.0:3000".parse().unwrap());
        assert!(hosts.allows("mail.example.com"));
        assert!(hosts.allows("Mail.Example.com:443"));
        assert!(hosts.allows("127.0.0.1:3000"), "health checks on loopback");
        assert!(!hosts.allows("evil.example"));
        assert!(!hosts.allows("10.0.0.7:3000"));
    }
}
