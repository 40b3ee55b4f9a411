//! The first admin: from the environment, or from the "Create the first admin" page guarded by
//! a one-time setup code; created exactly once however many requests race.

use super::{admin_exists, admin_seen, client_key, hash_password, start_session};
use crate::{
    auth::{CurrentUser, MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Role},
    db::now_ms,
    error::{AppError, FieldErrors, ssr::bounded},
    i18n::td_string,
    shared::{
        email::EmailAddress,
        token::{fingerprint, random_token},
    },
    state::{AppState, Db, app_state},
};
use surrealdb::types::RecordId;

/// Creates the first admin from the environment when the database has no user at all.
pub async fn ensure_first_admin(state: &AppState, email: &EmailAddress, password: &str) -> Result<bool, AppError> {
    let mut response = state.db().query("SELECT count() AS n FROM user GROUP ALL").await?;
    let users: Option<i64> = response.take((0, "n"))?;
    if users.unwrap_or(0) > 0 {
        return Ok(false);
    }
    let name = email.as_str().split('@').next().unwrap_or("Admin");
    let hash = hash_password(password.to_owned()).await?;
    match create_first_admin_record(state.db(), name, email, hash).await {
        Ok(_) => Ok(true),
        // Another node created it first.
        Err(AppError::Forbidden) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Creates the first admin, once: the fixed record `setup:first_admin` is created in the same
/// transaction, so of any number of concurrent attempts exactly one commits. Spends every
/// setup code. A second attempt is [`AppError::Forbidden`].
async fn create_first_admin_record(
    db: &Db,
    name: &str,
    email: &EmailAddress,
    hash: String,
) -> Result<CurrentUser, AppError> {
    let uid = random_token(16);
    let email = email.clone();
    let result = db
        .query(
            "BEGIN TRANSACTION;
             CREATE setup:first_admin CONTENT { email: $email, at: $now };
             CREATE $id CONTENT { email: $email, name: $name, role: 'admin', password_hash: $hash, created_at: $now };
             DELETE setup_code;
             COMMIT TRANSACTION;",
        )
        .bind(("id", RecordId::new("user", uid.as_str())))
        .bind(("email", email.clone()))
        .bind(("name", name.trim().to_owned()))
        .bind(("hash", hash))
        .bind(("now", now_ms()))
        .await
        .and_then(crate::db::check_transaction);
    match result {
        Ok(_) => Ok(CurrentUser { id: uid, email, name: name.trim().to_owned(), role: Role::Admin, language: None }),
        // Judged by what is in the database, not by the error's text: another creator won.
        Err(_) if first_admin_created(db).await? => Err(AppError::Forbidden),
        Err(err) => Err(err.into()),
    }
}

async fn first_admin_created(db: &Db) -> Result<bool, AppError> {
    let mut response = db.query("SELECT VALUE id FROM ONLY setup:first_admin").await?;
    Ok(response.take::<Option<RecordId>>(0)?.is_some())
}

/// A one-time setup code for the "Create the first admin" page, when no admin exists yet: only
/// its SHA-256 is stored. Every node that starts without an admin issues one; any of them works
/// until the first admin exists.
pub async fn issue_setup_code(db: &Db) -> Result<Option<String>, AppError> {
    if admin_exists(db).await? {
        return Ok(None);
    }
    let raw = random_token(10);
    let code = raw.as_bytes().chunks(5).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-");
    db.query("CREATE setup_code CONTENT { hash: $hash, at: $now }")
        .bind(("hash", fingerprint(&normalize_setup_code(&code))))
        .bind(("now", now_ms()))
        .await?
        .check()?;
    Ok(Some(code))
}

fn normalize_setup_code(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

async fn setup_code_valid(db: &Db, code: &str) -> Result<bool, AppError> {
    let mut response = db
        .query("SELECT count() AS n FROM setup_code WHERE hash = $hash GROUP ALL")
        .bind(("hash", fingerprint(&normalize_setup_code(code))))
        .await?;
    let count: Option<i64> = response.take((0, "n"))?;
    Ok(count.unwrap_or(0) > 0)
}

/// "Create the first admin": every field bounded and checked, the setup code and the absence of
/// an admin checked before any hashing, then one atomic creation, then a signed-in session.
/// Then the browser goes to the SMTP page.
pub async fn create_first_admin(
    name: String,
    email: String,
    password: String,
    setup_code: String,
) -> Result<(), AppError> {
    bounded("Name", &name, MAX_NAME_LEN)?;
    bounded("Email", &email, MAX_EMAIL_LEN)?;
    bounded("Password", &password, MAX_PASSWORD_LEN)?;
    bounded("Setup code", &setup_code, 64)?;
    let state = app_state()?;
    state.shared.token_by_ip.check(&client_key())?;
    if admin_seen(&state).await? {
        return Err(AppError::Forbidden);
    }
    let l = crate::language::ssr::request_locale();
    let mut errors = FieldErrors::new();
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        errors.add("name", td_string!(l, invalid.name_required));
    }
    let email = email.parse::<EmailAddress>();
    if let Err(err) = &email {
        errors.add("email", err.message_in(l));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        errors.add("password", td_string!(l, invalid.password_short, min = MIN_PASSWORD_LEN).to_string());
    }
    if !setup_code_valid(state.db(), &setup_code).await? {
        errors.add("setup_code", td_string!(l, invalid.setup_code));
    }
    errors.into_result()?;
    let email = email.map_err(|err| AppError::field("email", err.to_string()))?;
    let hash = hash_password(password).await?;
    let admin = create_first_admin_record(state.db(), &name, &email, hash).await?;
    tracing::info!("created the first admin from the setup page");
    start_session(&admin).await?;
    leptos_axum::redirect("/admin/smtp");
    Ok(())
}
