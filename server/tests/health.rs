//! SMTP health: the post-save check, the persisted status, the live stream and the status API.

mod common;
mod support;

use app::{
    auth::Role,
    smtp_settings::{form::SmtpForm, types::Mode},
};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use support::*;

async fn status(app: &TestApp, client: &reqwest::Client) -> Value {
    let response = client.get(app.url("/api/smtp_status")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Polls the status API until `done` holds (at most 15 s).
async fn wait_for_status(app: &TestApp, client: &reqwest::Client, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let current = status(app, client).await;
        if done(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the status never matched; last: {}", status(app, client).await);
}

async fn open_events(app: &TestApp, client: &reqwest::Client) -> Events {
    Events::from_response(client.get(app.url("/api/smtp_status/stream")).send().await.unwrap())
}

#[tokio::test]
async fn a_failing_post_save_check_is_recorded_and_a_later_good_save_clears_it() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    // Each node checks the saved settings (here the default: the local mailbox) when it starts.
    let started = wait_for_status(&app, &admin, |s| s["node_count"] == 1).await;
    assert_eq!(started["is_valid"], true);
    assert_eq!(started["nodes"][0]["source"], "start-up check");

    save(&app, &admin, &plain_smtp_form(closed_port())).await;
    // The delivery of the admin notice about the save may say it first; the post-save check
    // always records its verdict, so it is the last word.
    let failing =
        wait_for_status(&app, &admin, |s| s["is_valid"] == false && s["nodes"][0]["source"] == "post-save check").await;
    assert_eq!(failing["node_count"], 1);
    let node = &failing["nodes"][0];
    assert!(node["message"].as_str().unwrap().starts_with("Connection refused"), "{node}");
    assert!(node["hint"].as_str().unwrap().contains("Nothing accepts connections"), "{node}");
    assert!(node["checked_at"].as_i64().unwrap() > 0);

    // Every admin page renders it on the server: the alert and the sidebar icon.
    let html = admin.get(app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    let alert = html
        .find(r#"role="alert""#)
        .map(|at| &html[at..(at + 600).min(html.len())])
        .unwrap_or_else(|| panic!("no alert in {html}"));
    assert!(alert.contains("SMTP is failing") && alert.contains("Connection refused by 127.0.0.1"), "{alert}");
    assert!(html.contains(r#"aria-label="SMTP has errors""#));

    let dir = tempfile::tempdir().unwrap();
    let peer = SmtpPeer::start(dir.path(), None, PeerOptions::default());
    save(&app, &admin, &plain_smtp_form(peer.port)).await;
    let healthy = wait_for_status(&app, &admin, |s| s["is_valid"] == true).await;
    assert_eq!(healthy["nodes"][0]["is_valid"], true);
    let received = peer.received();
    assert!(
        received.iter().all(|m| m.data.contains("Subject: SMTP settings were changed by")),
        "the check sends no mail; only the admin notices arrive: {received:?}"
    );
    let html = admin.get(app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("SMTP has errors"));
}

#[tokio::test]
async fn saving_default_mode_with_the_local_mailbox_records_healthy() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    save(&app, &admin, &plain_smtp_form(closed_port())).await;
    wait_for_status(&app, &admin, |s| s["is_valid"] == false).await;
    save(&app, &admin, &SmtpForm { mode: Mode::Default, ..plain_smtp_form(25) }).await;
    wait_for_status(&app, &admin, |s| s["is_valid"] == true).await;
}

#[tokio::test]
async fn only_admins_may_read_or_subscribe() {
    let app = spawn_app().await;
    app.create_user(USER_EMAIL, USER_PASSWORD, Role::User).await;
    let user = app.client();
    app.sign_in(&user, USER_EMAIL, USER_PASSWORD).await;
    for path in ["/api/smtp_status", "/api/smtp_status/stream"] {
        assert_eq!(user.get(app.url(path)).send().await.unwrap().status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(app.client().get(app.url(path)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn two_subscribers_both_receive_a_change() {
    let app = spawn_app().await;
    let (first_admin, second_admin) = (app.admin_client().await, app.admin_client().await);
    let mut first = open_events(&app, &first_admin).await;
    let mut second = open_events(&app, &second_admin).await;
    assert_eq!(first.next(15).await["is_valid"], true, "the stream starts with the current status");
    assert_eq!(second.next(15).await["is_valid"], true);

    save(&app, &first_admin, &plain_smtp_form(closed_port())).await;
    for events in [&mut first, &mut second] {
        let change = events.until(30, |e| e["is_valid"] == false).await;
        assert!(change["nodes"][0]["message"].as_str().unwrap().contains("Connection refused"));
    }
}

#[tokio::test]
async fn a_status_written_by_one_node_reaches_admins_on_another_through_live_select() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db =
        app::db::connect(app::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None })
            .await
            .unwrap();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut nodes = Vec::new();
    for (dir, name) in [(&dirs.0, "node-a"), (&dirs.1, "node-b")] {
        let mut config = test_config(dir.path());
        config.node_id = Some(name.into());
        // The nodes of one instance share its key (a second key would be refused).
        config.secret_key_file = dirs.0.path().join("secret.key");
        let server = server::Server::build_on(config, db.clone()).await.unwrap();
        let addr = server.local_addr();
        tokio::spawn(server.run(std::future::pending()));
        nodes.push(addr);
    }
    let client_for = |addr: std::net::SocketAddr| async move {
        let client = browser_like_client(&format!("http://{addr}"));
        let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
        assert!(
            client.post(format!("http://{addr}/api/login")).form(&form).send().await.unwrap().status().is_success()
        );
        client
    };
    let (on_a, on_b) = (client_for(nodes[0]).await, client_for(nodes[1]).await);
    let response = on_b.get(format!("http://{}/api/smtp_status/stream", nodes[1])).send().await.unwrap();
    let mut events = Events::from_response(response);
    assert_eq!(events.next(15).await["is_valid"], true);

    // An admin on node A saves settings that fail; node A's check writes node A's status.
    save(&format!("http://{}", nodes[0]), &on_a, &plain_smtp_form(closed_port())).await;
    let change = events.until(30, |e| e["is_valid"] == false).await;
    assert_eq!(change["nodes"][0]["node"], "node-a", "the admin on node B sees node A's failure");
}
