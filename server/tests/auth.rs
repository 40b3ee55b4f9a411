//! Sign-in, sessions and the admin guard, over HTTP against the real server.

mod common;

use app::auth::Role;
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn an_admin_signs_in_and_the_session_knows_them() {
    let app = spawn_app().await;
    let client = app.client();
    let response = app.sign_in(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("location").unwrap(), "/admin/smtp");
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("mailroom_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");

    let me: serde_json::Value = app.call(&client, "current_user", &[]).await.json().await.unwrap();
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["role"], "admin");
    assert!(me.get("password_hash").is_none());
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    let wrong_password = app.sign_in(&app.client(), ADMIN_EMAIL, "not the password").await;
    let unknown_email = app.sign_in(&app.client(), "nobody@example.com", "not the password").await;
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status(), StatusCode::UNAUTHORIZED);
    let (a, b) = (wrong_password.text().await.unwrap(), unknown_email.text().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, r#"{"kind":"invalid_credentials"}"#);
}

#[tokio::test]
async fn a_non_admin_gets_403_from_an_admin_server_function() {
    let app = spawn_app().await;
    app.create_user(USER_EMAIL, USER_PASSWORD, Role::User).await;
    let client = app.client();
    let signed_in = app.sign_in(&client, USER_EMAIL, USER_PASSWORD).await;
    assert_eq!(signed_in.headers().get("location").unwrap(), "/");
    let response = app.call(&client, "admin_context", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("forbidden"));
}

#[tokio::test]
async fn a_signed_out_caller_gets_401_from_an_admin_server_function() {
    let app = spawn_app().await;
    let response = app.call(&app.client(), "admin_context", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let admin = app.admin_client().await;
    assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(app.call(&admin, "logout", &[]).await.status(), StatusCode::OK);
    assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cross_site_post_is_refused() {
    let app = spawn_app().await;
    let client = app.client();
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    let forged =
        client.post(app.url("/api/login")).header("Origin", "https://evil.example").form(&form).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let fetched =
        client.post(app.url("/api/login")).header("Sec-Fetch-Site", "cross-site").form(&form).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::FORBIDDEN);
    let same_origin = client
        .post(app.url("/api/login"))
        .header("Origin", format!("http://{}", app.addr))
        .header("Sec-Fetch-Site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_admin_page_sends_visitors_to_login_and_users_to_a_403_page() {
    let app = spawn_app().await;
    let visitor = app.client().get(app.url("/admin/smtp")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(visitor.status(), StatusCode::FOUND);
    assert_eq!(visitor.headers().get("location").unwrap(), "/login");

    app.create_user(USER_EMAIL, USER_PASSWORD, Role::User).await;
    let user = app.client();
    app.sign_in(&user, USER_EMAIL, USER_PASSWORD).await;
    let page = user.get(app.url("/admin/smtp")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("Admins only"));

    let admin = app.admin_client().await;
    let page = admin.get(app.url("/admin/smtp")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // Without the empty comments (`<!>`) that mark where each text node ends for hydration.
    let html = page.text().await.unwrap().replace("<!>", "");
    assert!(html.contains("<h1>SMTP</h1>"), "{html}");
    assert!(html.contains(">Platform</h2>"));
}

#[tokio::test]
async fn sign_in_attempts_from_one_client_past_the_quota_get_429_with_the_wait() {
    // The per-client quota is three times MAILROOM_LOGIN_PER_MINUTE.
    let app = spawn_app_with(|config| config.login_per_minute = std::num::NonZeroU32::new(3).unwrap()).await;
    for n in 0..9 {
        let email = format!("guess{n}@example.com");
        assert_eq!(app.sign_in(&app.client(), &email, "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = app.sign_in(&app.client(), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[tokio::test]
async fn failures_for_one_email_slow_it_down_but_never_lock_the_admin_out() {
    let app = spawn_app().await;
    for _ in 0..4 {
        assert_eq!(app.sign_in(&app.client(), ADMIN_EMAIL, "wrong guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    // After four failures the next attempt waits a second first, then succeeds.
    let started = std::time::Instant::now();
    let response = app.sign_in(&app.client(), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    // Another email is not slowed down by them.
    let started = std::time::Instant::now();
    assert_eq!(app.sign_in(&app.client(), "nobody@example.com", "x").await.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_first_admin_page_works_once_and_only_without_an_admin() {
    let app = spawn_app_with(|config| config.first_admin = None).await;
    let code = app.setup_code.clone().expect("a setup code without MAILROOM_ADMIN_EMAIL");
    let client = app.client();
    let needed: bool = app.call(&client, "first_admin_needed", &[]).await.json().await.unwrap();
    assert!(needed);
    let short = app
        .call(
            &client,
            "create_first_admin",
            &[("name", "Ada"), ("email", "ada@example.com"), ("password", "short"), ("setup_code", &code)],
        )
        .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut form = [
        ("name", "Ada"),
        ("email", "ada@example.com"),
        ("password", "a long enough password"),
        ("setup_code", "0000-0000-0000-0000"),
    ];
    let wrong_code = app.call(&client, "create_first_admin", &form).await;
    assert_eq!(wrong_code.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong_code.text().await.unwrap().contains("setup_code"));
    form[3].1 = &code;
    assert_eq!(app.call(&client, "create_first_admin", &form).await.status(), StatusCode::OK);
    assert_eq!(app.call(&client, "admin_context", &[]).await.status(), StatusCode::OK, "signed in at once");

    let again =
        [("name", "Eve"), ("email", "eve@example.com"), ("password", "a long enough password"), ("setup_code", &code)];
    assert_eq!(app.call(&app.client(), "create_first_admin", &again).await.status(), StatusCode::FORBIDDEN);
    let needed: bool = app.call(&app.client(), "first_admin_needed", &[]).await.json().await.unwrap();
    assert!(!needed);
    let page = app.client().get(app.url("/setup")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(page.headers().get("location").unwrap(), "/login", "the page is gone");
}

/// Polls until `done` holds, for at most `secs`; answers whether it did.
async fn within(secs: u64, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_session_this_node_keeps_a_copy_of_ends_when_another_writer_deletes_it() {
    let app = spawn_app().await;
    let shared = app.state.shared.clone();
    let admin = app.admin_client().await;
    // The sign-in's own write reaches the live query a moment later and drops every copy: from
    // then on, a request leaves a copy of its session.
    let copied = within(5, async || {
        assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::OK);
        shared.sessions.len() == 1
    });
    assert!(copied.await, "no signed-in request left a copy of its session");
    assert_eq!(app.call(&admin, "admin_context", &[]).await.status(), StatusCode::OK, "answered from the copy");

    // Another node (here: a write that bypasses this node's store) ends every session.
    app.state.db().query("DELETE session").await.unwrap().check().unwrap();
    let refused = within(2, async || app.call(&admin, "admin_context", &[]).await.status() == StatusCode::UNAUTHORIZED);
    assert!(refused.await, "the deleted session still let the admin in two seconds later");
    assert!(shared.sessions.is_empty());
}

#[tokio::test]
async fn a_user_changed_by_another_writer_is_read_again() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let name = async || -> String {
        let me: serde_json::Value = app.call(&admin, "current_user", &[]).await.json().await.unwrap();
        me["name"].as_str().unwrap().to_owned()
    };
    let before = name().await;
    assert_eq!(name().await, before);
    app.state.db().query("UPDATE user SET name = 'Renamed Admin'").await.unwrap().check().unwrap();
    assert!(within(2, async || name().await == "Renamed Admin").await, "still {before:?} two seconds later");
}
