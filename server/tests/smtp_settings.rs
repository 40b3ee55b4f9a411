//! The SMTP settings over HTTP: save, load, secrets, the re-entry rule, conflicts and limits.

mod common;

use app::{
    auth::Role,
    smtp_settings::{
        form::SmtpForm,
        types::{AuthType, Mode},
    },
};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use surrealdb::types::SurrealValue;

const PASSWORD: &str = "s3cret-Pa55word-for-tests";
const CLIENT_SECRET: &str = "client-secret-Value-7f3a";

fn basic_form() -> SmtpForm {
    SmtpForm { tls_enabled: true, username: "mailer".into(), password: PASSWORD.into(), ..custom_form(587) }
}

/// [`basic_form`] with the password left blank.
fn basic_form_blank() -> SmtpForm {
    SmtpForm { password: "".into(), ..basic_form() }
}

fn oauth_form() -> SmtpForm {
    SmtpForm {
        tls_enabled: true,
        auth_type: AuthType::OAuth2,
        username: "mail@example.com".into(),
        client_id: "client-id-1".into(),
        client_secret: CLIENT_SECRET.into(),
        token_url: "https://login.example.com/oauth2/token".into(),
        scope: "https://outlook.office365.com/.default".into(),
        ..custom_form(587)
    }
}

async fn load(app: &TestApp, client: &reqwest::Client) -> (Value, String) {
    let text = app.call(client, "smtp_load", &[]).await.text().await.unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn saved_settings_load_back_without_their_secret() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let (status, outcome) = try_save_at(&app, &admin, &basic_form(), 0).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert!(!outcome.to_string().contains(PASSWORD));
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
    let again = SmtpForm { from: "Other Name <other@example.com>".into(), ..basic_form_blank() };
    let (status, body) = try_save_at(&app, &admin, &again, 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (view, _) = load(&app, &admin).await;
    assert_eq!(view["password_set"], true);
    assert_eq!(view["form"]["from"], "Other Name <other@example.com>");
}

#[tokio::test]
async fn bad_fields_come_back_as_field_errors_and_nothing_is_saved() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    let form = SmtpForm {
        host: "smtp://smtp.example.com/".into(),
        from: "Mail, Room <mail@example.com>".into(),
        port: "65536".into(),
        ..basic_form()
    };
    let (status, error) = try_save_at(&app, &admin, &form, 0).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
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
    assert_eq!(try_save_at(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    let cases = [
        (
            "host",
            SmtpForm { host: "smtp.attacker.example".into(), ..basic_form_blank() },
            "Re-enter the password: the email server changed",
        ),
        ("port", SmtpForm { port: "2525".into(), ..basic_form_blank() }, "Re-enter the password: the port changed"),
        (
            "username",
            SmtpForm { username: "someone-else".into(), ..basic_form_blank() },
            "Re-enter the password: the username changed",
        ),
    ];
    for (field, form, message) in cases {
        let (status, error) = try_save_at(&app, &admin, &form, 1).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {error}");
        assert_eq!(error["detail"]["password"], message, "{field}");
    }

    // Basic → OAuth 2.0 with no client secret typed.
    let oauth = SmtpForm { client_secret: "".into(), ..oauth_form() };
    let (status, error) = try_save_at(&app, &admin, &oauth, 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["detail"]["client_secret"], "Enter the client secret.");

    // With the secret typed the switch is saved; then a new token URL needs it again.
    assert_eq!(try_save_at(&app, &admin, &oauth_form(), 1).await.0, StatusCode::OK);
    let moved = SmtpForm {
        client_secret: "".into(),
        token_url: "https://collector.attacker.example/token".into(),
        ..oauth_form()
    };
    let (status, error) = try_save_at(&app, &admin, &moved, 2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["detail"]["client_secret"], "Re-enter the client secret: the token URL changed");

    // And back to Basic: the old password is not reused either.
    let (status, error) = try_save_at(&app, &admin, &basic_form_blank(), 2).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["detail"]["password"], "Enter the password.");
}

#[tokio::test]
async fn a_save_from_a_stale_version_is_refused_naming_who_saved() {
    let app = spawn_app().await;
    let first = app.admin_client().await;
    let second = app.admin_client().await;
    assert_eq!(try_save_at(&app, &first, &basic_form(), 0).await.0, StatusCode::OK);
    let late = SmtpForm { from: "Late <late@example.com>".into(), ..basic_form() };
    let (status, error) = try_save_at(&app, &second, &late, 0).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let message = error["detail"].as_str().unwrap();
    assert!(message.contains(ADMIN_EMAIL) && message.contains("UTC"), "{message}");
    let (view, _) = load(&app, &first).await;
    assert_eq!(view["form"]["from"], "Mailroom <mail@example.com>", "nothing overwritten");
}

#[tokio::test]
async fn switching_to_default_keeps_the_custom_settings_and_audits_every_save() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(try_save_at(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    let default = SmtpForm { mode: Mode::Default, ..basic_form_blank() };
    assert_eq!(try_save_at(&app, &admin, &default, 1).await.0, StatusCode::OK);
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
    assert_eq!(try_save_at(&app, &user, &basic_form(), 0).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.call(&user, "smtp_load", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(try_save_at(&app, &app.client(), &basic_form(), 0).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn saves_past_the_quota_get_429_with_the_wait() {
    let app = spawn_app_with(|config| config.smtp_per_admin_per_minute = std::num::NonZeroU32::new(2).unwrap()).await;
    let admin = app.admin_client().await;
    let form = SmtpForm { host: "bad host".into(), ..basic_form() };
    for _ in 0..2 {
        assert_eq!(try_save_at(&app, &admin, &form, 0).await.0, StatusCode::UNPROCESSABLE_ENTITY);
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
    assert_eq!(try_save_at(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);
    assert_eq!(try_save_at(&app, &admin, &oauth_form(), 1).await.0, StatusCode::OK);
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
