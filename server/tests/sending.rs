//! Send Test Email against real, independent SMTP servers (aiosmtpd), a local token endpoint and
//! a scriptable fake for faults: every success path and every failure class.

mod common;
mod support;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

struct Case {
    app: TestApp,
    admin: reqwest::Client,
    dir: tempfile::TempDir,
    certs: Certs,
}

async fn case() -> Case {
    case_with_ca(true).await
}

async fn case_with_ca(trust_test_ca: bool) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let ca = certs.ca.clone();
    let app = spawn_app_with(move |config| {
        if trust_test_ca {
            config.smtp_ca_file = Some(ca);
        }
    })
    .await;
    let admin = app.admin_client().await;
    Case { app, admin, dir, certs }
}

fn form(host: &str, port: u16) -> Value {
    json!({
        "mode": "Custom", "host": host, "port": port.to_string(), "from": "Mailroom <mail@example.com>",
        "tls_enabled": false, "tls_version": "Tls12", "tls_mode": "StartTls", "auth_type": "Basic",
        "username": "", "password": "", "client_id": "", "client_secret": "", "token_url": "", "scope": ""
    })
}

fn with_tls(mut form: Value, mode: &str) -> Value {
    form["tls_enabled"] = json!(true);
    form["tls_mode"] = json!(mode);
    form
}

fn with_login(mut form: Value, password: &str) -> Value {
    form["username"] = json!(SMTP_USER);
    form["password"] = json!(password);
    form
}

fn with_oauth(mut form: Value, token_url: &str, secret: &str, scope: &str) -> Value {
    form["auth_type"] = json!("OAuth2");
    form["username"] = json!(SMTP_USER);
    form["client_id"] = json!(CLIENT_ID);
    form["client_secret"] = json!(secret);
    form["token_url"] = json!(token_url);
    form["scope"] = json!(scope);
    form
}

async fn send_test(case: &Case, form: &Value) -> (StatusCode, Value) {
    let response = case.admin.post(case.app.url("/api/smtp_test")).json(&json!({ "form": form })).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// The classified failure's variant name and fields.
async fn failure(case: &Case, form: &Value) -> (String, Value) {
    let (status, body) = send_test(case, form).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["kind"], "smtp", "{body}");
    let detail = &body["detail"];
    match detail {
        Value::String(name) => (name.clone(), Value::Null),
        Value::Object(map) => {
            let (name, fields) = map.iter().next().unwrap();
            (name.clone(), fields.clone())
        }
        other => panic!("unexpected failure shape {other}"),
    }
}

fn assert_test_mail_arrived(peer: &SmtpPeer, tls: bool) {
    let received = peer.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let mail = &received[0];
    assert_eq!(mail.from, "mail@example.com");
    assert_eq!(mail.to, vec![ADMIN_EMAIL.to_owned()]);
    assert!(mail.data.contains("Subject: Mailroom Test Mail Test"), "{}", mail.data);
    assert!(mail.data.contains("From: Mailroom <mail@example.com>"), "{}", mail.data);
    assert!(mail.data.contains(&format!("To: \"Test User\" <{ADMIN_EMAIL}>")) || mail.data.contains(ADMIN_EMAIL));
    assert!(mail.data.contains("Mailroom Test mail is working!"), "{}", mail.data);
    assert_eq!(mail.tls, tls);
}

#[tokio::test]
async fn plaintext_without_auth_delivers_the_test_mail() {
    let case = case().await;
    let peer = SmtpPeer::start(case.dir.path(), None, PeerOptions::default());
    let (status, body) = send_test(&case, &form("127.0.0.1", peer.port)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!(ADMIN_EMAIL));
    assert_test_mail_arrived(&peer, false);
    let outbox: Value = case.app.call(&case.admin, "outbox_list", &[]).await.json().await.unwrap();
    let recorded =
        outbox.as_array().unwrap().iter().find(|m| m["kind"] == "test").expect("the test email is in the outbox");
    assert_eq!((recorded["status"].as_str(), recorded["attempts"].as_i64()), (Some("sent"), Some(1)));

    let refused = closed_port().await;
    failure(&case, &form("127.0.0.1", refused)).await;
    let outbox: Value = case.app.call(&case.admin, "outbox_list", &[("status", "failed")]).await.json().await.unwrap();
    let failed = &outbox.as_array().unwrap()[0];
    assert_eq!(failed["kind"], "test");
    assert!(failed["last_error"].as_str().unwrap().starts_with("Connection refused"), "{failed}");
}

#[tokio::test]
async fn starttls_with_plain_or_login_delivers() {
    let case = case().await;
    for auth in ["PLAIN,LOGIN", "LOGIN"] {
        let peer = SmtpPeer::start(
            case.dir.path(),
            Some(&case.certs),
            PeerOptions { mode: "starttls", auth, ..Default::default() },
        );
        let form = with_login(with_tls(form("localhost", peer.port), "StartTls"), SMTP_PASSWORD);
        let (status, body) = send_test(&case, &form).await;
        assert_eq!(status, StatusCode::OK, "{auth}: {body}");
        assert_test_mail_arrived(&peer, true);
    }
}

#[tokio::test]
async fn implicit_tls_delivers_and_tls_1_3_is_refused_by_a_tls_1_2_only_server() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "implicit", auth: "PLAIN,LOGIN", ..Default::default() },
    );
    let form_implicit = with_login(with_tls(form("localhost", peer.port), "Implicit"), SMTP_PASSWORD);
    let (status, body) = send_test(&case, &form_implicit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_test_mail_arrived(&peer, true);

    let old = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN", tls12_only: true, ..Default::default() },
    );
    let mut strict = with_login(with_tls(form("localhost", old.port), "StartTls"), SMTP_PASSWORD);
    strict["tls_version"] = json!("Tls13");
    let (name, _) = failure(&case, &strict).await;
    assert_eq!(name, "TlsHandshake");
    strict["tls_version"] = json!("Tls12");
    assert_eq!(send_test(&case, &strict).await.0, StatusCode::OK, "TLS 1.2 is accepted when allowed");
    assert_eq!(old.received().len(), 1);
}

#[tokio::test]
async fn oauth2_gets_a_token_and_sends_with_xoauth2_caching_the_token() {
    let case = case().await;
    let endpoint = TokenEndpoint::start().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "XOAUTH2", ..Default::default() },
    );
    let form =
        with_oauth(with_tls(form("localhost", peer.port), "StartTls"), &endpoint.url("/token"), CLIENT_SECRET, SCOPE);
    let (status, body) = send_test(&case, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_test_mail_arrived(&peer, true);
    assert_eq!(send_test(&case, &form).await.0, StatusCode::OK);
    assert_eq!(endpoint.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the token was cached");
    assert_eq!(peer.received().len(), 2);
}

#[tokio::test]
async fn token_endpoint_failures_are_classified() {
    let case = case().await;
    let endpoint = TokenEndpoint::start().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "XOAUTH2", ..Default::default() },
    );
    let base = with_tls(form("localhost", peer.port), "StartTls");

    let (name, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token"), "wrong-secret", SCOPE)).await;
    assert_eq!((name.as_str(), fields["InvalidClient"].is_string()), ("TokenEndpoint", true), "{fields}");
    let (_, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token"), CLIENT_SECRET, "bad.scope")).await;
    assert!(fields["InvalidScope"].as_str().unwrap().contains("AADSTS70011"), "{fields}");
    let (_, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token-500"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["HttpStatus"], 500, "{fields}");
    let (_, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token-html"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["NotJson"]["status"], 200, "{fields}");
    let (_, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token-huge"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields, json!("TooLarge"), "the answer is bounded");
    let (_, fields) =
        failure(&case, &with_oauth(base.clone(), &endpoint.url("/token-redirect"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["HttpStatus"], 307, "redirects are not followed: {fields}");
    assert_eq!(endpoint.calls.load(std::sync::atomic::Ordering::SeqCst), 2, "only the two /token calls above");
    let closed = closed_port().await;
    let (_, fields) =
        failure(&case, &with_oauth(base, &format!("http://127.0.0.1:{closed}/token"), CLIENT_SECRET, SCOPE)).await;
    assert!(fields["Unreachable"].is_string(), "{fields}");
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn a_rejected_xoauth2_token_is_fetched_again_once_and_reported_with_the_challenge() {
    let case = case().await;
    let endpoint = TokenEndpoint::start().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "XOAUTH2", ..Default::default() },
    );
    let mut form =
        with_oauth(with_tls(form("localhost", peer.port), "StartTls"), &endpoint.url("/token"), CLIENT_SECRET, SCOPE);
    form["username"] = json!("someone-else@example.com");
    let (name, fields) = failure(&case, &form).await;
    assert_eq!(name, "XOAuth2Rejected");
    assert!(fields["text"].as_str().unwrap().contains("\"status\": \"401\""), "{fields}");
    assert_eq!(endpoint.calls.load(std::sync::atomic::Ordering::SeqCst), 2, "fetched again once after the rejection");
}

#[tokio::test]
async fn wrong_credentials_give_535_with_the_providers_text() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", ..Default::default() },
    );
    let (name, fields) = failure(&case, &with_login(with_tls(form("localhost", peer.port), "StartTls"), "wrong")).await;
    assert_eq!(name, "AuthRejected");
    assert_eq!(fields["code"], 535);

    let text = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.";
    let m365 = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", auth_fail_text: Some(text), ..Default::default() },
    );
    let response = case
        .admin
        .post(case.app.url("/api/smtp_test"))
        .json(&json!({ "form": with_login(with_tls(form("localhost", m365.port), "StartTls"), "wrong") }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let failure: app::mail::SmtpFailure = serde_json::from_value(body["detail"].clone()).unwrap();
    assert!(failure.to_string().contains("5.7.139"), "{failure}");
    assert!(failure.hint().contains("SMTP AUTH disabled"), "{}", failure.hint());
}

#[tokio::test]
async fn connection_and_tls_mode_failures_are_classified() {
    let case = case().await;
    let refused = closed_port().await;
    let (name, _) = failure(&case, &form("127.0.0.1", refused)).await;
    assert_eq!(name, "ConnectionRefused");

    let implicit =
        SmtpPeer::start(case.dir.path(), Some(&case.certs), PeerOptions { mode: "implicit", ..Default::default() });
    let (name, fields) = failure(&case, &form("localhost", implicit.port)).await;
    assert_eq!(name, "TlsModeMismatch");
    assert_eq!(fields["server_expects_tls"], true);

    let plain = SmtpPeer::start(case.dir.path(), None, PeerOptions::default());
    let (name, fields) = failure(&case, &with_tls(form("localhost", plain.port), "Implicit")).await;
    assert_eq!(name, "TlsModeMismatch", "{fields}");
    assert_eq!(fields["server_expects_tls"], false);

    let (name, _) = failure(&case, &with_tls(form("localhost", plain.port), "StartTls")).await;
    assert_eq!(name, "StartTlsNotOffered");
    assert!(plain.received().is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let case = case_with_ca(false).await;
    let peer =
        SmtpPeer::start(case.dir.path(), Some(&case.certs), PeerOptions { mode: "starttls", ..Default::default() });
    let (name, fields) = failure(&case, &with_tls(form("localhost", peer.port), "StartTls")).await;
    assert_eq!(name, "InvalidCertificate", "{fields}");
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn no_common_auth_mechanism_is_reported_with_what_the_server_offers() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "XOAUTH2", ..Default::default() },
    );
    let (name, fields) =
        failure(&case, &with_login(with_tls(form("localhost", peer.port), "StartTls"), SMTP_PASSWORD)).await;
    assert_eq!(name, "NoCommonAuthMechanism");
    assert_eq!(fields["offered"], "XOAUTH2");
}

#[tokio::test]
async fn rejected_sender_and_recipient_are_told_apart() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        None,
        PeerOptions { reject_sender: Some("mail@example.com"), ..Default::default() },
    );
    let (name, fields) = failure(&case, &form("127.0.0.1", peer.port)).await;
    assert_eq!((name.as_str(), fields["code"].as_u64()), ("SenderRejected", Some(550)));
    let peer = SmtpPeer::start(
        case.dir.path(),
        None,
        PeerOptions { reject_recipient: Some(ADMIN_EMAIL), ..Default::default() },
    );
    let (name, fields) = failure(&case, &form("127.0.0.1", peer.port)).await;
    assert_eq!((name.as_str(), fields["code"].as_u64()), ("RecipientRejected", Some(550)));
}

#[tokio::test]
async fn faults_never_hang_and_are_classified_by_step() {
    let case = case().await;
    let cases = [
        (Fault::NeverGreets, "Timeout", json!("Greeting")),
        (Fault::StallsInData, "Timeout", json!("Data")),
        (Fault::Answers421, "ServiceUnavailable", Value::Null),
        (Fault::DropsAfterEhlo, "ConnectionLost", Value::Null),
    ];
    for (fault, expected, step) in cases {
        let port = fault_server(fault).await;
        let started = std::time::Instant::now();
        let (name, fields) = failure(&case, &form("127.0.0.1", port)).await;
        assert_eq!(name, expected, "{fault:?}: {fields}");
        if !step.is_null() {
            assert_eq!(fields["step"], step, "{fault:?}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "{fault:?} took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn default_mode_without_a_relay_puts_the_test_mail_in_the_local_mailbox() {
    let case = case().await;
    let mut default = form("", 25);
    default["mode"] = json!("Default");
    let (status, body) = send_test(&case, &default).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list: Value = case.app.call(&case.admin, "mailbox_list", &[]).await.json().await.unwrap();
    let entry = &list[0];
    assert_eq!(entry["subject"], "Mailroom Test Mail Test");
    assert!(entry["to_addr"].as_str().unwrap().contains(ADMIN_EMAIL));
    let id = entry["id"].as_str().unwrap();
    let message: Value = case.app.call(&case.admin, "mailbox_read", &[("id", id)]).await.json().await.unwrap();
    assert_eq!(message["text"], "Mailroom Test mail is working!");
    let (view, _) = (case.app.call(&case.admin, "smtp_load", &[]).await.json::<Value>().await.unwrap(), ());
    assert_eq!(view["default_service"], "LocalMailbox");
}

#[tokio::test]
async fn the_test_obeys_the_re_entry_rule_for_saved_secrets() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN", ..Default::default() },
    );
    let saved = with_login(with_tls(form("localhost", peer.port), "StartTls"), SMTP_PASSWORD);
    let response = case
        .admin
        .post(case.app.url("/api/smtp_save"))
        .json(&json!({ "form": saved, "version": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The saved password is reused for an unchanged server…
    let blank = with_login(with_tls(form("localhost", peer.port), "StartTls"), "");
    assert_eq!(send_test(&case, &blank).await.0, StatusCode::OK);
    // …but never sent to a new one.
    let other = closed_port().await;
    let moved = with_login(with_tls(form("localhost", other), "StartTls"), "");
    let (status, body) = send_test(&case, &moved).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"]["password"], "Re-enter the password: the port changed");
}

#[tokio::test]
async fn the_pooled_mailer_sends_through_a_real_server() {
    use app::{
        mail::ssr::{MailConfig, Mailer, OutgoingMessage, SmtpTarget, TargetAuth},
        smtp_settings::types::{MinTlsVersion, Tls, TlsMode},
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", ..Default::default() },
    );
    let config = MailConfig { ca_pem: Some(std::fs::read(&certs.ca).unwrap()), ..MailConfig::default() };
    let target = SmtpTarget {
        host: "localhost".parse().unwrap(),
        port: peer.port,
        tls: Tls { enabled: true, min_version: MinTlsVersion::Tls12, mode: TlsMode::StartTls },
        auth: TargetAuth::Basic { username: SMTP_USER.into(), password: SMTP_PASSWORD.to_owned().into() },
        trust: Default::default(),
    };
    let mailer = Mailer::smtp(target, std::sync::Arc::default(), 4);
    for n in 0..3 {
        let message = OutgoingMessage {
            from: "Mailroom <mail@example.com>".parse().unwrap(),
            to: "someone@example.com".parse().unwrap(),
            subject: format!("pooled {n}"),
            text: "hello".into(),
            html: Some("<p>hello</p>".into()),
            message_id: None,
        };
        mailer.send(&message, &config).await.unwrap();
    }
    let received = peer.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|m| m.tls && m.data.contains("text/html")));
}

async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
