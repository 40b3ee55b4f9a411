//! What one anonymous caller can make the server spend: memory for bodies, Argon2 runs for
//! set-password floods. These tests measure the process (RSS, Argon2 counter), so they run one at
//! a time in their own test binary.

mod common;

use app::{auth::ssr::argon2_runs, smtp_settings::form::SmtpForm};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The tests of this file measure the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_20_mb_body_gets_413_at_once_on_every_endpoint_and_costs_no_memory() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let before = resident_kib();
    for endpoint in PUBLIC_FUNCTIONS.iter().chain(ADMIN_FUNCTIONS) {
        let started = Instant::now();
        let status = post_declaring(&app, &format!("/api/{endpoint}"), 20 * 1024 * 1024, 0).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{endpoint}: {status}");
        assert!(started.elapsed() < Duration::from_secs(1), "{endpoint}: {:?}", started.elapsed());
    }
    // Without a declared length (chunked), the cap applies while reading.
    let client = app.client();
    let chunks = futures::stream::iter((0..320).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024])));
    let response = client
        .post(app.url("/api/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "too_large");
    }
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 20 * 1024, "RSS grew by {grown} KiB");
    // A body under the limit still works.
    let ok = app.sign_in(&app.client(), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_oversized_field_is_400_before_any_lookup_or_hash() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app_with(|config| config.limits.max_body_bytes = 2 * 1024 * 1024).await;
    let runs = argon2_runs();
    let huge = "a".repeat(1024 * 1024);
    let email = format!("{huge}@example.com");
    for (endpoint, form) in [
        ("login", vec![("email", email.as_str()), ("password", "whatever password")]),
        ("login", vec![("email", ADMIN_EMAIL), ("password", huge.as_str())]),
        ("password_reset", vec![("email", email.as_str())]),
        ("password_set", vec![("token", huge.as_str()), ("password", "a long enough password")]),
        (
            "create_first_admin",
            vec![
                ("name", huge.as_str()),
                ("email", "a@example.com"),
                ("password", "long enough pw"),
                ("setup_code", "x"),
            ],
        ),
    ] {
        let response = app.call(&app.client(), endpoint, &form).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{endpoint}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "bad_request", "{endpoint}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("longer than"), "{endpoint}: {body}");
    }
    let admin = app.admin_client().await;
    let (status, body) = try_save_at(&app, &admin, &SmtpForm { host: huge, ..plain_smtp_form(25) }, 0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("Email Server is longer than"), "{body}");
    assert_eq!(argon2_runs(), runs + 1, "only the admin's own sign-in hashed");
}

#[tokio::test]
async fn two_hundred_set_password_calls_with_random_tokens_compute_no_hash() {
    let _serial = SERIAL.lock().await;
    let app = spawn_app().await;
    let runs = argon2_runs();
    let before = resident_kib();
    let calls = (0..200).map(|n| {
        let (client, url) = (app.client(), app.url("/api/password_set"));
        async move {
            let token = format!("{n:064x}");
            let form = [("token", token.as_str()), ("password", "a long enough password")];
            client.post(url).form(&form).send().await.unwrap().status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert_eq!(statuses.len(), 200);
    for status in &statuses {
        assert!(matches!(status.as_u16(), 409 | 429), "{status}");
    }
    assert_eq!(argon2_runs(), runs, "no Argon2 run for a token that does not exist");
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 50 * 1024, "RSS grew by {grown} KiB");
}
