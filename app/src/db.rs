//! The SurrealDB connection (the `any` engine: `surrealkv://`, `mem://` or `ws://`) and the
//! schema, applied at every start-up. Every query binds its values as `$params`.

use crate::state::Db;
use surrealdb::opt::auth::Root;

pub const SCHEMA: &str = include_str!("schema.surql");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database at {url}: {source}")]
    Connect { url: String, source: surrealdb::Error },
    #[error("cannot sign in to the database as {user}: {source}")]
    SignIn { user: String, source: surrealdb::Error },
    #[error("cannot select namespace {ns} / database {db}: {source}")]
    Select { ns: String, db: String, source: surrealdb::Error },
    #[error("cannot apply the database schema: {0}")]
    Schema(surrealdb::Error),
}

pub struct DbOptions<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub database: &'a str,
    pub credentials: Option<(&'a str, &'a str)>,
}

pub async fn connect(options: DbOptions<'_>) -> Result<Db, DbError> {
    let db = surrealdb::engine::any::connect(options.url)
        .await
        .map_err(|source| DbError::Connect { url: options.url.to_owned(), source })?;
    if let Some((user, password)) = options.credentials {
        db.signin(Root { username: user.to_owned(), password: password.to_owned() })
            .await
            .map_err(|source| DbError::SignIn { user: user.to_owned(), source })?;
    }
    // On a fresh database server the first use creates the namespace and the database.
    retry_conflicts("select the namespace", || db.use_ns(options.namespace).use_db(options.database).into_future())
        .await
        .map_err(|source| DbError::Select {
            ns: options.namespace.to_owned(),
            db: options.database.to_owned(),
            source,
        })?;
    apply_schema(&db).await?;
    Ok(db)
}

/// Applies the schema; idempotent.
pub async fn apply_schema(db: &Db) -> Result<(), DbError> {
    retry_conflicts("apply the schema", || async { db.query(SCHEMA).await?.check() }).await.map_err(DbError::Schema)?;
    Ok(())
}

/// Runs `step` again (up to ten times, after a short random pause) while it fails with a
/// transaction conflict. Nodes of a cluster that start together create the namespace and
/// define the schema together, and the database fails all but one of two concurrent
/// definitions: they are idempotent, so the loser does it again.
async fn retry_conflicts<T, F: Future<Output = Result<T, surrealdb::Error>>>(
    what: &str,
    mut step: impl FnMut() -> F,
) -> Result<T, surrealdb::Error> {
    let mut attempt = 0;
    loop {
        match step().await {
            Err(err) if is_conflict(&err) && attempt < 10 => {
                attempt += 1;
                tracing::info!(attempt, "another node is starting too: cannot {what} yet, trying again");
                let pause = 20 * attempt + rand::random_range(0..50);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            done => return done,
        }
    }
}

/// Like `IndexedResults::check`, but for a transaction answers the statement that failed it
/// (the others only say "not executed due to a failed transaction").
pub fn check_transaction(
    mut response: surrealdb::IndexedResults,
) -> Result<surrealdb::IndexedResults, surrealdb::Error> {
    let mut errors: Vec<(usize, surrealdb::Error)> = response.take_errors().into_iter().collect();
    if errors.is_empty() {
        return Ok(response);
    }
    errors.sort_by_key(|(index, _)| *index);
    let not_executed = |e: &surrealdb::Error| e.query_details() == Some(&surrealdb::types::QueryError::NotExecuted);
    let cause = errors.iter().position(|(_, e)| !not_executed(e)).unwrap_or_default();
    Err(errors.swap_remove(cause).1)
}

/// The text of a `THROW` in our own SurrealQL, by the error's kind (not by matching text):
/// compare it with the constant the query throws.
pub fn thrown(err: &surrealdb::Error) -> Option<&str> {
    err.is_thrown().then(|| err.message().strip_prefix("An error occurred: ").unwrap_or(err.message()))
}

/// A record created with an id that is taken.
pub fn record_exists(err: &surrealdb::Error) -> bool {
    matches!(err.already_exists_details(), Some(surrealdb::types::AlreadyExistsError::Record { .. }))
}

/// A UNIQUE index refused a value. SurrealDB gives this error no kind of its own, so this is the
/// one place that reads its message: "Database index `NAME` already contains …".
pub fn violates_index(err: &surrealdb::Error, index: &str) -> bool {
    !err.is_thrown() && err.message().starts_with(&format!("Database index `{index}` already contains"))
}

/// A transaction that lost a race with another writer (another node claiming the same
/// message): retrying it, or leaving the record to the winner, is safe.
pub fn is_conflict(err: &surrealdb::Error) -> bool {
    err.query_details() == Some(&surrealdb::types::QueryError::TransactionConflict)
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn database_refusals_are_told_apart_by_kind() {
        let db = connect(DbOptions { url: "mem://", namespace: "t", database: "t", credentials: None }).await.unwrap();
        let failure = |query: &'static str| {
            let db = db.clone();
            async move { db.query(query).await.and_then(check_transaction).expect_err("the query fails") }
        };
        let thrown_error = failure("BEGIN; IF true { THROW 'stale settings version' }; COMMIT;").await;
        assert_eq!(thrown(&thrown_error), Some("stale settings version"), "the statement that failed, not the rest");
        let user = "CREATE user:a SET email = 'a@x', name = 'a', role = 'user', created_at = 1;";
        db.query(user).await.unwrap().check().unwrap();
        assert!(record_exists(&failure(user).await));
        let same_email = failure("CREATE user:b SET email = 'a@x', name = 'b', role = 'user', created_at = 1").await;
        assert!(violates_index(&same_email, "user_email") && !violates_index(&same_email, "other"));
        assert_eq!(thrown(&same_email), None);
    }
}
