//! Hostile input, tried the way an attacker would: oversized and slow requests, floods of
//! set-password and first-admin calls, internal addresses on the SMTP form, links in someone
//! else's mail, sessions that should be over, cross-site and rebinding requests, malformed
//! arguments. Every test runs against the real server on port 0.

mod common;

use app::{auth::Role, smtp_settings::form::SmtpForm};
use common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

#[tokio::test]
async fn a_request_that_trickles_in_is_cut_off() {
    let app = spawn_app_with(|config| {
        config.limits.header_timeout_secs = 1;
        config.limits.request_timeout_secs = 2;
    })
    .await;
    // Headers that never end: the connection is closed after the header timeout.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\nX-Slow: ", app.addr).as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    // A body that never arrives: 408 when the request timeout runs out.
    let status = post_declaring(&app, "/api/login", 1000, 10).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
}

#[tokio::test]
async fn twenty_concurrent_first_admins_make_exactly_one_and_none_without_the_code() {
    let app = spawn_app_with(|config| config.first_admin = None).await;
    let code = app.setup_code.clone().unwrap();
    let without = app
        .call(
            &app.client(),
            "create_first_admin",
            &[
                ("name", "Mallory"),
                ("email", "mallory@example.com"),
                ("password", "a long enough password"),
                ("setup_code", ""),
            ],
        )
        .await;
    assert_eq!(without.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let attempts = (0..20).map(|n| {
        let (client, url, code) = (app.client(), app.url("/api/create_first_admin"), code.clone());
        async move {
            let email = format!("admin{n}@example.com");
            let form = [
                ("name", "Racer"),
                ("email", email.as_str()),
                ("password", "a long enough password"),
                ("setup_code", code.as_str()),
            ];
            client.post(url).form(&form).send().await.unwrap().status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let created = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| s.is_success() || *s == StatusCode::FORBIDDEN), "{statuses:?}");
    let mut response =
        app.state.db().query("SELECT count() AS n FROM user WHERE role = 'admin' GROUP ALL").await.unwrap();
    let admins: Option<i64> = response.take((0, "n")).unwrap();
    assert_eq!(admins, Some(1));
}

#[tokio::test]
async fn send_test_email_refuses_internal_addresses_at_once_and_connects_nowhere() {
    // Loopback shut by MAILROOM_SMTP_ALLOWED_NETWORKS: a listener there must never see us.
    let app = spawn_app_with(|config| {
        config.smtp_allowed_networks = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let admin = app.admin_client().await;
    for host in ["127.0.0.1", "localhost", "169.254.169.254", "[fd00:ec2::254]", "0.0.0.0"] {
        let form = SmtpForm { host: host.into(), ..plain_smtp_form(port) };
        let started = Instant::now();
        let (status, body) = send_test(&app, &admin, &form).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{host}: {:?}", started.elapsed());
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{host}: {body}");
        let refused = &body["detail"]["AddressRefused"];
        assert!(refused.is_object(), "{host}: {body}");
        if host == "127.0.0.1" || host == "localhost" {
            assert_eq!(refused["outside_allowed"], true, "{host}: {body}");
        } else {
            assert_eq!(refused["outside_allowed"], false, "{host}: {body}");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "a refused address was connected to");

    // The default policy still refuses the metadata address, and names the setting in the hint.
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let form = SmtpForm { host: "169.254.169.254".into(), ..plain_smtp_form(80) };
    let started = Instant::now();
    let (status, body) = send_test(&app, &admin, &form).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["detail"]["AddressRefused"]["address"], "169.254.169.254", "{body}");
}

#[tokio::test]
async fn what_a_non_smtp_peer_says_reaches_the_admin_as_a_short_printable_excerpt() {
    let app = spawn_app().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut noise = b"554 ".to_vec();
            noise.extend((0..5000).map(|i| if i % 7 == 0 { 0x1b } else { b'A' + (i % 26) as u8 }));
            noise.extend_from_slice(b"\r\n");
            let _ = socket.write_all(&noise).await;
        }
    });
    let admin = app.admin_client().await;
    let (status, body) = send_test(&app, &admin, &plain_smtp_form(port)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let text = body.to_string();
    assert!(!text.contains("\\u001b"), "{text}");
    assert!(text.len() < 1000, "{} bytes: {text}", text.len());
}

/// The one-time link in the newest local-mailbox mail to `to`, read by `client`.
async fn mailbox_text(app: &TestApp, client: &reqwest::Client, to: &str) -> String {
    for _ in 0..100 {
        let list: Vec<Value> = app.call(client, "mailbox_list", &[]).await.json().await.unwrap();
        if let Some(entry) = list.iter().find(|m| m["to_addr"].as_str().unwrap().contains(to)) {
            let id = entry["id"].as_str().unwrap();
            let message: Value = app.call(client, "mailbox_read", &[("id", id)]).await.json().await.unwrap();
            return message["text"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail to {to} in the local mailbox");
}

fn link_token(text: &str) -> Option<String> {
    let at = text.find("token=")? + "token=".len();
    let token: String = text[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    (token.len() >= 32).then_some(token)
}

#[tokio::test]
async fn a_reset_ends_every_session_spends_other_links_and_only_the_recipient_reads_the_link() {
    let app = spawn_app().await;
    app.create_user("second@example.com", "second admin password", Role::Admin).await;
    let (first, elsewhere) = (app.admin_client().await, app.admin_client().await);
    let second = app.client();
    app.sign_in(&second, "second@example.com", "second admin password").await;

    // Two resets for the first admin; the second admin reads the mail but not the link.
    for _ in 0..2 {
        assert_eq!(app.call(&app.client(), "password_reset", &[("email", ADMIN_EMAIL)]).await.status(), StatusCode::OK);
    }
    let seen_by_other = mailbox_text(&app, &second, ADMIN_EMAIL).await;
    assert!(seen_by_other.contains("only the recipient sees this link"), "{seen_by_other}");
    assert!(link_token(&seen_by_other).is_none(), "{seen_by_other}");
    let mut list: Vec<Value> = Vec::new();
    for _ in 0..100 {
        list = app.call(&first, "mailbox_list", &[]).await.json().await.unwrap();
        if list.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tokens = Vec::new();
    for entry in list.iter().filter(|m| m["to_addr"].as_str().unwrap().contains(ADMIN_EMAIL)) {
        let message: Value =
            app.call(&first, "mailbox_read", &[("id", entry["id"].as_str().unwrap())]).await.json().await.unwrap();
        tokens.push(link_token(message["text"].as_str().unwrap()).expect("the recipient sees the link"));
    }
    assert_eq!(tokens.len(), 2);

    // Bodies are sealed at rest: the database holds no link.
    let mut rows = app.state.db().query("SELECT VALUE text FROM mailbox").await.unwrap();
    let stored: Vec<String> = rows.take(0).unwrap();
    assert!(stored.iter().all(|text| !tokens.iter().any(|t| text.contains(t.as_str()))));

    let set = app
        .call(&app.client(), "password_set", &[("token", tokens[0].as_str()), ("password", "a brand new password")])
        .await;
    assert_eq!(set.status(), StatusCode::OK);
    for client in [&first, &elsewhere] {
        assert_eq!(app.call(client, "admin_context", &[]).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.call(&second, "admin_context", &[]).await.status(), StatusCode::OK, "other users keep theirs");
    let other_link = app
        .call(&app.client(), "password_set", &[("token", tokens[1].as_str()), ("password", "yet another password")])
        .await;
    assert_eq!(other_link.status(), StatusCode::CONFLICT, "the other open link is spent");
    assert_eq!(app.sign_in(&app.client(), ADMIN_EMAIL, "a brand new password").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_session_past_its_absolute_lifetime_is_over() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::OK);
    // Move the sign-in time back 31 days (the default lifetime is 30).
    let mut rows = app.state.db().query("SELECT id, data FROM session").await.unwrap();
    let sessions: Vec<Value> =
        rows.take::<Vec<surrealdb::types::Value>>(0).unwrap().into_iter().map(|v| v.into_json_value()).collect();
    assert!(!sessions.is_empty());
    for row in sessions {
        let mut data: Value = serde_json::from_str(row["data"].as_str().unwrap()).unwrap();
        let at = data["signed_in_at"].as_i64().expect("sessions record their sign-in time");
        data["signed_in_at"] = json!(at - 31 * 86_400_000);
        app.state
            .db()
            .query("UPDATE session SET data = $data WHERE data = $old")
            .bind(("data", data.to_string()))
            .bind(("old", row["data"].as_str().unwrap().to_owned()))
            .await
            .unwrap()
            .check()
            .unwrap();
    }
    assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::UNAUTHORIZED);
}

/// Reads a status stream until the server ends it; panics if it is still open after `limit`.
async fn wait_for_end(response: reqwest::Response, limit: Duration) {
    let mut stream = response.bytes_stream();
    tokio::time::timeout(limit, async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the status stream ended");
}

#[tokio::test]
async fn a_status_stream_ends_when_its_admin_is_demoted_or_signs_out_and_is_capped_per_session() {
    let app = spawn_app_with(|config| {
        config.stream_recheck_secs = 1;
        config.max_streams_per_session = 2;
    })
    .await;
    app.create_user("demoted@example.com", "demoted password 1", Role::Admin).await;
    let demoted = app.client();
    app.sign_in(&demoted, "demoted@example.com", "demoted password 1").await;
    let stream = demoted.get(app.url("/api/smtp_status/stream")).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    app.state.db().query("UPDATE user SET role = 'user' WHERE email = 'demoted@example.com'").await.unwrap();
    wait_for_end(stream, Duration::from_secs(5)).await;
    let again = demoted.get(app.url("/api/smtp_status/stream")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);

    let admin = app.admin_client().await;
    let first = admin.get(app.url("/api/smtp_status/stream")).send().await.unwrap();
    let second = admin.get(app.url("/api/smtp_status/stream")).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let third = admin.get(app.url("/api/smtp_status/stream")).send().await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "two streams per session here");
    drop(second);
    assert_eq!(app.call(&admin, "logout", &[]).await.status(), StatusCode::OK);
    wait_for_end(first, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_cookie_carrying_post_must_say_it_is_same_origin_and_the_host_must_be_ours() {
    let app = spawn_app().await;
    let bare = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    // Without a cookie, a client that is not a browser may sign in.
    assert_eq!(bare.post(app.url("/api/login")).form(&form).send().await.unwrap().status(), StatusCode::OK);
    let refused = bare.post(app.url("/api/admin_context")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "cookie, but neither Origin nor Sec-Fetch-Site");
    let same_site =
        bare.post(app.url("/api/admin_context")).header("Sec-Fetch-Site", "same-origin").send().await.unwrap();
    assert_eq!(same_site.status(), StatusCode::OK);
    let origin =
        bare.post(app.url("/api/admin_context")).header("Origin", format!("http://{}", app.addr)).send().await.unwrap();
    assert_eq!(origin.status(), StatusCode::OK);

    // DNS rebinding: the attacker's name in Host.
    for host in ["evil.example", &format!("evil.example:{}", app.addr.port())] {
        let page = bare.get(app.url("/login")).header("Host", host).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{host}");
    }
    let page = bare.get(format!("http://localhost:{}/login", app.addr.port())).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_arguments_to_every_server_function_are_a_4xx_with_a_message() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    // Raw bytes on purpose, not a typed form: a hostile client sends what no form could.
    let bodies: [(&str, Vec<u8>); 4] = [
        ("application/json", b"{\"form\": 42".to_vec()),
        ("application/json", b"[1, 2, 3]".to_vec()),
        ("application/x-www-form-urlencoded", b"unexpected=%ff%fe&\xff\xfe".to_vec()),
        ("text/plain", vec![0xff, 0xfe, 0x00, 0x01]),
    ];
    // Sign-out last: the admin's session is needed for the rest.
    let endpoints =
        ADMIN_FUNCTIONS.iter().chain(PUBLIC_FUNCTIONS.iter().filter(|e| **e != "logout")).chain(["logout"].iter());
    for endpoint in endpoints {
        for (content_type, body) in &bodies {
            let response = admin
                .post(app.url(&format!("/api/{endpoint}")))
                .header("Content-Type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(!status.is_server_error(), "{endpoint} {content_type}: {status} {text}");
            // Endpoints without arguments may ignore the body; the others must refuse it clearly.
            if status.is_client_error() {
                let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{endpoint}: {text}"));
                assert!(error["kind"].is_string(), "{endpoint}: {text}");
            }
        }
    }
    // A form missing an argument.
    let missing = app.call(&app.client(), "login", &[("email", ADMIN_EMAIL)]).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

/// Roles, outbox states and certificate roles are typed arguments: a value outside them is
/// refused as the caller's fault (400, the error as JSON), and nothing is created.
#[tokio::test]
async fn a_typed_argument_outside_its_values_is_a_bad_request() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let calls: [(&str, &[(&str, &str)]); 3] = [
        ("users_create", &[("name", "Owen"), ("email", "owen@example.com"), ("role", "owner")]),
        ("outbox_list", &[("status", "lost")]),
        ("smtp_certificates", &[("pem", "x"), ("role", "TrustedCa")]),
    ];
    for (endpoint, form) in calls {
        let response = app.call(&admin, endpoint, form).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{endpoint}: {body}");
        assert!(body["kind"].is_string(), "{endpoint}: {body}");
    }
    let users: Value = app.call(&admin, "users_list", &[]).await.json().await.unwrap();
    assert!(!users.to_string().contains("owen@example.com"), "no user was created: {users}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = spawn_app_with(|config| config.limits.max_connections = 2).await;
    let idle = [TcpStream::connect(app.addr).await.unwrap(), TcpStream::connect(app.addr).await.unwrap()];
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().unwrap();
    let waiting = client.get(app.url("/login")).send().await;
    assert!(waiting.is_err_and(|err| err.is_timeout()), "a third connection is served only when one closes");
    drop(idle);
    // Served once one closes: how fast is not the point (other tests share the cores), so this
    // request has its own, longer limit.
    let patient = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let served = patient.get(app.url("/login")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
}
