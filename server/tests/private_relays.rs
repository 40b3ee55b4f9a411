//! Private relays managed on the SMTP page: a CA pasted and saved is trusted at once (no env
//! var, no restart), a relay that requires mutual TLS gets the saved client certificate, and a
//! certificate near its end warns every admin live.

mod common;
mod support;

use app::{
    auth::Role,
    mail::{CertProblem, SmtpFailure},
    smtp_settings::{certs::CertSummary, form::SmtpForm, types::TlsMode},
};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use reqwest::StatusCode;
use serde_json::Value;
use support::*;

/// A CA named `name` whose validity ends `days` from now (negative: it has ended).
fn authority(name: &str, days: i64) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    (params.self_signed(&key).unwrap(), key)
}

fn smtp_failure(status: StatusCode, body: &Value) -> SmtpFailure {
    assert_eq!((status, body["kind"].as_str()), (StatusCode::BAD_GATEWAY, Some("smtp")), "{body}");
    serde_json::from_value(body["detail"].clone()).unwrap()
}

fn field_error(status: StatusCode, body: &Value, field: &str) -> String {
    assert_eq!(body["kind"], "validation", "{status} {body}");
    body["detail"][field].as_str().unwrap_or_else(|| panic!("no error for {field}: {body}")).to_owned()
}

/// The test mails the peer has received (the admins' change notices may arrive too).
async fn wait_for_mail(peer: &SmtpPeer, count: usize) -> Vec<Received> {
    for _ in 0..100 {
        let received: Vec<Received> =
            peer.received().into_iter().filter(|m| m.subject.ends_with("Mail Test")).collect();
        if received.len() >= count {
            return received;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the peer did not receive {count} messages");
}

#[tokio::test]
async fn a_private_ca_pasted_and_saved_is_trusted_without_an_env_var_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(dir.path(), Some(&certs), PeerOptions { mode: "starttls", ..Default::default() });
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let form = SmtpForm { tls_enabled: true, tls_mode: TlsMode::StartTls, ..custom_form(peer.port) };

    let (status, body) = send_test(&app, &admin, &form).await;
    let failure = smtp_failure(status, &body);
    assert_eq!(failure, SmtpFailure::InvalidCertificate { problem: CertProblem::UnknownIssuer });
    assert!(failure.hint().contains("Trusted CA certificates (PEM)"), "{}", failure.hint());

    // While the admin pastes, the page reads the certificate on the server.
    let ca_pem = std::fs::read_to_string(&certs.ca).unwrap();
    let response = app.call(&admin, "smtp_certificates", &[("pem", &ca_pem), ("role", "trusted CA certificate")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Vec<CertSummary> = response.json().await.unwrap();
    assert_eq!((read.len(), read[0].subject.as_str()), (1, "CN=Mailroom Test CA"));
    let anonymous = app.client();
    let response =
        app.call(&anonymous, "smtp_certificates", &[("pem", &ca_pem), ("role", "trusted CA certificate")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Bad PEM is the field's error and saves nothing.
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let (status, body) = try_save(&app, &admin, &SmtpForm { trusted_ca_pem: garbage.into(), ..form.clone() }).await;
    assert_eq!(
        field_error(status, &body, "trusted_ca_pem"),
        "Certificate 1 cannot be read (not an X.509 certificate)."
    );

    let (status, body) = try_save(&app, &admin, &SmtpForm { trusted_ca_pem: ca_pem.clone(), ..form.clone() }).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["certificates"][0]["subject"], "CN=Mailroom Test CA");
    assert!(body["changed"].as_array().unwrap().iter().any(|f| f == "Trusted CA certificates"), "{body}");

    // A blank field keeps the saved CA: the same test now reaches the relay over TLS.
    let (status, body) = send_test(&app, &admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let received = wait_for_mail(&peer, 1).await;
    assert!(received[0].tls && received[0].subject.ends_with("Mail Test"), "{received:?}");

    // The PEM never comes back: not in the page, not in the settings the browser loads.
    let body_line = ca_pem.lines().nth(1).unwrap();
    let page = admin.get(app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    let view = admin.post(app.url("/api/smtp_load")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("CN=Mailroom Test CA"), "the page lists the saved certificate");
    assert!(!page.contains(body_line) && !view.contains(body_line), "the PEM itself stays on the server");

    // Removing it restores the web roots only.
    let (status, _) = try_save(&app, &admin, &SmtpForm { remove_trusted_ca: true, ..form.clone() }).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send_test(&app, &admin, &form).await;
    assert_eq!(smtp_failure(status, &body), SmtpFailure::InvalidCertificate { problem: CertProblem::UnknownIssuer });
}

#[tokio::test]
async fn a_relay_that_requires_a_client_certificate_refuses_without_it_and_accepts_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let (client_ca, client_ca_key) = authority("Relay Client CA", 365);
    let client_ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca_file, client_ca.pem()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "mailroom.example.com");
    let client_cert = params.signed_by(&client_key, &client_ca, &client_ca_key).unwrap();

    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "implicit", client_ca: Some(client_ca_file), ..Default::default() },
    );
    let (app, admin) = spawn_app_trusting(certs.ca.clone()).await;
    let form = SmtpForm { tls_enabled: true, tls_mode: TlsMode::Implicit, ..custom_form(peer.port) };

    let (status, body) = send_test(&app, &admin, &form).await;
    let failure = smtp_failure(status, &body);
    assert_eq!(failure, SmtpFailure::ClientCertificate { missing: true });
    assert!(failure.hint().contains("Client certificate (PEM)"), "{}", failure.hint());

    // A key that is not the certificate's is refused at Save.
    let stranger = KeyPair::generate().unwrap();
    let mismatched =
        SmtpForm { client_cert_pem: client_cert.pem(), client_key_pem: stranger.serialize_pem(), ..form.clone() };
    let (status, body) = try_save(&app, &admin, &mismatched).await;
    assert_eq!(field_error(status, &body, "client_key_pem"), "This key does not belong to the client certificate.");
    let without_key = SmtpForm { client_cert_pem: client_cert.pem(), ..form.clone() };
    let (status, body) = try_save(&app, &admin, &without_key).await;
    assert_eq!(field_error(status, &body, "client_key_pem"), "Paste the client certificate's private key.");

    let with_identity =
        SmtpForm { client_cert_pem: client_cert.pem(), client_key_pem: client_key.serialize_pem(), ..form.clone() };
    let (status, body) = try_save(&app, &admin, &with_identity).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secrets"]["client_key_set"], true);
    assert_eq!(body["secrets"]["certificates"][0]["subject"], "CN=mailroom.example.com");

    let (status, body) = send_test(&app, &admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(wait_for_mail(&peer, 1).await.len(), 1);
}

#[tokio::test]
async fn a_certificate_near_its_end_warns_a_second_admin_live_and_an_expired_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    app.create_user("second@example.com", "second admin password", Role::Admin).await;
    let second = app.client();
    app.sign_in(&second, "second@example.com", "second admin password").await;
    let mut events = Events::from_response(second.get(app.url("/api/smtp_status/stream")).send().await.unwrap());
    let first = events.next(10).await;
    assert_eq!(first["certificates"], serde_json::json!([]), "{first}");

    let (expiring, _) = authority("Relay CA expiring", 7);
    let form = SmtpForm { trusted_ca_pem: expiring.pem(), ..custom_form(peer.port) };
    let (status, body) = try_save(&app, &admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = events.until(20, |e| e["certificates"].as_array().is_some_and(|c| !c.is_empty())).await;
    let notice = &event["certificates"][0];
    assert_eq!(notice["certificate"]["subject"], "CN=Relay CA expiring", "{event}");
    assert_eq!(notice["expired"], false);
    assert!((6..=7).contains(&notice["days_left"].as_i64().unwrap()), "{notice}");
    assert_eq!(event["is_valid"], true, "a warning, not an error: {event}");
    let page = second.get(app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Certificate expiring soon: The trusted CA certificate CN=Relay CA expiring expires in"),
        "the second admin's page carries the warning"
    );

    let (expired, _) = authority("Relay CA expired", -1);
    let form = SmtpForm { trusted_ca_pem: expired.pem(), ..custom_form(peer.port) };
    let (status, body) = try_save(&app, &admin, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event = events.until(20, |e| e["certificates"][0]["expired"] == true).await;
    assert_eq!(event["certificates"][0]["certificate"]["subject"], "CN=Relay CA expired");
    assert_eq!(event["is_valid"], false, "an expired certificate is an error: {event}");
}
