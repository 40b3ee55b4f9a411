//! SIGTERM while the server is busy: twenty status streams open and ten invitations held by the
//! SMTP server at the end of DATA. The streams end, the process exits within ten seconds, and
//! the leases of the interrupted sends are released — another node started right after sends
//! those messages at once instead of waiting for the leases to run out.

mod common;
mod support;

use common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};
use support::chaos_smtp::ChaosSmtp;

const STREAMS: usize = 20;
const MESSAGES: usize = 10;

/// The SMTP step limit (half the SMTP timeout: 8 s) outlasts the 4 s the shutdown waits for the
/// sends in flight, so the held sends are cut off, not timed out; the lease (30 s) is far longer
/// than the 5 s the messages get to arrive after the restart.
const ENV: &[(&str, &str)] = &[
    ("MAILROOM_SMTP_TIMEOUT_SECS", "15"),
    ("MAILROOM_OUTBOX_LEASE_SECS", "30"),
    ("MAILROOM_OUTBOX_RETRY_BASE_MS", "1000"),
    ("MAILROOM_OUTBOX_CONCURRENCY", "16"),
    ("MAILROOM_MAX_STREAMS_PER_SESSION", "25"),
];

/// The server process, signed in; killed (SIGKILL) if the test ends with it running.
struct Running {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    async fn start(dir: &Path, log: &Path, extra: &[(&'static str, &'static str)]) -> Self {
        let (dir, log, extra) = (dir.to_owned(), log.to_owned(), extra.to_vec());
        let (child, base) = tokio::task::spawn_blocking(move || spawn(&dir, &log, &extra)).await.unwrap();
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn outbox(&self, status: &str) -> Vec<Value> {
        let response = self.client.post(self.url("/api/outbox_list")).form(&[("status", status)]).send();
        let list: Value = response.await.unwrap().json().await.unwrap();
        list.as_array().cloned().unwrap_or_else(|| panic!("{list}"))
    }

    /// SIGTERM, then waits (at most `secs`) for the process to exit: how long it took and how.
    async fn terminate(&mut self, secs: u64) -> (Duration, Option<std::process::ExitStatus>) {
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

fn spawn(dir: &Path, log: &Path, extra: &[(&str, &str)]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let env: Vec<(&str, &str)> = ENV.iter().chain(extra).copied().collect();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = server_command(&server_binary(), dir, &env).stderr(log).spawn().expect("server binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected first line: {line:?}");
    (child, base)
}

async fn save(server: &Running, form: Value) {
    let view: Value = server.client.post(server.url("/api/smtp_load")).send().await.unwrap().json().await.unwrap();
    let body = json!({ "form": form, "version": view["version"] });
    let response = server.client.post(server.url("/api/smtp_save")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap_or_default());
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `secs`.
async fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn address(n: usize) -> String {
    format!("held{n}@example.com")
}

/// Prints the end of the server's log when the test fails.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("server log (end):\n{}", lines[lines.len().saturating_sub(60)..].join("\n"));
        }
    }
}

/// How a status stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The body ended properly.
    Closed,
    /// The connection broke.
    Broken(String),
    /// Still open when the test stopped waiting.
    Open,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_and_releases_the_leases_of_held_sends_within_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("server.log");
    let _log = LogOnPanic(log.clone());
    let peer = ChaosSmtp::start(1, 0.0).await;
    peer.set_stall(true);
    let mut first = Running::start(dir.path(), &log, &[]).await;

    // The admin's notice of the save is held first; it keeps the worker's batch busy while the
    // invitations are queued, so that the next batch claims all ten at once.
    save(&first, plain_smtp_form(peer.port)).await;
    wait_until(20, "the notice held at the end of DATA", || peer.stalled_recipients().contains(&ADMIN_EMAIL.into()))
        .await;
    for n in 0..MESSAGES {
        let form = [("name", format!("Held {n}")), ("email", address(n)), ("role", "user".to_owned())];
        let created = first.client.post(first.url("/api/users_create")).form(&form).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::OK, "{n}: {}", created.text().await.unwrap_or_default());
    }
    let mut streams = Vec::new();
    for n in 0..STREAMS {
        let response = first
            .client
            .get(first.url("/api/smtp_status/stream"))
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "stream {n}");
        let mut body = response.bytes_stream();
        let opening = tokio::time::timeout(Duration::from_secs(5), body.next()).await;
        let opening = opening.unwrap_or_else(|_| panic!("stream {n}: no first event")).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&opening).contains("smtp_status"), "stream {n}");
        streams.push(tokio::spawn(async move {
            let end = loop {
                match tokio::time::timeout(Duration::from_secs(60), body.next()).await {
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(err))) => break End::Broken(err.to_string()),
                    Ok(None) => break End::Closed,
                    Err(_) => break End::Open,
                }
            };
            (end, Instant::now())
        }));
    }
    let invited: Vec<String> = (0..MESSAGES).map(address).collect();
    wait_until(30, "ten invitations held at the end of DATA", || {
        let held = peer.stalled_recipients();
        invited.iter().all(|to| held.contains(to))
    })
    .await;
    let sending = first.outbox("sending").await;
    let in_flight = sending.iter().filter(|m| invited.contains(&m["to_addr"].as_str().unwrap_or_default().into()));
    assert_eq!(in_flight.count(), MESSAGES, "{sending:#?}");
    assert!(peer.accepted().is_empty(), "nothing was taken yet");

    let signalled = Instant::now();
    let (took, status) = first.terminate(15).await;
    let mut ends = Vec::new();
    for stream in streams {
        let (end, at) = tokio::time::timeout(Duration::from_secs(5), stream).await.expect("the stream ended").unwrap();
        ends.push((end, at.saturating_duration_since(signalled)));
    }
    let latest_end = ends.iter().map(|(_, after)| *after).max().unwrap_or_default();
    eprintln!(
        "shutdown: exited {:.2} s after SIGTERM ({status:?}); {STREAMS} streams ended within {:.2} s: {:?}",
        took.as_secs_f64(),
        latest_end.as_secs_f64(),
        ends.iter().map(|(end, _)| end).collect::<Vec<_>>()
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("still running {:.1} s after SIGTERM\n{}", took.as_secs_f64(), log_text()));
    assert!(took < Duration::from_secs(10), "exited only after {took:?}");
    assert!(status.success(), "exit status {status:?}\n{}", log_text());
    assert!(ends.iter().all(|(end, _)| *end == End::Closed), "every stream ends cleanly: {ends:?}");
    assert!(peer.accepted().is_empty(), "the held sends were cut off, none was taken");
    drop(first);

    // Another node (not this one's start-up release) finds the messages due at once: the
    // shutdown released their leases.
    peer.set_stall(false);
    let restarted = Instant::now();
    let mut second = Running::start(dir.path(), &log, &[("MAILROOM_NODE_ID", "successor")]).await;
    let mut wanted = invited.clone();
    wanted.push(ADMIN_EMAIL.to_owned());
    let arrived = |peer: &ChaosSmtp| {
        let delivered: Vec<String> = peer.accepted().into_iter().flat_map(|m| m.recipients).collect();
        wanted.iter().filter(|to| delivered.contains(to)).count()
    };
    let deadline = restarted + Duration::from_secs(5);
    while arrived(&peer) < wanted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = restarted.elapsed();
    eprintln!(
        "shutdown: {} of {} messages arrived {:.2} s after the restart",
        arrived(&peer),
        wanted.len(),
        after.as_secs_f64()
    );
    assert_eq!(
        arrived(&peer),
        wanted.len(),
        "not sent at once after the restart: leases not released?\n{}",
        log_text()
    );
    let by_id = peer.by_message_id();
    assert!(by_id.values().all(|m| m.count == 1), "each message once: {by_id:#?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let sent = second.outbox("sent").await;
        if sent.len() >= wanted.len() || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for to in &invited {
        let row =
            sent.iter().find(|m| m["to_addr"] == to.as_str()).unwrap_or_else(|| panic!("{to} not sent: {sent:#?}"));
        assert_eq!(row["attempts"], 1, "the cut-off send spent no attempt: {row}");
    }
    let (took, status) = second.terminate(15).await;
    eprintln!("shutdown: the idle successor exited {:.2} s after SIGTERM ({status:?})", took.as_secs_f64());
    assert!(status.is_some_and(|s| s.success()) && took < Duration::from_secs(10));
}
