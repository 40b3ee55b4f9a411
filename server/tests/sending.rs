//! Send Test Email against real, independent SMTP servers (aiosmtpd), a local token endpoint and
//! a scriptable fake for faults: every success path and every failure class.

mod common;
mod support;

use app::smtp_settings::{
    form::SmtpForm,
    types::{AuthType, MinTlsVersion, Mode, TlsMode},
};
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

impl Case {
    async fn send_test(&self, form: &SmtpForm) -> (StatusCode, Value) {
        send_test(&self.app, &self.admin, form).await
    }
}

/// Custom settings for `localhost:port` with TLS in `tls_mode`.
fn tls(port: u16, tls_mode: TlsMode) -> SmtpForm {
    SmtpForm { tls_enabled: true, tls_mode, ..custom_form(port) }
}

/// `form` with the peer's login and `password`.
fn with_login(form: SmtpForm, password: &str) -> SmtpForm {
    SmtpForm { username: SMTP_USER.into(), password: password.into(), ..form }
}

/// OAuth 2.0 settings for `localhost:port` over STARTTLS: the peer's client, with `secret` and
/// `scope`, asking `token_url`.
fn oauth_form(port: u16, token_url: String, secret: &str, scope: &str) -> SmtpForm {
    SmtpForm {
        auth_type: AuthType::OAuth2,
        username: SMTP_USER.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.into(),
        token_url,
        scope: scope.into(),
        ..tls(port, TlsMode::StartTls)
    }
}

/// The classified failure's variant name and fields.
async fn failure(case: &Case, form: &SmtpForm) -> (String, Value) {
    let (status, body) = case.send_test(form).await;
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
    let (status, body) = case.send_test(&plain_smtp_form(peer.port)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!(ADMIN_EMAIL));
    assert_test_mail_arrived(&peer, false);
    let outbox: Value = case.app.call(&case.admin, "outbox_list", &[]).await.json().await.unwrap();
    let recorded =
        outbox.as_array().unwrap().iter().find(|m| m["kind"] == "test").expect("the test email is in the outbox");
    assert_eq!((recorded["status"].as_str(), recorded["attempts"].as_i64()), (Some("sent"), Some(1)));
    // Its one attempt is keyed [message, time, claim], as the worker's are.
    let ok = case.app.attempts_by_key("test").await;
    assert_eq!(ok, [true], "the test email's attempt, found by its key");

    let refused = closed_port();
    failure(&case, &plain_smtp_form(refused)).await;
    let outbox: Value = case.app.call(&case.admin, "outbox_list", &[("status", "failed")]).await.json().await.unwrap();
    let failed = &outbox.as_array().unwrap()[0];
    assert_eq!(failed["kind"], "test");
    assert!(failed["last_error"].as_str().unwrap().starts_with("Connection refused"), "{failed}");
}

#[tokio::test]
async fn the_test_email_is_pipelined_on_a_plain_connection_exactly_when_the_server_offers_it() {
    let case = case().await;
    for pipelining in [true, false] {
        let peer = SmtpPeer::start(case.dir.path(), None, PeerOptions { pipelining, ..Default::default() });
        let (status, body) = case.send_test(&plain_smtp_form(peer.port)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_test_mail_arrived(&peer, false);
        assert_eq!(peer.received()[0].pipelined, pipelining, "read from the EHLO reply lettre read");
    }
    // Over STARTTLS what the server said before TLS is forgotten (RFC 3207), and one message
    // does not pay a second EHLO: step by step.
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", pipelining: true, ..Default::default() },
    );
    let (status, body) = case.send_test(&tls(peer.port, TlsMode::StartTls)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_test_mail_arrived(&peer, true);
    assert!(!peer.received()[0].pipelined);
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
        let form = with_login(tls(peer.port, TlsMode::StartTls), SMTP_PASSWORD);
        let (status, body) = case.send_test(&form).await;
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
    let form_implicit = with_login(tls(peer.port, TlsMode::Implicit), SMTP_PASSWORD);
    let (status, body) = case.send_test(&form_implicit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_test_mail_arrived(&peer, true);

    let old = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN", tls12_only: true, ..Default::default() },
    );
    let strict =
        SmtpForm { tls_version: MinTlsVersion::Tls13, ..with_login(tls(old.port, TlsMode::StartTls), SMTP_PASSWORD) };
    let (name, _) = failure(&case, &strict).await;
    assert_eq!(name, "TlsHandshake");
    let strict = SmtpForm { tls_version: MinTlsVersion::Tls12, ..strict };
    assert_eq!(case.send_test(&strict).await.0, StatusCode::OK, "TLS 1.2 is accepted when allowed");
    assert_eq!(old.received().len(), 1);
}

#[tokio::test]
async fn oauth2_gets_a_token_and_sends_with_xoauth2_caching_the_token() {
    let case = case().await;
    let oauth = OAuthPeer::start(case.dir.path(), Some(&case.certs)).await;
    let form = oauth_form(oauth.smtp.port, oauth.token_url(), CLIENT_SECRET, SCOPE);
    let (status, body) = case.send_test(&form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_test_mail_arrived(&oauth.smtp, true);
    assert_eq!(case.send_test(&form).await.0, StatusCode::OK);
    assert_eq!(oauth.endpoint.calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the token was cached");
    assert_eq!(oauth.smtp.received().len(), 2);
}

#[tokio::test]
async fn token_endpoint_failures_are_classified() {
    let case = case().await;
    let oauth = OAuthPeer::start(case.dir.path(), Some(&case.certs)).await;
    let (port, url) = (oauth.smtp.port, |path: &str| oauth.endpoint.url(path));

    let (name, fields) = failure(&case, &oauth_form(port, url("/token"), "wrong-secret", SCOPE)).await;
    assert_eq!((name.as_str(), fields["InvalidClient"].is_string()), ("TokenEndpoint", true), "{fields}");
    let (_, fields) = failure(&case, &oauth_form(port, url("/token"), CLIENT_SECRET, "bad.scope")).await;
    assert!(fields["InvalidScope"].as_str().unwrap().contains("AADSTS70011"), "{fields}");
    let (_, fields) = failure(&case, &oauth_form(port, url("/token-500"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["HttpStatus"], 500, "{fields}");
    let (_, fields) = failure(&case, &oauth_form(port, url("/token-html"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["NotJson"]["status"], 200, "{fields}");
    let (_, fields) = failure(&case, &oauth_form(port, url("/token-huge"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields, json!("TooLarge"), "the answer is bounded");
    let (_, fields) = failure(&case, &oauth_form(port, url("/token-redirect"), CLIENT_SECRET, SCOPE)).await;
    assert_eq!(fields["HttpStatus"], 307, "redirects are not followed: {fields}");
    assert_eq!(oauth.endpoint.calls.load(std::sync::atomic::Ordering::SeqCst), 2, "only the two /token calls above");
    let unreachable = format!("http://127.0.0.1:{}/token", closed_port());
    let (_, fields) = failure(&case, &oauth_form(port, unreachable, CLIENT_SECRET, SCOPE)).await;
    assert!(fields["Unreachable"].is_string(), "{fields}");
    assert!(oauth.smtp.received().is_empty());
}

#[tokio::test]
async fn a_rejected_xoauth2_token_is_fetched_again_once_and_reported_with_the_challenge() {
    let case = case().await;
    let oauth = OAuthPeer::start(case.dir.path(), Some(&case.certs)).await;
    let form = SmtpForm {
        username: "someone-else@example.com".into(),
        ..oauth_form(oauth.smtp.port, oauth.token_url(), CLIENT_SECRET, SCOPE)
    };
    let (name, fields) = failure(&case, &form).await;
    assert_eq!(name, "XOAuth2Rejected");
    assert!(fields["text"].as_str().unwrap().contains("\"status\": \"401\""), "{fields}");
    assert_eq!(
        oauth.endpoint.calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "fetched again once after the rejection"
    );
}

#[tokio::test]
async fn wrong_credentials_give_535_with_the_providers_text() {
    let case = case().await;
    let peer = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", ..Default::default() },
    );
    let (name, fields) = failure(&case, &with_login(tls(peer.port, TlsMode::StartTls), "wrong")).await;
    assert_eq!(name, "AuthRejected");
    assert_eq!(fields["code"], 535);

    let text = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.";
    let m365 = SmtpPeer::start(
        case.dir.path(),
        Some(&case.certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", auth_fail_text: Some(text), ..Default::default() },
    );
    let (_, body) = case.send_test(&with_login(tls(m365.port, TlsMode::StartTls), "wrong")).await;
    let failure: app::mail::SmtpFailure = serde_json::from_value(body["detail"].clone()).unwrap();
    assert!(failure.to_string().contains("5.7.139"), "{failure}");
    assert!(failure.hint().contains("SMTP AUTH disabled"), "{}", failure.hint());
}

#[tokio::test]
async fn connection_and_tls_mode_failures_are_classified() {
    let case = case().await;
    let refused = closed_port();
    let (name, _) = failure(&case, &plain_smtp_form(refused)).await;
    assert_eq!(name, "ConnectionRefused");

    let implicit =
        SmtpPeer::start(case.dir.path(), Some(&case.certs), PeerOptions { mode: "implicit", ..Default::default() });
    let (name, fields) = failure(&case, &custom_form(implicit.port)).await;
    assert_eq!(name, "TlsModeMismatch");
    assert_eq!(fields["server_expects_tls"], true);

    let plain = SmtpPeer::start(case.dir.path(), None, PeerOptions::default());
    let (name, fields) = failure(&case, &tls(plain.port, TlsMode::Implicit)).await;
    assert_eq!(name, "TlsModeMismatch", "{fields}");
    assert_eq!(fields["server_expects_tls"], false);

    let (name, _) = failure(&case, &tls(plain.port, TlsMode::StartTls)).await;
    assert_eq!(name, "StartTlsNotOffered");
    assert!(plain.received().is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let case = case_with_ca(false).await;
    let peer =
        SmtpPeer::start(case.dir.path(), Some(&case.certs), PeerOptions { mode: "starttls", ..Default::default() });
    let (name, fields) = failure(&case, &tls(peer.port, TlsMode::StartTls)).await;
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
    let (name, fields) = failure(&case, &with_login(tls(peer.port, TlsMode::StartTls), SMTP_PASSWORD)).await;
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
    let (name, fields) = failure(&case, &plain_smtp_form(peer.port)).await;
    assert_eq!((name.as_str(), fields["code"].as_u64()), ("SenderRejected", Some(550)));
    let peer = SmtpPeer::start(
        case.dir.path(),
        None,
        PeerOptions { reject_recipient: Some(ADMIN_EMAIL), ..Default::default() },
    );
    let (name, fields) = failure(&case, &plain_smtp_form(peer.port)).await;
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
        let (name, fields) = failure(&case, &plain_smtp_form(port)).await;
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
    let default = SmtpForm { mode: Mode::Default, host: String::new(), ..custom_form(25) };
    let (status, body) = case.send_test(&default).await;
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
    let saved = with_login(tls(peer.port, TlsMode::StartTls), SMTP_PASSWORD);
    save(&case.app, &case.admin, &saved).await;
    // The saved password is reused for an unchanged server…
    let blank = with_login(tls(peer.port, TlsMode::StartTls), "");
    assert_eq!(case.send_test(&blank).await.0, StatusCode::OK);
    // …but never sent to a new one.
    let other = closed_port();
    let moved = with_login(tls(other, TlsMode::StartTls), "");
    let (status, body) = case.send_test(&moved).await;
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
