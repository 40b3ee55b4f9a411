//! The server binary in a process of its own, for the tests that kill it (SIGKILL, SIGTERM)
//! and start it again on the same data.

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, Reachable, server_binary, server_command};
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ExitStatus},
    time::{Duration, Instant},
};

/// A running server process, signed in as the admin; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Child,
    base: String,
    /// The signed-in admin's browser: cookies kept, no redirects followed, 30 s per request.
    pub client: reqwest::Client,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reachable for ServerProcess {
    fn base_url(&self) -> String {
        self.base.clone()
    }
}

impl ServerProcess {
    /// Starts the binary on the database under `data` with the variables `env` (its stderr
    /// appended to `log`), waits for it to name its URL and signs in as the admin.
    pub async fn start(data: &Path, log: &Path, env: &[(&str, &str)]) -> Self {
        let (data, log) = (data.to_owned(), log.to_owned());
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let (child, base) = tokio::task::spawn_blocking(move || spawn(&data, &log, &env)).await.unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::ORIGIN, base.parse().unwrap());
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
        let signed_in = client.post(format!("{base}/api/login")).form(&form).send().await.unwrap();
        assert!(signed_in.status().is_success(), "sign-in: {}", signed_in.status());
        Self { child, base, client }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The outbox messages in `status`, as the Outbox page lists them.
    pub async fn outbox(&self, status: &str) -> Vec<Value> {
        let response = self.client.post(self.url("/api/outbox_list")).form(&[("status", status)]).send();
        let list: Value = response.await.unwrap().json().await.unwrap();
        list.as_array().cloned().unwrap_or_else(|| panic!("{list}"))
    }

    /// SIGKILL, at once; nothing is cleaned up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits (at most `secs`) for the process to exit: how long it took and how.
    pub async fn terminate(&mut self, secs: u64) -> (Duration, Option<ExitStatus>) {
        let signalled = Instant::now();
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        while signalled.elapsed() < Duration::from_secs(secs) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (signalled.elapsed(), Some(status));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (signalled.elapsed(), None)
    }
}

fn spawn(data: &Path, log: &Path, env: &[(String, String)]) -> (Child, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = server_command(&server_binary(), data, &env).stderr(log).spawn().expect("server binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected first line: {line:?}");
    (child, base)
}
