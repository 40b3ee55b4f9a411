//! The SMTP settings over HTTP: save, load, secrets, the re-entry rule, conflicts and limits.

mod common;

use app::auth::Role;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use surrealdb::types::SurrealValue;

const PASSWORD: &str = "s3cret-Pa55word-for-tests";
const CLIENT_SECRET: &str = "client-secret-Value-7f3a";

fn basic_form() -> Value {
    json!({
        "mode": "Custom",
        "host": "localhost",
        "port": "587",
        "from": "Mailroom <mail@example.com>",
        "tls_enabled": true,
        "tls_version": "Tls12",
        "tls_mode": "StartTls",
        "auth_type": "Basic",
        "username": "mailer",
        "password": PASSWORD,
        "client_id": "",
        "client_secret": "",
        "token_url": "",
        "scope": ""
    })
}

fn oauth_form() -> Value {
    let mut form = basic_form();
    form["auth_type"] = json!("OAuth2");
    form["username"] = json!("mail@example.com");
    form["password"] = json!("");
    form["client_id"] = json!("client-id-1");
    form["client_secret"] = json!(CLIENT_SECRET);
    form["token_url"] = json!("https://login.example.com/oauth2/token");
    form["scope"] = json!("https://outlook.office365.com/.default");
    form
}

async fn save(app: &TestApp, client: &reqwest::Client, form: &Value, version: u64) -> (StatusCode, String) {
    let response =
        client.post(app.url("/api/smtp_save")).json(&json!({ "form": form, "version": version })).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn load(app: &TestApp, client: &reqwest::Client) -> (Value, String) {
    let text = app.call(client, "smtp_load", &[]).await.text().await.unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn saved_settings_load_back_without_their_secret() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let (status, body) = save(&app, &admin, &basic_form(), 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.contains(PASSWORD));
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["version"], 1);
    assert!(outcome["changed"].as_array().unwrap().contains(&json!("Password")));

    let (view, text) = load(&app, &admin).await;
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(view["form"]["host"], "localhost");
    assert_eq!(view["form"]["port"], "587");
    assert_eq!(view["form"]["from"], "Mailroom <mail@example.com>");
    assert_eq!(view["form"]["username"], "mailer");
    assert_eq!(view["form"]["password"], "");
    assert_eq!(view["password_set"], true);
    assert_eq!(view["version"], 1);
    assert!(view["saved_by"].as_str().unwrap().contains(ADMIN_EMAIL));
    assert!(view["saved_at"].as_i64().unwrap() > 0);

    let page = admin.get(app.url("/admin/smtp")).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"value="Mailroom &lt;mail@example.com&gt;""#),
        "the server's HTML has the saved From in its input, before any script runs"
    );
    assert!(!page.contains(PASSWORD), "no secret in the SSR HTML");

    // A blank password with nothing guarded changed keeps the stored one.
    let mut again = basic_form();
    again["password"] = json!("");
    again["from"] = json!("Other Name <other@example.com>");
    let (status, body) = save(&app, &admin, &again, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (view, _) = load(&app, &admin).await;
    assert_eq!(view["password_set"], true);
    assert_eq!(view["form"]["from"], "Other Name <other@example.com>");
}

#[tokio::test]
async fn bad_fields_come_back_as_field_errors_and_nothing_is_saved() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let mut form = basic_form();
    form["host"] = json!("smtp://smtp.example.com/");
    form["from"] = json!("Mail, Room <mail@example.com>");
    form["port"] = json!("65536");
    let (status, body) = save(&app, &admin, &form, 0).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["kind"], "validation");
    assert_eq!(error["detail"]["host"], "Leave out the scheme and path: enter just smtp.example.com");
    assert!(error["detail"]["from"].as_str().unwrap().starts_with("',' at position 5"));
    assert!(error["detail"]["port"].as_str().unwrap().contains("65536"));
    let (view, _) = load(&app, &admin).await;
    assert_eq!(view["version"], 0);
}

#[tokio::test]
async fn each_guarded_change_needs_the_secret_typed_again() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(save(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    let cases = [
        ("host", json!("smtp.attacker.example"), "Re-enter the password: the email server changed"),
        ("port", json!("2525"), "Re-enter the password: the port changed"),
        ("username", json!("someone-else"), "Re-enter the password: the username changed"),
    ];
    for (field, value, message) in cases {
        let mut form = basic_form();
        form["password"] = json!("");
        form[field] = value;
        let (status, body) = save(&app, &admin, &form, 1).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["detail"]["password"], message, "{field}");
    }

    // Basic → OAuth 2.0 with no client secret typed.
    let mut oauth = oauth_form();
    oauth["client_secret"] = json!("");
    let (status, body) = save(&app, &admin, &oauth, 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["detail"]["client_secret"], "Enter the client secret.");

    // With the secret typed the switch is saved; then a new token URL needs it again.
    assert_eq!(save(&app, &admin, &oauth_form(), 1).await.0, StatusCode::OK);
    let mut moved = oauth_form();
    moved["client_secret"] = json!("");
    moved["token_url"] = json!("https://collector.attacker.example/token");
    let (status, body) = save(&app, &admin, &moved, 2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["detail"]["client_secret"],
        "Re-enter the client secret: the token URL changed"
    );

    // And back to Basic: the old password is not reused either.
    let mut back = basic_form();
    back["password"] = json!("");
    let (status, body) = save(&app, &admin, &back, 2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["detail"]["password"], "Enter the password.");
}

#[tokio::test]
async fn a_save_from_a_stale_version_is_refused_naming_who_saved() {
    let app = spawn_app().await;
    let first = app.admin_client().await;
    let second = app.admin_client().await;
    assert_eq!(save(&app, &first, &basic_form(), 0).await.0, StatusCode::OK);
    let mut late = basic_form();
    late["from"] = json!("Late <late@example.com>");
    let (status, body) = save(&app, &second, &late, 0).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let error: Value = serde_json::from_str(&body).unwrap();
    let message = error["detail"].as_str().unwrap();
    assert!(message.contains(ADMIN_EMAIL) && message.contains("UTC"), "{message}");
    let (view, _) = load(&app, &first).await;
    assert_eq!(view["form"]["from"], "Mailroom <mail@example.com>", "nothing overwritten");
}

#[tokio::test]
async fn switching_to_default_keeps_the_custom_settings_and_audits_every_save() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(save(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    let mut default = basic_form();
    default["mode"] = json!("Default");
    default["password"] = json!("");
    assert_eq!(save(&app, &admin, &default, 1).await.0, StatusCode::OK);
    let (view, _) = load(&app, &admin).await;
    assert_eq!(view["form"]["mode"], "Default");
    assert_eq!(view["form"]["host"], "localhost");
    assert_eq!(view["password_set"], true);

    let mut audit =
        app.state.db().query("SELECT fields, actor, version FROM smtp_audit ORDER BY version").await.unwrap();
    let rows: Vec<AuditRow> = audit.take(0).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].fields.contains(&"Email Server".to_owned()) && rows[0].fields.contains(&"Password".to_owned()));
    assert_eq!(rows[1].fields, vec!["Mode".to_owned()]);
    assert_eq!(rows[1].version, 2);
    assert!(rows[1].actor.as_deref().unwrap().contains(ADMIN_EMAIL));
    assert!(!format!("{rows:?}").contains(PASSWORD));
}

#[tokio::test]
async fn only_admins_may_load_or_save() {
    let app = spawn_app().await;
    app.create_user(USER_EMAIL, USER_PASSWORD, Role::User).await;
    let user = app.client();
    app.sign_in(&user, USER_EMAIL, USER_PASSWORD).await;
    assert_eq!(save(&app, &user, &basic_form(), 0).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.call(&user, "smtp_load", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(save(&app, &app.client(), &basic_form(), 0).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn saves_past_the_quota_get_429_with_the_wait() {
    let app = spawn_app_with(|config| config.smtp_per_admin_per_minute = std::num::NonZeroU32::new(2).unwrap()).await;
    let admin = app.admin_client().await;
    let mut form = basic_form();
    form["host"] = json!("bad host");
    for _ in 0..2 {
        assert_eq!(save(&app, &admin, &form, 0).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let response = admin
        .post(app.url("/api/smtp_save"))
        .json(&json!({ "form": basic_form(), "version": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["kind"], "rate_limited");
    assert!(error["detail"]["retry_after_secs"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn the_password_is_not_in_clear_text_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    let url = format!("surrealkv://{}", db_path.display());
    let app = spawn_app_with(|config| config.database.url = url).await;
    let admin = app.admin_client().await;
    assert_eq!(save(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    assert_eq!(save(&app, &admin, &oauth_form(), 1).await.0, StatusCode::OK);
    let (view, _) = load(&app, &admin).await;
    assert_eq!(view["client_secret_set"], true);

    let mut files = 0;
    let mut stack = vec![db_path.clone()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            for secret in [PASSWORD, CLIENT_SECRET] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} found in {}",
                    path.display()
                );
            }
        }
    }
    assert!(files > 0, "the database wrote files under {}", db_path.display());
    let found = walk_contains(&db_path, b"mail@example.com");
    assert!(found, "the scan reads the real data files (the From address is there in clear)");
}

#[derive(Debug, SurrealValue)]
struct AuditRow {
    fields: Vec<String>,
    actor: Option<String>,
    version: i64,
}

fn walk_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}
