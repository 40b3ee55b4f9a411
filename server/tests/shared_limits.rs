//! Limits that must hold for the whole instance hold across nodes: two servers on one database
//! share the SMTP actions quota and the per-email sign-in slow-down.

mod common;

use common::*;
use reqwest::StatusCode;
use std::{net::SocketAddr, time::Duration};

async fn two_nodes(adjust: impl Fn(&mut server::config::Config)) -> (Vec<SocketAddr>, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db =
        app::db::connect(app::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let mut config = test_config(dir.path());
        config.node_id = Some(name.into());
        adjust(&mut config);
        let server = server::Server::build_on(config, db.clone()).await.unwrap();
        nodes.push(server.local_addr());
        tokio::spawn(server.run(std::future::pending()));
    }
    (nodes, dir)
}

async fn signed_in(addr: SocketAddr) -> reqwest::Client {
    let client = browser_like_client(&format!("http://{addr}"));
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    let response = client.post(format!("http://{addr}/api/login")).form(&form).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    client
}

async fn test_email(addr: SocketAddr, client: &reqwest::Client) -> StatusCode {
    send_test(&format!("http://{addr}"), client, &plain_smtp_form(1)).await.0
}

#[tokio::test]
async fn the_instance_wide_smtp_quota_counts_every_node() {
    let (nodes, _dir) = two_nodes(|config| {
        config.smtp_per_instance_per_minute = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    let (on_a, on_b) = (signed_in(nodes[0]).await, signed_in(nodes[1]).await);
    for _ in 0..3 {
        // Port 1 refuses: the test email fails, but it counts.
        assert_ne!(test_email(nodes[0], &on_a).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(test_email(nodes[1], &on_b).await, StatusCode::TOO_MANY_REQUESTS, "node B sees node A's actions");
}

#[tokio::test]
async fn sign_in_failures_on_one_node_slow_the_next_attempt_on_another() {
    let (nodes, _dir) = two_nodes(|_| {}).await;
    let wrong = [("email", ADMIN_EMAIL), ("password", "not the password")];
    let client = browser_like_client(&format!("http://{}", nodes[0]));
    for _ in 0..6 {
        let response = client.post(format!("http://{}/api/login", nodes[0])).form(&wrong).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let other = browser_like_client(&format!("http://{}", nodes[1]));
    let started = std::time::Instant::now();
    let response = other.post(format!("http://{}/api/login", nodes[1])).form(&wrong).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_secs(2), "node B waited: {:?}", started.elapsed());
}
