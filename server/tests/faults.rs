//! The fault matrix (issue 10): every way a delivery can fail, against real peers — aiosmtpd,
//! a scriptable raw-TCP SMTP server and a local token endpoint — each case asserting the
//! failure's class, its hint and that it ended within the configured limit. Every case prints
//! one row, `FAULT | case | class | elapsed | failure`:
//! `cargo test -p server --features app/ssr --test faults -- --nocapture 2>&1 | grep '^FAULT'`.

mod common;
mod support;

use app::{
    mail::{
        CertProblem,
        FailureClass::{self, Configuration, Recipient, Transient},
        SmtpFailure, Step, TokenFailure,
        ssr::{MailConfig, Mailer, OutgoingMessage, SmtpTarget, TargetAuth, deliver, oauth::TokenCache},
    },
    smtp_settings::types::{MinTlsVersion, Tls, TlsMode},
};
use common::closed_port;
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};
use support::{
    fault_smtp::{Answer, FaultSmtp, Script},
    *,
};

const STEP: Duration = Duration::from_secs(1);
/// Long enough for the greeting step (the step limit plus the connect's second) and the probe
/// that tells an implicit-TLS port from a silent one.
const OVERALL: Duration = Duration::from_secs(3);
/// Scheduling slack on a busy two-core machine.
const MARGIN: Duration = Duration::from_millis(750);

fn config() -> MailConfig {
    MailConfig { overall_timeout: OVERALL, step_timeout: STEP, ..MailConfig::default() }
}

fn trusting(certs: &Certs) -> MailConfig {
    MailConfig { ca_pem: Some(std::fs::read(&certs.ca).unwrap()), ..config() }
}

fn target(host: &str, port: u16) -> SmtpTarget {
    SmtpTarget {
        host: host.parse().unwrap(),
        port,
        tls: Tls { enabled: false, min_version: MinTlsVersion::Tls12, mode: TlsMode::StartTls },
        auth: TargetAuth::None,
        trust: Default::default(),
    }
}

fn with_tls(mut target: SmtpTarget, mode: TlsMode, min_version: MinTlsVersion) -> SmtpTarget {
    target.tls = Tls { enabled: true, min_version, mode };
    target
}

fn with_login(mut target: SmtpTarget, password: &str) -> SmtpTarget {
    target.auth = TargetAuth::Basic { username: SMTP_USER.into(), password: password.to_owned().into() };
    target
}

fn with_oauth(mut target: SmtpTarget, token_url: &str, secret: &str, scope: &str) -> SmtpTarget {
    target.auth = TargetAuth::OAuth2 {
        username: SMTP_USER.into(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.to_owned().into(),
        token_url: token_url.parse().unwrap(),
        scopes: vec![scope.into()],
    };
    target
}

fn message(marker: &str) -> OutgoingMessage {
    OutgoingMessage {
        from: "Mailroom <mail@example.com>".parse().unwrap(),
        to: "someone@example.com".parse().unwrap(),
        subject: format!("fault {marker}"),
        text: format!("body of {marker}"),
        html: None,
        message_id: None,
    }
}

fn report(case: &str, failure: &SmtpFailure, elapsed: Duration) {
    eprintln!(
        "FAULT | {case:<44} | {:<13} | {:>5} ms | {failure}",
        format!("{:?}", failure.class()),
        elapsed.as_millis()
    );
}

/// Sends one message the step-wise way and checks the failure's class, hint and time.
async fn fails(case: &str, target: &SmtpTarget, config: &MailConfig, class: FailureClass, hint: &str) -> SmtpFailure {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let result = deliver(target, config, &TokenCache::default(), Some(&message(case))).await;
    let elapsed = started.elapsed();
    let failure = result.expect_err(case);
    report(case, &failure, elapsed);
    assert_eq!(failure.class(), class, "{case}: {failure:?}");
    assert!(failure.hint().contains(hint), "{case}: hint {:?} lacks {hint:?} ({failure:?})", failure.hint());
    assert!(elapsed < config.overall_timeout + MARGIN, "{case}: took {elapsed:?}");
    assert_timed_as_reported(case, &failure, elapsed);
    failure
}

/// A timeout fires when it says it does: "after 1 s" means about a second, not the overall
/// limit. A silent greeting may take one step more: the probe for an implicit-TLS port.
fn assert_timed_as_reported(case: &str, failure: &SmtpFailure, elapsed: Duration) {
    if let SmtpFailure::Timeout { step, secs } = failure {
        let probe = if *step == Step::Greeting { STEP } else { Duration::ZERO };
        assert!(elapsed < Duration::from_secs(*secs) + probe + MARGIN, "{case}: {failure} took {elapsed:?}");
    }
}

/// TLS and certificate failures are sentences for an admin, not a Debug dump of a cause chain.
fn assert_no_debug_noise(failure: &SmtpFailure) {
    let text = failure.to_string();
    for noise in ["Error(", "Other(", "Custom", "kind:", "{", "Some("] {
        assert!(!text.contains(noise), "{text:?} contains {noise:?}");
    }
    let parts: Vec<&str> = text.split(": ").map(str::trim).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(part), "{text:?} repeats {part:?}");
    }
}

/// A CA and a certificate signed by it for `names`; with `leaf_is_ca` the server presents the
/// (self-signed, CA) certificate itself.
fn certs(dir: &Path, names: &[&str], leaf_is_ca: bool) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let paths = Certs { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(if leaf_is_ca { names.clone() } else { Vec::new() }).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Mailroom Fault CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(&paths.ca, ca.pem()).unwrap();
    if leaf_is_ca {
        std::fs::write(&paths.cert, ca.pem()).unwrap();
        std::fs::write(&paths.key, ca_key.serialize_pem()).unwrap();
    } else {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
    }
    paths
}

// Connecting.

#[tokio::test]
async fn a_closed_port_is_a_refused_connection() {
    let port = closed_port();
    let failure = fails(
        "connection refused",
        &target("127.0.0.1", port),
        &config(),
        Transient,
        "Nothing accepts connections on port",
    )
    .await;
    assert!(matches!(failure, SmtpFailure::ConnectionRefused { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_server_that_never_greets_times_out_at_the_greeting() {
    let server = FaultSmtp::start(Script { greeting: Answer::Silent, ..Script::default() }).await;
    let failure = fails("no greeting", &target("127.0.0.1", server.port), &config(), Transient, "did not answer").await;
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::Greeting, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_server_silent_after_ehlo_times_out() {
    let server = FaultSmtp::start(Script { ehlo: Some(Answer::Silent), ..Script::default() }).await;
    let failure =
        fails("silent after EHLO", &target("127.0.0.1", server.port), &config(), Transient, "did not answer").await;
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::Greeting, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_server_that_closes_after_greeting_loses_the_connection() {
    let server = FaultSmtp::start(Script { ehlo: Some(Answer::Close), ..Script::default() }).await;
    let failure = fails(
        "closed after greeting",
        &target("127.0.0.1", server.port),
        &config(),
        Transient,
        "closed the connection",
    )
    .await;
    assert_eq!(failure, SmtpFailure::ConnectionLost { step: Step::Greeting });
}

#[tokio::test]
async fn a_421_greeting_is_a_busy_server() {
    let server = FaultSmtp::start(Script {
        greeting: Answer::reply_then_close("421 4.3.2 Too many connections, try later"),
        ..Script::default()
    })
    .await;
    let failure =
        fails("greeting 421", &target("127.0.0.1", server.port), &config(), Transient, "busy or closing (421)").await;
    assert!(matches!(failure, SmtpFailure::ServiceUnavailable { code: 421, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_554_greeting_is_an_overloaded_server_and_transient() {
    let server = FaultSmtp::start(Script {
        greeting: Answer::reply_then_close("554 5.3.2 No SMTP service here"),
        ..Script::default()
    })
    .await;
    let failure = fails("greeting 554", &target("127.0.0.1", server.port), &config(), Transient, "overloaded").await;
    assert!(matches!(failure, SmtpFailure::Rejected { step: Step::Greeting, code: 554, .. }), "{failure:?}");
}

// TLS and certificates.

#[tokio::test]
async fn starttls_ticked_but_not_offered_is_refused_before_anything_is_sent() {
    let server = FaultSmtp::start(Script::default()).await;
    let target = with_tls(target("127.0.0.1", server.port), TlsMode::StartTls, MinTlsVersion::Tls12);
    let failure = fails("STARTTLS not offered", &target, &config(), Configuration, "does not offer STARTTLS").await;
    assert_eq!(failure, SmtpFailure::StartTlsNotOffered);
    assert!(!server.commands().iter().any(|c| c.starts_with("MAIL")), "{:?}", server.commands());
}

#[tokio::test]
async fn starttls_answered_454_is_transient() {
    let server = FaultSmtp::start(Script {
        capabilities: vec!["STARTTLS"],
        starttls: Answer::reply("454 4.7.0 TLS not available due to temporary reason"),
        ..Script::default()
    })
    .await;
    let target = with_tls(target("127.0.0.1", server.port), TlsMode::StartTls, MinTlsVersion::Tls12);
    let failure = fails("STARTTLS 454", &target, &config(), Transient, "try again later").await;
    assert!(matches!(failure, SmtpFailure::Rejected { step: Step::StartTls, code: 454, .. }), "{failure:?}");
}

#[tokio::test]
async fn starttls_followed_by_something_that_is_not_tls_is_a_handshake_failure() {
    let server = FaultSmtp::start(Script {
        capabilities: vec!["STARTTLS"],
        starttls: Answer::ReplyThenNotTls("220 2.0.0 Ready to start TLS".into()),
        ..Script::default()
    })
    .await;
    let target = with_tls(target("127.0.0.1", server.port), TlsMode::StartTls, MinTlsVersion::Tls12);
    let failure =
        fails("STARTTLS handshake garbage", &target, &config(), Configuration, "The TLS handshake failed").await;
    assert!(matches!(failure, SmtpFailure::TlsHandshake { .. }), "{failure:?}");
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn starttls_to_a_tls_1_2_server_with_tls_1_3_required_has_no_common_version() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "starttls", tls12_only: true, ..Default::default() },
    );
    let target = with_tls(target("localhost", peer.port), TlsMode::StartTls, MinTlsVersion::Tls13);
    let failure =
        fails("STARTTLS TLS 1.3 vs 1.2-only", &target, &trusting(&certs), Configuration, "older TLS version").await;
    assert!(matches!(failure, SmtpFailure::TlsHandshake { .. }), "{failure:?}");
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn implicit_tls_to_a_tls_1_2_server_with_tls_1_3_required_has_no_common_version() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "implicit", tls12_only: true, ..Default::default() },
    );
    let target = with_tls(target("localhost", peer.port), TlsMode::Implicit, MinTlsVersion::Tls13);
    let failure =
        fails("implicit TLS 1.3 vs 1.2-only", &target, &trusting(&certs), Configuration, "older TLS version").await;
    assert!(matches!(failure, SmtpFailure::TlsHandshake { .. }), "{failure:?}");
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(dir.path(), Some(&certs), PeerOptions { mode: "implicit", ..Default::default() });
    let target = with_tls(target("localhost", peer.port), TlsMode::Implicit, MinTlsVersion::Tls12);
    let failure = fails("certificate: untrusted CA", &target, &config(), Configuration, "MAILROOM_SMTP_CA_FILE").await;
    assert_eq!(failure, SmtpFailure::InvalidCertificate { problem: CertProblem::UnknownIssuer });
    assert_no_debug_noise(&failure);
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["mail.example.com"], false);
    let peer = SmtpPeer::start(dir.path(), Some(&certs), PeerOptions { mode: "starttls", ..Default::default() });
    let target = with_tls(target("localhost", peer.port), TlsMode::StartTls, MinTlsVersion::Tls12);
    let failure = fails(
        "certificate: wrong name",
        &target,
        &trusting(&certs),
        Configuration,
        "host name on the server's certificate",
    )
    .await;
    assert_eq!(failure, SmtpFailure::InvalidCertificate { problem: CertProblem::WrongName });
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn a_ca_certificate_presented_as_the_servers_own_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["localhost", "127.0.0.1"], true);
    let peer = SmtpPeer::start(dir.path(), Some(&certs), PeerOptions { mode: "implicit", ..Default::default() });
    let target = with_tls(target("localhost", peer.port), TlsMode::Implicit, MinTlsVersion::Tls12);
    let failure = fails(
        "certificate: CA used as leaf",
        &target,
        &trusting(&certs),
        Configuration,
        "not the CA certificate itself",
    )
    .await;
    assert_eq!(failure, SmtpFailure::InvalidCertificate { problem: CertProblem::CaUsedAsLeaf });
    assert_eq!(failure.to_string(), "Invalid certificate: the server presents a CA certificate as its own");
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn implicit_tls_against_a_plain_port_is_a_mode_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let target = with_tls(target("localhost", peer.port), TlsMode::Implicit, MinTlsVersion::Tls12);
    let failure = fails("implicit TLS on a plain port", &target, &config(), Configuration, "speaks plain SMTP").await;
    assert_eq!(failure, SmtpFailure::TlsModeMismatch { port: peer.port, server_expects_tls: false });
    assert_no_debug_noise(&failure);
}

#[tokio::test]
async fn starttls_against_an_implicit_tls_port_is_a_mode_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let peer = SmtpPeer::start(dir.path(), Some(&certs), PeerOptions { mode: "implicit", ..Default::default() });
    let target = with_tls(target("localhost", peer.port), TlsMode::StartTls, MinTlsVersion::Tls12);
    let failure =
        fails("STARTTLS on an implicit TLS port", &target, &trusting(&certs), Configuration, "expects implicit TLS")
            .await;
    assert_eq!(failure, SmtpFailure::TlsModeMismatch { port: peer.port, server_expects_tls: true });
    assert_no_debug_noise(&failure);
}

// Logging in.

#[tokio::test]
async fn a_wrong_password_is_a_535_and_a_configuration_problem() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions { auth: "PLAIN,LOGIN", ..Default::default() });
    let target = with_login(target("localhost", peer.port), "not-the-password");
    let failure = fails("AUTH 535", &target, &config(), Configuration, "check the Username and Password").await;
    assert!(matches!(failure, SmtpFailure::AuthRejected { code: 535, .. }), "{failure:?}");
}

#[tokio::test]
async fn smtp_auth_disabled_for_the_tenant_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(
        dir.path(),
        None,
        PeerOptions {
            auth: "PLAIN,LOGIN",
            auth_fail_text: Some(
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            ),
            ..Default::default()
        },
    );
    let target = with_login(target("localhost", peer.port), "not-the-password");
    let failure = fails("AUTH 535 5.7.139", &target, &config(), Configuration, "SMTP AUTH disabled").await;
    assert!(matches!(failure, SmtpFailure::AuthRejected { code: 535, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_454_to_auth_is_transient() {
    let server = FaultSmtp::start(Script {
        capabilities: vec!["AUTH PLAIN LOGIN"],
        auth: Answer::reply("454 4.7.0 Temporary authentication failure"),
        ..Script::default()
    })
    .await;
    let target = with_login(target("127.0.0.1", server.port), SMTP_PASSWORD);
    let failure = fails("AUTH 454", &target, &config(), Transient, "could not check the login just now").await;
    assert!(matches!(failure, SmtpFailure::AuthRejected { code: 454, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_token_the_server_refuses_is_an_xoauth2_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = OAuthPeer::start(dir.path(), None).await;
    let target =
        with_oauth(target("localhost", oauth.smtp.port), &oauth.endpoint.url("/token-other"), CLIENT_SECRET, SCOPE);
    let failure = fails("XOAUTH2 refused", &target, &config(), Configuration, "refused the OAuth 2.0 token").await;
    assert!(matches!(failure, SmtpFailure::XOAuth2Rejected { .. }), "{failure:?}");
}

// The token endpoint.

/// An SMTP server offering XOAUTH2 that must never be reached: the token comes first.
async fn oauth_server() -> FaultSmtp {
    FaultSmtp::start(Script { capabilities: vec!["AUTH XOAUTH2"], ..Script::default() }).await
}

#[tokio::test]
async fn a_wrong_scope_is_an_invalid_scope_from_the_token_endpoint() {
    let (server, endpoint) = (oauth_server().await, TokenEndpoint::start().await);
    let target = with_oauth(target("127.0.0.1", server.port), &endpoint.url("/token"), CLIENT_SECRET, "wrong-scope");
    let failure =
        fails("token endpoint 400 invalid_scope", &target, &config(), Configuration, "rejected the Scope").await;
    assert!(matches!(failure, SmtpFailure::TokenEndpoint(TokenFailure::InvalidScope(_))), "{failure:?}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_client_from_the_token_endpoint() {
    let (server, endpoint) = (oauth_server().await, TokenEndpoint::start().await);
    let target = with_oauth(target("127.0.0.1", server.port), &endpoint.url("/token"), "wrong-secret", SCOPE);
    let failure =
        fails("token endpoint 401 invalid_client", &target, &config(), Configuration, "rejected the client").await;
    assert!(matches!(failure, SmtpFailure::TokenEndpoint(TokenFailure::InvalidClient(_))), "{failure:?}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_500_from_the_token_endpoint_is_transient() {
    let (server, endpoint) = (oauth_server().await, TokenEndpoint::start().await);
    let target = with_oauth(target("127.0.0.1", server.port), &endpoint.url("/token-500"), CLIENT_SECRET, SCOPE);
    let failure = fails("token endpoint 500", &target, &config(), Transient, "will retry").await;
    assert_eq!(failure, SmtpFailure::TokenEndpoint(TokenFailure::HttpStatus(500)));
}

#[tokio::test]
async fn an_html_page_from_the_token_endpoint_is_a_configuration_problem() {
    let (server, endpoint) = (oauth_server().await, TokenEndpoint::start().await);
    let target = with_oauth(target("127.0.0.1", server.port), &endpoint.url("/token-html"), CLIENT_SECRET, SCOPE);
    let failure = fails(
        "token endpoint HTML",
        &target,
        &config(),
        Configuration,
        "does not look like an OAuth 2.0 token endpoint",
    )
    .await;
    assert_eq!(failure, SmtpFailure::TokenEndpoint(TokenFailure::NotJson { status: 200 }));
}

#[tokio::test]
async fn a_slow_token_endpoint_times_out() {
    let (server, endpoint) = (oauth_server().await, TokenEndpoint::start().await);
    let target = with_oauth(target("127.0.0.1", server.port), &endpoint.url("/token-slow"), CLIENT_SECRET, SCOPE);
    let failure =
        fails("token endpoint slow", &target, &config(), Transient, "during the OAuth 2.0 token request").await;
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::TokenRequest, secs: 1 }), "{failure:?}");
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_transient() {
    let server = oauth_server().await;
    let url = format!("http://127.0.0.1:{}/token", closed_port());
    let target = with_oauth(target("127.0.0.1", server.port), &url, CLIENT_SECRET, SCOPE);
    let failure = fails("token endpoint unreachable", &target, &config(), Transient, "could not be reached").await;
    assert!(matches!(failure, SmtpFailure::TokenEndpoint(TokenFailure::Unreachable(_))), "{failure:?}");
}

// The transaction.

#[tokio::test]
async fn a_451_to_mail_from_is_transient() {
    let server =
        FaultSmtp::start(Script { mail: Answer::reply("451 4.3.0 Temporary lookup failure"), ..Script::default() })
            .await;
    let failure = fails("MAIL 451", &target("127.0.0.1", server.port), &config(), Transient, "try again later").await;
    assert!(matches!(failure, SmtpFailure::SenderRejected { code: 451, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_550_to_mail_from_is_a_refused_sender() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(
        dir.path(),
        None,
        PeerOptions { reject_sender: Some("mail@example.com"), ..Default::default() },
    );
    let failure =
        fails("MAIL 550", &target("localhost", peer.port), &config(), Configuration, "refused the sender").await;
    assert!(matches!(failure, SmtpFailure::SenderRejected { code: 550, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_421_to_mail_from_is_a_busy_server() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions { tempfail_first: 1, ..Default::default() });
    let failure =
        fails("MAIL 421", &target("localhost", peer.port), &config(), Transient, "busy or closing (421)").await;
    assert!(matches!(failure, SmtpFailure::ServiceUnavailable { code: 421, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_server_silent_after_mail_from_times_out_there() {
    let server = FaultSmtp::start(Script { mail: Answer::Silent, ..Script::default() }).await;
    let failure =
        fails("silent after MAIL", &target("127.0.0.1", server.port), &config(), Transient, "during MAIL FROM").await;
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::MailFrom, secs: 1 }), "{failure:?}");
}

#[tokio::test]
async fn a_450_to_rcpt_to_is_transient() {
    let server = FaultSmtp::start(Script {
        rcpt: Answer::reply("450 4.2.0 Mailbox temporarily unavailable"),
        ..Script::default()
    })
    .await;
    let failure = fails("RCPT 450", &target("127.0.0.1", server.port), &config(), Transient, "try again later").await;
    assert!(matches!(failure, SmtpFailure::RecipientRejected { code: 450, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_550_to_rcpt_to_is_a_refused_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(
        dir.path(),
        None,
        PeerOptions { reject_recipient: Some("someone@example.com"), ..Default::default() },
    );
    let failure =
        fails("RCPT 550", &target("localhost", peer.port), &config(), Recipient, "refused the recipient").await;
    assert!(matches!(failure, SmtpFailure::RecipientRejected { code: 550, .. }), "{failure:?}");
}

#[tokio::test]
async fn a_554_to_the_data_command_refuses_the_message() {
    let server =
        FaultSmtp::start(Script { data: Answer::reply("554 5.5.1 No valid recipients"), ..Script::default() }).await;
    let failure =
        fails("DATA command 554", &target("127.0.0.1", server.port), &config(), Recipient, "its answer says why").await;
    assert!(matches!(failure, SmtpFailure::Rejected { step: Step::Data, code: 554, .. }), "{failure:?}");
}

async fn after_dot(case: &str, reply: &str, class: FailureClass, hint: &str, code: u16) {
    let server = FaultSmtp::start(Script { after_dot: Answer::reply(reply), ..Script::default() }).await;
    let failure = fails(case, &target("127.0.0.1", server.port), &config(), class, hint).await;
    assert!(matches!(failure, SmtpFailure::Rejected { step: Step::Data, code: c, .. } if c == code), "{failure:?}");
    assert_eq!(server.messages(), 1);
}

#[tokio::test]
async fn a_452_to_the_end_of_data_is_transient() {
    after_dot("end of DATA 452", "452 4.3.1 Insufficient system storage", Transient, "try again later", 452).await;
}

#[tokio::test]
async fn a_552_to_the_end_of_data_refuses_the_message() {
    after_dot("end of DATA 552", "552 5.3.4 Message size exceeds fixed limit", Recipient, "its answer says why", 552)
        .await;
}

#[tokio::test]
async fn a_554_to_the_end_of_data_refuses_the_message() {
    after_dot("end of DATA 554", "554 5.7.1 Message rejected as spam", Recipient, "its answer says why", 554).await;
}

#[tokio::test]
async fn a_server_silent_after_the_final_dot_times_out_in_data() {
    let server = FaultSmtp::start(Script { after_dot: Answer::Silent, ..Script::default() }).await;
    let failure = fails(
        "silent after end of DATA",
        &target("127.0.0.1", server.port),
        &config(),
        Transient,
        "during sending the message",
    )
    .await;
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::Data, secs: 1 }), "{failure:?}");
    assert_eq!(server.messages(), 1);
}

#[tokio::test]
async fn a_disconnect_before_the_final_dot_loses_the_connection() {
    let server = FaultSmtp::start(Script { close_before_dot: true, ..Script::default() }).await;
    let failure = fails(
        "disconnect before the final dot",
        &target("127.0.0.1", server.port),
        &config(),
        Transient,
        "closed the connection",
    )
    .await;
    assert_eq!(failure, SmtpFailure::ConnectionLost { step: Step::Data });
    assert_eq!(server.messages(), 0);
}

#[tokio::test]
async fn a_disconnect_after_the_final_dot_loses_the_connection() {
    let server = FaultSmtp::start(Script { after_dot: Answer::Close, ..Script::default() }).await;
    let failure = fails(
        "disconnect after the final dot",
        &target("127.0.0.1", server.port),
        &config(),
        Transient,
        "closed the connection",
    )
    .await;
    assert_eq!(failure, SmtpFailure::ConnectionLost { step: Step::Data });
    assert_eq!(server.messages(), 1);
}

// The pooled path.

async fn pooled(server: &FaultSmtp) -> Mailer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Mailer::smtp(target("127.0.0.1", server.port), Arc::new(TokenCache::default()), 1)
}

#[tokio::test]
async fn a_pooled_connection_dropped_while_idle_is_replaced_and_the_message_sent_once() {
    let server =
        FaultSmtp::start(Script { close_when_idle: Some(Duration::from_millis(100)), ..Script::default() }).await;
    let mailer = pooled(&server).await;
    mailer.send(&message("pooled first"), &config()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let started = Instant::now();
    mailer.send(&message("pooled second"), &config()).await.unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "FAULT | {:<44} | {:<13} | {:>5} ms | delivered on a fresh connection",
        "pool: reused after idle drop",
        "-",
        elapsed.as_millis()
    );
    assert!(elapsed < OVERALL + MARGIN, "{elapsed:?}");
    assert_eq!(server.messages_containing("pooled second"), 1);
    assert_eq!(server.connections(), 2, "{:?}", server.commands());
}

#[tokio::test]
async fn a_pooled_connection_that_stops_answering_before_the_message_is_replaced() {
    let server = FaultSmtp::start(Script { mail: Answer::Silent, faulty_from: 1, ..Script::default() }).await;
    let mailer = pooled(&server).await;
    mailer.send(&message("pooled first"), &config()).await.unwrap();

    let started = Instant::now();
    let result = mailer.send(&message("pooled second"), &config()).await;
    let elapsed = started.elapsed();
    let outcome = result.as_ref().map_or_else(ToString::to_string, |()| "delivered on a fresh connection".into());
    eprintln!(
        "FAULT | {:<44} | {:<13} | {:>5} ms | {outcome}",
        "pool: reused, silent at MAIL",
        "-",
        elapsed.as_millis()
    );
    assert!(result.is_ok(), "{result:?}");
    assert!(elapsed < STEP + MARGIN, "one step limit for the stale connection, then a fresh one: {elapsed:?}");
    assert_eq!(server.messages_containing("pooled second"), 1);
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_pooled_message_lost_after_its_final_dot_is_not_sent_again() {
    let server = FaultSmtp::start(Script { after_dot: Answer::Close, faulty_from: 1, ..Script::default() }).await;
    let mailer = pooled(&server).await;
    mailer.send(&message("pooled first"), &config()).await.unwrap();

    let started = Instant::now();
    let failure = mailer.send(&message("pooled lost"), &config()).await.expect_err("the dot went out");
    let elapsed = started.elapsed();
    report("pool: disconnect after the final dot", &failure, elapsed);
    assert!(elapsed < OVERALL + MARGIN, "{elapsed:?}");
    assert_eq!(failure, SmtpFailure::ConnectionLost { step: Step::Data });
    assert_eq!(failure.class(), Transient);
    assert_eq!(server.messages_containing("pooled lost"), 1, "sent once, not again");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_pooled_message_unanswered_after_its_final_dot_is_not_sent_again() {
    let server = FaultSmtp::start(Script { after_dot: Answer::Silent, faulty_from: 1, ..Script::default() }).await;
    let mailer = pooled(&server).await;
    mailer.send(&message("pooled first"), &config()).await.unwrap();

    let started = Instant::now();
    let failure = mailer.send(&message("pooled unanswered"), &config()).await.expect_err("no answer to the dot");
    let elapsed = started.elapsed();
    report("pool: silent after the final dot", &failure, elapsed);
    assert!(elapsed < OVERALL + MARGIN, "{elapsed:?}");
    // The step's limit, not the overall one: closing the connection must not wait for an answer.
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::Data, secs: 1 }), "{failure:?}");
    assert_timed_as_reported("pool: silent after the final dot", &failure, elapsed);
    assert_eq!(server.messages_containing("pooled unanswered"), 1, "sent once, not again");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_pooled_message_unanswered_on_a_fresh_connection_times_out_in_data() {
    let server = FaultSmtp::start(Script { after_dot: Answer::Silent, ..Script::default() }).await;
    let mailer = pooled(&server).await;

    let started = Instant::now();
    let failure = mailer.send(&message("pooled fresh"), &config()).await.expect_err("no answer to the dot");
    let elapsed = started.elapsed();
    report("pool: fresh connection silent after dot", &failure, elapsed);
    assert!(elapsed < OVERALL + MARGIN, "{elapsed:?}");
    // The step's limit, not the overall one: closing the connection must not wait for an answer.
    assert!(matches!(failure, SmtpFailure::Timeout { step: Step::Data, secs: 1 }), "{failure:?}");
    assert_timed_as_reported("pool: fresh connection silent after dot", &failure, elapsed);
    assert_eq!(server.messages_containing("pooled fresh"), 1, "sent once, not again");
    assert_eq!(server.connections(), 1);
}
