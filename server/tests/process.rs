//! The server binary as a separate process: start-up errors and restarts.

mod common;

use common::*;
use std::{
    process::{Child, Command},
    time::Duration,
};

fn stop(mut child: Child) {
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("the server did not stop within 10 s of SIGTERM");
}

#[tokio::test]
async fn a_session_survives_a_restart_on_surrealkv() {
    let dir = tempfile::tempdir().unwrap();
    let (first, url) = start_process(dir.path(), &[]);
    let client = browser_like_client(&url);
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    assert!(client.post(format!("{url}/api/login")).form(&form).send().await.unwrap().status().is_success());
    assert!(client.post(format!("{url}/api/admin_context")).send().await.unwrap().status().is_success());
    stop(first);

    let (second, url) = start_process(dir.path(), &[]);
    let again = client.post(format!("{url}/api/admin_context")).header("Origin", &url).send().await.unwrap();
    // The cookie jar is keyed by host, not port: the same cookie goes to the new process.
    assert!(again.status().is_success(), "{}", again.status());
    stop(second);
}

#[test]
fn a_bad_environment_value_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("MAILROOM_BIND", "not-an-address"),
        ("MAILROOM_DATABASE_URL", "postgres://localhost/x"),
        ("MAILROOM_LOGIN_PER_MINUTE", "lots"),
    ] {
        let output = Command::new(server_binary())
            .env_clear()
            .env(var, value)
            .env("MAILROOM_SECRET_KEY_FILE", dir.path().join("secret.key"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
}

#[test]
fn a_schema_or_database_failure_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(server_binary())
        .env_clear()
        .env("MAILROOM_DATABASE_URL", "ws://127.0.0.1:1")
        .env("MAILROOM_SECRET_KEY_FILE", dir.path().join("secret.key"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot open the database at ws://127.0.0.1:1"), "{stderr}");
}
