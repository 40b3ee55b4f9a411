//! Transports. Every network step runs under its own `tokio::time::timeout` (lettre's own
//! timeout covers only the TCP connect) and the whole delivery under an overall limit, so
//! nothing hangs. Failures are classified into [`SmtpFailure`] at the step where they happen.

pub mod address_policy;
mod classify;
mod client_cert_probe;
mod google;
pub mod mailbox;
mod mailer;
pub mod oauth;

pub use mailer::{Mailer, MailerCache};

use super::{SmtpFailure, Step};
use crate::smtp_settings::types::{MinTlsVersion, SmtpHost, Tls, TlsMode};
use address_policy::{AddressPolicy, ResolveError};
pub use classify::excerpt;
use classify::{classify, classify_response};
use lettre::{
    Address,
    message::{Mailbox, Message, MultiPart, header::ContentType},
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, Certificate, Identity, TlsParameters, TlsVersion},
        commands::{Data, Ehlo, Mail, Rcpt},
        extension::ClientId,
        response::Response,
    },
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

/// How Mailroom talks SMTP on this deployment.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// Extra trusted CA certificates (PEM) for private relays, on top of the web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The limit for one whole delivery or check.
    pub overall_timeout: Duration,
    /// The limit for each step (connect, greeting, TLS, AUTH, each command).
    pub step_timeout: Duration,
    /// `MAILROOM_DEFAULT_SMTP_URL`: the relay behind "Use default email settings".
    pub default_relay: Option<SmtpTarget>,
    /// Which addresses SMTP servers, token endpoints and the relay may resolve to.
    pub address_policy: AddressPolicy,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            ca_pem: None,
            overall_timeout: Duration::from_secs(20),
            step_timeout: Duration::from_secs(10),
            default_relay: None,
            address_policy: AddressPolicy::default(),
        }
    }
}

/// How to log in.
#[derive(Clone)]
pub enum TargetAuth {
    None,
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth2 {
        username: String,
        client_id: String,
        client_secret: SecretString,
        token_url: crate::smtp_settings::types::TokenUrl,
        scopes: Vec<String>,
    },
    /// A Google service account: a JWT signed with its key buys the token (RFC 7523).
    Google {
        send_as: String,
        client_email: String,
        token_url: crate::smtp_settings::types::TokenUrl,
        private_key: SecretString,
    },
}

impl TargetAuth {
    /// The mailbox `AUTH XOAUTH2` logs in as, when this login needs an access token.
    pub fn xoauth2_user(&self) -> Option<&str> {
        match self {
            Self::OAuth2 { username, .. } => Some(username),
            Self::Google { send_as, .. } => Some(send_as),
            Self::None | Self::Basic { .. } => None,
        }
    }
}

/// What TLS trusts beyond the web roots, and presents, for one target: the CAs and client
/// certificate saved on the SMTP page (`MAILROOM_SMTP_CA_FILE` is added for every target).
#[derive(Clone, Default)]
pub struct Trust {
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub client: Option<ClientIdentity>,
}

/// A client certificate (its leaf) and its private key (PEM) for relays that require mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert: rustls::pki_types::CertificateDer<'static>,
    pub key_pem: SecretString,
}

/// One SMTP server with everything needed to reach it.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: SmtpHost,
    pub port: u16,
    pub tls: Tls,
    pub auth: TargetAuth,
    pub trust: Trust,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpTarget({}:{}, tls={:?})", self.host, self.port, self.tls)
    }
}

/// `MAILROOM_DEFAULT_SMTP_URL` as a target for the step-wise sender: `smtps://` is implicit TLS
/// (port 465), `smtp://…?tls=required` STARTTLS (587), plain `smtp://` no TLS (25); a user and
/// password in the URL (percent-encoded) log in with AUTH PLAIN or LOGIN.
pub fn relay_target(text: &str) -> Result<SmtpTarget, String> {
    let url = url::Url::parse(text).map_err(|err| format!("not a URL ({err})"))?;
    let name = url.host_str().filter(|h| !h.is_empty()).ok_or("names no host")?;
    let host = name.trim_matches(['[', ']']).parse::<SmtpHost>().map_err(|err| err.to_string())?;
    let tls = url.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
    let tls_on = |mode| Tls { enabled: true, min_version: MinTlsVersion::Tls12, mode };
    let (tls, default_port) = match (url.scheme(), tls.as_deref()) {
        ("smtps", None | Some("required")) => (tls_on(TlsMode::Implicit), 465),
        ("smtp", Some("required")) => (tls_on(TlsMode::StartTls), 587),
        ("smtp", None | Some("none")) => {
            (Tls { enabled: false, min_version: MinTlsVersion::Tls12, mode: TlsMode::StartTls }, 25)
        }
        (_, Some(other)) => {
            return Err(format!("tls={other} is not supported: use smtps://, or smtp://…?tls=required"));
        }
        (scheme, None) => return Err(format!("{scheme}:// is not supported: use smtp:// or smtps://")),
    };
    let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
    let username = decode(url.username());
    let auth = if username.is_empty() {
        TargetAuth::None
    } else {
        TargetAuth::Basic { username, password: SecretString::from(decode(url.password().unwrap_or_default())) }
    };
    Ok(SmtpTarget { host, port: url.port().unwrap_or(default_port), tls, auth, trust: Trust::default() })
}

/// [`AddressPolicy::resolve`] with its failures classified: the host is resolved once, every
/// address checked, and the connection goes to these addresses only (TLS still verifies the name).
pub async fn resolve_checked(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<Vec<SocketAddr>, SmtpFailure> {
    policy.resolve(host, port, limit).await.map_err(|err| match err {
        ResolveError::Dns => SmtpFailure::Dns { host: host.to_owned() },
        ResolveError::Timeout => SmtpFailure::Timeout { step: Step::Connect, secs: limit.as_secs().max(1) },
        ResolveError::Refused { address, refusal } => SmtpFailure::AddressRefused {
            host: host.to_owned(),
            address: address.to_string(),
            reason: refusal.reason().to_owned(),
            outside_allowed: refusal == address_policy::Refusal::NotAllowed,
        },
    })
}

/// A message to send: plain text and an optional HTML part.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    pub from: Mailbox,
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Kept from the outbox so a retried message keeps its Message-ID; generated when `None`.
    pub message_id: Option<String>,
}

impl OutgoingMessage {
    pub fn build(&self) -> Result<Message, SmtpFailure> {
        let builder = Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone().unwrap_or_else(new_message_id)));
        let built = match &self.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(self.text.clone(), html.clone())),
            None => builder.header(ContentType::TEXT_PLAIN).body(self.text.clone()),
        };
        built.map_err(|err| SmtpFailure::BadMessage { detail: format!("cannot build the message: {err}") })
    }
}

/// A globally unique Message-ID: 128 random bits at a name of our own.
pub fn new_message_id() -> String {
    format!("<{}@mailroom.localhost>", crate::auth::ssr::random_token(16))
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
    // One message on a connection of its own: asking for PIPELINING would cost the round trip
    // it saves.
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

/// Whether [`open`] asks the server for its extensions once more (lettre keeps only the ones it
/// uses, and PIPELINING is not among them).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Extensions {
    /// A second EHLO before AUTH, read for PIPELINING: worth it on a connection that is kept.
    Ask,
    /// No extra round trip; the connection is used step by step.
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
    let connect = AsyncSmtpConnection::connect_tokio1(
        addresses.as_slice(),
        Some(limit),
        &hello,
        if implicit { tls.clone() } else { None },
        None,
    );
    let first_step = if implicit { Step::TlsHandshake } else { Step::Greeting };
    let mut conn = match step(progress, first_step, limit + Duration::from_secs(1), connect, target).await {
        Ok(conn) => conn,
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
    // Asked before AUTH: an EHLO after it may end the authenticated session on some servers.
    let pipelining = match extensions {
        Extensions::Ask => advertises(
            &step(progress, Step::Greeting, limit, conn.command(Ehlo::new(hello.clone())), target).await?,
            "PIPELINING",
        ),
        Extensions::Assume => false,
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

/// Whether an EHLO reply lists `keyword` (the first word of a line after the greeting one).
fn advertises(ehlo: &Response, keyword: &str) -> bool {
    ehlo.message()
        .skip(1)
        .any(|line| line.split_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case(keyword)))
}

/// Sends one message on an open connection: MAIL, RCPT, DATA, each reply classified at its
/// step. With PIPELINING the three commands go out in one write and their replies are read in
/// order, so a message costs two round trips instead of four. `progress` tells a caller whether
/// the final dot may have gone out.
pub async fn transmit(
    conn: &mut Connection,
    message: &OutgoingMessage,
    target: &SmtpTarget,
    limit: Duration,
    progress: &Progress,
) -> Result<(), SmtpFailure> {
    let built = message.build()?;
    let envelope = built.envelope().clone();
    let bytes = built.formatted();
    let from: Option<Address> = envelope.from().cloned();
    let mail = Mail::new(from, vec![]);
    let rcpts: Vec<Rcpt> = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![])).collect();
    let smtp = &mut conn.smtp;
    if conn.pipelining {
        let commands: String = std::iter::once(mail.to_string())
            .chain(rcpts.iter().map(ToString::to_string))
            .chain(std::iter::once(Data.to_string()))
            .collect();
        pipelined(smtp, commands, rcpts.len(), target, limit, progress).await?;
    } else {
        check_positive(step(progress, Step::MailFrom, limit, smtp.command(mail), target).await?, Step::MailFrom)?;
        for rcpt in rcpts {
            check_positive(step(progress, Step::RcptTo, limit, smtp.command(rcpt), target).await?, Step::RcptTo)?;
        }
        check_positive(step(progress, Step::Data, limit, smtp.command(Data), target).await?, Step::Data)?;
    }
    progress.dot_maybe_written.store(true, Ordering::Relaxed);
    let response = match data_block(&bytes) {
        Some(block) => step(progress, Step::Data, limit, smtp.command(block), target).await?,
        None => step(progress, Step::Data, limit, smtp.message(&bytes), target).await?,
    };
    check_positive(response, Step::Data)
}

/// MAIL, the RCPTs and DATA written at once (RFC 2920), then every reply read, in order, so
/// the connection stays in step whatever the server refused. The first refusal is the answer.
/// A server that accepted DATA after refusing every recipient gets the lone dot it then
/// expects (section 3.1). Every message here has one recipient, so a refusal means no valid
/// recipient and the dot delivers nothing.
async fn pipelined(
    smtp: &mut AsyncSmtpConnection,
    commands: String,
    recipients: usize,
    target: &SmtpTarget,
    limit: Duration,
    progress: &Progress,
) -> Result<(), SmtpFailure> {
    let mut first_refusal = None;
    let mut take = |reply: Result<Response, SmtpFailure>, step: Step| -> Result<bool, SmtpFailure> {
        match reply.and_then(|response| check_positive(response, step)) {
            Ok(()) => Ok(true),
            Err(failure) if mailer::is_reply(&failure) => {
                first_refusal.get_or_insert(failure);
                Ok(false)
            }
            // The connection itself failed: nothing more to read. A refusal read before it
            // (421, closing) says more than the closed connection after it.
            Err(failure) => Err(first_refusal.take().unwrap_or(failure)),
        }
    };
    take(step(progress, Step::MailFrom, limit, smtp.command(commands), target).await, Step::MailFrom)?;
    for _ in 0..recipients {
        take(step(progress, Step::RcptTo, limit, smtp.read_response(), target).await, Step::RcptTo)?;
    }
    let data_accepted = take(step(progress, Step::Data, limit, smtp.read_response(), target).await, Step::Data)?;
    match first_refusal {
        None => Ok(()),
        Some(refusal) => {
            if data_accepted {
                let _ = step(progress, Step::Data, limit, smtp.command(".\r\n"), target).await;
            }
            Err(refusal)
        }
    }
}

/// The message dot-stuffed and terminated, as one write. lettre's `message()` writes the final
/// `.` line separately, and that small second segment waits out the peer's delayed ACK
/// (Nagle): about 40 ms per message on Linux. TCP_NODELAY would cure that too, but lettre opens
/// its sockets itself and offers no way to set it (its `connect_with_transport` takes our own
/// socket but then cannot do implicit TLS or STARTTLS), so one write it is. `None` for a body
/// that is not UTF-8.
fn data_block(message: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    String::from_utf8(out).ok()
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

#[cfg(test)]
mod tests {
    use super::{TargetAuth, TlsMode, data_block, relay_target};
    use secrecy::ExposeSecret;

    #[test]
    fn the_relay_url_becomes_a_step_wise_target() {
        let implicit = relay_target("smtps://relay%2Buser:p%40ss@relay.example.com").unwrap();
        assert_eq!((implicit.host.to_string().as_str(), implicit.port), ("relay.example.com", 465));
        assert!(implicit.tls.enabled && implicit.tls.mode == TlsMode::Implicit);
        let TargetAuth::Basic { username, password } = &implicit.auth else { panic!("basic auth") };
        assert_eq!((username.as_str(), password.expose_secret()), ("relay+user", "p@ss"));

        let starttls = relay_target("smtp://relay.example.com:2525?tls=required").unwrap();
        assert_eq!(starttls.port, 2525);
        assert!(starttls.tls.enabled && starttls.tls.mode == TlsMode::StartTls);
        assert!(matches!(starttls.auth, TargetAuth::None));

        let plain = relay_target("smtp://[::1]").unwrap();
        assert_eq!((plain.host.to_string().as_str(), plain.port, plain.tls.enabled), ("::1", 25, false));

        for bad in ["smtp://relay.example.com?tls=opportunistic", "http://relay.example.com", "smtp://", "not a url"] {
            assert!(relay_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_data_block_is_dot_stuffed_and_terminated_once() {
        assert_eq!(data_block(b"a\r\n.b\r\n..\r\nc").unwrap(), "a\r\n..b\r\n...\r\nc\r\n.\r\n");
        assert_eq!(data_block(b".start\r\n").unwrap(), "..start\r\n.\r\n");
        assert!(data_block(&[0xff, 0xfe]).is_none());
    }
}
