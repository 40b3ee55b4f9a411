//! English and Bahasa Indonesia on the server's side: the messages a request gets back, and the
//! language of the email each recipient receives.

mod common;

use app::smtp_settings::form::SmtpForm;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret-Pa55word-for-tests";

fn basic_form() -> SmtpForm {
    SmtpForm { tls_enabled: true, username: "mailer".into(), password: PASSWORD.into(), ..custom_form(587) }
}

/// Saves `form` over version 1 with `Accept-Language: id`: the status and the field errors.
async fn save_in_indonesian(app: &TestApp, client: &reqwest::Client, form: &SmtpForm) -> (StatusCode, Value) {
    let body = json!({ "form": form, "version": 1 });
    let response = client
        .post(app.url("/api/smtp_save"))
        .header("Accept-Language", "id-ID,id;q=0.9")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_request_in_indonesian_gets_its_field_errors_and_the_re_entry_rule_in_indonesian() {
    let app = spawn_app().await;
    let admin = app.admin_client().await;
    assert_eq!(try_save_at(&app, &admin, &basic_form(), 0).await.0, StatusCode::OK);

    let moved = SmtpForm { port: "2525".into(), password: String::new(), ..basic_form() };
    let (status, body) = save_in_indonesian(&app, &admin, &moved).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"]["password"], "Masukkan ulang sandi: port berubah", "{body}");

    let bad_from = SmtpForm { from: "Mail;room <mail@example.com>".into(), ..basic_form() };
    let (status, body) = save_in_indonesian(&app, &admin, &bad_from).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["detail"]["from"].as_str().unwrap_or_default();
    assert!(message.starts_with("';' di posisi 5 tidak diizinkan pada nama"), "{body}");

    // The same request without a language preference is answered in English, as before.
    let (status, body) = try_save_at(&app, &admin, &moved, 1).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"]["password"], "Re-enter the password: the port changed", "{body}");
}

#[tokio::test]
async fn email_goes_out_in_the_recipients_language_else_the_instance_default() {
    let app = spawn_app_with(|config| config.default_language = app::language::Locale::id).await;
    let anonymous = app.client();
    let reset = |client: reqwest::Client| {
        let app = &app;
        async move {
            let response = app.call(&client, "password_reset", &[("email", ADMIN_EMAIL)]).await;
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    // The admin never chose a language: the instance's default, Indonesian.
    reset(anonymous.clone()).await;
    let rows = app.outbox_rows("password_reset").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["subject"], "Setel ulang sandi Mailroom Test Anda");

    // Once the admin chooses English (the page's switch), their email is English.
    let admin = app.admin_client().await;
    let chose = app.call(&admin, "language", &[("code", "en")]).await;
    assert!(chose.status().is_success(), "{}", chose.status());
    reset(anonymous).await;
    let mut subjects: Vec<String> =
        app.outbox_rows("password_reset").await.iter().map(|r| r["subject"].as_str().unwrap().to_owned()).collect();
    subjects.sort();
    assert_eq!(subjects, ["Reset your Mailroom Test password", "Setel ulang sandi Mailroom Test Anda"]);

    // A language the instance does not have is refused, and changes nothing.
    let refused = app.call(&admin, "language", &[("code", "fr")]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}
