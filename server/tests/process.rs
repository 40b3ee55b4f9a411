//! The server binary as a separate process: start-up errors and restarts.

mod common;

use common::*;
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

fn start(data: &std::path::Path, extra: &[(&str, &str)]) -> (Child, String) {
    let mut command = Command::new(server_binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MAILROOM_BIND", "127.0.0.1:0")
        .env("MAILROOM_DATABASE_URL", format!("surrealkv://{}", data.join("db").display()))
        .env("MAILROOM_SECRET_KEY_FILE", data.join("secret.key"))
        .env("MAILROOM_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("MAILROOM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .current_dir(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in extra {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("server binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
    (child, url)
}

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
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();

    let (first, url) = start(dir.path(), &[]);
    let form = [("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)];
    assert!(client.post(format!("{url}/api/login")).form(&form).send().await.unwrap().status().is_success());
    assert!(client.post(format!("{url}/api/admin_context")).send().await.unwrap().status().is_success());
    stop(first);

    let (second, url) = start(dir.path(), &[]);
    let again = client.post(format!("{url}/api/admin_context")).send().await.unwrap();
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
