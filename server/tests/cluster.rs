//! Three Mailroom node processes on one SurrealDB server process (the real `surreal` binary,
//! `ws://`, surrealkv on disk): one session store, one settings record, instance-wide limits,
//! one status that every node writes and every admin sees live, and one outbox that the nodes
//! share without sending a message twice — also when a node is killed (SIGKILL) and when the
//! database server itself is killed and started again on its data.

#[path = "support/cluster.rs"]
mod cluster;
mod common;
mod support;

use cluster::{Browser, Node, Surreal, open_events, write_key};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};
use support::{PeerOptions, SmtpPeer};

/// One cluster at a time: three debug nodes and a database server fill two cores.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Short timeouts and quick retries, so a killed node's messages are taken over in seconds.
const ENV: &[(&str, &str)] = &[
    ("MAILROOM_SMTP_TIMEOUT_SECS", "2"),
    ("MAILROOM_OUTBOX_LEASE_SECS", "10"),
    ("MAILROOM_OUTBOX_RETRY_BASE_MS", "100"),
    ("MAILROOM_OUTBOX_MAX_ATTEMPTS", "50"),
    ("MAILROOM_OUTBOX_CONCURRENCY", "8"),
    ("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "100"),
];

/// A database server and nodes a, b and c on it, sharing one instance key.
struct Cluster {
    dir: tempfile::TempDir,
    surreal: Surreal,
    key: [u8; 32],
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let surreal = Surreal::start(dir.path()).await;
        let key = write_key(&dir.path().join("secret.key"));
        let env: Vec<(&str, &str)> = ENV.iter().chain(extra).copied().collect();
        // All three at once on the fresh database, as an orchestrator starts them: they race
        // to apply the schema and create the first admin.
        let nodes = std::thread::scope(|scope| {
            let starts: Vec<_> = ["node-a", "node-b", "node-c"]
                .into_iter()
                .map(|name| {
                    let (dir, surreal, env) = (dir.path(), &surreal, &env);
                    scope.spawn(move || Node::start(dir, surreal, name, &dir.join("secret.key"), env))
                })
                .collect();
            starts.into_iter().map(|start| start.join().unwrap()).collect()
        });
        Self { dir, surreal, key, nodes }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    /// Queues `count` messages tagged `tag` the way the product does (sealed, in the outbox),
    /// straight into the shared database; the nodes find them on their next poll.
    async fn queue(&self, db: &app::state::Db, tag: &str, count: usize) {
        let rows: Vec<_> = (0..count).map(|n| test_mail(tag, n, &self.key)).collect();
        for chunk in rows.chunks(250) {
            db.query("INSERT INTO outbox $rows").bind(("rows", chunk.to_vec())).await.unwrap().check().unwrap();
        }
    }
}

/// A failing test prints the end of every node's log and the database's.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("--- {} log (end):\n{}", node.name, node.log_tail());
            }
            let surreal = std::fs::read_to_string(self.dir.path().join("surreal.log")).unwrap_or_default();
            let lines: Vec<&str> = surreal.lines().collect();
            eprintln!("--- surreal log (end):\n{}", lines[lines.len().saturating_sub(20)..].join("\n"));
        }
    }
}

async fn status(browser: &Browser, node: &Node) -> Value {
    browser.on(node).get(node.url("/api/smtp_status")).send().await.unwrap().json().await.unwrap()
}

/// Messages at the peer whose subject starts with `tag `, by Message-ID: how often each came.
fn arrived(peer: &SmtpPeer, tag: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in peer.received() {
        if message.subject.starts_with(&format!("{tag} ")) {
            *counts.entry(bare_id(&message.message_id)).or_default() += 1;
        }
    }
    counts
}

fn bare_id(id: &str) -> String {
    id.trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

/// Polls until `count` distinct `tag` messages arrived; panics after `secs`.
async fn wait_arrived(peer: &SmtpPeer, tag: &str, count: usize, secs: u64) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let counts = arrived(peer, tag);
        if counts.len() >= count {
            return counts;
        }
        assert!(Instant::now() < deadline, "{tag}: {} of {count} messages arrived within {secs} s", counts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deliveries recorded by each node.
async fn sent_by_node(db: &app::state::Db) -> BTreeMap<String, i64> {
    let mut response =
        db.query("SELECT node, count() AS count FROM outbox_attempt WHERE ok = true GROUP BY node").await.unwrap();
    let rows: Vec<surrealdb::types::Value> = response.take(0).unwrap();
    rows.into_iter()
        .map(|row| row.into_json_value())
        .map(|row| (row["node"].as_str().unwrap_or_default().to_owned(), row["count"].as_i64().unwrap_or_default()))
        .collect()
}

fn duplicates(counts: &BTreeMap<String, usize>) -> BTreeSet<String> {
    counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect()
}

async fn healthz_ok(node: &Node) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    client.get(node.url("/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
}

fn plain_peer(dir: &Path) -> SmtpPeer {
    SmtpPeer::start(dir, None, PeerOptions { auth: "", ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_settings_and_limits_hold_across_three_node_processes() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Cluster::start(&[("MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE", "4")]).await;
    let (a, b, c) = (cluster.node("node-a"), cluster.node("node-b"), cluster.node("node-c"));

    // Signed in through node A; the same cookie works on B and C.
    let browser = Browser::default();
    assert_eq!(browser.sign_in(a, ADMIN_PASSWORD).await, StatusCode::OK);
    for node in [b, c] {
        let me: Value =
            browser.on(node).post(node.url("/api/current_user")).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["email"], ADMIN_EMAIL, "{} knows the session started on node-a: {me}", node.name);
        let response = browser.on(node).get(node.url("/api/smtp_status")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{} lets the admin in", node.name);
    }
    let stranger = Browser::default();
    let refused = stranger.on(b).get(b.url("/api/smtp_status")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "without the cookie, no session");

    // Another sign-in, used on B and C (which keep a copy of the session), then ended on A: B and
    // C refuse its cookie as soon as the deletion reaches their live queries.
    let leaving = Browser::default();
    assert_eq!(leaving.sign_in(a, ADMIN_PASSWORD).await, StatusCode::OK);
    let cookie = leaving.cookie(a);
    let with_cookie = |node: &Node| {
        reqwest::Client::new().get(node.url("/api/smtp_status")).header(reqwest::header::COOKIE, cookie.clone())
    };
    for node in [b, c] {
        for _ in 0..3 {
            assert_eq!(with_cookie(node).send().await.unwrap().status(), StatusCode::OK, "{} lets it in", node.name);
        }
    }
    let out = leaving.on(a).post(a.url("/api/logout")).send().await.unwrap();
    assert!(out.status().is_success() || out.status().is_redirection(), "sign-out: {}", out.status());
    for node in [b, c] {
        let deadline = Instant::now() + Duration::from_secs(3);
        while with_cookie(node).send().await.unwrap().status() != StatusCode::UNAUTHORIZED {
            assert!(Instant::now() < deadline, "{} still lets the signed-out session in after 3 s", node.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Every node checked the settings when it started: the one status lists all three.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = status(&browser, b).await;
        let started = health["nodes"].as_array().unwrap().iter().filter(|n| n["source"] == "start-up check").count();
        if started == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not every node reported its start-up check: {health:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Settings saved on C reach A and B through the database: each checks them itself and
    // reports, with its heartbeat, in the one status every node answers.
    let peer = plain_peer(cluster.dir.path());
    let saved = save(c, &browser.on(c), &plain_smtp_form(peer.port)).await;
    let version = saved["version"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let health = status(&browser, a).await;
        let current = health["nodes"].as_array().unwrap().iter().filter(|n| n["settings_version"] == version).count();
        if current == 3 && health["is_valid"] == true {
            break health;
        }
        assert!(Instant::now() < deadline, "not every node checked version {version}: {health:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (node, name) in health["nodes"].as_array().unwrap().iter().zip(["node-a", "node-b", "node-c"]) {
        assert_eq!(node["node"], name);
        assert_eq!(node["is_valid"], true, "{node}");
        assert!(node["checked_at"].as_i64().unwrap() > 0 && node["heartbeat_at"].as_i64().is_some(), "{node}");
        assert_eq!(node["stale"], false);
    }

    // The instance-wide SMTP actions quota (4 a minute) counts every node: the save was one.
    let form = plain_smtp_form(peer.port);
    for node in [a, b, c] {
        let (status, body) = send_test(node, &browser.on(node), &form).await;
        assert_eq!(status, StatusCode::OK, "test email on {}: {body}", node.name);
    }
    let (status, body) = send_test(b, &browser.on(b), &form).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the fifth action, on any node: {body}");

    // Sign-in failures for one address on A and B slow the next attempt on C.
    let wrong = Browser::default();
    for node in [a, b, a, b, a, b] {
        assert_eq!(wrong.sign_in(node, "not the password").await, StatusCode::UNAUTHORIZED);
    }
    let started = Instant::now();
    assert_eq!(wrong.sign_in(c, "not the password").await, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_secs(2), "node C waited: {:?}", started.elapsed());

    // A node started with another instance key refuses to start: it could not open what the
    // others sealed.
    let other_key = cluster.dir.path().join("other.key");
    write_key(&other_key);
    let refused = Node::try_start(cluster.dir.path(), &cluster.surreal, "node-d", &other_key, ENV);
    let Err((exit, log)) = refused else { panic!("node-d started with another instance key") };
    assert!(!exit.success());
    assert!(log.contains("is not the key this database was sealed with"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_arrive_once_from_three_nodes_and_a_killed_node_loses_none() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(&[]).await;
    let db = cluster.surreal.client().await;
    let peer = plain_peer(cluster.dir.path());
    let browser = Browser::default();
    let a = cluster.node("node-a");
    assert_eq!(browser.sign_in(a, ADMIN_PASSWORD).await, StatusCode::OK);
    save(a, &browser.on(a), &plain_smtp_form(peer.port)).await;

    // Three nodes, one outbox: each message exactly once.
    let started = Instant::now();
    cluster.queue(&db, "calm", 2000).await;
    let counts = wait_arrived(&peer, "calm", 2000, 300).await;
    let per_node = sent_by_node(&db).await;
    println!("2,000 messages, three nodes: {:.1} s, sent by {per_node:?}", started.elapsed().as_secs_f64());
    assert_eq!(counts.len(), 2000);
    assert_eq!(duplicates(&counts), BTreeSet::new(), "no message twice while every node lives");
    assert!(per_node.len() == 3 && per_node.values().all(|n| *n > 0), "every node delivered: {per_node:?}");

    // Again, node B killed (SIGKILL) halfway: what it held is taken over after its lease.
    cluster.queue(&db, "kill", 2000).await;
    wait_arrived(&peer, "kill", 1000, 300).await;
    let b = cluster.nodes.remove(1);
    assert_eq!(b.name, "node-b");
    b.kill9();
    // What B had claimed and not settled: it may have sent some of these already.
    let mut response =
        db.query("SELECT VALUE message_id FROM outbox WHERE status = 'sending' AND lease_owner = 'node-b'").await;
    let in_flight: BTreeSet<String> =
        response.as_mut().unwrap().take::<Vec<String>>(0).unwrap().iter().map(|id| bare_id(id)).collect();
    wait_arrived(&peer, "kill", 2000, 300).await;
    // Every message recorded sent (what node-b held is sent again once its lease runs out), and
    // only then counted: a second copy arrives after the first.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut rows = db.query("SELECT VALUE record::id(id) FROM outbox WHERE status != 'sent'").await.unwrap();
        let unsent: Vec<String> = rows.take(0).unwrap();
        if unsent.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not recorded sent within 120 s: {unsent:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = arrived(&peer, "kill");
    assert_eq!(counts.len(), 2000);
    let twice = duplicates(&counts);
    println!(
        "node-b killed halfway: 2,000 of 2,000 arrived; {} in flight at node-b when killed, {} arrived twice",
        in_flight.len(),
        twice.len()
    );
    assert!(twice.is_subset(&in_flight), "only what node-b had sent but not recorded comes twice: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_server_killed_mid_run_loses_no_message_and_the_live_status_still_reaches_admins() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start(&[]).await;
    let db = cluster.surreal.client().await;
    let peer = plain_peer(cluster.dir.path());
    let browser = Browser::default();
    let (a, c) = (cluster.node("node-a"), cluster.node("node-c"));
    assert_eq!(browser.sign_in(a, ADMIN_PASSWORD).await, StatusCode::OK);
    save(c, &browser.on(c), &plain_smtp_form(peer.port)).await;
    // An admin page on node A: its status stream, open across the restart.
    let mut events = open_events(&browser, a).await;
    events.until(20, |e| e["is_valid"] == true).await;

    cluster.queue(&db, "restart", 1000).await;
    drop(db);
    wait_arrived(&peer, "restart", 300, 300).await;
    cluster.surreal.restart().await;
    let restarted = Instant::now();
    for node in &cluster.nodes {
        while !healthz_ok(node).await {
            assert!(restarted.elapsed() < Duration::from_secs(10), "{} did not reconnect within 10 s", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{} answers /healthz {:.1} s after the database restarted",
            node.name,
            restarted.elapsed().as_secs_f64()
        );
    }
    let counts = wait_arrived(&peer, "restart", 1000, 300).await;
    println!("database killed mid-run: 1,000 of 1,000 arrived, {} twice", duplicates(&counts).len());

    // A failure saved on node C reaches the page on node A, through the re-subscribed feed.
    let (a, c) = (cluster.node("node-a"), cluster.node("node-c"));
    save(c, &browser.on(c), &plain_smtp_form(closed_port())).await;
    let failing = events.until(30, |e| e["is_valid"] == false).await;
    assert!(failing["nodes"].as_array().unwrap().iter().any(|n| n["is_valid"] == false), "{failing}");
    save(c, &browser.on(c), &plain_smtp_form(peer.port)).await;
    events.until(30, |e| e["is_valid"] == true).await;
    assert_eq!(status(&browser, a).await["is_valid"], true);
}
