//! `/healthz`, what a load balancer asks every node: 200 while the database answers, 503 when
//! it does not, without a session.

#[path = "support/cluster.rs"]
mod cluster;
mod common;

use cluster::Surreal;
use common::*;
use reqwest::{StatusCode, header};
use std::time::{Duration, Instant};

#[tokio::test]
async fn healthz_answers_ok_without_a_session() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::SET_COOKIE).is_none(), "a health check starts no session");
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn healthz_answers_only_to_a_host_this_instance_answers_to() {
    // So a balancer's check must name one: the node's own address, or the public URL's host.
    let app = spawn_app_with(|config| config.public_url = Some("https://mail.example.com".into())).await;
    let client = reqwest::Client::new();
    let status = |host: &'static str| {
        let request = client.get(app.url("/healthz")).header(header::HOST, host);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status("evil.example").await, StatusCode::BAD_REQUEST);
    assert_eq!(status("mail.example.com").await, StatusCode::OK);
    assert_eq!(status("127.0.0.1:8080").await, StatusCode::OK);
}

/// Polls `/healthz` until it answers `want` (at most `secs`).
async fn wait_for_health(app: &TestApp, want: StatusCode, secs: u64) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let status = client.get(app.url("/healthz")).send().await.map(|r| r.status());
        if status.as_ref().is_ok_and(|status| *status == want) {
            return;
        }
        assert!(Instant::now() < deadline, "/healthz never answered {want} within {secs} s (last: {status:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Against SurrealDB's own server (`bash scripts/build-surreal.sh` builds it; `.ci/run` does).
#[tokio::test]
async fn healthz_answers_503_while_the_database_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut surreal = Surreal::start(dir.path()).await;
    let app = spawn_app_with(|config| {
        config.database.url = surreal.url();
        config.database.credentials = Some((cluster::DB_USER.into(), cluster::DB_PASS.into()));
    })
    .await;
    wait_for_health(&app, StatusCode::OK, 5).await;

    surreal.kill9();
    wait_for_health(&app, StatusCode::SERVICE_UNAVAILABLE, 5).await;
}
