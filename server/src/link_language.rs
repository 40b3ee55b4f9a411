//! A one-time link opens in its recipient's language. `GET /set-password?token=…` (the link of
//! an invitation or a password reset) reads as if the language cookie held the language of the
//! user the link belongs to — the language their email was written in — unless this browser
//! has a language cookie already; the response keeps it in that cookie, as the switch would.

use app::{language, state::AppState};
use axum::{
    extract::{Request, State},
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};

pub async fn link_language(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = (request.method() == Method::GET && request.uri().path() == "/set-password")
        .then(|| request.uri().query().and_then(token_of))
        .flatten()
        .filter(|_| !has_choice(request.headers()))
        .map(str::to_owned);
    let Some(chosen) = (match token {
        Some(token) => app::users::ssr::link_language(state.db(), &token).await,
        None => None,
    }) else {
        return next.run(request).await;
    };
    let pair = format!("{}={}", language::COOKIE, language::code(chosen));
    let cookies: Vec<&str> = request.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    let combined = cookies.into_iter().chain([pair.as_str()]).collect::<Vec<_>>().join("; ");
    if let Ok(value) = HeaderValue::from_str(&combined) {
        request.headers_mut().insert(header::COOKIE, value);
    }
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&language::ssr::set_cookie(chosen)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The link's token: 64 hex digits, or nothing (no lookup for anything else).
fn token_of(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether this browser already chose (or was given) a language.
fn has_choice(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .any(|pair| pair.trim().split_once('=').is_some_and(|(name, _)| name == language::COOKIE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_token_is_looked_up() {
        let token = "ab".repeat(32);
        assert_eq!(token_of(&format!("token={token}")), Some(token.as_str()));
        assert_eq!(token_of(&format!("x=1&token={token}")), Some(token.as_str()));
        assert_eq!(token_of("token=0000"), None);
        assert_eq!(token_of(&format!("token={}", "zz".repeat(32))), None);
        assert_eq!(token_of("other=1"), None);
    }

    #[test]
    fn a_language_cookie_is_a_choice() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(!has_choice(&headers));
        headers.insert(header::COOKIE, "mailroom_session=x; i18n_pref_locale=en".parse().unwrap());
        assert!(has_choice(&headers));
    }
}
