//! OAuth 2.0 tokens for `AUTH XOAUTH2` (client credentials here, Google service accounts in
//! [`super::google`]): credentials in the request body, no
//! redirects followed, a bounded answer, a timeout; tokens cached until 60 s before expiry.

use super::{MailConfig, SmtpTarget, TargetAuth, Trust};
use crate::mail::{SmtpFailure, TokenFailure};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicErrorResponseType},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

const MAX_BODY: usize = 64 * 1024;
const EARLY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (SecretString, Instant)>>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum HttpError {
    #[error("{0}")]
    Request(String),
    #[error("timed out")]
    Timeout,
    #[error("answer larger than {MAX_BODY} bytes")]
    TooLarge,
}

impl TokenCache {
    /// A valid token for `target` (OAuth 2.0 client credentials or a Google service account),
    /// from the cache unless `refresh`.
    pub async fn token(
        &self,
        target: &SmtpTarget,
        config: &MailConfig,
        refresh: bool,
    ) -> Result<SecretString, SmtpFailure> {
        let parts: [&str; 5] = match &target.auth {
            TargetAuth::OAuth2 { client_id, client_secret, token_url, scopes, .. } => {
                ["oauth2", token_url.as_str(), client_id, &scopes.join(" "), client_secret.expose_secret()]
            }
            TargetAuth::Google { send_as, client_email, token_url, private_key } => {
                ["google", token_url.as_str(), client_email, send_as, private_key.expose_secret()]
            }
            TargetAuth::None | TargetAuth::Basic { .. } => {
                return Err(SmtpFailure::Unusable { detail: "no OAuth 2.0 settings".into() });
            }
        };
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let key = hex::encode(hasher.finalize());
        let mut entries = self.entries.lock().await;
        if !refresh
            && let Some((token, valid_until)) = entries.get(&key)
            && Instant::now() < *valid_until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = match &target.auth {
            TargetAuth::Google { send_as, client_email, token_url, private_key } => {
                super::google::fetch(send_as, client_email, token_url, private_key, config, &target.trust).await?
            }
            TargetAuth::OAuth2 { client_id, client_secret, token_url, scopes, .. } => {
                fetch(client_id, client_secret, token_url, scopes, config, &target.trust).await?
            }
            TargetAuth::None | TargetAuth::Basic { .. } => unreachable!("answered above"),
        };
        let valid_until = Instant::now() + lifetime.saturating_sub(EARLY);
        entries.insert(key, (token.clone(), valid_until));
        Ok(token)
    }
}

/// An HTTP client for one token endpoint under the address policy: its host resolved once and
/// checked, no redirects, the step timeout, the web roots plus the deployment's and the
/// settings' trusted CAs.
pub(super) async fn http_client(
    token_url: &crate::smtp_settings::types::TokenUrl,
    config: &MailConfig,
    trust: &Trust,
) -> Result<reqwest::Client, SmtpFailure> {
    let url = token_url.url();
    let host = url.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()).unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = super::resolve_checked(&config.address_policy, &host, port, config.step_timeout).await?;
    let mut builder =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(config.step_timeout);
    if let Some(url::Host::Domain(name)) = url.host() {
        builder = builder.resolve_to_addrs(name, &addresses);
    }
    if let Some(pem) = &config.ca_pem
        && let Ok(certificate) = reqwest::Certificate::from_pem(pem)
    {
        builder = builder.add_root_certificate(certificate);
    }
    for root in &trust.roots {
        if let Ok(certificate) = reqwest::Certificate::from_der(root) {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| SmtpFailure::TokenEndpoint(TokenFailure::Unreachable(e.to_string())))
}

/// Sends one token request and reads at most [`MAX_BODY`] bytes of the answer.
pub(super) async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(request_error)?;
    let mut out = HttpResponse::new(Vec::new());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if out.body().len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        out.body_mut().extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The token step's timeout as a failure.
pub(super) fn timed_out(config: &MailConfig) -> SmtpFailure {
    SmtpFailure::Timeout { step: crate::mail::Step::TokenRequest, secs: config.step_timeout.as_secs().max(1) }
}

/// A transport failure of the token request, classified.
pub(super) fn request_failed(err: HttpError, config: &MailConfig) -> SmtpFailure {
    match err {
        HttpError::Timeout => timed_out(config),
        HttpError::TooLarge => SmtpFailure::TokenEndpoint(TokenFailure::TooLarge),
        HttpError::Request(detail) => SmtpFailure::TokenEndpoint(TokenFailure::Unreachable(super::excerpt(&detail))),
    }
}

async fn fetch(
    client_id: &str,
    client_secret: &SecretString,
    token_url: &crate::smtp_settings::types::TokenUrl,
    scopes: &[String],
    config: &MailConfig,
    trust: &Trust,
) -> Result<(SecretString, Duration), SmtpFailure> {
    let unreachable = |detail: String| SmtpFailure::TokenEndpoint(TokenFailure::Unreachable(detail));
    let http = http_client(token_url, config, trust).await?;
    let status = Arc::new(AtomicU16::new(0));
    let seen = status.clone();
    let call = move |request: HttpRequest| {
        let http = http.clone();
        let seen = seen.clone();
        async move {
            let out = send(&http, request).await?;
            seen.store(out.status().as_u16(), Ordering::Relaxed);
            Ok::<_, HttpError>(out)
        }
    };
    let client = BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(token_url.as_str().to_owned()).map_err(|e| unreachable(e.to_string()))?);
    let request = client
        .exchange_client_credentials()
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(&call);
    let result = tokio::time::timeout(config.step_timeout, request).await.map_err(|_| timed_out(config))?;
    let status = status.load(Ordering::Relaxed);
    match result {
        Ok(token) => {
            let lifetime = token.expires_in().unwrap_or(Duration::from_secs(3600));
            Ok((SecretString::from(token.access_token().secret().to_owned()), lifetime))
        }
        Err(RequestTokenError::ServerResponse(response)) => {
            let description = super::excerpt(&response.error_description().cloned().unwrap_or_default());
            Err(SmtpFailure::TokenEndpoint(match response.error() {
                BasicErrorResponseType::InvalidClient => TokenFailure::InvalidClient(description),
                BasicErrorResponseType::InvalidScope => TokenFailure::InvalidScope(description),
                other => TokenFailure::Rejected { error: other.to_string(), description },
            }))
        }
        Err(RequestTokenError::Request(err)) => Err(request_failed(err, config)),
        Err(RequestTokenError::Parse(..) | RequestTokenError::Other(_)) if (200..300).contains(&status) => {
            Err(SmtpFailure::TokenEndpoint(TokenFailure::NotJson { status }))
        }
        Err(_) if !(200..300).contains(&status) && status != 0 => {
            Err(SmtpFailure::TokenEndpoint(TokenFailure::HttpStatus(status)))
        }
        Err(err) => Err(unreachable(err.to_string())),
    }
}

/// A reqwest failure by type: its timeout, else the innermost cause ("Connection refused"),
/// never the URL.
fn request_error(err: reqwest::Error) -> HttpError {
    if err.is_timeout() {
        return HttpError::Timeout;
    }
    let mut innermost = None;
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    HttpError::Request(innermost.unwrap_or_else(|| err.without_url().to_string()))
}
