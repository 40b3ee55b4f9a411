//! SIGTERM while the server is busy: twenty status streams open and ten invitations held by the
//! SMTP server at the end of DATA. The streams end, the process exits within ten seconds, and
//! the leases of the interrupted sends are released — another node started right after sends
//! those messages at once instead of waiting for the leases to run out.

mod common;
mod support;

use common::*;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use std::{
    path::PathBuf,
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
    let mut first = ServerProcess::start(dir.path(), &log, ENV).await;

    // The admin's notice of the save is held first; it keeps the worker's batch busy while the
    // invitations are queued, so that the next batch claims all ten at once.
    save(&first, &first.client, &plain_smtp_form(peer.port)).await;
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
        let mut events = response.bytes_stream().eventsource();
        let opening = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        let opening = opening.unwrap_or_else(|_| panic!("stream {n}: no first event")).unwrap().unwrap();
        assert_eq!(opening.event, "smtp_status", "stream {n}");
        streams.push(tokio::spawn(async move {
            // Keep-alive comments are not events: wait for the end as long as the request may last.
            let end = tokio::time::timeout(Duration::from_secs(300), async {
                loop {
                    match events.next().await {
                        Some(Ok(_)) => continue,
                        Some(Err(err)) => break End::Broken(err.to_string()),
                        None => break End::Closed,
                    }
                }
            });
            (end.await.unwrap_or(End::Open), Instant::now())
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
    let mut second =
        ServerProcess::start(dir.path(), &log, &[ENV, &[("MAILROOM_NODE_ID", "successor")]].concat()).await;
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
