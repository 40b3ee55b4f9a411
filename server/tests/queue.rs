//! The queue under faults: a configuration failure holds it without spending attempts, an
//! unreachable relay pauses it, a database that cannot write changes nothing, a lost lease
//! settles nothing, and the SMTP status tells the truth about settings versions and nodes.

mod common;
mod support;

use app::smtp_settings::{form::SmtpForm, types::Mode};
use common::*;
use serde_json::Value;
use std::{collections::BTreeMap, time::Duration};
use support::*;

/// Custom settings for aiosmtpd with STARTTLS and a login.
fn login_form(port: u16, password: &str) -> SmtpForm {
    SmtpForm { tls_enabled: true, username: SMTP_USER.into(), password: password.into(), ..custom_form(port) }
}

/// How many times each subject starting with `tag` arrived.
fn arrivals(peers: &[&SmtpPeer], tag: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for peer in peers {
        for message in peer.received().into_iter().filter(|m| m.subject.starts_with(tag)) {
            *seen.entry(message.subject).or_insert(0) += 1;
        }
    }
    seen
}

async fn health(app: &TestApp, admin: &reqwest::Client) -> Value {
    admin.get(app.url("/api/smtp_status")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_wrong_password_holds_the_queue_and_the_right_one_delivers_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let (app, admin) = spawn_app_trusting(certs.ca.clone()).await;
    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "starttls", auth: "PLAIN,LOGIN", ..Default::default() },
    );

    save(&app, &admin, &login_form(peer.port, "not the password")).await;
    app.queue_mail(50, "held").await;
    let rows = app.wait_rows("test", 20, |rows| count_status(rows, "held") == 50).await;
    for row in &rows {
        assert_eq!(row["attempts"], 0, "a held message keeps its attempts: {row}");
        assert!(row["last_error"].as_str().unwrap().contains("535"), "{row}");
        assert!(row["last_hint"].as_str().unwrap().contains("Password"), "{row}");
    }
    let status = health(&app, &admin).await;
    assert_eq!(status["is_valid"], false, "the banner is up: {status}");
    assert!(status["nodes"][0]["message"].as_str().unwrap().contains("535"), "{status}");
    assert!(peer.received().is_empty());

    save(&app, &admin, &login_form(peer.port, SMTP_PASSWORD)).await;
    app.wait_rows("test", 30, |rows| count_status(rows, "sent") == 50).await;
    let seen = arrivals(&[&peer], "held ");
    assert_eq!(seen.len(), 50, "every message arrived: {seen:?}");
    assert!(seen.values().all(|count| *count == 1), "each exactly once: {seen:?}");
    let rows = app.outbox_rows("test").await;
    assert!(rows.iter().all(|row| row["attempts"] == 1), "one attempt each: {rows:?}");
    assert_eq!(health(&app, &admin).await["is_valid"], true, "the banner is down again");
}

#[tokio::test]
async fn a_relay_down_for_30_seconds_pauses_the_queue_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let port = relay.port;
    let app = spawn_app_with(move |config| {
        config.default_smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        config.outbox_hold_retry_secs = 5;
    })
    .await;
    drop(relay);

    app.queue_mail(200, "relay").await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let rows = app.outbox_rows("test").await;
        assert_eq!(count_status(&rows, "failed"), 0, "an outage fails nothing: {rows:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rows = app.outbox_rows("test").await;
    assert_eq!(count_status(&rows, "held"), 200, "the queue waits for the relay");
    assert!(rows.iter().all(|row| row["attempts"] == 0), "an outage spends no attempts");
    assert!(rows[0]["last_error"].as_str().unwrap().contains("Connection refused"), "{}", rows[0]);

    let relay = SmtpPeer::start(dir.path(), None, PeerOptions { port, ..Default::default() });
    app.wait_rows("test", 30, |rows| count_status(rows, "sent") == 200).await;
    let seen = arrivals(&[&relay], "relay ");
    assert_eq!(seen.len(), 200, "all 200 arrived");
    assert!(seen.values().all(|count| *count == 1), "each once: {seen:?}");
}

#[tokio::test]
async fn a_relay_451_is_retried_and_the_next_attempt_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let relay = SmtpPeer::start(
        dir.path(),
        None,
        PeerOptions {
            tempfail_first: 1,
            tempfail_reply: Some("451 4.7.1 Greylisted, try again"),
            ..Default::default()
        },
    );
    let port = relay.port;
    let app = spawn_app_with(move |config| config.default_smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    app.queue_mail(1, "greylisted").await;
    let rows = app.wait_rows("test", 20, |rows| count_status(rows, "sent") == 1).await;
    assert_eq!(rows[0]["attempts"], 2, "the 451 cost one attempt: {}", rows[0]);
    assert_eq!(arrivals(&[&relay], "greylisted ").len(), 1);
}

/// A subscriber for this thread's tracing events (the test runs on one thread, so the server's
/// tasks log here too).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_database_that_cannot_write_changes_no_message_and_the_cause_is_logged_once() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    save(&app, &admin, &plain_smtp_form(peer.port)).await;
    app.wait_rows("admin_notice", 20, |rows| count_status(rows, "sent") == 1).await;

    // Every write to the outbox now fails inside the database, as a full disk would.
    let db = app.state.db();
    db.query("DEFINE EVENT fail_writes ON outbox WHEN $event = 'UPDATE' THEN { THROW 'disk full (injected)' }")
        .await
        .unwrap()
        .check()
        .unwrap();
    app.queue_mail(10, "readonly").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = app.outbox_rows("test").await;
    assert_eq!(count_status(&rows, "queued"), 10, "nothing changed: {rows:?}");
    assert!(rows.iter().all(|row| row["attempts"] == 0));
    assert!(arrivals(&[&peer], "readonly ").is_empty(), "nothing was sent without a claim");
    let text = log.text();
    let logged = text.lines().filter(|line| line.contains("ERROR") && line.contains("disk full (injected)")).count();
    assert_eq!(logged, 1, "one error line per cause per minute:\n{text}");

    db.query("REMOVE EVENT fail_writes ON outbox").await.unwrap().check().unwrap();
    app.wait_rows("test", 30, |rows| count_status(rows, "sent") == 10).await;
    let seen = arrivals(&[&peer], "readonly ");
    assert_eq!(seen.len(), 10);
    assert!(seen.values().all(|count| *count == 1), "{seen:?}");
}

#[tokio::test]
async fn a_settle_after_the_lease_was_taken_over_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    save(&app, &admin, &plain_smtp_form(peer.port)).await;
    app.wait_rows("admin_notice", 20, |rows| count_status(rows, "sent") == 1).await;

    peer.pause(true);
    app.queue_mail(1, "fenced").await;
    app.wait_rows("test", 10, |rows| count_status(rows, "sending") == 1).await;
    // The claim made the message due again when its lease runs out: the scan for expired
    // leases reads the due index, not every message being sent.
    let mut leased = app
        .state
        .db()
        .query("SELECT VALUE next_attempt_at = lease_until AND lease_until > time::unix(time::now()) * 1000 FROM outbox WHERE kind = 'test'")
        .await
        .unwrap();
    let leased: Vec<bool> = leased.take(0).unwrap();
    assert_eq!(leased, [true], "next_attempt_at is the lease's end");
    // Another node takes the message over, as it would after this lease ran out.
    app.state
        .db()
        .query("UPDATE outbox SET lease_owner = 'node-other', lease_token = 'theirs' WHERE kind = 'test'")
        .await
        .unwrap()
        .check()
        .unwrap();
    peer.pause(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows = app.outbox_rows("test").await;
    assert_eq!(rows[0]["status"], "sending", "the other node's claim stands: {}", rows[0]);
    assert_eq!(rows[0]["attempts"], 0, "{}", rows[0]);
    let mut attempts = app
        .state
        .db()
        .query("SELECT count() AS n FROM outbox_attempt WHERE node = $node GROUP ALL")
        .bind(("node", app.state.settings().node_id.clone()))
        .await
        .unwrap();
    let counted: Option<i64> = attempts.take((0, "n")).unwrap();
    assert_eq!(counted, Some(1), "only the admin notice's attempt was recorded");
    // Its key is [message, time, claim]: the message's attempts are a range of keys.
    let ok = app.attempts_by_key("admin_notice").await;
    assert_eq!(ok, [true], "the notice's one attempt, found by its key");
}

#[tokio::test]
async fn a_slow_check_of_older_settings_and_a_silent_node_do_not_raise_the_banner() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    save(&app, &admin, &SmtpForm { mode: Mode::Default, ..SmtpForm::default() }).await;
    let current: Value = admin.post(app.url("/api/smtp_load")).send().await.unwrap().json().await.unwrap();
    let version = current["version"].as_i64().unwrap();
    let stale_failure = Err(app::mail::SmtpFailure::ConnectionRefused { host: "old.example".into(), port: 25 });
    app::smtp_health::ssr::record(
        &app.state,
        app::smtp_health::StatusSource::PostSaveCheck,
        version - 1,
        &stale_failure,
    )
    .await;
    let status = health(&app, &admin).await;
    assert_eq!(status["is_valid"], true, "a result about older settings is not written: {status}");

    // A node that stopped reporting ten minutes ago, whose last word was a failure.
    app.state
        .db()
        .query(
            "UPSERT smtp_status:gone CONTENT { node: 'node-gone', is_valid: false, message: 'Connection refused',
                 hint: 'x', source: 'delivery', checked_at: 0, settings_version: $version,
                 heartbeat_at: time::unix(time::now()) * 1000 - 3600000 }",
        )
        .bind(("version", version))
        .await
        .unwrap()
        .check()
        .unwrap();
    let status = health(&app, &admin).await;
    assert_eq!(status["is_valid"], true, "a stale node leaves the banner: {status}");
    let gone = status["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "node-gone").unwrap();
    assert_eq!(gone["stale"], true, "{gone}");
}
