//! Test support: the real server on port 0 with a fresh `mem://` database, and an HTTP client
//! with its own cookie jar.
#![allow(dead_code)]

mod process;

#[allow(unused_imports)]
pub use process::ServerProcess;

use app::smtp_settings::form::SmtpForm;
use app::{
    auth::{Role, ssr::NewUser},
    state::AppState,
};
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{StreamExt, stream::BoxStream};
use serde_json::Value;
use server::{Server, config::Config};
use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf};
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin password 1";
pub const USER_EMAIL: &str = "user@example.com";
pub const USER_PASSWORD: &str = "user password 12";

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The code "Create the first admin" asks for, when the app started without an admin.
    pub setup_code: Option<String>,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database: server::config::DatabaseConfig {
            url: "mem://".into(),
            namespace: "test".into(),
            database: "test".into(),
            credentials: None,
        },
        instance_name: "Mailroom Test".into(),
        default_language: app::language::Locale::en,
        first_admin: Some((ADMIN_EMAIL.parse().unwrap(), ADMIN_PASSWORD.into())),
        seed_user: None,
        secret_key_file: dir.join("secret.key"),
        public_url: None,
        login_per_minute: NonZeroU32::new(1000).unwrap(),
        smtp_per_admin_per_minute: NonZeroU32::new(1000).unwrap(),
        smtp_per_instance_per_minute: NonZeroU32::new(1000).unwrap(),
        default_smtp_url: None,
        smtp_ca_file: None,
        smtp_timeout_secs: 6,
        default_from: "no-reply@mailroom.localhost".into(),
        node_id: None,
        outbox_max_attempts: 5,
        outbox_retry_base_ms: 100,
        outbox_lease_secs: 12,
        outbox_concurrency: 4,
        outbox_max_age_hours: 72,
        outbox_hold_retry_secs: 30,
        status_stale_secs: 600,
        invite_hours: 72,
        reset_per_hour: NonZeroU32::new(1000).unwrap(),
        limits: server::config::Limits::default(),
        smtp_allowed_networks: None,
        trusted_proxies: Vec::new(),
        session_max_days: 30,
        max_streams_per_session: 4,
        stream_recheck_secs: 30,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server that trusts `ca` (a TLS peer's test CA) for SMTP, and its signed-in admin.
pub async fn spawn_app_trusting(ca: PathBuf) -> (TestApp, reqwest::Client) {
    let app = spawn_app_with(move |config| config.smtp_ca_file = Some(ca)).await;
    let admin = app.admin_client().await;
    (app, admin)
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let server = Server::build(config).await.expect("server starts");
    let addr = server.local_addr();
    let state = server.state().clone();
    let setup_code = server.setup_code().map(str::to_owned);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    TestApp { addr, state, setup_code, _shutdown: tx, _dir: dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client with its own cookie jar that does not follow redirects and, like a browser,
    /// names its origin on every request.
    pub fn client(&self) -> reqwest::Client {
        browser_like_client(&format!("http://{}", self.addr))
    }

    pub async fn create_user(&self, email: &str, password: &str, role: Role) {
        app::auth::ssr::create_user(
            self.state.db(),
            NewUser {
                email: &email.parse().expect("an email address"),
                name: "Test User",
                role,
                password: Some(password),
            },
        )
        .await
        .expect("user created");
    }

    /// Calls a server function with a form body.
    pub async fn call(&self, client: &reqwest::Client, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        client.post(self.url(&format!("/api/{endpoint}"))).form(form).send().await.unwrap()
    }

    pub async fn sign_in(&self, client: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
        self.call(client, "login", &[("email", email), ("password", password)]).await
    }

    pub async fn admin_client(&self) -> reqwest::Client {
        let client = self.client();
        let response = self.sign_in(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert!(response.status().is_success() || response.status().is_redirection(), "{}", response.status());
        client
    }
}

/// A reqwest client with a cookie jar that sends `Origin: base` (as browsers do on POSTs; the
/// server refuses cookie-carrying changes without it) and follows no redirects.
pub fn browser_like_client(base: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::ORIGIN, base.parse().unwrap());
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The compiled server binary, for tests that need a separate process.
pub fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_server"))
}

/// `binary` set to run on a `surrealkv` database under `data`, on a free port, with the test
/// admin and `extra` variables and nothing else from the environment; stdout piped (its first
/// line names the URL), stderr left to the caller.
pub fn server_command(
    binary: &std::path::Path,
    data: &std::path::Path,
    extra: &[(&str, &str)],
) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MAILROOM_BIND", "127.0.0.1:0")
        .env("MAILROOM_DATABASE_URL", format!("surrealkv://{}", data.join("db").display()))
        .env("MAILROOM_SECRET_KEY_FILE", data.join("secret.key"))
        .env("MAILROOM_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("MAILROOM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .current_dir(data)
        .stdout(std::process::Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command
}

/// Starts the server binary (see [`server_command`]); answers the child and its base URL.
pub fn start_process(data: &std::path::Path, extra: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut command = server_command(&server_binary(), data, extra);
    command.stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("server binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
    (child, url)
}

/// Custom settings for a plaintext SMTP server on 127.0.0.1 without AUTH, as the form sends them.
pub fn plain_smtp_form(port: u16) -> SmtpForm {
    SmtpForm { host: "127.0.0.1".into(), ..custom_form(port) }
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Server functions anyone can call without signing in, and the admin ones.
pub const PUBLIC_FUNCTIONS: &[&str] =
    &["login", "logout", "current_user", "first_admin_needed", "create_first_admin", "password_reset", "password_set"];
pub const ADMIN_FUNCTIONS: &[&str] = &[
    "admin_context",
    "smtp_load",
    "smtp_save",
    "smtp_test",
    "smtp_certificates",
    "users_list",
    "users_create",
    "outbox_list",
    "outbox_retry",
    "mailbox_list",
    "mailbox_read",
];

/// Sends the head of a POST that declares `length` body bytes, then `sent` bytes of it, over a
/// raw connection, and answers the status line the server replies with (empty if it closes).
pub async fn post_declaring(app: &TestApp, path: &str, length: usize, sent: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n",
        addr = app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b'a'; sent]).await;
    let mut reply = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut reply)).await;
    let n = read.expect("the server answers within 5 s").unwrap_or(0);
    String::from_utf8_lossy(&reply[..n]).lines().next().unwrap_or_default().to_owned()
}

impl TestApp {
    /// Queues `count` messages to `{tag}-{n}@example.com` (subject `{tag} {n}`) the way the
    /// product does — sealed, in the outbox — and wakes the worker.
    pub async fn queue_mail(&self, count: usize, tag: &str) {
        use secrecy::ExposeSecret;
        let key = *self.state.shared.secret_key.expose_secret();
        for n in 0..count {
            let row = test_mail(tag, n, &key);
            self.state.db().query("CREATE outbox CONTENT $row").bind(("row", row)).await.unwrap().check().unwrap();
        }
        app::outbox::ssr::wake(&self.state);
    }

    /// The outbox rows of `kind` as stored (every row, not the page's latest 500).
    pub async fn outbox_rows(&self, kind: &str) -> Vec<serde_json::Value> {
        let mut response = self
            .state
            .db()
            .query("SELECT status, attempts, last_error, last_hint, subject, to_addr FROM outbox WHERE kind = $kind")
            .bind(("kind", kind.to_owned()))
            .await
            .unwrap();
        let rows: Vec<surrealdb::types::Value> = response.take(0).unwrap();
        rows.into_iter().map(|row| row.into_json_value()).collect()
    }

    /// The outcomes (`ok`) of the attempts of a message of `kind`, found by their keys alone:
    /// an attempt is keyed [message, time, claim], so a message's attempts are a range of keys.
    pub async fn attempts_by_key(&self, kind: &str) -> Vec<bool> {
        let mut response = self
            .state
            .db()
            .query(
                "LET $message = (SELECT VALUE record::id(id) FROM ONLY outbox WHERE kind = $kind LIMIT 1);
                 SELECT VALUE ok FROM outbox_attempt:[$message, NONE]..=[$message, ..];",
            )
            .bind(("kind", kind.to_owned()))
            .await
            .unwrap();
        response.take(1).unwrap()
    }

    /// Polls the outbox rows of `kind` until `done` holds (at most `secs`).
    pub async fn wait_rows(
        &self,
        kind: &str,
        secs: u64,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let rows = self.outbox_rows(kind).await;
            if done(&rows) {
                return rows;
            }
            assert!(std::time::Instant::now() < deadline, "the outbox never got there: {rows:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// How many rows have this status.
pub fn count_status(rows: &[serde_json::Value], status: &str) -> usize {
    rows.iter().filter(|row| row["status"] == status).count()
}

/// Message `n` tagged `tag`, sealed with `key` as the product queues it: to
/// `{tag}-{n}@example.com`, subject `{tag} {n}`.
pub fn test_mail(tag: &str, n: usize, key: &[u8; 32]) -> app::outbox::ssr::OutboxRow {
    app::outbox::ssr::NewMail {
        kind: "test",
        to_addr: format!("{tag}-{n}@example.com").parse().expect("an email address"),
        to_name: None,
        subject: format!("{tag} {n}"),
        text: format!("message {n}"),
        html: format!("<p>message {n}</p>"),
    }
    .queued(key)
}

/// The server-sent events of one status stream.
pub struct Events {
    stream: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
}

impl Events {
    /// The stream of an answer to `GET /api/smtp_status/stream`; panics unless it is one.
    pub fn from_response(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { stream: response.bytes_stream().eventsource().boxed() }
    }

    /// The next status event's data; panics if the stream ends or nothing comes within `secs`.
    pub async fn next(&mut self, secs: u64) -> Value {
        let next = tokio::time::timeout(std::time::Duration::from_secs(secs), self.stream.next()).await;
        let event = next.expect("a status event in time").expect("the status stream stays open").unwrap();
        assert_eq!(event.event, "smtp_status", "{event:?}");
        serde_json::from_str(&event.data).unwrap()
    }

    /// Reads events until one satisfies `want`; panics after `secs`.
    pub async fn until(&mut self, secs: u64, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now()).as_secs().max(1);
            let event = self.next(left).await;
            if want(&event) {
                return event;
            }
            assert!(std::time::Instant::now() < deadline, "no matching status event within {secs} s; last: {event}");
        }
    }
}

/// Custom settings for a server on `localhost:port` without TLS or AUTH, as a typed form: tests
/// say what differs with `SmtpForm { tls_enabled: true, ..custom_form(port) }`.
pub fn custom_form(port: u16) -> SmtpForm {
    SmtpForm {
        mode: app::smtp_settings::types::Mode::Custom,
        host: "localhost".into(),
        port: port.to_string(),
        from: "Mailroom <mail@example.com>".into(),
        ..Default::default()
    }
}

/// A server the tests reach over HTTP: the app in this process or a server process.
pub trait Reachable {
    /// Its base URL, `http://127.0.0.1:port`.
    fn base_url(&self) -> String;
}

impl Reachable for TestApp {
    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Reachable for str {
    fn base_url(&self) -> String {
        self.to_owned()
    }
}

impl Reachable for String {
    fn base_url(&self) -> String {
        self.clone()
    }
}

/// Saves `form` as the SMTP page does, claiming to edit settings `version`: the status and the
/// JSON answer.
pub async fn try_save_at(
    server: &(impl Reachable + ?Sized),
    client: &reqwest::Client,
    form: &SmtpForm,
    version: u64,
) -> (reqwest::StatusCode, Value) {
    let body = serde_json::json!({ "form": form, "version": version });
    answer(client.post(format!("{}/api/smtp_save", server.base_url())).json(&body).send().await.unwrap()).await
}

/// Saves `form` over the settings saved now, as a page that has just loaded them would.
pub async fn try_save(
    server: &(impl Reachable + ?Sized),
    client: &reqwest::Client,
    form: &SmtpForm,
) -> (reqwest::StatusCode, Value) {
    let loaded = client.post(format!("{}/api/smtp_load", server.base_url())).send().await.unwrap();
    let view: Value = loaded.json().await.unwrap();
    let version = view["version"].as_u64().unwrap_or_else(|| panic!("smtp_load: {view}"));
    try_save_at(server, client, form, version).await
}

/// Saves `form` (see [`try_save`]); panics unless saved. Answers the outcome: the new version,
/// the changed fields, what the secrets are now.
pub async fn save(server: &(impl Reachable + ?Sized), client: &reqwest::Client, form: &SmtpForm) -> Value {
    let (status, body) = try_save(server, client, form).await;
    assert_eq!(status, reqwest::StatusCode::OK, "smtp_save: {body}");
    body
}

/// Send Test Email with `form`: the status and the JSON answer.
pub async fn send_test(
    server: &(impl Reachable + ?Sized),
    client: &reqwest::Client,
    form: &SmtpForm,
) -> (reqwest::StatusCode, Value) {
    let body = serde_json::json!({ "form": form });
    answer(client.post(format!("{}/api/smtp_test", server.base_url())).json(&body).send().await.unwrap()).await
}

/// A server function's status and JSON answer.
async fn answer(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}
