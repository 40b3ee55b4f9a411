//! Transports. Every network step runs under its own `tokio::time::timeout` (lettre's own
//! timeout covers only the TCP connect) and the whole delivery under an overall limit, so
//! nothing hangs. Failures are classified into [`SmtpFailure`] at the step where they happen.
//!
//! This file opens a connection step by step (connect, TLS, AUTH); what a target is lives in
//! `target.rs`, the message in `message.rs`, sending one on an open connection in `transmit.rs`.

pub mod address_policy;
mod classify;
mod client_cert_probe;
mod default_service;
mod ehlo_tap;
mod google;
pub mod mailbox;
pub mod mailer;
mod message;
pub mod oauth;
pub mod target;
mod transmit;

pub use mailer::{Mailer, MailerCache};
pub use message::{OutgoingMessage, new_message_id};
pub use target::{ClientIdentity, MailConfig, SmtpTarget, TargetAuth, Trust, relay_target, resolve_checked};
pub use transmit::transmit;

use super::{SmtpFailure, Step};
use crate::smtp_settings::types::{MinTlsVersion, SmtpHost, TlsMode};
pub use classify::excerpt;
use classify::{classify, classify_connect, classify_response};
use lettre::transport::smtp::{
    authentication::{Credentials, Mechanism},
    client::{AsyncSmtpConnection, Certificate, Identity, TlsParameters, TlsVersion},
    commands::Ehlo,
    extension::ClientId,
    response::Response,
};
use secrecy::{ExposeSecret, SecretString};
use std::{
    future::Future,
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU8, Ordering},
    time::Duration,
};

/// How far one delivery got: the step it is in (an overall timeout names it) and whether the
/// message's final dot may have been written — after which sending again could deliver twice.
#[derive(Debug, Default)]
pub struct Progress {
    step: AtomicU8,
    dot_maybe_written: AtomicBool,
}

impl Progress {
    pub fn step(&self) -> Step {
        Step::from_index(self.step.load(Ordering::Relaxed))
    }

    fn enter(&self, step: Step) {
        self.step.store(step.index(), Ordering::Relaxed);
    }

    /// True once the message body (and its final dot) started going out.
    pub fn dot_maybe_written(&self) -> bool {
        self.dot_maybe_written.load(Ordering::Relaxed)
    }

    /// The timeout of the whole delivery, at the step it reached.
    pub fn timed_out(&self, limit: Duration) -> SmtpFailure {
        SmtpFailure::Timeout { step: self.step(), secs: limit.as_secs().max(1) }
    }
}

pub fn tls_parameters(
    host: &SmtpHost,
    min: MinTlsVersion,
    config: &MailConfig,
    trust: &Trust,
) -> Result<TlsParameters, SmtpFailure> {
    let mut builder = TlsParameters::builder(host.to_string()).set_min_tls_version(match min {
        MinTlsVersion::Tls12 => TlsVersion::Tlsv12,
        MinTlsVersion::Tls13 => TlsVersion::Tlsv13,
    });
    if let Some(pem) = &config.ca_pem {
        let certificate = Certificate::from_pem(pem).map_err(|err| SmtpFailure::Unusable {
            detail: format!("MAILROOM_SMTP_CA_FILE is not a PEM certificate: {err}"),
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    for root in &trust.roots {
        let certificate = Certificate::from_der(root.to_vec()).map_err(|err| SmtpFailure::Unusable {
            detail: format!("a saved trusted CA certificate cannot be used: {err}"),
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    if let Some(client) = &trust.client {
        // lettre 0.11's rustls `Identity::from_pem` takes the certificate as DER (one
        // certificate) despite its name, and the key as PEM.
        let identity =
            Identity::from_pem(client.cert.as_ref(), client.key_pem.expose_secret().as_bytes()).map_err(|err| {
                SmtpFailure::Unusable { detail: format!("the saved client certificate cannot be used: {err}") }
            })?;
        builder = builder.identify_with(identity);
    }
    builder.build_rustls().map_err(|err| match find_tls(&err) {
        Some(tls) => classify::classify_tls(tls, false, 0),
        None => SmtpFailure::Unusable { detail: "the TLS settings cannot be used".into() },
    })
}

fn find_tls(err: &lettre::transport::smtp::Error) -> Option<&rustls::Error> {
    classify::find::<rustls::Error>(err)
}

fn hello_name() -> ClientId {
    ClientId::Domain("mailroom.localhost".into())
}

async fn step<T>(
    progress: &Progress,
    step: Step,
    limit: Duration,
    work: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    target: &SmtpTarget,
) -> Result<T, SmtpFailure> {
    progress.enter(step);
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(classify(&err, step, target, limit.as_secs().max(1))),
        Err(_) => Err(SmtpFailure::Timeout { step, secs: limit.as_secs().max(1) }),
    }
}

/// Connects, secures, logs in and — when `message` is given — sends it, one step at a time.
/// Without a message this is the check that a configuration works (no mail is sent).
pub async fn deliver(
    target: &SmtpTarget,
    config: &MailConfig,
    tokens: &oauth::TokenCache,
    message: Option<&OutgoingMessage>,
) -> Result<(), SmtpFailure> {
    let overall = config.overall_timeout;
    let progress = Progress::default();
    match tokio::time::timeout(overall, deliver_steps(target, config, tokens, message, &progress)).await {
        Ok(result) => result,
        Err(_) => Err(progress.timed_out(overall)),
    }
}

async fn deliver_steps(
    target: &SmtpTarget,
    config: &MailConfig,
    tokens: &oauth::TokenCache,
    message: Option<&OutgoingMessage>,
    progress: &Progress,
) -> Result<(), SmtpFailure> {
    // One message on a connection of its own: a second EHLO for PIPELINING (after STARTTLS)
    // would cost a round trip of the two it saves; a plain connection knows it at no cost.
    let mut conn = open(target, config, tokens, progress, Extensions::Assume).await?;
    if let Some(message) = message {
        transmit(&mut conn, message, target, config.step_timeout, progress).await?;
    }
    // The answer is known: QUIT and its reply go on while the caller records it.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_WAIT, conn.smtp.quit()).await;
    });
    Ok(())
}

/// An open connection, and what its server offers that lettre does not track.
pub struct Connection {
    pub smtp: AsyncSmtpConnection,
    /// The server advertised PIPELINING (RFC 2920): MAIL, RCPT and DATA go out in one write.
    pub pipelining: bool,
}

/// Whether [`open`] asks the server for its extensions once more where it could not read them
/// on the way in (lettre keeps only the ones it uses, and PIPELINING is not among them). A plain
/// connection keeps the first EHLO reply as it is read, so it never asks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Extensions {
    /// A second EHLO before AUTH, read for PIPELINING: worth it on a connection that is kept.
    Ask,
    /// No extra round trip: over TLS the connection is used step by step.
    Assume,
}

/// Connects, secures and logs in, one step at a time: a connection ready for MAIL FROM.
pub async fn open(
    target: &SmtpTarget,
    config: &MailConfig,
    tokens: &oauth::TokenCache,
    progress: &Progress,
    extensions: Extensions,
) -> Result<Connection, SmtpFailure> {
    let limit = config.step_timeout;
    // The token first: a bad client must not cost an SMTP connection.
    progress.enter(Step::TokenRequest);
    let mut token = match &target.auth {
        TargetAuth::OAuth2 { .. } | TargetAuth::Google { .. } => Some(tokens.token(target, config, false).await?),
        TargetAuth::None | TargetAuth::Basic { .. } => None,
    };
    progress.enter(Step::Connect);
    let addresses =
        resolve_checked(&config.address_policy, &target.host.to_string(), target.port, config.step_timeout).await?;
    let implicit = target.tls.enabled && target.tls.mode == TlsMode::Implicit;
    let tls = if target.tls.enabled {
        Some(tls_parameters(&target.host, target.tls.min_version, config, &target.trust)?)
    } else {
        None
    };

    let hello = hello_name();
    let first_step = if implicit { Step::TlsHandshake } else { Step::Greeting };
    let connected = if target.tls.enabled {
        let connect = AsyncSmtpConnection::connect_tokio1(
            addresses.as_slice(),
            Some(limit),
            &hello,
            if implicit { tls.clone() } else { None },
            None,
        );
        step(progress, first_step, limit + Duration::from_secs(1), connect, target).await.map(|conn| (conn, None))
    } else {
        connect_plain(&addresses, limit, &hello, progress, target).await.map(|(conn, seen)| (conn, Some(seen)))
    };
    let (mut conn, seen) = match connected {
        Ok(connected) => connected,
        Err(SmtpFailure::Timeout { step: Step::Greeting, secs }) => {
            // Silence after connecting: an implicit-TLS port waits for our ClientHello.
            return Err(if speaks_tls(target, config, &addresses).await {
                SmtpFailure::TlsModeMismatch { port: target.port, server_expects_tls: true }
            } else {
                SmtpFailure::Timeout { step: Step::Greeting, secs }
            });
        }
        Err(failure @ SmtpFailure::TlsHandshake { .. }) if implicit => {
            return Err(client_certificate_or(failure, target, config, &addresses).await);
        }
        Err(failure) => return Err(failure),
    };

    if target.tls.enabled && !implicit {
        if !conn.can_starttls() {
            hang_up(&mut conn).await;
            return Err(SmtpFailure::StartTlsNotOffered);
        }
        let params = tls.clone().expect("TLS parameters exist when TLS is enabled");
        match step(progress, Step::StartTls, limit, conn.starttls(params, &hello), target).await {
            Err(failure @ SmtpFailure::TlsHandshake { .. }) => {
                return Err(client_certificate_or(failure, target, config, &addresses).await);
            }
            other => other?,
        }
    }
    let pipelining = match (seen, extensions) {
        // The reply lettre read on a plain connection, kept on the way in: no extra round trip.
        (Some(seen), _) => advertises(ehlo_tap::ehlo_lines(&seen), "PIPELINING"),
        // Asked before AUTH: an EHLO after it may end the authenticated session on some servers.
        (None, Extensions::Ask) => advertises(
            step(progress, Step::Greeting, limit, conn.command(Ehlo::new(hello.clone())), target).await?.message(),
            "PIPELINING",
        ),
        (None, Extensions::Assume) => false,
    };

    match &target.auth {
        TargetAuth::None => {}
        TargetAuth::Basic { username, password } => {
            let credentials = Credentials::new(username.clone(), password.expose_secret().to_owned());
            let offered = offered_mechanisms(&conn);
            if !offered.iter().any(|m| m == "PLAIN" || m == "LOGIN") {
                hang_up(&mut conn).await;
                return Err(SmtpFailure::NoCommonAuthMechanism { offered: offered.join(" ") });
            }
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            step(progress, Step::Auth, limit, conn.auth(&mechanisms, &credentials), target).await?;
        }
        TargetAuth::OAuth2 { username, .. } | TargetAuth::Google { send_as: username, .. } => {
            if !offered_mechanisms(&conn).iter().any(|m| m == "XOAUTH2") {
                let offered = offered_mechanisms(&conn).join(" ");
                hang_up(&mut conn).await;
                return Err(SmtpFailure::NoCommonAuthMechanism { offered });
            }
            progress.enter(Step::Auth);
            let mut result = xoauth2(&mut conn, username, token.as_ref().expect("token fetched"), limit, target).await;
            if matches!(result, Err(SmtpFailure::XOAuth2Rejected { .. })) {
                // A token revoked early: fetch a fresh one once and try again.
                let fresh = tokens.token(target, config, true).await?;
                if token.as_ref().map(ExposeSecret::expose_secret) != Some(fresh.expose_secret()) {
                    token = Some(fresh);
                    result = xoauth2(&mut conn, username, token.as_ref().expect("token"), limit, target).await;
                }
            }
            result?;
        }
    }

    Ok(Connection { smtp: conn, pipelining })
}

/// Whether the lines of an EHLO reply list `keyword` (the first word of a line after the one
/// that names the server).
fn advertises<'a>(mut lines: impl Iterator<Item = &'a str>, keyword: &str) -> bool {
    lines.next();
    lines.any(|line| line.split_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case(keyword)))
}

/// Connects in the clear, reads the greeting and says EHLO, under one limit as lettre's own
/// connect would (the TCP connect of each address within `limit`); also answers what lettre
/// read, for the extensions it does not keep. Our own socket has Nagle off.
async fn connect_plain(
    addresses: &[SocketAddr],
    limit: Duration,
    hello: &ClientId,
    progress: &Progress,
    target: &SmtpTarget,
) -> Result<(AsyncSmtpConnection, Vec<u8>), SmtpFailure> {
    progress.enter(Step::Greeting);
    let overall = limit + Duration::from_secs(1);
    let secs = overall.as_secs().max(1);
    let work = async {
        let stream = ehlo_tap::connect(addresses, limit).await.map_err(|err| classify_connect(&err, target, secs))?;
        let (stream, seen) = ehlo_tap::Tapped::new(stream);
        let conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), hello)
            .await
            .map_err(|err| classify(&err, Step::Greeting, target, secs))?;
        Ok((conn, seen.take()))
    };
    match tokio::time::timeout(overall, work).await {
        Ok(result) => result,
        Err(_) => Err(SmtpFailure::Timeout { step: Step::Greeting, secs }),
    }
}

/// How long a polite QUIT waits for the server's 221: the work is done by then.
pub const QUIT_WAIT: Duration = Duration::from_secs(1);

/// Ends a connection without waiting long: lettre's `abort` sends QUIT and waits for the
/// reply, which a silent server never sends.
pub async fn hang_up(conn: &mut AsyncSmtpConnection) {
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.abort()).await;
}

fn check_positive(response: Response, step: Step) -> Result<(), SmtpFailure> {
    if response.is_positive() { Ok(()) } else { Err(classify_response(&response, step)) }
}

fn offered_mechanisms(conn: &AsyncSmtpConnection) -> Vec<String> {
    let info = conn.server_info();
    [("PLAIN", Mechanism::Plain), ("LOGIN", Mechanism::Login), ("XOAUTH2", Mechanism::Xoauth2)]
        .into_iter()
        .filter(|(_, m)| info.supports_auth_mechanism(*m))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// `AUTH XOAUTH2` by hand, so a 334 challenge (the provider's JSON reason) reaches the admin.
async fn xoauth2(
    conn: &mut AsyncSmtpConnection,
    username: &str,
    token: &SecretString,
    limit: Duration,
    target: &SmtpTarget,
) -> Result<(), SmtpFailure> {
    use base64::{Engine, engine::general_purpose::STANDARD as B64};
    let initial = B64.encode(format!("user={username}\x01auth=Bearer {}\x01\x01", token.expose_secret()));
    let command = conn.command(format!("AUTH XOAUTH2 {initial}\r\n"));
    let response = step(&Progress::default(), Step::Auth, limit, command, target).await;
    let response = match response {
        Ok(response) => response,
        Err(SmtpFailure::AuthRejected { text, .. }) => return Err(SmtpFailure::XOAuth2Rejected { text }),
        Err(other) => return Err(other),
    };
    // 235 is success; 334 (also "positive") carries the provider's reason for refusing the token.
    if response.code().to_string().starts_with('2') {
        return Ok(());
    }
    let challenge = response.message().collect::<Vec<_>>().join(" ");
    let text = excerpt(&B64.decode(challenge.trim()).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or(challenge));
    // The client answers the challenge with an empty line; the server then says 535.
    let _ = tokio::time::timeout(limit, conn.command("\r\n")).await;
    Err(SmtpFailure::XOAuth2Rejected { text })
}

/// A failed handshake with a server that asks for a client certificate is about that
/// certificate: none was given, or the one given was not accepted.
async fn client_certificate_or(
    failure: SmtpFailure,
    target: &SmtpTarget,
    config: &MailConfig,
    addresses: &[SocketAddr],
) -> SmtpFailure {
    if client_cert_probe::asks_for_client_certificate(target, config, addresses).await {
        SmtpFailure::ClientCertificate { missing: target.trust.client.is_none() }
    } else {
        failure
    }
}

/// Whether the port completes a TLS handshake (certificate not checked: only the mode matters).
async fn speaks_tls(target: &SmtpTarget, config: &MailConfig, addresses: &[SocketAddr]) -> bool {
    let Ok(params) = TlsParameters::builder(target.host.to_string())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
    else {
        return false;
    };
    let hello = hello_name();
    let probe = AsyncSmtpConnection::connect_tokio1(addresses, Some(config.step_timeout), &hello, Some(params), None);
    matches!(tokio::time::timeout(config.step_timeout, probe).await, Ok(Ok(_)))
}
