//! Google Workspace without passwords: a service account with domain-wide delegation signs a
//! JWT (RS256; `iss` its `client_email`, `sub` the mailbox to send as, `scope` Gmail's, `aud`
//! its `token_uri`, one hour) and trades it for an access token with the JWT-bearer grant
//! (RFC 7523); the token then logs in with `AUTH XOAUTH2`.

use super::{
    MailConfig, Trust,
    oauth::{http_client, request_failed, send, timed_out},
};
use crate::{
    mail::{SmtpFailure, TokenFailure},
    smtp_settings::types::TokenUrl,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth2::http::{self, header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What Gmail's SMTP server needs (RFC 7523 §3 names the rest).
pub const SCOPE: &str = "https://mail.google.com/";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const LIFETIME_SECS: u64 = 3600;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The signed request for `send_as`, valid for an hour from now.
pub fn assertion(
    send_as: &str,
    client_email: &str,
    token_url: &TokenUrl,
    private_key: &SecretString,
) -> Result<String, SmtpFailure> {
    let unusable = |detail: &str| SmtpFailure::Unusable { detail: detail.to_owned() };
    let key = EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
        .map_err(|_| unusable("the service account's private key cannot be read"))?;
    let iat = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = Claims {
        iss: client_email,
        sub: send_as,
        scope: SCOPE,
        aud: token_url.as_str(),
        iat,
        exp: iat + LIFETIME_SECS,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|_| unusable("the service account's request cannot be signed"))
}

pub async fn fetch(
    send_as: &str,
    client_email: &str,
    token_url: &TokenUrl,
    private_key: &SecretString,
    config: &MailConfig,
    trust: &Trust,
) -> Result<(SecretString, Duration), SmtpFailure> {
    let assertion = assertion(send_as, client_email, token_url, private_key)?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", GRANT_TYPE)
        .append_pair("assertion", &assertion)
        .finish();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(token_url.as_str())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(body.into_bytes())
        .map_err(|err| SmtpFailure::TokenEndpoint(TokenFailure::Unreachable(err.to_string())))?;
    let http = http_client(token_url, config, trust).await?;
    let response = tokio::time::timeout(config.step_timeout, send(&http, request))
        .await
        .map_err(|_| timed_out(config))?
        .map_err(|err| request_failed(err, config))?;
    answer(response.status().as_u16(), response.body())
}

/// The token endpoint's answer, classified like Google's own.
fn answer(status: u16, body: &[u8]) -> Result<(SecretString, Duration), SmtpFailure> {
    if (200..300).contains(&status) {
        let issued: Issued =
            serde_json::from_slice(body).map_err(|_| SmtpFailure::TokenEndpoint(TokenFailure::NotJson { status }))?;
        let lifetime = Duration::from_secs(issued.expires_in.unwrap_or(LIFETIME_SECS));
        return Ok((SecretString::from(issued.access_token), lifetime));
    }
    let Ok(refused) = serde_json::from_slice::<Refused>(body) else {
        return Err(SmtpFailure::TokenEndpoint(TokenFailure::HttpStatus(status)));
    };
    let description = super::excerpt(&refused.error_description);
    Err(SmtpFailure::TokenEndpoint(match refused.error.as_str() {
        "unauthorized_client" => TokenFailure::DelegationMissing(description),
        "invalid_grant" => TokenFailure::InvalidGrant(description),
        "invalid_client" => TokenFailure::InvalidClient(description),
        "invalid_scope" => TokenFailure::InvalidScope(description),
        _ => TokenFailure::Rejected { error: super::excerpt(&refused.error), description },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_refusals_are_classified_by_their_error_code() {
        let refused = |body: &str| answer(400, body.as_bytes()).unwrap_err();
        assert_eq!(
            refused(
                r#"{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method."}"#
            ),
            SmtpFailure::TokenEndpoint(TokenFailure::DelegationMissing(
                "Client is unauthorized to retrieve access tokens using this method.".into()
            ))
        );
        assert!(matches!(
            refused(r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#),
            SmtpFailure::TokenEndpoint(TokenFailure::InvalidGrant(_))
        ));
        assert_eq!(answer(502, b"<html>").unwrap_err(), SmtpFailure::TokenEndpoint(TokenFailure::HttpStatus(502)));
        assert_eq!(
            answer(200, b"<html>").unwrap_err(),
            SmtpFailure::TokenEndpoint(TokenFailure::NotJson { status: 200 })
        );
        let (token, lifetime) =
            answer(200, br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#).unwrap();
        assert_eq!((token.expose_secret(), lifetime.as_secs()), ("ya29.x", 3599));
    }
}
