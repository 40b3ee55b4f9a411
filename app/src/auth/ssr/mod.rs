//! The server half of sign-in: users in SurrealDB, argon2id hashes, sessions, and the guards
//! every server function starts with. The first admin and the session store have their own files.

mod first_admin;
mod request_user;
mod session_store;

pub use first_admin::{create_first_admin, ensure_first_admin, issue_setup_code};
pub use request_user::{RequestUser, provide_request_context};
pub use session_store::SurrealSessionStore;

use super::throttle::SignInThrottle;
use super::{CurrentUser, MAX_EMAIL_LEN, MAX_PASSWORD_LEN, Role};
use crate::{
    db::{Refusal, now_ms},
    error::{
        AppError,
        ssr::{bounded, internal},
    },
    shared::{email::EmailAddress, token::random_token},
    state::{AppState, Db, app_state},
};
use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use std::sync::{
    LazyLock,
    atomic::{AtomicU64, Ordering},
};
use surrealdb::types::{RecordId, SurrealValue};
use tokio::sync::Semaphore;
use tower_sessions::{Session, SessionStore, session::Id};

const USER_KEY: &str = "user_id";
/// When the session signed in (ms since the epoch): sessions end `session_max_age` later.
const SIGNED_IN_AT: &str = "signed_in_at";

#[derive(Debug, Clone, SurrealValue)]
struct UserRow {
    uid: String,
    email: EmailAddress,
    name: String,
    role: Role,
    password_hash: Option<String>,
    language: Option<String>,
}

impl UserRow {
    fn into_current(self) -> CurrentUser {
        CurrentUser {
            id: self.uid,
            email: self.email,
            name: self.name,
            role: self.role,
            language: self.language.as_deref().and_then(crate::language::parse),
        }
    }
}

const USER_FIELDS: &str = "record::id(id) AS uid, email, name, role, password_hash, language";

async fn find_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, AppError> {
    let mut response = db
        .query(format!("SELECT {USER_FIELDS} FROM user WHERE email = $email LIMIT 1"))
        .bind(("email", EmailAddress::normalize(email)))
        .await?;
    Ok(response.take::<Option<UserRow>>(0)?)
}

/// The user with this id, from this node's copy when it has one (see [`crate::db::follow`]).
async fn user_by_id(state: &AppState, uid: &str) -> Result<Option<CurrentUser>, AppError> {
    let read = async { Ok(find_by_id(state.db(), uid).await?.map(UserRow::into_current)) };
    state.shared.users.get_or_read(uid, |_| true, read).await
}

async fn find_by_id(db: &Db, uid: &str) -> Result<Option<UserRow>, AppError> {
    let mut response =
        db.query(format!("SELECT {USER_FIELDS} FROM $id")).bind(("id", RecordId::new("user", uid))).await?;
    Ok(response.take::<Option<UserRow>>(0)?)
}

pub async fn admin_exists(db: &Db) -> Result<bool, AppError> {
    let mut response = db.query("SELECT VALUE id FROM user WHERE role = 'admin' LIMIT 1").await?;
    Ok(!response.take::<Vec<RecordId>>(0)?.is_empty())
}

/// [`admin_exists`], remembered once true: no user is ever deleted or demoted, so an instance
/// that has an admin keeps one, and the sign-in page (which asks on every render) stops asking.
pub async fn admin_seen(state: &AppState) -> Result<bool, AppError> {
    if state.shared.admin_seen.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let exists = admin_exists(state.db()).await?;
    if exists {
        state.shared.admin_seen.store(true, Ordering::Relaxed);
    }
    Ok(exists)
}

pub struct NewUser<'a> {
    pub email: &'a EmailAddress,
    pub name: &'a str,
    pub role: Role,
    pub password: Option<&'a str>,
}

/// Creates a user; a taken email is a [`AppError::Conflict`].
pub async fn create_user(db: &Db, user: NewUser<'_>) -> Result<CurrentUser, AppError> {
    let hash = match user.password {
        Some(password) => Some(hash_password(password.to_owned()).await?),
        None => None,
    };
    let uid = random_token(16);
    let email = user.email.clone();
    let result = db
        .query(
            "IF (SELECT id FROM user WHERE email = $email LIMIT 1)[0] != NONE { THROW $taken };
             CREATE $id CONTENT { email: $email, name: $name, role: $role, password_hash: $hash, created_at: $now };",
        )
        .bind(("id", RecordId::new("user", uid.as_str())))
        .bind(("email", email.clone()))
        .bind(("taken", Refusal::EmailTaken.thrown()))
        .bind(("name", user.name.trim().to_owned()))
        .bind(("role", user.role))
        .bind(("hash", hash))
        .bind(("now", now_ms()))
        .await?
        .check();
    match result {
        Ok(_) => Ok(CurrentUser { id: uid, email, name: user.name.trim().to_owned(), role: user.role, language: None }),
        Err(err) if Refusal::of(&err) == Some(Refusal::EmailTaken) || crate::db::violates_index(&err, "user_email") => {
            let l = crate::language::ssr::request_locale();
            Err(AppError::field("email", crate::i18n::td_string!(l, invalid.email_taken)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Argon2 runs at most one per core at a time: each costs 19 MiB and tens of milliseconds of
/// CPU, so a flood of requests queues here instead of filling memory and the blocking pool.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Argon2 computations (hashes and verifications) since start: tests use it to prove that a
/// refused request did no hashing.
static ARGON2_RUNS: AtomicU64 = AtomicU64::new(0);

pub fn argon2_runs() -> u64 {
    ARGON2_RUNS.load(Ordering::Relaxed)
}

async fn hashing_permit() -> Result<tokio::sync::SemaphorePermit<'static>, AppError> {
    let permit = HASHING.acquire().await.map_err(|err| internal("the hashing semaphore closed", &err))?;
    ARGON2_RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(permit)
}

pub async fn hash_password(password: String) -> Result<String, AppError> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string())
    })
    .await
    .map_err(|err| internal("password hashing task failed", &err))?
    .map_err(|err| {
        tracing::error!(error = %err, "password hashing failed");
        AppError::Internal
    })
}

/// A hash to verify against when the email is unknown, so both answers take as long.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(b"not a real password", &salt).map(|h| h.to_string()).unwrap_or_default()
});

async fn verify_password(password: String, hash: Option<String>) -> Result<bool, AppError> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = PasswordHash::new(&hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        known && ok
    })
    .await
    .map_err(|err| internal("password verification task failed", &err))
}

async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|err| {
        tracing::error!(error = %err, "session layer missing");
        AppError::Internal
    })
}

/// The rate-limit key of the current request's client (see [`super::client`]).
pub fn client_key() -> String {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    let Some(parts) = leptos::prelude::use_context::<http::request::Parts>() else { return "unknown".to_owned() };
    let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        return "unknown".to_owned();
    };
    let state = leptos::prelude::use_context::<AppState>();
    let trusted = state.as_ref().map(|s| s.settings().trusted_proxies.as_slice()).unwrap_or_default();
    let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    super::client::limit_key(super::client::client_ip(peer, forwarded, trusted))
}

/// Checks the credentials and starts a fresh session. Unknown email and wrong password give
/// the same error after the same work; failures for one email slow its next attempts down.
pub async fn sign_in(email: &str, password: &str) -> Result<CurrentUser, AppError> {
    bounded("Email", email, MAX_EMAIL_LEN)?;
    bounded("Password", password, MAX_PASSWORD_LEN)?;
    let state = app_state()?;
    state.shared.login_by_ip.check(&client_key())?;
    let email = EmailAddress::normalize(email);
    let wait = SignInThrottle::delay(state.db(), &email).await?;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let row = find_by_email(state.db(), &email).await?;
    let hash = row.as_ref().and_then(|r| r.password_hash.clone());
    if !verify_password(password.to_owned(), hash).await? {
        SignInThrottle::failed(state.db(), &email).await?;
        tracing::info!("sign-in refused");
        return Err(AppError::InvalidCredentials);
    }
    let user = row.ok_or(AppError::InvalidCredentials)?.into_current();
    SignInThrottle::succeeded(state.db(), &email).await?;
    start_session(&user).await?;
    Ok(user)
}

/// A fresh session (new id) for `user`, signed in now.
async fn start_session(user: &CurrentUser) -> Result<(), AppError> {
    let session = session().await?;
    session.cycle_id().await.map_err(|err| internal("cannot rotate the session id", &err))?;
    session.insert(USER_KEY, &user.id).await.map_err(|err| internal("cannot write the session", &err))?;
    session.insert(SIGNED_IN_AT, now_ms()).await.map_err(|err| internal("cannot write the session", &err))?;
    tracing::info!(user = %user.id, "signed in");
    Ok(())
}

/// Signs in and sends an admin to the SMTP page, anyone else home.
pub async fn login(email: &str, password: &str) -> Result<Option<crate::language::Locale>, AppError> {
    let user = sign_in(email, password).await?;
    // The pages after sign-in speak the language this user chose, wherever they chose it:
    // the cookie for the pages the server renders, the answer for the page that asked.
    if let Some(language) = user.language {
        remember_language(language);
    }
    leptos_axum::redirect(if user.is_admin() { "/admin/smtp" } else { "/" });
    Ok(user.language)
}

/// Sets the language cookie on the current response (the cookie the pages' switch keeps).
pub fn remember_language(language: crate::language::Locale) {
    if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
        && let Ok(value) = http::HeaderValue::from_str(&crate::language::ssr::set_cookie(language))
    {
        response.append_header(http::header::SET_COOKIE, value);
    }
}

/// Keeps the signed-in user's language (the switch calls this; before sign-in only the cookie
/// remembers it, and this does nothing).
/// The code is parsed here, not by serde: leptos_i18n's `Locale` deserializes any unknown code
/// as English, and an unknown code must be refused.
pub async fn set_language(code: &str) -> Result<(), AppError> {
    bounded("Language", code, 8)?;
    let language =
        crate::language::parse(code).ok_or_else(|| AppError::BadRequest(format!("No language {code:?}.")))?;
    let state = app_state()?;
    let Some(user) = user_from_session(&state, &session().await?).await? else {
        return Ok(());
    };
    state
        .db()
        .query("UPDATE $id SET language = $language")
        .bind(("id", RecordId::new("user", user.id.as_str())))
        .bind(("language", crate::language::code(language).to_owned()))
        .await?
        .check()?;
    state.shared.users.changed();
    if let Some(memo) = leptos::prelude::use_context::<RequestUser>() {
        memo.keep(CurrentUser { language: Some(language), ..user });
    }
    Ok(())
}

/// Ends the session and sends the browser to the sign-in page.
pub async fn logout() -> Result<(), AppError> {
    let session = session().await?;
    session.flush().await.map_err(|err| internal("cannot end the session", &err))?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// Whether "Create the first admin" is still open.
pub async fn first_admin_needed() -> Result<bool, AppError> {
    Ok(!admin_seen(&app_state()?).await?)
}

pub async fn current_user() -> Result<Option<CurrentUser>, AppError> {
    let state = app_state()?;
    user_from_session(&state, &session().await?).await
}

/// The user a session belongs to (for plain axum handlers as well as server functions). A
/// session past its absolute lifetime is ended here.
pub async fn user_from_session(state: &AppState, session: &Session) -> Result<Option<CurrentUser>, AppError> {
    let read = |err: tower_sessions::session::Error| internal("cannot read the session", &err);
    let Some(uid) = session.get::<String>(USER_KEY).await.map_err(read)? else {
        return Ok(None);
    };
    let signed_in_at = session.get::<i64>(SIGNED_IN_AT).await.map_err(read)?;
    if !within_lifetime(state, signed_in_at) {
        session.flush().await.map_err(|err| internal("cannot end the session", &err))?;
        return Ok(None);
    }
    let memo = leptos::prelude::use_context::<RequestUser>();
    if let Some(user) = memo.as_ref().and_then(|memo| memo.get(&uid)) {
        return Ok(Some(user));
    }
    let user = user_by_id(state, &uid).await?;
    if let (Some(memo), Some(user)) = (memo, &user) {
        memo.keep(user.clone());
    }
    Ok(user)
}

fn within_lifetime(state: &AppState, signed_in_at: Option<i64>) -> bool {
    let max_age = state.settings().session_max_age.as_millis() as i64;
    signed_in_at.is_some_and(|at| now_ms().saturating_sub(at) <= max_age)
}

/// Whether the session with this id still belongs to an admin (and is within its lifetime):
/// the check an open status stream repeats.
pub async fn session_is_admin(state: &AppState, id: &Id) -> Result<bool, AppError> {
    let store = SurrealSessionStore::new(state);
    let record = store.load(id).await.map_err(|err| internal("cannot read the session", &err))?;
    let Some(record) = record else { return Ok(false) };
    let uid = record.data.get(USER_KEY).and_then(|v| v.as_str());
    let signed_in_at = record.data.get(SIGNED_IN_AT).and_then(serde_json::Value::as_i64);
    let (Some(uid), true) = (uid, within_lifetime(state, signed_in_at)) else { return Ok(false) };
    Ok(user_by_id(state, uid).await?.is_some_and(|user| user.is_admin()))
}

/// The signed-in user, or 401.
pub async fn require_user() -> Result<CurrentUser, AppError> {
    current_user().await?.ok_or(AppError::Unauthorized)
}

/// The signed-in admin, or 401 / 403. Every admin server function starts with this.
pub async fn require_admin() -> Result<CurrentUser, AppError> {
    admin_of(&app_state()?, &session().await?).await
}

/// The admin a session belongs to, or 401 / 403 (for plain axum handlers too).
pub async fn admin_of(state: &AppState, session: &Session) -> Result<CurrentUser, AppError> {
    let user = user_from_session(state, session).await?.ok_or(AppError::Unauthorized)?;
    if user.role == Role::Admin { Ok(user) } else { Err(AppError::Forbidden) }
}

/// Ends every session of a user (after a password change through a link): on this node at once,
/// on the others when the change reaches their live queries.
pub async fn end_sessions_of(state: &AppState, uid: &str) -> Result<(), AppError> {
    state.shared.sessions.changed();
    state.shared.users.changed();
    state.db().query("DELETE session WHERE user = $uid").bind(("uid", uid.to_owned())).await?.check()?;
    state.shared.sessions.changed();
    Ok(())
}

/// Creates a non-admin user from the environment unless that email already exists.
pub async fn ensure_user(state: &AppState, email: &EmailAddress, password: &str) -> Result<(), AppError> {
    if find_by_email(state.db(), email.as_str()).await?.is_some() {
        return Ok(());
    }
    let name = email.as_str().split('@').next().unwrap_or("User");
    create_user(state.db(), NewUser { email, name, role: Role::User, password: Some(password) }).await?;
    Ok(())
}
