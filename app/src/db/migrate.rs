//! Versioned schema migrations: the files in `app/migrations/`, applied in order at start-up,
//! each once. A migration and the record that says it ran (`migration:<version>`, with the
//! SHA-256 of its text) commit in one transaction, so a crash leaves either both or neither.
//!
//! A migration is never edited once it has shipped: a changed definition is a new file with
//! `DEFINE … OVERWRITE`. A database whose recorded checksum differs from the file refuses to
//! start, naming the migration.

use super::{Db, DbError, check_transaction, record_exists, retry_conflicts};
use sha2::{Digest, Sha256};
use surrealdb::types::{RecordId, SurrealValue};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// `migration!(2, "0002", "name")`: the version, as a number and as the file name spells it
/// (`migrations/0002_name.surql`).
macro_rules! migration {
    ($version:literal, $file_version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $file_version, "_", $name, ".surql")),
        }
    };
}

/// Every migration, oldest first. A unit test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001", "baseline"),
    migration!(2, "0002", "google_and_private_relays"),
    migration!(3, "0003", "stored_enums_asserted"),
    migration!(4, "0004", "languages"),
    migration!(5, "0005", "attempts_keyed_by_message"),
    migration!(6, "0006", "quota_per_key"),
];

/// The bookkeeping table itself, defined before anything is read from it.
const BOOKKEEPING: &str = "
    DEFINE TABLE IF NOT EXISTS migration SCHEMAFULL;
    DEFINE FIELD IF NOT EXISTS version ON migration TYPE int;
    DEFINE FIELD IF NOT EXISTS name ON migration TYPE string;
    DEFINE FIELD IF NOT EXISTS checksum ON migration TYPE string;
    DEFINE FIELD IF NOT EXISTS applied_at ON migration TYPE int;
";

#[derive(Debug, Clone, SurrealValue)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: i64,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// The migrations recorded in this database, oldest first.
pub async fn applied(db: &Db) -> Result<Vec<Applied>, surrealdb::Error> {
    db.query("SELECT version, name, checksum, applied_at FROM migration ORDER BY version").await?.take(0)
}

/// Applies `migrations` that this database has not recorded yet, in order, and answers the
/// versions this call applied. Nodes that start together race for each migration: the
/// transaction of the loser fails and changes nothing. A conflict is retried (a few times,
/// then the start fails); `migration:<version>` found existing means the winner committed, and
/// the loser goes on with the next migration once the winner's record names this very one
/// (same checksum).
pub async fn migrate(db: &Db, migrations: &[Migration]) -> Result<Vec<i64>, DbError> {
    retry_conflicts("define the migration table", || async { db.query(BOOKKEEPING).await?.check() })
        .await
        .map_err(DbError::Schema)?;
    let done = retry_conflicts("read the applied migrations", || applied(db)).await.map_err(DbError::Schema)?;
    let mut now_applied = Vec::new();
    for migration in migrations {
        if let Some(recorded) = done.iter().find(|a| a.version == migration.version) {
            if recorded.checksum != migration.checksum() {
                return Err(DbError::MigrationChanged { migration: migration.label() });
            }
            continue;
        }
        let applied_now = retry_conflicts("apply a migration", || apply(db, migration)).await;
        match applied_now {
            Ok(()) => {
                tracing::info!(migration = %migration.label(), "database migration applied");
                now_applied.push(migration.version);
            }
            Err(err) if record_exists(&err) => {
                // The record may exist because another node applied this migration, or because
                // the migration's own statements created a record that exists: only the first
                // is a success.
                let recorded =
                    retry_conflicts("read the applied migrations", || applied(db)).await.map_err(DbError::Schema)?;
                match recorded.iter().find(|a| a.version == migration.version) {
                    Some(a) if a.checksum == migration.checksum() => {
                        tracing::info!(migration = %migration.label(), "another node applied this migration");
                    }
                    Some(_) => return Err(DbError::MigrationChanged { migration: migration.label() }),
                    None => return Err(DbError::Migration { migration: migration.label(), source: err }),
                }
            }
            Err(source) => return Err(DbError::Migration { migration: migration.label(), source }),
        }
    }
    Ok(now_applied)
}

async fn apply(db: &Db, migration: &Migration) -> Result<(), surrealdb::Error> {
    let query = format!(
        "BEGIN TRANSACTION;
         {sql}
         ;
         CREATE $id CONTENT {{ version: $version, name: $name, checksum: $checksum, applied_at: $now }};
         COMMIT TRANSACTION;",
        sql = migration.sql
    );
    db.query(query)
        .bind(("id", RecordId::new("migration", migration.version)))
        .bind(("version", migration.version))
        .bind(("name", migration.name))
        .bind(("checksum", migration.checksum()))
        .bind(("now", super::now_ms()))
        .await
        .and_then(check_transaction)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{DbOptions, connect_without_migrating};

    fn every_version() -> Vec<i64> {
        MIGRATIONS.iter().map(|m| m.version).collect()
    }

    async fn fresh() -> Db {
        connect_without_migrating(DbOptions { url: "mem://", namespace: "t", database: "t", credentials: None })
            .await
            .unwrap()
    }

    #[test]
    fn the_list_names_every_file_in_the_folder_in_order_and_none_holds_its_own_transaction() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".surql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.surql", m.label())).collect();
        assert_eq!(listed, files);
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i64 + 1, "versions count up from 1 without gaps");
            // Statements, comments left out: none may open, end or cancel a transaction.
            let code: String = migration
                .sql
                .lines()
                .map(|line| line.split("--").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            for statement in code.split(';') {
                let first = statement.split_whitespace().next().unwrap_or_default().to_uppercase();
                assert!(
                    !["BEGIN", "COMMIT", "CANCEL"].contains(&first.as_str()),
                    "{} must not hold its own transaction: {statement:?}",
                    migration.label()
                );
            }
        }
    }

    #[tokio::test]
    async fn a_fresh_database_gets_every_migration_once() {
        let db = fresh().await;
        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), every_version());
        let first = applied(&db).await.unwrap();
        assert_eq!(first.iter().map(|a| a.version).collect::<Vec<_>>(), every_version());
        assert_eq!(first[2].checksum, MIGRATIONS[2].checksum());

        // A second start applies nothing and leaves the records as they were.
        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), Vec::<i64>::new());
        let again = applied(&db).await.unwrap();
        assert_eq!(
            again.iter().map(|a| a.applied_at).collect::<Vec<_>>(),
            first.iter().map(|a| a.applied_at).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn nodes_starting_together_apply_each_migration_once() {
        let db = fresh().await;
        let (a, b) = tokio::join!(migrate(&db, MIGRATIONS), migrate(&db, MIGRATIONS));
        let mut both = [a.unwrap(), b.unwrap()].concat();
        both.sort();
        assert_eq!(both, every_version(), "every migration applied by exactly one of them");
        assert_eq!(applied(&db).await.unwrap().len(), MIGRATIONS.len());
    }

    #[tokio::test]
    async fn a_migration_edited_after_it_ran_stops_the_start() {
        let db = fresh().await;
        migrate(&db, &MIGRATIONS[..1]).await.unwrap();
        let edited = [Migration { version: 1, name: "baseline", sql: "DEFINE TABLE IF NOT EXISTS other SCHEMAFULL;" }];
        let err = migrate(&db, &edited).await.unwrap_err();
        assert!(matches!(&err, DbError::MigrationChanged { migration } if migration == "0001_baseline"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_migration_changes_nothing_and_is_not_recorded() {
        let db = fresh().await;
        let broken = [Migration {
            version: 1,
            name: "broken",
            sql: "DEFINE TABLE IF NOT EXISTS half SCHEMAFULL; THROW 'refused';",
        }];
        let err = migrate(&db, &broken).await.unwrap_err();
        assert!(matches!(&err, DbError::Migration { migration, .. } if migration == "0001_broken"), "{err}");
        assert!(applied(&db).await.unwrap().is_empty());
        let tables: surrealdb::types::Value = db.query("INFO FOR DB").await.unwrap().take(0).unwrap();
        assert!(!format!("{tables:?}").contains("half"), "the table of the failed migration was rolled back");
    }

    /// A database as the releases before versioned migrations left it — their start-up schema
    /// (migrations 1 and 2, unrecorded) and settings first saved in default mode, whose TLS and
    /// authentication fields were '' — migrates: 1 and 2 change nothing, 3 fills the enums, and
    /// the schema refuses values outside them from then on.
    #[tokio::test]
    async fn a_database_made_before_migrations_migrates_and_its_settings_load() {
        let db = fresh().await;
        for migration in &MIGRATIONS[..2] {
            db.query(migration.sql).await.unwrap().check().unwrap();
        }
        db.query(
            "UPSERT smtp_settings:current CONTENT {
                 mode: 'default', host: '', port: 0, from_mailbox: '', tls_enabled: false, tls_version: '',
                 tls_mode: '', auth_type: '', username: '', client_id: '', token_url: '', scope: '', version: 2
             };
             CREATE user:old CONTENT { email: 'old@example.com', name: 'Old', role: 'admin', created_at: 1 };",
        )
        .await
        .unwrap()
        .check()
        .unwrap();

        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), every_version());

        let stored = crate::smtp_settings::ssr::load_stored(&db).await.unwrap().expect("the saved settings");
        use crate::smtp_settings::types::{AuthType, MinTlsVersion, Mode, TlsMode};
        assert_eq!(
            (stored.mode, stored.tls_version, stored.tls_mode, stored.auth_type, stored.version),
            (Mode::Default, MinTlsVersion::Tls12, TlsMode::StartTls, AuthType::Basic, 2)
        );
        let users: Vec<String> = db.query("SELECT VALUE email FROM user").await.unwrap().take(0).unwrap();
        assert_eq!(users, vec!["old@example.com".to_owned()]);
        let refused = db.query("UPDATE smtp_settings:current SET tls_mode = 'ssl'").await.unwrap().check();
        assert!(refused.is_err(), "migration 3 asserts the stored enums");
    }

    /// Settings saved by the release before Google service accounts and private relays (made by
    /// migration 1 alone) load after migrating, with none of the new fields set.
    #[tokio::test]
    async fn settings_saved_before_the_new_fields_existed_still_load() {
        let db = fresh().await;
        migrate(&db, &MIGRATIONS[..1]).await.unwrap();
        db.query(
            "UPSERT smtp_settings:current CONTENT {
                 mode: 'custom', host: 'smtp.example.com', port: 587, from_mailbox: 'Mailroom <mail@example.com>',
                 tls_enabled: true, tls_version: 'tls12', tls_mode: 'starttls', auth_type: 'basic',
                 username: 'mailer', client_id: '', token_url: '', scope: '', password_enc: 'sealed', version: 3
             }",
        )
        .await
        .unwrap()
        .check()
        .unwrap();
        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), every_version()[1..]);
        let stored = crate::smtp_settings::ssr::load_stored(&db).await.unwrap().expect("the saved settings");
        assert_eq!((stored.version, stored.host.as_str()), (3, "smtp.example.com"));
        assert!(stored.certificates.is_empty() && stored.service_key_enc.is_none());
    }

    /// Quota counts of the old shape (a record per key and minute) are dropped by migration 6;
    /// the new shape (a record per key, this minute's and the previous minute's counts) fits the
    /// table.
    #[tokio::test]
    async fn quota_records_per_minute_are_dropped_by_migration_6() {
        let db = fresh().await;
        migrate(&db, &MIGRATIONS[..5]).await.unwrap();
        db.query("CREATE quota:`smtp_admin-00ff-29000000` CONTENT { n: 3, expires_at: 1 };")
            .await
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), vec![6]);
        let mut response = db
            .query(
                "RETURN count(SELECT id FROM quota);
                 CREATE quota:`smtp_admin-00ff` CONTENT { n: 1, previous: 3, minute: 29000001, expires_at: 1 };
                 SELECT VALUE [n, previous, minute] FROM quota;",
            )
            .await
            .unwrap()
            .check()
            .unwrap();
        let before: Option<i64> = response.take(0).unwrap();
        let after: Vec<Vec<i64>> = response.take(2).unwrap();
        assert_eq!((before, after), (Some(0), vec![vec![1, 3, 29_000_001]]));
    }

    /// Attempts recorded before migration 5 (random keys, found through an index) take the key
    /// [message, time, old key]: a message's attempts are then a range of keys, in time order.
    #[tokio::test]
    async fn attempts_recorded_before_migration_5_are_keyed_by_their_message() {
        let db = fresh().await;
        migrate(&db, &MIGRATIONS[..4]).await.unwrap();
        db.query(
            "CREATE outbox_attempt:old1 CONTENT { outbox: 'm1', at: 20, node: 'n', ok: false, error: 'greylisted' };
             CREATE outbox_attempt:old2 CONTENT { outbox: 'm1', at: 10, node: 'n', ok: false, error: 'refused' };
             CREATE outbox_attempt:old3 CONTENT { outbox: 'm2', at: 15, node: 'n', ok: true };",
        )
        .await
        .unwrap()
        .check()
        .unwrap();
        assert_eq!(migrate(&db, MIGRATIONS).await.unwrap(), vec![5, 6]);

        let mut response = db
            .query(
                "SELECT VALUE [record::id(id), error] FROM outbox_attempt:['m1', NONE]..=['m1', ..];
                 RETURN count(SELECT id FROM outbox_attempt);
                 INFO FOR TABLE outbox_attempt;",
            )
            .await
            .unwrap();
        let m1: Vec<surrealdb::types::Value> = response.take(0).unwrap();
        let m1 = format!("{m1:?}");
        let (first, second) = (m1.find("refused").unwrap(), m1.find("greylisted").unwrap());
        assert!(first < second && m1.contains("old2") && m1.contains("old1"), "{m1}");
        assert!(!m1.contains("old3"), "only m1's attempts: {m1}");
        let total: Option<i64> = response.take(1).unwrap();
        assert_eq!(total, Some(3), "none lost, none doubled");
        let info: surrealdb::types::Value = response.take(2).unwrap();
        assert!(!format!("{info:?}").contains("outbox_attempt_outbox"), "the index is gone: {info:?}");
    }
}
