//! The server half of sign-in: users in SurrealDB, argon2id hashes, sessions kept in
//! SurrealDB behind tower-sessions, and the guards every server function starts with.

use super::{CurrentUser, Role};
use crate::{
    db::now_ms,
    error::{AppError, ssr::internal},
    state::{AppState, Db, app_state},
};
use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use surrealdb::types::{RecordId, SurrealValue};
use tower_sessions::{
    Session, SessionStore,
    session::{Id, Record},
    session_store,
};

const USER_KEY: &str = "user_id";

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

pub async fn admin_exists(db: &Db) -> Result<bool, AppError> {
    let mut response = db.query("SELECT count() AS n FROM user WHERE role = 'admin' GROUP ALL").await?;
    let count: Option<i64> = response.take((0, "n"))?;
    Ok(count.unwrap_or(0) > 0)
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
            "IF (SELECT id FROM user WHERE email = $email LIMIT 1)[0] != NONE { THROW 'email taken' };
             CREATE $id CONTENT { email: $email, name: $name, role: $role, password_hash: $hash, created_at: $now };",
        )
        .bind(("id", RecordId::new("user", uid.as_str())))
        .bind(("email", email.clone()))
        .bind(("name", user.name.trim().to_owned()))
        .bind(("role", role))
        .bind(("hash", hash))
        .bind(("now", now_ms()))
        .await?
        .check();
    match result {
        Ok(_) => Ok(CurrentUser { id: uid, email, name: user.name.trim().to_owned(), role: user.role }),
        Err(err) if err.to_string().contains("email taken") || err.to_string().contains("user_email") => {
            Err(AppError::field("email", "A user with this email already exists."))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn hash_password(password: String) -> Result<String, AppError> {
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

pub fn client_ip() -> String {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Checks the credentials and starts a fresh session. Unknown email and wrong password give
/// the same error after the same work.
pub async fn sign_in(email: &str, password: &str) -> Result<CurrentUser, AppError> {
    let state = app_state()?;
    state.shared.login_by_ip.check(&client_ip())?;
    state.shared.login_by_email.check(&normalize_email(email))?;
    let row = find_by_email(state.db(), email).await?;
    let hash = row.as_ref().and_then(|r| r.password_hash.clone());
    if !verify_password(password.to_owned(), hash).await? {
        tracing::info!("sign-in refused");
        return Err(AppError::InvalidCredentials);
    }
    let user = row.ok_or(AppError::InvalidCredentials)?.into_current();
    let session = session().await?;
    session.cycle_id().await.map_err(|err| internal("cannot rotate the session id", &err))?;
    session.insert(USER_KEY, &user.id).await.map_err(|err| internal("cannot write the session", &err))?;
    tracing::info!(user = %user.id, "signed in");
    Ok(user)
}

pub async fn sign_out() -> Result<(), AppError> {
    let session = session().await?;
    session.flush().await.map_err(|err| internal("cannot end the session", &err))
}

pub async fn current_user() -> Result<Option<CurrentUser>, AppError> {
    let state = app_state()?;
    user_from_session(state.db(), &session().await?).await
}

/// The user a session belongs to (for plain axum handlers as well as server functions).
pub async fn user_from_session(db: &Db, session: &Session) -> Result<Option<CurrentUser>, AppError> {
    let Some(uid) = session.get::<String>(USER_KEY).await.map_err(|err| internal("cannot read the session", &err))?
    else {
        return Ok(None);
    };
    Ok(find_by_id(db, &uid).await?.map(UserRow::into_current))
}

/// The signed-in user, or 401.
pub async fn require_user() -> Result<CurrentUser, AppError> {
    current_user().await?.ok_or(AppError::Unauthorized)
}

/// The signed-in admin, or 401 / 403. Every admin server function starts with this.
pub async fn require_admin() -> Result<CurrentUser, AppError> {
    admin_of(app_state()?.db(), &session().await?).await
}

/// The admin a session belongs to, or 401 / 403 (for plain axum handlers too).
pub async fn admin_of(db: &Db, session: &Session) -> Result<CurrentUser, AppError> {
    let user = user_from_session(db, session).await?.ok_or(AppError::Unauthorized)?;
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
    create_user(state.db(), NewUser { email, name, role: Role::Admin, password: Some(password) }).await?;
    Ok(true)
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
                .query("CREATE $id CONTENT { data: $data, expires_at: $expires_at }")
                .bind(("id", Self::key(&record.id)))
                .bind(("data", data.clone()))
                .bind(("expires_at", expires_at))
                .await
                .and_then(|r| r.check());
            match created {
                Ok(_) => return Ok(()),
                Err(err) if err.to_string().contains("already exists") => record.id = Id::default(),
                Err(err) => return Err(backend(err)),
            }
        }
        Err(session_store::Error::Backend("could not find a free session id".into()))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expires_at = (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64;
        self.db
            .query("UPSERT $id CONTENT { data: $data, expires_at: $expires_at }")
            .bind(("id", Self::key(&record.id)))
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
