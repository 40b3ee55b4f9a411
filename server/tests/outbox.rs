//! The outbox: retries, permanent failures, one-time links, the same answer for unknown
//! addresses, one transaction with the change, and durability across `kill -9`.

mod common;
mod support;

use app::smtp_settings::form::SmtpForm;
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use support::*;

async fn outbox(base: &str, client: &reqwest::Client) -> Vec<Value> {
    let list: Value =
        client.post(format!("{base}/api/outbox_list")).form(&[("", "")]).send().await.unwrap().json().await.unwrap();
    list.as_array().cloned().unwrap_or_else(|| panic!("{list}"))
}

/// Polls until `done` holds for the outbox (at most `secs`).
async fn wait_outbox(base: &str, client: &reqwest::Client, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let list = outbox(base, client).await;
        if done(&list) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "the outbox never got there: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn notices(list: &[Value]) -> Vec<&Value> {
    list.iter().filter(|m| m["kind"] == "admin_notice").collect()
}

#[tokio::test]
async fn a_421_is_retried_and_the_message_delivered_once() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions { tempfail_first: 1, ..Default::default() });
    save(&app, &admin, &plain_smtp_form(peer.port)).await;
    let list = wait_outbox(&app.url(""), &admin, 20, |l| notices(l).iter().any(|m| m["status"] == "sent")).await;
    let notice = notices(&list)[0];
    assert_eq!(notice["attempts"], 2, "{notice}");
    let received = peer.received();
    assert_eq!(received.len(), 1, "delivered once: {received:?}");
    assert!(received[0].subject.starts_with("SMTP settings were changed by"), "{}", received[0].subject);
    assert!(received[0].text.contains("Email Server") && received[0].text.contains("Port"), "{}", received[0].text);
    // Names only: neither the host nor the port it was set to.
    assert!(received[0].text.contains("Changed: Mode, Email Server, Port, From"), "{}", received[0].text);
    for value in ["127.0.0.1", &peer.port.to_string()] {
        assert!(!received[0].text.contains(value), "the notice lists {value}: {}", received[0].text);
    }
}

#[tokio::test]
async fn a_550_stops_as_failed_with_the_reason_and_retry_now_tries_again() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let dir = tempfile::tempdir().unwrap();
    let peer =
        SmtpPeer::start(dir.path(), None, PeerOptions { reject_recipient: Some(ADMIN_EMAIL), ..Default::default() });
    save(&app, &admin, &plain_smtp_form(peer.port)).await;
    let list = wait_outbox(&app.url(""), &admin, 20, |l| notices(l).iter().any(|m| m["status"] == "failed")).await;
    let notice = notices(&list)[0].clone();
    assert_eq!(notice["attempts"], 1);
    assert!(notice["last_error"].as_str().unwrap().contains("550"), "{notice}");
    assert!(notice["last_hint"].as_str().unwrap().contains("recipient"), "{notice}");

    let id = notice["id"].as_str().unwrap();
    let retried = admin.post(app.url("/api/outbox_retry")).form(&[("id", id)]).send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let list = wait_outbox(&app.url(""), &admin, 20, |l| notices(l).iter().any(|m| m["attempts"] == 2)).await;
    assert_eq!(notices(&list)[0]["status"], "failed");
    let again = admin.post(app.url("/api/outbox_retry")).form(&[("id", "no-such-message")]).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

/// The one-time link in the newest local-mailbox message to `to`. The admin reads their own mail
/// on the Mailbox page; anyone else's is read as their mail client would, from the store (opened
/// with the instance key) — the page masks links in other people's mail.
async fn link_in_mailbox(app: &TestApp, admin: &reqwest::Client, to: &str) -> String {
    use secrecy::ExposeSecret;
    for _ in 0..100 {
        let list: Value = app.call(admin, "mailbox_list", &[]).await.json().await.unwrap();
        if let Some(entry) = list.as_array().unwrap().iter().find(|m| m["to_addr"].as_str().unwrap().contains(to)) {
            let id = entry["id"].as_str().unwrap();
            let message: Value = app.call(admin, "mailbox_read", &[("id", id)]).await.json().await.unwrap();
            let shown = message["text"].as_str().unwrap().to_owned();
            let text = if to == ADMIN_EMAIL {
                shown
            } else {
                assert!(shown.contains("only the recipient sees this link"), "masked for the admin: {shown}");
                let mut rows = app
                    .state
                    .db()
                    .query("SELECT VALUE text FROM mailbox WHERE record::id(id) = $id")
                    .bind(("id", id.to_owned()))
                    .await
                    .unwrap();
                let sealed: Vec<String> = rows.take(0).unwrap();
                let key = app.state.shared.secret_key.expose_secret();
                let opened =
                    app::shared::seal::decrypt(key, app::mail::ssr::mailbox::BODY_PURPOSE, &sealed[0]).unwrap();
                opened.expose_secret().to_owned()
            };
            let start = text.find("http://").unwrap_or_else(|| panic!("a link in {text}"));
            return text[start..].split_whitespace().next().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail to {to} in the mailbox");
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn an_invitation_link_sets_the_password_once_and_expires() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let created =
        app.call(&admin, "users_create", &[("name", "Nia New"), ("email", "nia@example.com"), ("role", "user")]).await;
    assert_eq!(created.status(), StatusCode::OK);
    let link = link_in_mailbox(&app, &admin, "nia@example.com").await;
    assert!(link.starts_with(&format!("http://{}/set-password?token=", app.addr)), "{link}");
    let token = token_of(&link);

    let short = app.call(&app.client(), "password_set", &[("token", &token), ("password", "short")]).await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let set = app.call(&app.client(), "password_set", &[("token", &token), ("password", "nia's long password")]).await;
    assert_eq!(set.status(), StatusCode::OK);
    let user = app.client();
    assert_eq!(app.sign_in(&user, "nia@example.com", "nia's long password").await.status(), StatusCode::OK);
    let reused =
        app.call(&app.client(), "password_set", &[("token", &token), ("password", "another long password")]).await;
    assert_eq!(reused.status(), StatusCode::CONFLICT, "the link works once");

    app.call(&admin, "users_create", &[("name", "Old Link"), ("email", "old@example.com"), ("role", "user")]).await;
    let stale = token_of(&link_in_mailbox(&app, &admin, "old@example.com").await);
    app.state
        .db()
        .query("UPDATE user_token SET expires_at = 0 WHERE purpose = 'invite' AND used_at = NONE")
        .await
        .unwrap();
    let expired =
        app.call(&app.client(), "password_set", &[("token", &stale), ("password", "a long enough password")]).await;
    assert_eq!(expired.status(), StatusCode::CONFLICT, "the link expires");
}

#[tokio::test]
async fn a_reset_answers_the_same_for_unknown_addresses_and_its_link_works() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let known = app.call(&app.client(), "password_reset", &[("email", ADMIN_EMAIL)]).await;
    let unknown = app.call(&app.client(), "password_reset", &[("email", "nobody@example.com")]).await;
    assert_eq!(known.status(), unknown.status());
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());

    let link = link_in_mailbox(&app, &admin, ADMIN_EMAIL).await;
    let set = app
        .call(&app.client(), "password_set", &[("token", &token_of(&link)), ("password", "a brand new password")])
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(app.sign_in(&app.client(), ADMIN_EMAIL, "a brand new password").await.status(), StatusCode::OK);
    let list: Value = app.call(&admin, "mailbox_list", &[]).await.json().await.unwrap();
    assert!(!list.to_string().contains("nobody@example.com"), "no mail for an unknown address");
}

#[tokio::test]
async fn resets_are_rate_limited_per_address() {
    let app = spawn_app_with(|c| c.reset_per_hour = std::num::NonZeroU32::new(2).unwrap()).await;
    for _ in 0..2 {
        assert_eq!(
            app.call(&app.client(), "password_reset", &[("email", "x@example.com")]).await.status(),
            StatusCode::OK
        );
    }
    let limited = app.call(&app.client(), "password_reset", &[("email", "x@example.com")]).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn no_invitation_is_queued_when_creating_the_user_fails() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let before = outbox(&app.url(""), &admin).await.len();
    let duplicate =
        app.call(&admin, "users_create", &[("name", "Twin"), ("email", ADMIN_EMAIL), ("role", "user")]).await;
    assert_eq!(duplicate.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = duplicate.json().await.unwrap();
    assert_eq!(body["detail"]["email"], "A user with this email already exists.");
    assert_eq!(outbox(&app.url(""), &admin).await.len(), before, "the outbox row went with the failed transaction");
}

/// Short timeouts and retries so the paused peer costs seconds, not minutes.
const DURABLE_ENV: &[(&str, &str)] = &[
    ("MAILROOM_SMTP_TIMEOUT_SECS", "2"),
    ("MAILROOM_OUTBOX_RETRY_BASE_MS", "200"),
    ("MAILROOM_OUTBOX_LEASE_SECS", "4"),
    ("MAILROOM_OUTBOX_MAX_ATTEMPTS", "100"),
    ("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "1000"),
];

#[tokio::test]
async fn queued_mail_survives_kill_9_and_every_message_arrives() {
    const MESSAGES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    let (mut first, base) = start_process(dir.path(), DURABLE_ENV);
    let admin = browser_like_client(&base);
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    assert!(admin.post(format!("{base}/api/login")).form(&form).send().await.unwrap().status().is_success());
    peer.pause(true);
    save(&base, &admin, &plain_smtp_form(peer.port)).await;
    let mut expected = std::collections::BTreeSet::new();
    for n in 0..MESSAGES {
        let email = format!("user{n}@example.com");
        let created = admin
            .post(format!("{base}/api/users_create"))
            .form(&[("name", format!("User {n}")), ("email", email.clone()), ("role", "user".into())])
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::OK, "{n}");
        expected.insert(email);
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let (mut second, base) = start_process(dir.path(), DURABLE_ENV);
    peer.pause(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let invitations = loop {
        let arrived: Vec<Received> =
            peer.received().into_iter().filter(|m| m.subject.starts_with("You are invited")).collect();
        let unique: std::collections::BTreeSet<String> = arrived.iter().flat_map(|m| m.to.clone()).collect();
        if unique.len() >= MESSAGES || std::time::Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    let arrived: std::collections::BTreeSet<String> = invitations.iter().flat_map(|m| m.to.clone()).collect();
    let missing: Vec<&String> = expected.difference(&arrived).collect();
    let by_id: std::collections::BTreeSet<&String> = invitations.iter().map(|m| &m.message_id).collect();
    let duplicates = invitations.len() - by_id.len();
    println!(
        "durability: queued {MESSAGES}, arrived {} distinct, {} deliveries, {duplicates} duplicates, {} lost",
        arrived.len(),
        invitations.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
    let _ = base;
}

#[tokio::test]
async fn links_point_at_the_server_not_at_the_callers_host_header_and_are_sealed_in_the_outbox() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    // A Host the instance does not answer to is refused outright.
    let poisoned = app
        .client()
        .post(app.url("/api/password_reset"))
        .header("Host", "evil.example")
        .form(&[("email", ADMIN_EMAIL)])
        .send()
        .await
        .unwrap();
    assert_eq!(poisoned.status(), StatusCode::BAD_REQUEST);
    // One it does answer to still does not choose where links point.
    let other_name = app
        .client()
        .post(app.url("/api/password_reset"))
        .header("Host", format!("localhost:{}", app.addr.port()))
        .header("Origin", format!("http://localhost:{}", app.addr.port()))
        .form(&[("email", ADMIN_EMAIL)])
        .send()
        .await
        .unwrap();
    assert_eq!(other_name.status(), StatusCode::OK);
    let link = link_in_mailbox(&app, &admin, ADMIN_EMAIL).await;
    assert!(link.starts_with(&format!("http://{}/set-password?token=", app.addr)), "{link}");

    let mut stored = app.state.db().query("SELECT VALUE text FROM outbox WHERE kind = 'password_reset'").await.unwrap();
    let bodies: Vec<String> = stored.take(0).unwrap();
    assert_eq!(bodies.len(), 1);
    assert!(!bodies[0].contains(&token_of(&link)) && !bodies[0].contains("set-password"), "sealed: {}", bodies[0]);
}

#[tokio::test]
async fn over_starttls_pipelining_is_learnt_from_the_ehlo_after_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let (app, admin) = spawn_app_trusting(certs.ca.clone()).await;
    let peer = SmtpPeer::start(
        dir.path(),
        Some(&certs),
        PeerOptions { mode: "starttls", pipelining: true, ..Default::default() },
    );
    save(&app, &admin, &SmtpForm { tls_enabled: true, ..custom_form(peer.port) }).await;
    app.queue_mail(10, "tls-pipe").await;
    app.wait_rows("test", 30, |rows| count_status(rows, "sent") == 10).await;
    let received: Vec<_> = peer.received().into_iter().filter(|m| m.subject.starts_with("tls-pipe ")).collect();
    assert_eq!(received.len(), 10);
    assert!(received.iter().all(|m| m.tls && m.pipelined), "pipelined inside TLS: {received:?}");
}

#[tokio::test]
async fn mail_is_pipelined_where_the_server_offers_it_and_a_refusal_keeps_the_connection_in_step() {
    for pipelining in [true, false] {
        let app = spawn_app().await;
        let admin = app.admin_client().await;
        let dir = tempfile::tempdir().unwrap();
        let options = PeerOptions { pipelining, reject_recipient: Some("pipe-3@example.com"), ..Default::default() };
        let peer = SmtpPeer::start(dir.path(), None, options);
        save(&app, &admin, &plain_smtp_form(peer.port)).await;
        app.queue_mail(40, "pipe").await;
        let rows = app
            .wait_rows("test", 30, |rows| count_status(rows, "sent") == 39 && count_status(rows, "failed") == 1)
            .await;
        let refused = rows.iter().find(|row| row["status"] == "failed").unwrap();
        assert_eq!(refused["to_addr"], "pipe-3@example.com");
        assert!(refused["last_error"].as_str().unwrap().contains("550"), "the RCPT reply, read in order: {refused}");

        let received: Vec<_> = peer.received().into_iter().filter(|m| m.subject.starts_with("pipe ")).collect();
        let mut subjects: Vec<&str> = received.iter().map(|m| m.subject.as_str()).collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!((received.len(), subjects.len()), (39, 39), "each accepted message once: {subjects:?}");
        assert!(!subjects.contains(&"pipe 3"));
        assert!(
            received.iter().all(|m| m.pipelined == pipelining),
            "MAIL, RCPT and DATA in one write exactly when PIPELINING is advertised ({pipelining})"
        );
    }
}
