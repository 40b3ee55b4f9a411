//! The server half of sign-in: users in SurrealDB, argon2id hashes, sessions kept in
//! SurrealDB behind tower-sessions, and the guards every server function starts with.

use super::throttle::SignInThrottle;
use super::{CurrentUser, MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Role};
use crate::{
    db::now_ms,
    error::{
        AppError, FieldErrors,
        ssr::{bounded, internal},
    },
    state::{AppState, Db, app_state},
};
use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicU64, Ordering},
};
use surrealdb::types::{RecordId, SurrealValue};
use tokio::sync::Semaphore;
use tower_sessions::{
    Session, SessionStore,
    session::{Id, Record},
    session_store,
};

const USER_KEY: &str = "user_id";
/// When the session signed in (ms since the epoch): sessions end `session_max_age` later.
const SIGNED_IN_AT: &str = "signed_in_at";

#[derive(Debug, Clone, SurrealValue)]
struct UserRow {
    uid: String,
    email: String,
    name: String,
    role: String,
    password_hash: Option<String>,
}

impl UserRow {
    fn into_current(self) -> CurrentUser {
        CurrentUser {
            id: self.uid,
            email: self.email,
            name: self.name,
            role: if self.role == "admin" { Role::Admin } else { Role::User },
        }
    }
}

const USER_FIELDS: &str = "record::id(id) AS uid, email, name, role, password_hash";

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

async fn find_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, AppError> {
    let mut response = db
        .query(format!("SELECT {USER_FIELDS} FROM user WHERE email = $email LIMIT 1"))
        .bind(("email", normalize_email(email)))
        .await?;
    Ok(response.take::<Option<UserRow>>(0)?)
}

async fn find_by_id(db: &Db, uid: &str) -> Result<Option<UserRow>, AppError> {
    let mut response =
        db.query(format!("SELECT {USER_FIELDS} FROM $id")).bind(("id", RecordId::new("user", uid))).await?;
    Ok(response.take::<Option<UserRow>>(0)?)
}

/// What creating a user throws when the email belongs to someone already.
const EMAIL_TAKEN: &str = "email taken";
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
    pub email: &'a str,
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
    let email = normalize_email(user.email);
    let role = match user.role {
        Role::Admin => "admin",
        Role::User => "user",
    };
    let result = db
        .query(
            "IF (SELECT id FROM user WHERE email = $email LIMIT 1)[0] != NONE { THROW $taken };
             CREATE $id CONTENT { email: $email, name: $name, role: $role, password_hash: $hash, created_at: $now };",
        )
        .bind(("id", RecordId::new("user", uid.as_str())))
        .bind(("email", email.clone()))
        .bind(("taken", EMAIL_TAKEN))
        .bind(("name", user.name.trim().to_owned()))
        .bind(("role", role))
        .bind(("hash", hash))
        .bind(("now", now_ms()))
        .await?
        .check();
    match result {
        Ok(_) => Ok(CurrentUser { id: uid, email, name: user.name.trim().to_owned(), role: user.role }),
        Err(err) if crate::db::thrown(&err) == Some(EMAIL_TAKEN) || crate::db::violates_index(&err, "user_email") => {
            Err(AppError::field("email", "A user with this email already exists."))
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

pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|err| {
        tracing::error!(error = %err, "session layer missing");
        AppError::Internal
    })
}

/// SHA-256 of a secret, in hex: how tokens are keyed in the database.
pub fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
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
    let email = normalize_email(email);
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

pub async fn sign_out() -> Result<(), AppError> {
    let session = session().await?;
    session.flush().await.map_err(|err| internal("cannot end the session", &err))
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
    let user = find_by_id(state.db(), &uid).await?.map(UserRow::into_current);
    if let (Some(memo), Some(user)) = (memo, &user) {
        memo.keep(user.clone());
    }
    Ok(user)
}

/// The signed-in user as read once in a request, for the rest of it: an admin page asks for
/// its frame and for its content. Kept by user id, so a session that changes hands mid-request
/// reads again. Provided per request by [`crate::state::provide_request_context`].
#[derive(Clone, Default)]
pub struct RequestUser(Arc<std::sync::Mutex<Option<CurrentUser>>>);

impl RequestUser {
    fn get(&self, uid: &str) -> Option<CurrentUser> {
        self.0.lock().ok()?.as_ref().filter(|user| user.id == uid).cloned()
    }

    fn keep(&self, user: CurrentUser) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some(user);
        }
    }
}

fn within_lifetime(state: &AppState, signed_in_at: Option<i64>) -> bool {
    let max_age = state.settings().session_max_age.as_millis() as i64;
    signed_in_at.is_some_and(|at| now_ms().saturating_sub(at) <= max_age)
}

/// Whether the session with this id still belongs to an admin (and is within its lifetime):
/// the check an open status stream repeats.
pub async fn session_is_admin(state: &AppState, id: &Id) -> Result<bool, AppError> {
    let store = SurrealSessionStore::new(state.db().clone());
    let record = store.load(id).await.map_err(|err| internal("cannot read the session", &err))?;
    let Some(record) = record else { return Ok(false) };
    let uid = record.data.get(USER_KEY).and_then(|v| v.as_str());
    let signed_in_at = record.data.get(SIGNED_IN_AT).and_then(serde_json::Value::as_i64);
    let (Some(uid), true) = (uid, within_lifetime(state, signed_in_at)) else { return Ok(false) };
    Ok(find_by_id(state.db(), uid).await?.is_some_and(|row| row.into_current().is_admin()))
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

/// Creates the first admin from the environment when the database has no user at all.
pub async fn ensure_first_admin(state: &AppState, email: &str, password: &str) -> Result<bool, AppError> {
    let mut response = state.db().query("SELECT count() AS n FROM user GROUP ALL").await?;
    let users: Option<i64> = response.take((0, "n"))?;
    if users.unwrap_or(0) > 0 {
        return Ok(false);
    }
    let name = email.split('@').next().unwrap_or("Admin");
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
async fn create_first_admin_record(db: &Db, name: &str, email: &str, hash: String) -> Result<CurrentUser, AppError> {
    let uid = random_token(16);
    let email = normalize_email(email);
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
        Ok(_) => Ok(CurrentUser { id: uid, email, name: name.trim().to_owned(), role: Role::Admin }),
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
pub async fn first_admin(name: String, email: String, password: String, setup_code: String) -> Result<(), AppError> {
    bounded("Name", &name, MAX_NAME_LEN)?;
    bounded("Email", &email, MAX_EMAIL_LEN)?;
    bounded("Password", &password, MAX_PASSWORD_LEN)?;
    bounded("Setup code", &setup_code, 64)?;
    let state = app_state()?;
    state.shared.token_by_ip.check(&client_key())?;
    if admin_seen(&state).await? {
        return Err(AppError::Forbidden);
    }
    let mut errors = FieldErrors::new();
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        errors.add("name", "Enter a name.");
    }
    if let Err(err) = email.trim().parse::<lettre::Address>() {
        errors.add("email", format!("Enter an email address like name@example.com ({err})."));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        errors.add("password", format!("Use at least {MIN_PASSWORD_LEN} characters."));
    }
    if !setup_code_valid(state.db(), &setup_code).await? {
        errors.add("setup_code", "Enter the setup code the server printed when it started.");
    }
    errors.into_result()?;
    let hash = hash_password(password).await?;
    let admin = create_first_admin_record(state.db(), &name, &email, hash).await?;
    tracing::info!("created the first admin from the setup page");
    start_session(&admin).await
}

/// Ends every session of a user (after a password change through a link).
pub async fn end_sessions_of(db: &Db, uid: &str) -> Result<(), AppError> {
    db.query("DELETE session WHERE user = $uid").bind(("uid", uid.to_owned())).await?.check()?;
    Ok(())
}

/// Creates a non-admin user from the environment unless that email already exists.
pub async fn ensure_user(state: &AppState, email: &str, password: &str) -> Result<(), AppError> {
    if find_by_email(state.db(), email).await?.is_some() {
        return Ok(());
    }
    let name = email.split('@').next().unwrap_or("User");
    create_user(state.db(), NewUser { email, name, role: Role::User, password: Some(password) }).await?;
    Ok(())
}

/// tower-sessions store on SurrealDB. Sessions survive restarts of the server.
#[derive(Clone)]
pub struct SurrealSessionStore {
    db: Db,
}

impl std::fmt::Debug for SurrealSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SurrealSessionStore")
    }
}

#[derive(Debug, SurrealValue)]
struct SessionRow {
    data: String,
    expires_at: i64,
}

/// The user a session record belongs to, kept beside the data so a user's sessions can be ended.
fn session_user(record: &Record) -> Option<String> {
    record.data.get(USER_KEY).and_then(|v| v.as_str()).map(str::to_owned)
}

impl SurrealSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    fn key(id: &Id) -> RecordId {
        RecordId::new("session", fingerprint(&id.to_string()))
    }

    /// Deletes expired sessions.
    pub async fn delete_expired(&self) -> Result<(), surrealdb::Error> {
        self.db.query("DELETE session WHERE expires_at < $now").bind(("now", now_ms())).await?.check()?;
        Ok(())
    }
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

#[async_trait]
impl SessionStore for SurrealSessionStore {
    /// `CREATE` fails on an existing key, so a colliding id is replaced, never shared.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expires_at = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
        for _ in 0..8 {
            let created = self
                .db
                .query("CREATE $id CONTENT { data: $data, expires_at: $expires_at, user: $user }")
                .bind(("id", Self::key(&record.id)))
                .bind(("user", session_user(record)))
                .bind(("data", data.clone()))
                .bind(("expires_at", expires_at))
                .await
                .and_then(|r| r.check());
            match created {
                Ok(_) => return Ok(()),
                Err(err) if crate::db::record_exists(&err) => record.id = Id::default(),
                Err(err) => return Err(backend(err)),
            }
        }
        Err(session_store::Error::Backend("could not find a free session id".into()))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expires_at = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
        self.db
            .query("UPSERT $id CONTENT { data: $data, expires_at: $expires_at, user: $user }")
            .bind(("id", Self::key(&record.id)))
            .bind(("user", session_user(record)))
            .bind(("data", data))
            .bind(("expires_at", expires_at))
            .await
            .and_then(|r| r.check())
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let mut response = self
            .db
            .query("SELECT data, expires_at FROM $id WHERE expires_at > $now")
            .bind(("id", Self::key(id)))
            .bind(("now", now_ms()))
            .await
            .map_err(backend)?;
        let row: Option<SessionRow> = response.take(0).map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data = serde_json::from_str(&row.data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.expires_at) * 1_000_000)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.db.query("DELETE $id").bind(("id", Self::key(id))).await.and_then(|r| r.check()).map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_the_user_it_read_only_for_that_user() {
        let memo = RequestUser::default();
        assert_eq!(memo.get("u1"), None);
        let user = CurrentUser { id: "u1".into(), email: "a@example.com".into(), name: "A".into(), role: Role::Admin };
        memo.keep(user.clone());
        assert_eq!(memo.get("u1"), Some(user));
        assert_eq!(memo.get("u2"), None, "a session that changed hands reads again");
    }
}
