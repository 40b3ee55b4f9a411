//! Real peers for the sending tests: aiosmtpd (an independent SMTP implementation) in every
//! mode we support, an OAuth 2.0 token endpoint, and a scriptable tokio fake for faults.
//! Certificates are generated here, at test time.
#![allow(dead_code)]

pub mod fault_smtp;

use axum::{Form, Json, Router, http::StatusCode, response::IntoResponse, routing::post};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader},
    net::TcpListener,
};

pub const SMTP_USER: &str = "mailer";
pub const SMTP_PASSWORD: &str = "peer-password-1";
pub const TOKEN: &str = "issued-token-4c1f9a";
pub const CLIENT_ID: &str = "client-id-1";
pub const CLIENT_SECRET: &str = "client-secret-1";
pub const SCOPE: &str = "https://mail.example/.default";

pub fn python() -> PathBuf {
    std::env::var_os("MAILROOM_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mailroom/venv/bin/python")
    })
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, as PEM files.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Mailroom Test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let certs = Self { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&certs.ca, ca.pem()).unwrap();
        std::fs::write(&certs.cert, cert.pem()).unwrap();
        std::fs::write(&certs.key, key.serialize_pem()).unwrap();
        certs
    }
}

#[derive(Clone, Default)]
pub struct PeerOptions {
    pub mode: &'static str,
    pub auth: &'static str,
    pub tls12_only: bool,
    pub auth_fail_text: Option<&'static str>,
    pub reject_sender: Option<&'static str>,
    pub reject_recipient: Option<&'static str>,
    pub tempfail_first: u32,
    /// The reply to those first MAIL commands (default: 421 and close).
    pub tempfail_reply: Option<&'static str>,
    /// Listen on this port (0: any free port); to restart a peer where it was.
    pub port: u16,
    /// Advertise PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// The login AUTH accepts (default [`SMTP_USER`] and [`SMTP_PASSWORD`]) and the XOAUTH2 token
    /// (default [`TOKEN`]).
    pub user: Option<&'static str>,
    pub password: Option<&'static str>,
    pub token: Option<&'static str>,
    /// Require a client certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// aiosmtpd in a child process; killed on drop.
pub struct SmtpPeer {
    pub port: u16,
    mbox: PathBuf,
    child: Child,
}

#[derive(Debug, serde::Deserialize)]
pub struct Received {
    pub message_id: String,
    pub subject: String,
    /// The decoded text/plain part.
    pub text: String,
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    pub tls: bool,
    /// RCPT was already waiting when MAIL arrived: the client pipelined.
    pub pipelined: bool,
}

impl SmtpPeer {
    pub fn start(dir: &Path, certs: Option<&Certs>, options: PeerOptions) -> Self {
        let mbox = dir.join(format!("mbox-{}.jsonl", rand_suffix()));
        let mut command = python_script("smtp_peer.py");
        command
            .args(["--mode", if options.mode.is_empty() { "plain" } else { options.mode }])
            .args(["--auth", options.auth, "--password", options.password.unwrap_or(SMTP_PASSWORD)])
            .args(["--user", options.user.unwrap_or(SMTP_USER), "--token", options.token.unwrap_or(TOKEN)])
            .arg("--mbox")
            .arg(&mbox);
        if let Some(certs) = certs {
            command.arg("--cert").arg(&certs.cert).arg("--key").arg(&certs.key);
        }
        if options.tls12_only {
            command.arg("--tls12-only");
        }
        if options.pipelining {
            command.arg("--pipelining");
        }
        if let Some(ca) = &options.client_ca {
            command.arg("--client-ca").arg(ca);
        }
        if let Some(text) = options.auth_fail_text {
            command.args(["--auth-fail-text", text]);
        }
        if let Some(sender) = options.reject_sender {
            command.args(["--reject-sender", sender]);
        }
        if let Some(recipient) = options.reject_recipient {
            command.args(["--reject-recipient", recipient]);
        }
        if options.tempfail_first > 0 {
            command.args(["--tempfail-first", &options.tempfail_first.to_string()]);
        }
        if let Some(reply) = options.tempfail_reply {
            command.args(["--tempfail-reply", reply]);
        }
        if options.port != 0 {
            command.args(["--port", &options.port.to_string()]);
        }
        let (child, port) = spawn_ready(command);
        Self { port, mbox, child }
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the peer: a server that accepts connections and
    /// then says nothing.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().unwrap();
    }

    /// Every message the peer has written so far. A line it is still writing (no newline yet)
    /// is left for the next read.
    pub fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.mbox).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        complete.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    /// Waits (at most `secs`) until a message matching `found` has arrived; answers it.
    pub async fn wait_for(&self, secs: u64, what: &str, found: impl Fn(&Received) -> bool) -> Received {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(mail) = self.received().into_iter().find(&found) {
                return mail;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never arrived; the peer has: {:#?}",
                self.received().iter().map(|m| (&m.subject, &m.to)).collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/support/{script}` run by [`python()`].
fn python_script(script: &str) -> Command {
    let mut command = Command::new(python());
    command.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support").join(script));
    command
}

/// Starts `command`, a script that prints `READY <port>` once it listens, and waits for that
/// line: the child (its stdout read no further, its stderr dropped) and the port.
fn spawn_ready(mut command: Command) -> (Child, u16) {
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("READY ").and_then(|port| port.parse().ok());
    let port = port.unwrap_or_else(|| panic!("{command:?} printed {line:?}, not READY <port>"));
    (child, port)
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
        + COUNTER.fetch_add(1, Ordering::Relaxed) as u64
}

/// An OAuth 2.0 client of a token endpoint, and the token the endpoint issues it: the one the
/// SMTP peer accepts over XOAUTH2 for `user`.
#[derive(Clone, Copy, Debug)]
pub struct OAuthClient {
    pub id: &'static str,
    pub secret: &'static str,
    pub scope: &'static str,
    pub token: &'static str,
    pub user: &'static str,
}

impl Default for OAuthClient {
    fn default() -> Self {
        Self { id: CLIENT_ID, secret: CLIENT_SECRET, scope: SCOPE, token: TOKEN, user: SMTP_USER }
    }
}

/// An OAuth 2.0 token endpoint on 127.0.0.1: `/token` issues the client's token for its secret
/// and scope; `/token-500` answers 500 with HTML; `/token-html` answers 200 with HTML;
/// `/token-huge` answers 200 KiB; `/token-redirect` redirects to `/token`; `/token-slow` answers
/// after 30 s; `/token-other` issues a token the SMTP peer refuses.
pub struct TokenEndpoint {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
}

impl TokenEndpoint {
    /// The endpoint for the default [`OAuthClient`].
    pub async fn start() -> Self {
        Self::issuing(OAuthClient::default()).await
    }

    pub async fn issuing(client: OAuthClient) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new()
            .route(
                "/token",
                post(move |Form(form): Form<HashMap<String, String>>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
                        if field("grant_type") != "client_credentials"
                            || field("client_id") != client.id
                            || field("client_secret") != client.secret
                        {
                            let body = serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."});
                            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                        }
                        if field("scope") != client.scope {
                            let body = serde_json::json!({"error": "invalid_scope", "error_description": "AADSTS70011: The provided scope is not valid."});
                            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                        }
                        Json(serde_json::json!({"access_token": client.token, "token_type": "Bearer", "expires_in": 3600}))
                            .into_response()
                    }
                }),
            )
            .route("/token-500", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "<html>oops</html>") }))
            .route(
                "/token-slow",
                post(move || async move {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    Json(serde_json::json!({"access_token": client.token, "token_type": "Bearer", "expires_in": 3600}))
                }),
            )
            .route(
                "/token-other",
                post(|| async {
                    Json(serde_json::json!({"access_token": "a-token-the-server-refuses", "token_type": "Bearer", "expires_in": 3600}))
                }),
            )
            .route("/token-html", post(|| async { (StatusCode::OK, "<html>a login page</html>") }))
            .route("/token-huge", post(|| async { (StatusCode::OK, "x".repeat(200 * 1024)) }))
            .route(
                "/token-redirect",
                post(|| async { (StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, "/token")]) }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, calls }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A Google-like token endpoint for service accounts (`google_token.py`): it makes the service
/// account's key pair, writes its JSON key (and a rogue one it does not trust) and verifies each
/// JWT's RS256 signature and claims. Killed on drop.
pub struct GoogleTokenEndpoint {
    /// The JSON key Google Cloud would hand out, `token_uri` pointing at this endpoint.
    pub key: String,
    /// A key of the same account that the endpoint does not trust (deleted in the console).
    pub rogue_key: String,
    pub client_email: String,
    log: PathBuf,
    child: Child,
}

pub const GOOGLE_TOKEN: &str = "ya29.service-account-token";

impl GoogleTokenEndpoint {
    /// `delegate`: the mailboxes the account may send as; `skew_secs`: how far the endpoint's
    /// clock runs ahead.
    pub fn start(dir: &Path, delegate: &str, skew_secs: i64) -> Self {
        let suffix = rand_suffix();
        let (key, rogue, log) = (
            dir.join(format!("sa-{suffix}.json")),
            dir.join(format!("sa-rogue-{suffix}.json")),
            dir.join(format!("sa-log-{suffix}.jsonl")),
        );
        let mut command = python_script("google_token.py");
        command.arg("--key-out").arg(&key).arg("--rogue-key-out").arg(&rogue).arg("--log").arg(&log).args([
            "--delegate",
            delegate,
            "--token",
            GOOGLE_TOKEN,
            "--skew",
            &skew_secs.to_string(),
        ]);
        let (child, _) = spawn_ready(command);
        let key = std::fs::read_to_string(&key).unwrap();
        let client_email =
            serde_json::from_str::<serde_json::Value>(&key).unwrap()["client_email"].as_str().unwrap().to_owned();
        Self { key, rogue_key: std::fs::read_to_string(&rogue).unwrap(), client_email, log, child }
    }

    /// The claims of every assertion the endpoint could verify, oldest first.
    pub fn claims(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

impl Drop for GoogleTokenEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// aiosmtpd accepting one OAuth 2.0 token over XOAUTH2 (over STARTTLS with `certs`, plain
/// without), and the token endpoint that issues it.
pub struct OAuthPeer<Endpoint = TokenEndpoint> {
    pub smtp: SmtpPeer,
    pub endpoint: Endpoint,
}

impl OAuthPeer {
    /// For the default [`OAuthClient`].
    pub async fn start(dir: &Path, certs: Option<&Certs>) -> Self {
        Self::issuing(dir, certs, OAuthClient::default()).await
    }

    pub async fn issuing(dir: &Path, certs: Option<&Certs>, client: OAuthClient) -> Self {
        let smtp = xoauth2_peer(dir, certs, client.user, client.token);
        Self { smtp, endpoint: TokenEndpoint::issuing(client).await }
    }

    /// Where the endpoint issues the client's token.
    pub fn token_url(&self) -> String {
        self.endpoint.url("/token")
    }
}

impl OAuthPeer<GoogleTokenEndpoint> {
    /// A Google-like endpoint that lets the service account send as `send_as`, its clock
    /// `skew_secs` ahead; the peer accepts its [`GOOGLE_TOKEN`] for `send_as`.
    pub fn google(dir: &Path, certs: Option<&Certs>, send_as: &'static str, skew_secs: i64) -> Self {
        let endpoint = GoogleTokenEndpoint::start(dir, send_as, skew_secs);
        Self { smtp: xoauth2_peer(dir, certs, send_as, GOOGLE_TOKEN), endpoint }
    }
}

fn xoauth2_peer(dir: &Path, certs: Option<&Certs>, user: &'static str, token: &'static str) -> SmtpPeer {
    let mode = if certs.is_some() { "starttls" } else { "plain" };
    let options = PeerOptions { mode, auth: "XOAUTH2", user: Some(user), token: Some(token), ..Default::default() };
    SmtpPeer::start(dir, certs, options)
}

/// A misbehaving SMTP server for faults.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    NeverGreets,
    Answers421,
    DropsAfterEhlo,
    StallsInData,
}

/// Starts the fault server; answers the port. It serves until the test ends.
pub async fn fault_server(fault: Fault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = TokioBufReader::new(read).lines();
                match fault {
                    Fault::NeverGreets => {
                        let _ = lines.next_line().await;
                        return;
                    }
                    Fault::Answers421 => {
                        let _ = write.write_all(b"421 4.3.2 Service not available, closing channel\r\n").await;
                        return;
                    }
                    _ => {}
                }
                let _ = write.write_all(b"220 fault.test ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    if in_data {
                        if line == "." {
                            // StallsInData: never answer the end of the message.
                            std::future::pending::<()>().await;
                        }
                        continue;
                    }
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        if matches!(fault, Fault::DropsAfterEhlo) {
                            return;
                        }
                        b"250-fault.test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
pub mod chaos_smtp;
