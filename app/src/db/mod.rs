//! The SurrealDB connection (the `any` engine: `surrealkv://`, `mem://` or `ws://`) and the
//! schema, migrated at every start-up ([`migrate`]). Every query binds its values as `$params`.

pub mod follow;
pub mod migrate;

use surrealdb::{Surreal, engine::any::Any, opt::auth::Root};

/// The database handle every part of the server shares (cheap to clone).
pub type Db = Surreal<Any>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database at {url}: {source}")]
    Connect { url: String, source: surrealdb::Error },
    #[error("cannot sign in to the database as {user}: {source}")]
    SignIn { user: String, source: surrealdb::Error },
    #[error("cannot select namespace {ns} / database {db}: {source}")]
    Select { ns: String, db: String, source: surrealdb::Error },
    #[error("cannot read or define the database's migration records: {0}")]
    Schema(surrealdb::Error),
    #[error("cannot apply the database migration {migration}: {source}")]
    Migration { migration: String, source: surrealdb::Error },
    #[error(
        "the database migration {migration} was changed after this database applied it; \
         restore the file and put the change in a new migration"
    )]
    MigrationChanged { migration: String },
}

pub struct DbOptions<'a> {
    pub url: &'a str,
    pub namespace: &'a str,
    pub database: &'a str,
    pub credentials: Option<(&'a str, &'a str)>,
}

/// Connects, then brings the schema up to date.
pub async fn connect(options: DbOptions<'_>) -> Result<Db, DbError> {
    let db = connect_without_migrating(options).await?;
    migrate::migrate(&db, migrate::MIGRATIONS).await?;
    Ok(db)
}

/// Connects and selects the namespace and database, leaving the schema as it is.
pub async fn connect_without_migrating(options: DbOptions<'_>) -> Result<Db, DbError> {
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
    Ok(db)
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

/// Why one of our own transactions refused a change: what its SurrealQL `THROW`s (bind
/// [`Refusal::thrown`] as the value to throw) and what [`Refusal::of`] reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another user has this email.
    EmailTaken,
    /// A one-time link is unknown, used or expired.
    LinkNotUsable,
    /// The settings changed since the admin loaded them.
    StaleSettingsVersion,
}

impl Refusal {
    const ALL: [Self; 3] = [Self::EmailTaken, Self::LinkNotUsable, Self::StaleSettingsVersion];

    /// The value the query throws.
    pub const fn thrown(self) -> &'static str {
        match self {
            Self::EmailTaken => "email taken",
            Self::LinkNotUsable => "link not usable",
            Self::StaleSettingsVersion => "stale settings version",
        }
    }

    /// The refusal a failed query threw, if it was one of ours. Only a `THROW` (by the error's
    /// kind) is read, never an error that happens to hold the same words.
    pub fn of(err: &surrealdb::Error) -> Option<Self> {
        let thrown =
            err.is_thrown().then(|| err.message().strip_prefix("An error occurred: ").unwrap_or(err.message()))?;
        Self::ALL.into_iter().find(|refusal| refusal.thrown() == thrown)
    }
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
    use surrealdb::types::SurrealValue;

    /// The stored names a source file spells out in its queries for `field`: every quoted word
    /// after `field = `, `field: ` or inside `field IN [...]`.
    fn spelled<'a>(source: &'a str, field: &str) -> Vec<&'a str> {
        let mut found = Vec::new();
        for prefix in [format!("{field} = '"), format!("{field}: '"), format!("{field} IN [")] {
            for (at, _) in source.match_indices(&prefix) {
                let rest = &source[at + prefix.len()..];
                if prefix.ends_with('[') {
                    let list = &rest[..rest.find(']').expect("the list ends")];
                    found.extend(list.split(',').map(|word| word.trim().trim_matches('\'')));
                } else {
                    found.push(&rest[..rest.find('\'').expect("the word ends")]);
                }
            }
        }
        found
    }

    fn stored_names<T: SurrealValue>(variants: impl IntoIterator<Item = T>) -> Vec<String> {
        variants.into_iter().map(|v| String::from_value(v.into_value()).expect("stored as a string")).collect()
    }

    /// A query that filters on a misspelt state matches nothing, silently: every name the
    /// queries spell must be one the enum stores.
    #[test]
    fn every_stored_name_a_query_spells_is_a_variant_of_its_enum() {
        use crate::{auth::Role, outbox::OutboxStatus, smtp_settings::types::Mode};
        let statuses = stored_names(OutboxStatus::ALL);
        let roles = stored_names([Role::Admin, Role::User]);
        let modes = stored_names([Mode::Default, Mode::Custom]);
        let checks: [(&str, &[String], &[&str], usize); 3] = [
            (
                "status",
                &statuses,
                &[
                    include_str!("../outbox/ssr/mod.rs"),
                    include_str!("../outbox/ssr/worker/mod.rs"),
                    include_str!("../outbox/ssr/worker/claim.rs"),
                    include_str!("../outbox/ssr/worker/hold.rs"),
                    include_str!("../outbox/ssr/worker/settle.rs"),
                ],
                12,
            ),
            (
                "role",
                &roles,
                &[
                    include_str!("../auth/ssr/mod.rs"),
                    include_str!("../auth/ssr/first_admin.rs"),
                    include_str!("../smtp_settings/ssr/mod.rs"),
                ],
                3,
            ),
            ("mode", &modes, &[include_str!("../smtp_health/ssr.rs")], 1),
        ];
        for (field, names, sources, at_least) in checks {
            let words: Vec<&str> = sources.iter().flat_map(|source| spelled(source, field)).collect();
            assert!(words.len() >= at_least, "{field}: found only {words:?}");
            for word in words {
                assert!(names.iter().any(|name| name == word), "{field} = '{word}' is not one of {names:?}");
            }
        }
    }

    #[tokio::test]
    async fn database_refusals_are_told_apart_by_kind() {
        let db = connect(DbOptions { url: "mem://", namespace: "t", database: "t", credentials: None }).await.unwrap();
        let failure = |query: &'static str| {
            let db = db.clone();
            async move { db.query(query).await.and_then(check_transaction).expect_err("the query fails") }
        };
        let thrown_error = failure("BEGIN; IF true { THROW 'stale settings version' }; COMMIT;").await;
        assert_eq!(Refusal::of(&thrown_error), Some(Refusal::StaleSettingsVersion), "the statement that failed");
        assert_eq!(Refusal::of(&failure("THROW 'something else'").await), None);
        let user = "CREATE user:a SET email = 'a@x', name = 'a', role = 'user', created_at = 1;";
        db.query(user).await.unwrap().check().unwrap();
        assert!(record_exists(&failure(user).await));
        let same_email = failure("CREATE user:b SET email = 'a@x', name = 'b', role = 'user', created_at = 1").await;
        assert!(violates_index(&same_email, "user_email") && !violates_index(&same_email, "other"));
        assert_eq!(Refusal::of(&same_email), None);
        let lookalike = failure("CREATE user:c SET email = 'email taken', name = 1").await;
        assert_eq!(Refusal::of(&lookalike), None, "an error that is no THROW is never read as one");
    }
}
