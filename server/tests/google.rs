//! Google Workspace without passwords: a service account's JSON key signs a JWT that a local,
//! Google-like token endpoint verifies (RS256 with the account's public key; iss, sub, scope,
//! aud, exp) before it issues the token an XOAUTH2 peer accepts.

mod common;
mod support;

use app::{
    mail::{SmtpFailure, TokenFailure},
    smtp_settings::{form::SmtpForm, types::AuthType},
};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

const SEND_AS: &str = "mailer@example.com";

struct Case {
    app: TestApp,
    admin: reqwest::Client,
    endpoint: GoogleTokenEndpoint,
    peer: SmtpPeer,
    _dir: tempfile::TempDir,
}

/// An XOAUTH2 peer that accepts only the endpoint's token for `SEND_AS`, and an endpoint whose
/// clock runs `skew_secs` ahead.
async fn case(skew_secs: i64) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let OAuthPeer { smtp: peer, endpoint } = OAuthPeer::google(dir.path(), None, SEND_AS, skew_secs);
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    Case { app, admin, endpoint, peer, _dir: dir }
}

fn google_form(port: u16, send_as: &str, key: &str) -> SmtpForm {
    SmtpForm {
        auth_type: AuthType::GoogleServiceAccount,
        username: send_as.into(),
        service_account_key: key.into(),
        ..custom_form(port)
    }
}

fn token_failure(status: StatusCode, body: &Value) -> (TokenFailure, String) {
    assert_eq!((status, body["kind"].as_str()), (StatusCode::BAD_GATEWAY, Some("smtp")), "{body}");
    match serde_json::from_value::<SmtpFailure>(body["detail"].clone()).unwrap() {
        failure @ SmtpFailure::TokenEndpoint(_) => {
            let hint = failure.hint();
            let SmtpFailure::TokenEndpoint(token) = failure else { unreachable!() };
            (token, hint)
        }
        other => panic!("not a token endpoint failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_service_account_key_delivers_through_xoauth2_with_a_token_bought_by_a_signed_jwt() {
    let case = case(0).await;
    let form = google_form(case.peer.port, SEND_AS, &case.endpoint.key);
    let (status, body) = send_test(&case.app, &case.admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let received = case.peer.received();
    assert_eq!(received.len(), 1, "the test mail reached the XOAUTH2 peer");
    assert_eq!(received[0].from, "mail@example.com");

    // What Mailroom signed, as the endpoint verified it.
    let claims = case.endpoint.claims();
    let claim = &claims[0];
    assert_eq!(claim["iss"], case.endpoint.client_email.as_str());
    assert_eq!(claim["sub"], SEND_AS);
    assert_eq!(claim["scope"], "https://mail.google.com/");
    let key: Value = serde_json::from_str(&case.endpoint.key).unwrap();
    assert_eq!(claim["aud"], key["token_uri"]);
    assert_eq!(claim["exp"].as_i64().unwrap() - claim["iat"].as_i64().unwrap(), 3600, "one hour");

    // Saved, the key is write-only: the page names the account, never the key.
    let (status, body) = try_save(&case.app, &case.admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["service_account"], case.endpoint.client_email.as_str());
    let view = case.admin.post(case.app.url("/api/smtp_load")).send().await.unwrap().text().await.unwrap();
    let page = case.admin.get(case.app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    let key_line = serde_json::from_str::<Value>(&case.endpoint.key).unwrap()["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    for text in [&view, &page] {
        assert!(!text.contains(&key_line) && !text.contains("trusted-key-1"), "the key stays on the server");
    }
    assert!(page.contains(&format!("A key for {} is saved.", case.endpoint.client_email)));

    // A blank key keeps the saved one (the token is cached: no second signature needed).
    let (status, body) = send_test(&case.app, &case.admin, &google_form(case.peer.port, SEND_AS, "")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tests = case.peer.received().into_iter().filter(|m| m.subject.ends_with("Mail Test")).count();
    assert_eq!(tests, 2, "the admins' change notice may arrive too, but two tests did");

    // Another mailbox is a guarded change: the key must be pasted again.
    let (status, body) = try_save(&case.app, &case.admin, &google_form(case.peer.port, "ceo@example.com", "")).await;
    assert_eq!(body["kind"], "validation", "{status} {body}");
    assert_eq!(body["detail"]["service_account_key"], "Re-enter the service account key: the username changed");
}

#[tokio::test]
async fn a_mailbox_outside_the_delegation_gets_the_delegation_hint() {
    let case = case(0).await;
    let form = google_form(case.peer.port, "intern@example.com", &case.endpoint.key);
    let (status, body) = send_test(&case.app, &case.admin, &form).await;
    let (failure, hint) = token_failure(status, &body);
    assert!(matches!(failure, TokenFailure::DelegationMissing(_)), "{failure:?}");
    assert!(hint.contains("domain-wide delegation is not granted for this client ID and scope"), "{hint}");
    assert_eq!(case.endpoint.claims()[0]["sub"], "intern@example.com", "the signature itself was good");
    assert!(case.peer.received().is_empty());
}

#[tokio::test]
async fn a_key_the_endpoint_does_not_trust_and_an_assertion_out_of_its_time_are_classified() {
    let case = case(0).await;
    let form = google_form(case.peer.port, SEND_AS, &case.endpoint.rogue_key);
    let (status, body) = send_test(&case.app, &case.admin, &form).await;
    let (failure, hint) = token_failure(status, &body);
    assert_eq!(failure, TokenFailure::InvalidGrant("Invalid JWT Signature.".into()));
    assert!(hint.contains("paste a new one"), "{hint}");

    // The endpoint's clock two hours ahead: the assertion has expired on arrival.
    let late = self::case(7200).await;
    let form = google_form(late.peer.port, SEND_AS, &late.endpoint.key);
    let (status, body) = send_test(&late.app, &late.admin, &form).await;
    let (failure, hint) = token_failure(status, &body);
    let TokenFailure::InvalidGrant(description) = failure else { panic!("{failure:?}") };
    assert!(description.contains("short-lived token"), "{description}");
    assert!(hint.contains("clock"), "{hint}");
}

#[tokio::test]
async fn a_file_that_is_not_a_service_account_key_is_named_while_pasting_and_at_save() {
    let case = case(0).await;
    let cases = [
        (
            "{\"installed\": {\"client_id\": \"x\"}}",
            "This is not a service account key (its \"type\" is not \"service_account\").",
        ),
        (
            "-----BEGIN PRIVATE KEY-----",
            "This is not JSON: paste the whole key file Google Cloud downloaded (it starts with {).",
        ),
    ];
    for (text, message) in cases {
        let form = google_form(case.peer.port, SEND_AS, text);
        assert_eq!(form.field_error("service_account_key").as_deref(), Some(message), "the page's live check");
        let (status, body) = try_save(&case.app, &case.admin, &form).await;
        assert_eq!(body["kind"], "validation", "{status} {body}");
        assert_eq!(body["detail"]["service_account_key"], message);
    }
    // A key whose private_key is not RSA PEM fails at Save, on the server.
    let mut key: Value = serde_json::from_str(&case.endpoint.key).unwrap();
    key["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let (status, body) =
        try_save(&case.app, &case.admin, &google_form(case.peer.port, SEND_AS, &key.to_string())).await;
    assert_eq!(body["kind"], "validation", "{status} {body}");
    assert!(body["detail"]["service_account_key"].as_str().unwrap().contains("cannot be read as an RSA key"), "{body}");
}
