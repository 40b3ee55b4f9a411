//! Users and their one-time links (invitation, password reset).

use super::UserEntry;
use crate::{
    auth::{
        MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_PASSWORD_LEN, MAX_TOKEN_LEN, MIN_PASSWORD_LEN, Role,
        ssr::{client_key, end_sessions_of, hash_password, require_admin},
    },
    db::{Refusal, now_ms},
    error::{AppError, FieldErrors, ssr::bounded},
    i18n::td_string,
    outbox::{
        ssr::{public_base, wake},
        templates,
    },
    shared::{
        email::EmailAddress,
        token::{fingerprint, random_token},
    },
    state::app_state,
};
use secrecy::ExposeSecret;
use surrealdb::types::{RecordId, SurrealValue};

pub async fn list() -> Result<Vec<UserEntry>, AppError> {
    require_admin().await?;
    let state = app_state()?;
    let mut response = state
        .db()
        .query("SELECT record::id(id) AS id, name, email, role, password_hash != NONE AS active FROM user ORDER BY created_at")
        .await?;
    Ok(response.take(0)?)
}

pub async fn create(name: String, email: String, role: Role, language: Option<String>) -> Result<String, AppError> {
    bounded("Name", &name, MAX_NAME_LEN)?;
    bounded("Email", &email, MAX_EMAIL_LEN)?;
    bounded("Language", language.as_deref().unwrap_or_default(), 8)?;
    let language = match language.as_deref().map(str::trim).filter(|code| !code.is_empty()) {
        Some(code) => {
            Some(crate::language::parse(code).ok_or_else(|| AppError::BadRequest(format!("No language {code:?}.")))?)
        }
        None => None,
    };
    let admin = require_admin().await?;
    let state = app_state()?;
    let l = crate::language::ssr::request_locale();
    let mut errors = FieldErrors::new();
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().any(char::is_control) || name.chars().count() > 100 {
        errors.add("name", td_string!(l, invalid.name));
    }
    let email = email.parse::<EmailAddress>();
    if email.is_err() {
        errors.add("email", td_string!(l, invalid.email));
    }
    errors.into_result()?;
    let email = email.map_err(|err| AppError::field("email", err.to_string()))?;

    let token = random_token(32);
    let hours = state.settings().invite_hours;
    let link = format!("{}/set-password?token={token}", public_base(&state));
    let instance = &state.settings().instance_name;
    let locale = language.unwrap_or(state.settings().default_language);
    let mail = templates::invitation(locale, instance, &admin.name, &name, &email, &link, hours)
        .queued(state.shared.secret_key.expose_secret());
    let uid = random_token(16);
    let now = now_ms();
    // The outbox row goes first: if creating the user fails, the transaction takes it back.
    let result = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             CREATE outbox CONTENT $mail;
             CREATE $user CONTENT { email: $email, name: $name, role: $role, password_hash: NONE, created_at: $now, language: $language };
             CREATE $link_id CONTENT { user: $uid, purpose: 'invite', expires_at: $expires, used_at: NONE };
             COMMIT TRANSACTION;",
        )
        .bind(("mail", mail))
        .bind(("user", RecordId::new("user", uid.as_str())))
        .bind(("uid", uid.clone()))
        .bind(("email", email.clone()))
        .bind(("name", name))
        .bind(("role", role))
        .bind(("language", language.map(|l| crate::language::code(l).to_owned())))
        .bind(("now", now))
        .bind(("link_id", RecordId::new("user_token", fingerprint(&token))))
        .bind(("expires", now + hours * 3_600_000))
        .await
        .and_then(crate::db::check_transaction);
    match result {
        Ok(_) => {
            tracing::info!(admin = %admin.id, user = %uid, "user created and invited");
            wake(&state);
            Ok(email.to_string())
        }
        Err(err) if crate::db::violates_index(&err, "user_email") => {
            Err(AppError::field("email", td_string!(l, invalid.email_taken)))
        }
        Err(err) => Err(err.into()),
    }
}

fn link_not_usable() -> AppError {
    let l = crate::language::ssr::request_locale();
    AppError::Conflict(td_string!(l, invalid.link_not_usable).to_owned())
}

#[derive(Debug, SurrealValue)]
struct LinkRow {
    user: String,
    expires_at: i64,
    used_at: Option<i64>,
}

/// The language of the user a one-time link belongs to, while the link can still be used:
/// the set-password page it opens speaks the language its email was written in.
pub async fn link_language(db: &crate::state::Db, token: &str) -> Option<crate::language::Locale> {
    let mut response = db
        .query(
            "LET $link = (SELECT user, expires_at, used_at FROM ONLY $link_id);
             RETURN IF $link != NONE AND $link.used_at = NONE AND $link.expires_at >= $now {
                 (SELECT VALUE language FROM ONLY type::record('user', $link.user))
             } ELSE { NONE };",
        )
        .bind(("link_id", RecordId::new("user_token", fingerprint(token))))
        .bind(("now", now_ms()))
        .await
        .ok()?;
    let code: Option<String> = response.take(1).ok()?;
    code.as_deref().and_then(crate::language::parse)
}

/// Sets the password through a one-time link. The link is looked up before any hashing (a
/// random token costs a lookup, never an Argon2 run), then spent in the same transaction that
/// sets the password, ends every session of the user and spends their other open links. Then
/// the browser goes to the sign-in page.
pub async fn set_password_from_link(token: String, password: String) -> Result<(), AppError> {
    bounded("Token", &token, MAX_TOKEN_LEN)?;
    bounded("Password", &password, MAX_PASSWORD_LEN)?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        let l = crate::language::ssr::request_locale();
        return Err(AppError::field(
            "password",
            td_string!(l, invalid.password_short, min = MIN_PASSWORD_LEN).to_string(),
        ));
    }
    let state = app_state()?;
    state.shared.token_by_ip.check(&client_key())?;
    let link_id = RecordId::new("user_token", fingerprint(&token));
    let mut response = state
        .db()
        .query("SELECT user, expires_at, used_at FROM ONLY $link_id")
        .bind(("link_id", link_id.clone()))
        .await?;
    let link: Option<LinkRow> = response.take(0)?;
    let now = now_ms();
    let Some(link) = link.filter(|l| l.used_at.is_none() && l.expires_at >= now) else {
        return Err(link_not_usable());
    };
    let hash = hash_password(password).await?;
    let result = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             LET $link = (SELECT * FROM ONLY $link_id);
             IF $link = NONE OR $link.used_at != NONE OR $link.expires_at < $now { THROW $unusable };
             UPDATE type::record('user', $link.user) SET password_hash = $hash;
             UPDATE user_token SET used_at = $now WHERE user = $link.user AND used_at = NONE;
             DELETE session WHERE user = $link.user;
             COMMIT TRANSACTION;",
        )
        .bind(("link_id", link_id))
        .bind(("unusable", Refusal::LinkNotUsable.thrown()))
        .bind(("now", now_ms()))
        .bind(("hash", hash))
        .await
        .and_then(crate::db::check_transaction);
    match result {
        Ok(_) => {
            tracing::info!(user = %link.user, "password set through a link; other sessions and links ended");
            // Sessions saved by requests that were in flight during the transaction.
            end_sessions_of(&state, &link.user).await?;
            leptos_axum::redirect("/login?password=set");
            Ok(())
        }
        Err(err) if Refusal::of(&err) == Some(Refusal::LinkNotUsable) => Err(link_not_usable()),
        Err(err) => Err(err.into()),
    }
}

/// Queues a reset link when the address belongs to a user. The answer is the same either way.
pub async fn request_reset(email: String) -> Result<(), AppError> {
    bounded("Email", &email, MAX_EMAIL_LEN)?;
    let state = app_state()?;
    state.shared.reset_by_ip.check(&client_key())?;
    state.shared.reset_by_email.check(&EmailAddress::normalize(&email))?;
    let mut response = state
        .db()
        .query("SELECT record::id(id) AS id, name, email, language FROM user WHERE email = $email LIMIT 1")
        .bind(("email", EmailAddress::normalize(&email)))
        .await?;
    let found = response.take::<Vec<ResetUser>>(0)?.into_iter().next();
    let Some(ResetUser { id: uid, name, email, language }) = found else {
        tracing::info!("password reset asked for an unknown address");
        return Ok(());
    };
    let token = random_token(32);
    let link = format!("{}/set-password?token={token}", public_base(&state));
    let locale = templates::language_for(language.as_deref(), state.settings().default_language);
    let mail = templates::password_reset(locale, &state.settings().instance_name, &name, &email, &link)
        .queued(state.shared.secret_key.expose_secret());
    let now = now_ms();
    state
        .db()
        .query(
            "BEGIN TRANSACTION;
             CREATE $link_id CONTENT { user: $uid, purpose: 'reset', expires_at: $expires, used_at: NONE };
             CREATE outbox CONTENT $mail;
             COMMIT TRANSACTION;",
        )
        .bind(("link_id", RecordId::new("user_token", fingerprint(&token))))
        .bind(("uid", uid))
        .bind(("expires", now + 3_600_000))
        .bind(("mail", mail))
        .await
        .and_then(crate::db::check_transaction)?;
    wake(&state);
    Ok(())
}

#[derive(Debug, SurrealValue)]
struct ResetUser {
    id: String,
    name: String,
    email: EmailAddress,
    language: Option<String>,
}
