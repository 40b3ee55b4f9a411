//! The instance key across restarts on one `surrealkv` database: another key file, or none once
//! something is sealed, stops start-up naming the file; the original key starts again.

mod common;

use app::smtp_settings::form::SmtpForm;
use common::*;
use server::{SecretKeyError, Server, StartupError, config::Config};
use std::path::Path;
use tokio::{sync::oneshot, task::JoinHandle};

/// A server running on the database under `dir`, with the key file `dir/secret.key`.
struct Running {
    url: String,
    db: app::state::Db,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

fn config(dir: &Path) -> Config {
    let mut config = test_config(dir);
    config.database.url = format!("surrealkv://{}", dir.join("db").display());
    config
}

/// Starts a server on `dir`. The previous one's database closes in the background once its last
/// handle is dropped, so a start that finds the database still locked tries again for a while.
async fn start(dir: &Path) -> Result<Running, StartupError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut attempts = 0;
    let server = loop {
        match Server::build(config(dir)).await {
            Err(StartupError::Database(err)) if err.to_string().contains("already locked") && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            built => break built?,
        }
    };
    let url = format!("http://{}", server.local_addr());
    let db = server.state().db().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Ok(Running { url, db, shutdown, task })
}

impl Running {
    /// Stops the server and drops its handle on the database, which then closes in the background.
    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
        drop(self.db);
    }

    async fn save_smtp_password(&self) {
        let admin = browser_like_client(&self.url);
        let login = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
        assert!(admin.post(format!("{}/api/login", self.url)).form(&login).send().await.unwrap().status().is_success());
        let form = SmtpForm {
            tls_enabled: true,
            username: "mailer".into(),
            password: "a sealed SMTP password".into(),
            ..custom_form(587)
        };
        save(&self.url, &admin, &form).await;
    }
}

async fn refusal(dir: &Path) -> SecretKeyError {
    match start(dir).await {
        Ok(running) => {
            running.stop().await;
            panic!("the server started");
        }
        Err(StartupError::SecretKey(err)) => err,
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

#[tokio::test]
async fn a_different_key_file_stops_start_up_and_the_original_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    start(dir.path()).await.unwrap().stop().await;
    let original = std::fs::read(&key_file).unwrap();

    std::fs::write(&key_file, "ab".repeat(32)).unwrap();
    let err = refusal(dir.path()).await;
    let message = err.to_string();
    let SecretKeyError::Mismatch { file, database, .. } = &err else { panic!("{err:?}") };
    assert_ne!(file, database);
    assert!(message.contains(file) && message.contains(database), "both fingerprints: {message}");
    assert!(message.contains(&key_file.display().to_string()), "{message}");
    assert!(message.contains("restore the key file this database was sealed with"), "{message}");

    std::fs::write(&key_file, original).unwrap();
    start(dir.path()).await.expect("the original key starts").stop().await;
}

#[tokio::test]
async fn a_deleted_key_file_stops_start_up_and_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    let first = start(dir.path()).await.unwrap();
    first.save_smtp_password().await;
    first.stop().await;
    let original = std::fs::read(&key_file).unwrap();

    std::fs::remove_file(&key_file).unwrap();
    let err = refusal(dir.path()).await;
    let message = err.to_string();
    assert!(matches!(err, SecretKeyError::Missing { .. }), "{err:?}");
    assert!(message.contains(&format!("{} is missing", key_file.display())), "{message}");
    assert!(message.contains("restore") && message.contains("from a backup"), "{message}");
    assert!(!key_file.exists(), "no new key was created");

    std::fs::write(&key_file, original).unwrap();
    start(dir.path()).await.expect("the restored key starts").stop().await;
}

#[tokio::test]
async fn a_deleted_key_file_stops_start_up_when_sealed_secrets_predate_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secret.key");
    let first = start(dir.path()).await.unwrap();
    first.save_smtp_password().await;
    // A database written before fingerprints were recorded: the saved password (and the notice
    // about it queued in the outbox) are sealed with the key.
    first.db.query("DELETE instance:key").await.unwrap().check().unwrap();
    first.stop().await;

    std::fs::remove_file(&key_file).unwrap();
    let err = refusal(dir.path()).await;
    assert!(matches!(err, SecretKeyError::MissingWithSealedData { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{} is missing", key_file.display())), "{err}");
    assert!(!key_file.exists(), "no new key was created");
}

#[test]
fn the_binary_reports_a_different_key_file_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = start_process(dir.path(), &[]);
    std::process::Command::new("kill").arg("-TERM").arg(first.id().to_string()).status().unwrap();
    first.wait().unwrap();

    std::fs::write(dir.path().join("secret.key"), "cd".repeat(32)).unwrap();
    let mut second =
        server_command(&server_binary(), dir.path(), &[]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    for _ in 0..300 {
        if second.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if second.try_wait().unwrap().is_none() {
        second.kill().unwrap();
        panic!("the server started with a different key file");
    }
    let output = second.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mailroom: cannot start: MAILROOM_SECRET_KEY_FILE"), "{stderr}");
    assert!(stderr.contains("restore the key file this database was sealed with"), "{stderr}");
}
