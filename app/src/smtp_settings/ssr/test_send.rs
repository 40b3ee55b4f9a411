//! Send Test Email: the values on the form (saved or not, under the re-entry rule) to the admin
//! who asks, with the time each part took.

use super::{check_rate, next_settings, shown_settings, target_from};
use crate::{
    auth::{CurrentUser, ssr::require_admin},
    error::AppError,
    mail::ssr::OutgoingMessage,
    smtp_settings::{form::SmtpForm, types::Mode},
    state::{AppState, app_state},
};
use secrecy::ExposeSecret;

/// Subject and body in the admin's language (their choice, else the instance's default).
fn test_words(state: &AppState, admin: &CurrentUser) -> (String, String) {
    let locale = admin.language.unwrap_or(state.settings().default_language);
    crate::outbox::templates::test_email(locale, &state.settings().instance_name)
}

fn test_message(state: &AppState, from: lettre::message::Mailbox, admin: &CurrentUser) -> OutgoingMessage {
    let to = lettre::message::Mailbox::new(Some(admin.name.clone()), admin.email.clone().into());
    let (subject, text) = test_words(state, admin);
    OutgoingMessage { from, to, subject, text, html: None, message_id: None }
}

pub async fn send_test(form: SmtpForm) -> Result<String, AppError> {
    form.check_lengths()?;
    let started = std::time::Instant::now();
    let admin = require_admin().await?;
    let state = app_state()?;
    let custom = form.mode == Mode::Custom;
    // The saved settings (for the secrets the form keeps) come from this node's copy, as the
    // page's do: nothing is written from them, and a save on any node drops the copy.
    check_rate(&state, &admin).await?;
    let stored = if custom { shown_settings(&state).await? } else { None };
    let checked = started.elapsed();
    let mail = &state.settings().mail;
    let result = if !custom {
        let from = match form.from.parse::<crate::smtp_settings::types::FromMailbox>() {
            Ok(from) => from.mailbox(),
            Err(_) => state.settings().default_from.parse().map_err(|_| AppError::Internal)?,
        };
        let message = test_message(&state, from, &admin);
        state.default_mailer().send(&message, mail).await
    } else {
        let next = next_settings(&state, stored.as_ref(), &form)?;
        let target = target_from(&next, state.shared.secret_key.expose_secret())?;
        let from = form.parse_custom().map_err(AppError::Validation)?.from.mailbox();
        let message = test_message(&state, from, &admin);
        crate::mail::ssr::deliver(&target, mail, &state.shared.tokens, Some(&message)).await
    };
    let sent = started.elapsed();
    let (subject, text) = test_words(&state, &admin);
    let record = crate::outbox::ssr::NewMail {
        kind: "test",
        to_addr: admin.email.clone(),
        to_name: Some(admin.name.clone()),
        subject,
        text,
        html: String::new(),
    };
    crate::outbox::ssr::record_sent_now(&state, record, &result).await;
    // Where the time went (bench/send_test_email.py reads these).
    let (checks_ms, smtp_ms, record_ms) = (ms(checked), ms(sent - checked), ms(started.elapsed() - sent));
    match result {
        Ok(()) => {
            tracing::info!(admin = %admin.id, checks_ms, smtp_ms, record_ms, "test email sent");
            Ok(admin.email.to_string())
        }
        Err(failure) => {
            tracing::warn!(admin = %admin.id, failure = %failure, "test email failed");
            Err(AppError::Smtp(failure))
        }
    }
}

fn ms(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}
