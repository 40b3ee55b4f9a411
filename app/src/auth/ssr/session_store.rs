//! Sessions kept in SurrealDB behind tower-sessions: they survive restarts and are shared by
//! every node. Each node keeps a copy of the sessions it has read, dropped on every change to
//! the table (see [`crate::db::follow`]), so a signed-in request reads no session from the
//! database.

use super::USER_KEY;
use crate::shared::token::fingerprint;
use crate::{
    db::{follow::Followed, now_ms},
    state::{AppState, Db},
};
use async_trait::async_trait;
use std::sync::Arc;
use surrealdb::types::{RecordId, SurrealValue};
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
    session_store,
};

/// tower-sessions store on SurrealDB. Sessions survive restarts of the server.
#[derive(Clone)]
pub struct SurrealSessionStore {
    db: Db,
    copies: Arc<Followed<Record>>,
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
    pub fn new(state: &AppState) -> Self {
        Self { db: state.db().clone(), copies: state.shared.sessions.clone() }
    }

    /// The record key: a hash of the id, so the database never holds a usable session id.
    fn key_of(id: &Id) -> String {
        fingerprint(&id.to_string())
    }

    fn key(id: &Id) -> RecordId {
        RecordId::new("session", Self::key_of(id))
    }

    /// Deletes expired sessions.
    pub async fn delete_expired(&self) -> Result<(), surrealdb::Error> {
        let now = now_ms();
        self.db.query("DELETE session WHERE expires_at < $now").bind(("now", now)).await?.check()?;
        self.copies.drop_where(|record| !unexpired(record, now));
        Ok(())
    }
}

fn unexpired(record: &Record, now: i64) -> bool {
    record.expiry_date.unix_timestamp_nanos() / 1_000_000 > i128::from(now)
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
                Ok(_) => {
                    self.copies.changed();
                    return Ok(());
                }
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
        self.copies.changed();
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = now_ms();
        let read = async {
            let mut response = self
                .db
                .query("SELECT data, expires_at FROM $id WHERE expires_at > $now")
                .bind(("id", Self::key(id)))
                .bind(("now", now))
                .await
                .map_err(backend)?;
            let row: Option<SessionRow> = response.take(0).map_err(backend)?;
            let Some(row) = row else { return Ok(None) };
            let data = serde_json::from_str(&row.data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
            let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.expires_at) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
            Ok(Some(Record { id: *id, data, expiry_date }))
        };
        let record = self.copies.get_or_read(&Self::key_of(id), |record| unexpired(record, now), read).await?;
        Ok(record.map(|record| Record { id: *id, ..record }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        // Dropped before and after: no request on this node uses the session once this returns.
        self.copies.changed();
        self.db.query("DELETE $id").bind(("id", Self::key(id))).await.and_then(|r| r.check()).map_err(backend)?;
        self.copies.changed();
        Ok(())
    }
}
