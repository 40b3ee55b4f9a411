//! Chaos: 1,000 invitations queued through the product (one `users_create` each) and delivered
//! to an SMTP peer that fails at random — 421, 451, connections dropped between commands, in the
//! middle of DATA and after the final dot, before and after it took the message — while the
//! server process is killed with SIGKILL twice: once while the invitations are still being
//! queued, once while it delivers. Delivery is at-least-once: not one message may be lost;
//! duplicates are allowed (a kill between the peer's 250 and the commit, a line dropped after
//! the peer took the message) and printed.

mod common;
mod support;

use common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};
use support::chaos_smtp::ChaosSmtp;

const MESSAGES: usize = 1000;
/// The chance of a fault at each step of an SMTP session: about one attempt in six fails.
const FAULT_RATE: f64 = 0.03;
const INVITATION: &str = "You are invited to";
const NOTICE: &str = "SMTP settings were changed by";

/// Short timeouts and quick retries; enough attempts that chaos alone never fails a message.
const ENV: &[(&str, &str)] = &[
    ("MAILROOM_SMTP_TIMEOUT_SECS", "2"),
    ("MAILROOM_OUTBOX_LEASE_SECS", "4"),
    ("MAILROOM_OUTBOX_RETRY_BASE_MS", "50"),
    ("MAILROOM_OUTBOX_MAX_ATTEMPTS", "100"),
    ("MAILROOM_OUTBOX_CONCURRENCY", "8"),
];

fn address(n: usize) -> String {
    format!("chaos{n}@example.com")
}

/// Creates the users `numbers`, eight requests at a time; counts each creation known to have
/// committed in `created` and answers the numbers not known to have (the server died under
/// them). A retried creation that finds its user existing had committed, invitation and all.
async fn queue(server: &ServerProcess, numbers: Vec<usize>, created: &AtomicUsize) -> Vec<usize> {
    let outcomes = futures::stream::iter(numbers)
        .map(|n| async move {
            let form = [("name", format!("Chaos {n}")), ("email", address(n)), ("role", "user".to_owned())];
            let sent = server.client.post(server.url("/api/users_create")).form(&form).send().await;
            let committed = match sent {
                Ok(response) if response.status() == StatusCode::OK => true,
                Ok(response) if response.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                    let body = response.text().await.unwrap_or_default();
                    assert!(body.contains("already exists"), "user {n} refused: {body}");
                    true
                }
                Ok(_) | Err(_) => false,
            };
            if committed {
                created.fetch_add(1, Ordering::Relaxed);
            }
            (n, committed)
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    outcomes.into_iter().filter(|(_, committed)| !committed).map(|(n, _)| n).collect()
}

/// The expected messages (invitations by recipient, and the admin's notice) that have arrived.
fn arrived(peer: &ChaosSmtp) -> usize {
    peer.by_message_id().values().filter(|m| m.subject.starts_with(INVITATION) || m.subject.starts_with(NOTICE)).count()
}

/// Polls `done` every 100 ms until it holds; panics naming `what` after `secs`.
async fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server's warnings and errors (their first words), with how often each was logged.
fn warnings(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let mut plain = String::new();
        let mut in_escape = false;
        for ch in line.chars() {
            match (in_escape, ch) {
                (false, '\u{1b}') => in_escape = true,
                (true, 'm') => in_escape = false,
                (false, ch) => plain.push(ch),
                (true, _) => {}
            }
        }
        let Some((level, rest)) =
            [" WARN ", " ERROR "].iter().find_map(|l| plain.split_once(l).map(|(_, r)| (l.trim(), r)))
        else {
            continue;
        };
        let message = rest.split_once(": ").map_or(rest, |(_, message)| message);
        let words: String = message.chars().take(70).collect();
        *counts.entry(format!("{level} {words}")).or_default() += 1;
    }
    counts
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_invitation_is_lost_to_a_failing_smtp_server_and_two_kill_9s() {
    let seed = std::env::var("MAILROOM_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_240_611_u64);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("server.log");
    let _log = LogOnPanic(log.clone());
    let expected = MESSAGES + 1; // the invitations and the admin's notice of the save
    let peer = ChaosSmtp::start(seed, FAULT_RATE).await;
    let created = AtomicUsize::new(0);
    let mut kills = Vec::new();

    let first = ServerProcess::start(dir.path(), &log, ENV).await;
    save(&first, &first.client, &plain_smtp_form(peer.port)).await;
    // Kill 1: in the middle of the queuing, requests in flight, while the worker delivers.
    let killer = async {
        wait_until(120, "400 users created", || created.load(Ordering::Relaxed) >= 400).await;
        let pid = first.pid().to_string();
        std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        (created.load(Ordering::Relaxed), arrived(&peer), peer.data_commands())
    };
    let (left, at_kill) = tokio::join!(queue(&first, (0..MESSAGES).collect(), &created), killer);
    kills.push(at_kill);
    first.kill9();
    let queued_first = Instant::now();
    eprintln!(
        "chaos: kill 1 after {:.1} s: {} users created, {} of {expected} arrived; {} creations to retry",
        started.elapsed().as_secs_f64(),
        at_kill.0,
        at_kill.1,
        left.len()
    );

    let second = ServerProcess::start(dir.path(), &log, ENV).await;
    let left = queue(&second, left, &created).await;
    assert!(left.is_empty(), "creations failed on a running server: {left:?}");
    assert_eq!(created.load(Ordering::Relaxed), MESSAGES);
    // Kill 2: while it delivers, some way after the restart.
    let resumed_at = arrived(&peer);
    let target = (resumed_at + 150).min(expected - 50);
    wait_until(120, "150 more messages arrived", || arrived(&peer) >= target).await;
    let at_kill = (MESSAGES, arrived(&peer), peer.data_commands());
    kills.push(at_kill);
    second.kill9();
    assert!(at_kill.1 < expected, "the second kill came after every message had arrived: {kills:?}");
    eprintln!(
        "chaos: kill 2 after {:.1} s: {} of {expected} arrived (queuing done {:.1} s after kill 1)",
        started.elapsed().as_secs_f64(),
        at_kill.1,
        queued_first.elapsed().as_secs_f64()
    );

    let third = ServerProcess::start(dir.path(), &log, ENV).await;
    let restarted = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(150);
    while arrived(&peer) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delivered_after = restarted.elapsed();
    // Everything arrived: the outbox settles (a message the peer took and then dropped the line
    // on is still being retried), and nothing may end failed or held.
    let mut pending = Vec::new();
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pending.clear();
        for status in ["queued", "sending", "retrying", "held", "failed"] {
            pending.extend(third.outbox(status).await);
        }
        if pending.is_empty() || Instant::now() > settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    third.kill9();

    let by_id = peer.by_message_id();
    let ours: BTreeMap<&String, &support::chaos_smtp::Delivered> =
        by_id.iter().filter(|(_, m)| m.subject.starts_with(INVITATION) || m.subject.starts_with(NOTICE)).collect();
    let mut ids_by_recipient = BTreeMap::<String, BTreeSet<&String>>::new();
    for (id, message) in &ours {
        for to in &message.recipients {
            ids_by_recipient.entry(to.clone()).or_default().insert(id);
        }
    }
    let mut wanted: BTreeSet<String> = (0..MESSAGES).map(address).collect();
    wanted.insert(ADMIN_EMAIL.to_owned());
    let lost: Vec<&String> = wanted.iter().filter(|to| !ids_by_recipient.contains_key(*to)).collect();
    let sent: usize = ours.values().map(|m| m.count).sum();
    let unique = ours.len();
    let duplicates = sent - unique;
    let strangers: Vec<&String> = ids_by_recipient.keys().filter(|to| !wanted.contains(*to)).collect();
    let twice_queued: Vec<_> = ids_by_recipient.iter().filter(|(_, ids)| ids.len() > 1).collect();
    eprintln!(
        "chaos: seed {seed}, fault rate {FAULT_RATE} per step; faults played {:?}; {} connections, {} DATA commands",
        peer.faults(),
        peer.connections(),
        peer.data_commands()
    );
    eprintln!(
        "chaos: kills at (users created, messages arrived, DATA commands) {kills:?}; the last {} arrived {:.1} s after the last restart; {:.1} s in all",
        expected - kills[1].1,
        delivered_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("chaos: sent {sent}, unique {unique}, duplicates {duplicates}, lost {}", lost.len());

    eprintln!("chaos: server warnings and errors {:?}", warnings(&log));
    assert!(lost.is_empty(), "lost {} messages, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
    assert_eq!(unique, expected, "one Message-ID per queued message");
    assert!(strangers.is_empty(), "mail to addresses nobody queued: {strangers:?}");
    assert!(twice_queued.is_empty(), "one user, two distinct invitations: {twice_queued:?}");
    assert!(pending.is_empty(), "the outbox did not settle, or messages failed: {pending:#?}");
    let played: usize = peer.faults().values().sum();
    assert!(played >= 50, "the peer hardly failed ({played} faults): the test proved little");
}
