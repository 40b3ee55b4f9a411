//! The instance key that seals stored secrets (SMTP password and client secret, queued and
//! delivered mail bodies): 32 random bytes, as 64 hex characters in `MAILROOM_SECRET_KEY_FILE`.
//!
//! Losing or swapping the key leaves everything sealed unreadable, so start-up is strict. The
//! database keeps a fingerprint of the key it is sealed with (record `instance:key`); a key file
//! that does not match it stops start-up, and a missing key file stops start-up whenever the
//! database holds a fingerprint or sealed data. Only a database with nothing sealed gets a new key.
//!
//! Nothing here is written in place: a file is written to a temporary file beside it (mode 0600),
//! synced, moved to its name, and the directory synced. A crash leaves the old file or the new one,
//! plus at most a stray temporary file that nothing reads.

use app::state::Db;
use std::{
    io::{self, Write},
    path::Path,
};

/// Separates key fingerprints from every other SHA-256 the instance computes.
const FINGERPRINT_DOMAIN: &str = "mailroom instance key fingerprint v1\n";

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("MAILROOM_SECRET_KEY_FILE: cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("MAILROOM_SECRET_KEY_FILE: cannot create {path}: {source}")]
    Create { path: String, source: io::Error },
    #[error("MAILROOM_SECRET_KEY_FILE: {path} does not hold a key (expected 64 hex characters)")]
    Malformed { path: String },
    #[error(
        "MAILROOM_SECRET_KEY_FILE: the key in {path} (fingerprint {file}) is not the key this database was \
         sealed with (fingerprint {database}); restore the key file this database was sealed with to {path} \
         and start again"
    )]
    Mismatch { path: String, file: String, database: String },
    #[error(
        "MAILROOM_SECRET_KEY_FILE: {path} is missing, but this database was sealed with the key with \
         fingerprint {database}; restore {path} from a backup and start again (a new key could not open \
         the stored SMTP secrets and mail)"
    )]
    Missing { path: String, database: String },
    #[error(
        "MAILROOM_SECRET_KEY_FILE: {path} is missing, but this database already holds {sealed} sealed with \
         the instance key; restore {path} from a backup and start again (a new key could not open it)"
    )]
    MissingWithSealedData { path: String, sealed: &'static str },
    #[error("MAILROOM_SECRET_KEY_FILE: cannot check the key against the database: {0}")]
    Database(#[from] surrealdb::Error),
}

/// The key this database is sealed with: read from `path` and checked against the fingerprint
/// in the database (recorded there if it has none), or created when the file is missing and
/// nothing is sealed yet.
pub async fn load_checked(path: &Path, db: &Db) -> Result<[u8; 32], SecretKeyError> {
    let shown = || path.display().to_string();
    let stored = stored_fingerprint(db).await?;
    let key = match (read(path)?, &stored) {
        (Some(key), _) => key,
        (None, Some(database)) => return Err(SecretKeyError::Missing { path: shown(), database: database.clone() }),
        (None, None) => match sealed_data(db).await? {
            Some(sealed) => return Err(SecretKeyError::MissingWithSealedData { path: shown(), sealed }),
            None => create(path)?,
        },
    };
    let file = fingerprint(&key);
    let database = match stored {
        Some(database) => database,
        None => record_fingerprint(db, &file).await?,
    };
    if database != file {
        return Err(SecretKeyError::Mismatch { path: shown(), file, database });
    }
    Ok(key)
}

/// Names a key without revealing it: the first 16 hex characters of SHA-256 over a domain
/// prefix and the key.
pub fn fingerprint(key: &[u8; 32]) -> String {
    let mut fingerprint = app::shared::token::fingerprint(&format!("{FINGERPRINT_DOMAIN}{}", hex::encode(key)));
    fingerprint.truncate(16);
    fingerprint
}

async fn stored_fingerprint(db: &Db) -> Result<Option<String>, surrealdb::Error> {
    let mut response = db.query("SELECT VALUE fingerprint FROM ONLY instance:key").await?.check()?;
    response.take::<Option<String>>(0)
}

/// Records `fingerprint` unless another node got there first; answers the one that stands.
async fn record_fingerprint(db: &Db, fingerprint: &str) -> Result<String, surrealdb::Error> {
    let created = db
        .query("CREATE instance:key SET fingerprint = $fingerprint, recorded_at = $now")
        .bind(("fingerprint", fingerprint.to_owned()))
        .bind(("now", app::db::now_ms()))
        .await
        .and_then(|response| response.check());
    match created {
        Ok(_) => Ok(fingerprint.to_owned()),
        Err(err) => stored_fingerprint(db).await?.ok_or(err),
    }
}

/// What the database holds that only the instance key can open, if anything.
async fn sealed_data(db: &Db) -> Result<Option<&'static str>, surrealdb::Error> {
    use surrealdb::types::RecordId;
    let mut response = db
        .query(
            "SELECT VALUE id FROM outbox LIMIT 1;
             SELECT VALUE id FROM mailbox LIMIT 1;
             SELECT VALUE id FROM smtp_settings:current WHERE password_enc != NONE OR client_secret_enc != NONE;",
        )
        .await?
        .check()?;
    for (index, sealed) in ["mail in the outbox", "mail in the local mailbox", "SMTP secrets"].into_iter().enumerate() {
        if !response.take::<Vec<RecordId>>(index)?.is_empty() {
            return Ok(Some(sealed));
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<Option<[u8; 32]>, SecretKeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(text.trim()).map(Some).ok_or(SecretKeyError::Malformed { path: path.display().to_string() }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretKeyError::Read { path: path.display().to_string(), source }),
    }
}

fn parse(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

fn random<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn create(path: &Path) -> Result<[u8; 32], SecretKeyError> {
    let key = random::<32>();
    let published = write_atomically(path, hex::encode(key).as_bytes(), Publish::IfAbsent)
        .map_err(|source| SecretKeyError::Create { path: path.display().to_string(), source })?;
    if !published {
        // Another process sharing the file created it between our read and our write: use theirs.
        return read(path)?.ok_or_else(|| SecretKeyError::Malformed { path: path.display().to_string() });
    }
    tracing::info!(path = %path.display(), "created a new instance secret key");
    Ok(key)
}

/// This node's id: read from `node-id` beside the key file, or generated once and written there.
pub fn node_id(key_file: &Path) -> Result<String, SecretKeyError> {
    let path = key_file.with_file_name("node-id");
    let shown = || path.display().to_string();
    let read = || match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretKeyError::Read { path: shown(), source }),
    };
    let existing = read()?;
    if let Some(id) = existing.as_ref().filter(|id| !id.is_empty()) {
        return Ok(id.clone());
    }
    // An empty file is what an interrupted in-place write by an older version leaves: replace it.
    let publish = if existing.is_some() { Publish::Replace } else { Publish::IfAbsent };
    let id = format!("node-{}", hex::encode(random::<6>()));
    let published = write_atomically(&path, id.as_bytes(), publish);
    if published.map_err(|source| SecretKeyError::Create { path: shown(), source })? {
        return Ok(id);
    }
    read()?.filter(|id| !id.is_empty()).ok_or_else(|| SecretKeyError::Malformed { path: shown() })
}

/// How a finished temporary file takes the final name.
#[derive(Clone, Copy)]
enum Publish {
    /// `rename` over whatever is there.
    Replace,
    /// Only if nothing is there (a hard link, which fails on an existing name; where the file
    /// system has no hard links, a `rename` after checking).
    IfAbsent,
}

/// Writes `contents` to `path` through a temporary file in the same directory. Answers false
/// when `Publish::IfAbsent` found `path` already there (and left it alone).
fn write_atomically(path: &Path, contents: &[u8], publish: Publish) -> io::Result<bool> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(random::<8>())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    let published = written.and_then(|()| match publish {
        Publish::Replace => std::fs::rename(&temp, path).map(|()| true),
        Publish::IfAbsent => match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(_) if path.exists() => Ok(false),
            Err(_) => std::fs::rename(&temp, path).map(|()| true),
        },
    });
    if !matches!((publish, &published), (Publish::Replace, Ok(true))) {
        let _ = std::fs::remove_file(&temp);
    }
    if published? {
        sync_dir(dir)?;
        return Ok(true);
    }
    Ok(false)
}

/// Makes a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    async fn fresh_db() -> Db {
        app::db::connect(app::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None })
            .await
            .unwrap()
    }

    #[test]
    fn a_new_key_file_is_private_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret.key");
        let created = create(&path).unwrap();
        assert_eq!(read(&path).unwrap(), Some(created));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn writing_the_key_leaves_no_temporary_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        create(&dir.path().join("secret.key")).unwrap();
        node_id(&dir.path().join("secret.key")).unwrap();
        assert_eq!(entries(dir.path()), ["node-id", "secret.key"]);
    }

    #[test]
    fn a_key_file_that_exists_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = create(&path).unwrap();
        assert_eq!(create(&path).unwrap(), first, "a second creator reads the first key");
        assert_eq!(entries(dir.path()), ["secret.key"]);
    }

    #[test]
    fn a_stale_partial_temporary_file_is_ignored_and_the_key_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = create(&path).unwrap();
        // What a crash between writing and renaming leaves behind.
        std::fs::write(dir.path().join(".secret.key.0123456789abcdef.tmp"), "3f2a").unwrap();
        assert_eq!(read(&path).unwrap(), Some(key));
    }

    #[test]
    fn a_stale_temporary_file_without_a_key_file_does_not_stop_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(dir.path().join(".secret.key.0123456789abcdef.tmp"), "3f2a").unwrap();
        let key = create(&path).unwrap();
        assert_eq!(read(&path).unwrap(), Some(key));
    }

    #[test]
    fn a_damaged_key_file_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(read(&path), Err(SecretKeyError::Malformed { .. })));
    }

    #[test]
    fn the_fingerprint_is_stable_short_and_not_the_key() {
        let key = [7u8; 32];
        assert_eq!(fingerprint(&key), fingerprint(&[7u8; 32]));
        assert_eq!(fingerprint(&key), "6e712fb103451866");
        assert_ne!(fingerprint(&key), fingerprint(&[8u8; 32]));
        assert!(!hex::encode(key).contains(&fingerprint(&key)));
    }

    #[test]
    fn the_node_id_is_kept_and_an_empty_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("secret.key");
        let id = node_id(&key_file).unwrap();
        assert!(id.starts_with("node-"), "{id}");
        assert_eq!(node_id(&key_file).unwrap(), id);
        std::fs::write(dir.path().join("node-id"), "").unwrap();
        let replaced = node_id(&key_file).unwrap();
        assert!(replaced.starts_with("node-") && replaced != id, "{replaced}");
        assert_eq!(entries(dir.path()), ["node-id"]);
    }

    #[tokio::test]
    async fn the_first_start_creates_the_key_and_records_its_fingerprint() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let path = dir.path().join("secret.key");
        let key = load_checked(&path, &db).await.unwrap();
        assert_eq!(stored_fingerprint(&db).await.unwrap(), Some(fingerprint(&key)));
        assert_eq!(load_checked(&path, &db).await.unwrap(), key);
    }

    #[tokio::test]
    async fn an_existing_key_file_is_recorded_on_upgrade() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let path = dir.path().join("secret.key");
        std::fs::write(&path, hex::encode([7u8; 32])).unwrap();
        assert_eq!(load_checked(&path, &db).await.unwrap(), [7u8; 32]);
        assert_eq!(stored_fingerprint(&db).await.unwrap(), Some(fingerprint(&[7u8; 32])));
    }

    #[tokio::test]
    async fn another_key_file_is_refused_naming_both_fingerprints() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let path = dir.path().join("secret.key");
        load_checked(&path, &db).await.unwrap();
        let recorded = stored_fingerprint(&db).await.unwrap().unwrap();
        std::fs::write(&path, hex::encode([9u8; 32])).unwrap();
        let err = load_checked(&path, &db).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SecretKeyError::Mismatch { .. }), "{err:?}");
        assert!(message.contains(&recorded) && message.contains(&fingerprint(&[9u8; 32])), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert_eq!(stored_fingerprint(&db).await.unwrap(), Some(recorded), "the record is kept");
    }

    #[tokio::test]
    async fn a_missing_key_file_is_not_replaced_once_a_fingerprint_is_recorded() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let path = dir.path().join("secret.key");
        load_checked(&path, &db).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = load_checked(&path, &db).await.unwrap_err();
        assert!(matches!(err, SecretKeyError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("restore"), "{err}");
        assert!(!path.exists(), "no new key was written");
    }

    #[tokio::test]
    async fn smtp_settings_without_secrets_do_not_count_as_sealed() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let settings = "CREATE smtp_settings:current SET mode = 'custom', host = 'localhost', port = 587,
             from_mailbox = 'mail@example.com', tls_enabled = true, tls_version = 'tls12', tls_mode = 'starttls',
             auth_type = 'basic', username = '', client_id = '', token_url = '', scope = '', version = 1";
        db.query(settings).await.unwrap().check().unwrap();
        assert_eq!(sealed_data(&db).await.unwrap(), None);
        db.query("UPDATE smtp_settings:current SET password_enc = 'sealed'").await.unwrap().check().unwrap();
        assert_eq!(sealed_data(&db).await.unwrap(), Some("SMTP secrets"));
        let err = load_checked(&dir.path().join("secret.key"), &db).await.unwrap_err();
        assert!(matches!(err, SecretKeyError::MissingWithSealedData { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_key_file_is_not_replaced_when_mail_is_sealed_without_a_fingerprint() {
        let (dir, db) = (tempfile::tempdir().unwrap(), fresh_db().await);
        let path = dir.path().join("secret.key");
        db.query(
            "CREATE outbox SET kind = 'invite', message_id = 'm1', to_addr = 'a@example.com', subject = 's',
             text = 'sealed', html = 'sealed', status = 'queued', attempts = 0, next_attempt_at = 0, created_at = 0",
        )
        .await
        .unwrap()
        .check()
        .unwrap();
        let err = load_checked(&path, &db).await.unwrap_err();
        assert!(matches!(err, SecretKeyError::MissingWithSealedData { sealed: "mail in the outbox", .. }), "{err:?}");
        assert!(!path.exists(), "no new key was written");
        assert_eq!(stored_fingerprint(&db).await.unwrap(), None);
    }
}
