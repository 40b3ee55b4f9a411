//! A cluster on this machine for the tests: SurrealDB's own server as a process (the `surreal`
//! binary that `scripts/build-surreal.sh` builds) and Mailroom nodes as processes of the server
//! binary, all on 127.0.0.1. Every process is killed when its handle drops.
#![allow(dead_code)]

use crate::common::{ADMIN_EMAIL, Events, Reachable, closed_port, server_binary, server_command};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

pub const DB_USER: &str = "root";
pub const DB_PASS: &str = "cluster test root password";

/// SurrealDB's server (`bash scripts/build-surreal.sh` builds it): `MAILROOM_SURREAL_BIN`, else
/// where that script puts it.
pub fn surreal_binary() -> PathBuf {
    let path = std::env::var_os("MAILROOM_SURREAL_BIN").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mailroom/bin/surreal")
    });
    assert!(
        path.is_file(),
        "no SurrealDB server at {}: run `bash scripts/build-surreal.sh` (or set MAILROOM_SURREAL_BIN)",
        path.display()
    );
    path
}

/// `surreal start` on surrealkv under `dir`, on a fixed port so a restart is found at the same
/// address.
pub struct Surreal {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Surreal {
    pub async fn start(dir: &Path) -> Self {
        let mut surreal = Self { child: None, port: closed_port(), dir: dir.to_owned() };
        surreal.spawn().await;
        surreal
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("surreal.log")).unwrap();
        let child = Command::new(surreal_binary())
            .args(["start", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg(format!("surrealkv://{}", self.dir.join("db").display()))
            .env("SURREAL_USER", DB_USER)
            .env("SURREAL_PASS", DB_PASS)
            .env("SURREAL_ONLINE_VERSION_CHECK", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("surreal starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("http://127.0.0.1:{}/health", self.port);
        while !reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "surreal answered no /health within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: nothing is flushed or closed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same data and port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// A client of its own, for what the test itself reads and writes.
    pub async fn client(&self) -> app::state::Db {
        app::db::connect(app::db::DbOptions {
            url: &self.url(),
            namespace: "mailroom",
            database: "mailroom",
            credentials: Some((DB_USER, DB_PASS)),
        })
        .await
        .unwrap()
    }
}

impl Drop for Surreal {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Mailroom node: a process of the server binary on the SurrealDB server.
pub struct Node {
    child: Child,
    pub name: String,
    pub base: String,
    pub log: PathBuf,
}

impl Node {
    /// Starts `name` (e.g. "node-a") with the instance key in `key_file`; panics with the end of
    /// its log if it does not start.
    pub fn start(dir: &Path, surreal: &Surreal, name: &str, key_file: &Path, extra: &[(&str, &str)]) -> Self {
        Self::try_start(dir, surreal, name, key_file, extra)
            .unwrap_or_else(|(status, log)| panic!("{name} did not start ({status}):\n{log}"))
    }

    /// Like [`Node::start`]; a node that exits instead answers its exit status and log.
    pub fn try_start(
        dir: &Path,
        surreal: &Surreal,
        name: &str,
        key_file: &Path,
        extra: &[(&str, &str)],
    ) -> Result<Self, (ExitStatus, String)> {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(&node_dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let url = surreal.url();
        let mut env = vec![
            ("MAILROOM_DATABASE_URL", url.as_str()),
            ("MAILROOM_DATABASE_USER", DB_USER),
            ("MAILROOM_DATABASE_PASSWORD", DB_PASS),
            ("MAILROOM_NODE_ID", name),
            ("MAILROOM_SECRET_KEY_FILE", key_file.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ];
        env.extend_from_slice(extra);
        let mut child =
            server_command(&server_binary(), &node_dir, &env).stderr(log_file).spawn().expect("server binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        if !base.starts_with("http://127.0.0.1:") {
            let status = child.wait().unwrap();
            return Err((status, std::fs::read_to_string(&log).unwrap_or_default()));
        }
        Ok(Self { child, name: name.to_owned(), base, log })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, at once.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The end of its log, for a failing test.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Reachable for Node {
    fn base_url(&self) -> String {
        self.base.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new random instance key, written where the nodes read it.
pub fn write_key(path: &Path) -> [u8; 32] {
    let key: [u8; 32] = rand::random();
    std::fs::write(path, hex::encode(key)).unwrap();
    key
}

/// One browser's cookie jar: a session started on one node is sent to every node (cookies are
/// per host, not per port). Each request names the node it goes to as its `Origin`, as a page
/// served by that node would.
#[derive(Clone, Default)]
pub struct Browser {
    jar: Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn on(&self, node: &Node) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ORIGIN, node.base.parse().unwrap());
        reqwest::Client::builder()
            .cookie_provider(self.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// The `Cookie` header this browser sends to `node`.
    pub fn cookie(&self, node: &Node) -> reqwest::header::HeaderValue {
        use reqwest::cookie::CookieStore;
        self.jar.cookies(&node.base.parse().unwrap()).expect("a cookie for the node")
    }

    pub async fn sign_in(&self, node: &Node, password: &str) -> reqwest::StatusCode {
        let form = [("email", ADMIN_EMAIL), ("password", password)];
        self.on(node).post(node.url("/api/login")).form(&form).send().await.unwrap().status()
    }
}

/// Opens the status stream on `node` with `browser`'s session (no time limit on the response:
/// it stays open).
pub async fn open_events(browser: &Browser, node: &Node) -> Events {
    let client = reqwest::Client::builder()
        .cookie_provider(browser.jar.clone())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Events::from_response(client.get(node.url("/api/smtp_status/stream")).send().await.unwrap())
}
