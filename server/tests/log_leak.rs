//! No secret, token, link or message body reaches the logs at any level, `RUST_LOG=trace`
//! included, and no secret sits in clear in the database files.
//!
//! The real server binary runs as a process with `RUST_LOG=trace`, its stdout and stderr in one
//! file. Over HTTP we sign in, save and test Basic (AUTH PLAIN, and AUTH LOGIN) and OAuth 2.0
//! (XOAUTH2) settings against aiosmtpd over STARTTLS, invite a user and ask for a reset (both
//! delivered by the outbox), open both links and set a password through one; then a Google
//! service account with a trusted CA and a client certificate (key, PEMs and token included). Then every byte of
//! the log and of the data directory is searched for each secret: in clear, URL-encoded, and
//! inside every base64 / base64url run (AUTH PLAIN and XOAUTH2 put secrets on the wire in base64).

mod common;
mod support;

use app::smtp_settings::{form::SmtpForm, types::AuthType};
use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use support::{Certs, OAuthClient, OAuthPeer, PeerOptions, Received, SMTP_USER, SmtpPeer};

const SMTP_PASSWORD: &str = "leak-test-smtp-password-7f3a";
const CLIENT_ID: &str = "leak-test-client-id";
const CLIENT_SECRET: &str = "leak-test-client-secret-91c2";
const BEARER_TOKEN: &str = "leak-test-bearer-token-e5d07b";
const SCOPE: &str = "https://mail.example/.default";
/// The OAuth 2.0 client this test's token endpoint serves, and the token it issues.
const OAUTH_CLIENT: OAuthClient =
    OAuthClient { id: CLIENT_ID, secret: CLIENT_SECRET, scope: SCOPE, token: BEARER_TOKEN, user: SMTP_USER };
const NEW_USER_EMAIL: &str = "leak-user@example.com";
const NEW_USER_PASSWORD: &str = "leak-test-new-user-password-5d1e";
const INSTANCE: &str = "Leak Check";
/// The text of the test email ("<instance> mail is working!"): a message body.
const TEST_MAIL_BODY: &str = "Leak Check mail is working!";

// ---------------------------------------------------------------------------------------------
// The server process, with its output in a file.

/// The server binary with `RUST_LOG=trace`; stdout and stderr both go to `log` (stdout after the
/// first line, which names the URL, is copied by a thread). Killed on drop unless stopped.
struct Logged {
    child: Child,
    base: String,
    copier: Option<std::thread::JoinHandle<()>>,
}

impl Logged {
    fn start(data: &Path, log: &Path, extra: &[(&str, &str)]) -> Self {
        let append = || std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        // Another build (a release binary, an older commit) can be checked with the same flow.
        let binary = std::env::var_os("MAILROOM_LEAK_SERVER_BIN").map(PathBuf::from).unwrap_or_else(server_binary);
        let mut command = server_command(&binary, data, extra);
        command.env("RUST_LOG", "trace").stderr(Stdio::from(append()));
        let mut child = command.spawn().expect("server binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let mut out = append();
        std::io::Write::write_all(&mut out, line.as_bytes()).unwrap();
        let copier = std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut out);
        });
        let base = line.trim().rsplit(' ').next().unwrap().to_owned();
        if !base.starts_with("http://127.0.0.1:") {
            let _ = child.wait();
            panic!("unexpected first line {line:?}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        Self { child, base, copier: Some(copier) }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits (at most 15 s) for the process and for its output to be written.
    fn stop(mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop within 15 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(copier) = self.copier.take() {
            copier.join().unwrap();
        }
    }
}

impl Reachable for Logged {
    fn base_url(&self) -> String {
        self.base.clone()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// aiosmtpd over STARTTLS accepting `auth` with this test's [`SMTP_PASSWORD`].
fn peer(dir: &Path, certs: &Certs, auth: &'static str) -> SmtpPeer {
    let options = PeerOptions { mode: "starttls", auth, password: Some(SMTP_PASSWORD), ..Default::default() };
    SmtpPeer::start(dir, Some(certs), options)
}

// ---------------------------------------------------------------------------------------------
// HTTP steps.

fn assert_ok(status: StatusCode, body: &str, what: &str) {
    assert!(status.is_success() || status.is_redirection(), "{what}: {status} {body}");
}

async fn post_form(client: &reqwest::Client, url: String, form: &[(&str, &str)], what: &str) {
    let response = client.post(url).form(form).send().await.unwrap();
    let status = response.status();
    assert_ok(status, &response.text().await.unwrap_or_default(), what);
}

fn basic_form(port: u16, password: &str) -> SmtpForm {
    SmtpForm { tls_enabled: true, username: SMTP_USER.into(), password: password.into(), ..custom_form(port) }
}

fn oauth_form(port: u16, token_url: String) -> SmtpForm {
    SmtpForm {
        tls_enabled: true,
        auth_type: AuthType::OAuth2,
        username: SMTP_USER.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        token_url,
        scope: SCOPE.into(),
        ..custom_form(port)
    }
}

const GOOGLE_SEND_AS: &str = "sender@example.com";

/// A CA and a client certificate with its key, as an admin would paste them.
struct Pems {
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pems {
    fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Leak Relay CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leak-client.example.com");
        let client = params.signed_by(&client_key, &ca, &ca_key).unwrap();
        Self { ca: ca.pem(), client_cert: client.pem(), client_key: client_key.serialize_pem() }
    }
}

/// The longest line of a PEM block: base64 that only this key or certificate contains.
fn longest_line(pem: &str) -> String {
    pem.lines().max_by_key(|line| line.len()).unwrap_or_default().to_owned()
}

async fn assert_sends(server: &Logged, admin: &reqwest::Client, form: &SmtpForm, what: &str) {
    let (status, body) = send_test(server, admin, form).await;
    assert_eq!(status, StatusCode::OK, "Send Test Email ({what}): {body}");
}

/// The 64-hex-digit token after `token=` in a mail's text.
fn link_token(mail: &Received) -> String {
    let start = mail.text.find("token=").unwrap_or_else(|| panic!("no link in {:?}", mail.text)) + "token=".len();
    let token: String = mail.text[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert!(token.len() >= 32, "short token {token:?} in {:?}", mail.text);
    token
}

fn link_url(mail: &Received) -> String {
    let start = mail.text.find("http://").expect("a link");
    mail.text[start..].split_whitespace().next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// The search.

/// Where a secret was found and how.
#[derive(Debug)]
struct Hit {
    secret: String,
    file: PathBuf,
    how: String,
    context: String,
}

/// Lenient decoders: padding optional, trailing bits allowed (runs may stop mid-quantum).
fn decoders() -> [(&'static str, GeneralPurpose); 2] {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    [
        ("base64", GeneralPurpose::new(&alphabet::STANDARD, config)),
        ("base64url", GeneralPurpose::new(&alphabet::URL_SAFE, config)),
    ]
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/'
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// The spellings a secret may take in text: as is, and URL-encoded (form and percent styles).
fn spellings(secret: &str) -> Vec<String> {
    let mut form = String::new();
    let mut percent = String::new();
    for byte in secret.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                form.push(byte as char);
                percent.push(byte as char);
            }
            b' ' => {
                form.push('+');
                percent.push_str("%20");
            }
            other => {
                form.push_str(&format!("%{other:02X}"));
                percent.push_str(&format!("%{other:02X}"));
            }
        }
    }
    let mut all = vec![secret.to_owned(), form, percent];
    all.sort();
    all.dedup();
    all
}

/// ~100 characters around `at` in `text`, one line.
fn around(text: &str, at: usize, len: usize) -> String {
    let mut start = at.saturating_sub(50);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + len + 50).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    text[start..end].escape_debug().to_string()
}

/// Every occurrence of every secret in `bytes`: in clear and inside base64 / base64url runs
/// (of at least 8 characters, decoded after dropping 0–3 leading characters so a run that starts
/// mid-quantum, or has a few foreign characters glued in front, still lines up). `=` ends a run:
/// it is padding, or the `key=` of a log field.
///
/// A second pass runs on the bytes with line breaks taken out (`<CRLF>` as lettre logs them,
/// CR/LF, escaped `\\r\\n`, and quoted-printable soft breaks), so a secret in a wrapped base64
/// or quoted-printable message body is found even when it straddles two lines.
fn search(bytes: &[u8], file: &Path, secrets: &[(&str, &str)]) -> Vec<Hit> {
    let mut hits = scan(bytes, file, secrets, "");
    let joined = join_lines(bytes);
    if joined.len() != bytes.len() {
        let missed: Vec<(&str, &str)> =
            secrets.iter().copied().filter(|(name, _)| !hits.iter().any(|h| h.secret == *name)).collect();
        hits.extend(scan(&joined, file, &missed, " after joining lines"));
    }
    hits
}

/// `bytes` without line breaks: quoted-printable soft breaks first, then `<CRLF>`, `\\r\\n`,
/// `\\n`, CR and LF.
fn join_lines(bytes: &[u8]) -> Vec<u8> {
    const BREAKS: [&[u8]; 8] = [b"=<CRLF>", b"=\r\n", b"=\\r\\n", b"<CRLF>", b"\\r\\n", b"\\n", b"\r", b"\n"];
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    'outer: while i < bytes.len() {
        if matches!(bytes[i], b'=' | b'<' | b'\\' | b'\r' | b'\n') {
            for brk in BREAKS {
                if bytes[i..].starts_with(brk) {
                    i += brk.len();
                    continue 'outer;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn scan(bytes: &[u8], file: &Path, secrets: &[(&str, &str)], note: &str) -> Vec<Hit> {
    if secrets.is_empty() {
        return Vec::new();
    }
    let mut hits = Vec::new();
    // The search runs on std's (optimized) `str::find`; secrets are ASCII, so the lossy
    // conversion of binary data cannot make or hide a match.
    let text = String::from_utf8_lossy(bytes);
    for (name, secret) in secrets {
        for spelling in spellings(secret) {
            if let Some(at) = text.find(spelling.as_str()) {
                let count = text.matches(spelling.as_str()).count();
                hits.push(Hit {
                    secret: (*name).to_owned(),
                    file: file.to_owned(),
                    how: format!("in clear as {spelling:?} ({count} times){note}"),
                    context: around(&text, at, spelling.len()),
                });
            }
        }
    }
    // Per secret: the runs it was found in (a run without `+ / - _` is in both alphabets and
    // counts once) and their distinct texts (the same AUTH line sent again is shown once).
    let mut found_in_runs: HashMap<&str, (HashSet<usize>, HashSet<&[u8]>)> = HashMap::new();
    for ((alphabet_name, engine), in_alphabet) in
        decoders().into_iter().zip([is_base64 as fn(u8) -> bool, is_base64url])
    {
        let mut i = 0;
        while i < bytes.len() {
            if !in_alphabet(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && in_alphabet(bytes[i]) {
                i += 1;
            }
            let run = &bytes[start..i];
            if run.len() < 8 {
                continue;
            }
            for skip in 0..4.min(run.len()) {
                let mut candidate = &run[skip..];
                if candidate.len() % 4 == 1 {
                    candidate = &candidate[..candidate.len() - 1];
                }
                let Ok(decoded) = engine.decode(candidate) else { continue };
                let decoded = String::from_utf8_lossy(&decoded);
                for (name, secret) in secrets {
                    if let Some(at) = decoded.find(secret) {
                        let (starts, texts) = found_in_runs.entry(name).or_default();
                        if !starts.insert(start) || !texts.insert(run) {
                            continue; // the same run, or the same text again
                        }
                        hits.push(Hit {
                            secret: (*name).to_owned(),
                            file: file.to_owned(),
                            how: format!("inside a {alphabet_name} run (dropping {skip} leading chars){note}"),
                            context: format!(
                                "decoded: \"{}\"; around the run: {}",
                                around(&decoded, at, secret.len()),
                                around(&text, text_offset(bytes, &text, start), run.len().min(60)),
                            ),
                        });
                    }
                }
            }
        }
    }
    for (name, (starts, texts)) in found_in_runs {
        if starts.len() > texts.len() {
            hits.push(Hit {
                secret: name.to_owned(),
                file: file.to_owned(),
                how: format!(
                    "inside {} base64 runs in all ({} distinct, shown above){note}",
                    starts.len(),
                    texts.len()
                ),
                context: String::new(),
            });
        }
    }
    hits
}

/// The offset in the lossy text of byte `at` (equal unless invalid UTF-8 comes before it).
fn text_offset(bytes: &[u8], text: &str, at: usize) -> usize {
    if text.len() == bytes.len() { at } else { String::from_utf8_lossy(&bytes[..at]).len().min(text.len()) }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn read_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn report(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| format!("- {} found {} in {}\n    {}", h.secret, h.how, h.file.display(), h.context))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_search_finds_planted_secrets_in_clear_and_in_base64() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let dir = tempfile::tempdir().unwrap();
    let secrets = [("planted", "planted-secret")];
    let plain = STANDARD.encode(b"\0mailer\0planted-secret");
    let xoauth = STANDARD.encode(b"user=mailer\x01auth=Bearer planted-secret\x01\x01");
    let url = URL_SAFE_NO_PAD.encode(b"\0mailer\0planted-secret\xfb\xff");
    let body = STANDARD.encode(format!("{}Open http://x/set-password?token=planted-secret soon", "x".repeat(40)));
    let wrapped = format!(
        "Wrote: Content-Transfer-Encoding: base64<CRLF><CRLF>{}<CRLF>{}<CRLF>.<CRLF>",
        &body[..104],
        &body[104..]
    );
    let qp = "Wrote: Content-Transfer-Encoding: quoted-printable<CRLF><CRLF>Open http://x/set-password?token=3Dplanted-se=<CRLF>cret soon<CRLF>";
    let cases = [
        ("wrapped-base64", format!("{wrapped}\n")),
        ("wrapped-qp", format!("{qp}\n")),
        ("plain", format!("2026-01-01T00:00:00Z TRACE lettre: Wrote: AUTH PLAIN {plain}<CRLF>\n")),
        ("field", format!("DEBUG smtp: line={plain} next=1\n")),
        ("glued", format!("\x1b[2m{plain}\x1b[0m\n")),
        ("glued-3", format!("xyz{xoauth}\n")),
        ("xoauth2", format!("Wrote: AUTH XOAUTH2 {xoauth}\r\n")),
        ("url-safe", format!("value {url} end\n")),
        ("clear", "password: planted-secret\n".to_owned()),
    ];
    assert!(url.contains(['-', '_']), "{url} is not specific to base64url");
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).unwrap();
        let hits = search(&read_bytes(&path), &path, &secrets);
        assert!(hits.iter().any(|h| h.secret == "planted"), "{name}: the search misses it in {content:?}");
    }
    let form = search(b"email=a%40b.c&password=admin+password+1", Path::new("form"), &[("admin", "admin password 1")]);
    assert!(!form.is_empty(), "the search misses a form-encoded password");
    let clean = "AUTH PLAIN AG1haWxlcgBvdGhlci1wYXNzd29yZA== and token=0123abcd planted-secre t\n";
    assert!(search(clean.as_bytes(), Path::new("clean"), &secrets).is_empty(), "a false hit in {clean:?}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_token_link_or_body_reaches_the_trace_log_or_the_database_files() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let peers = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let certs = Certs::generate(peers.path());
    let plain_peer = peer(peers.path(), &certs, "PLAIN,LOGIN");
    let login_peer = peer(peers.path(), &certs, "LOGIN");
    let oauth = OAuthPeer::issuing(peers.path(), Some(&certs), OAUTH_CLIENT).await;
    let ca = certs.ca.display().to_string();
    let server = Logged::start(
        data.path(),
        &log,
        &[
            ("MAILROOM_SMTP_TIMEOUT_SECS", "5"),
            ("MAILROOM_SMTP_CA_FILE", &ca),
            ("MAILROOM_INSTANCE_NAME", INSTANCE),
            ("MAILROOM_OUTBOX_RETRY_BASE_MS", "200"),
            ("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "1000"),
            ("MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE", "1000"),
        ],
    );

    // 1. The admin signs in.
    let admin = browser_like_client(&server.base);
    post_form(&admin, server.url("/api/login"), &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)], "login").await;

    // 2. Basic settings: saved, tested (AUTH PLAIN), and the settings-changed notice goes out
    //    through the outbox with them; an unsaved LOGIN-only form is tested too (AUTH LOGIN).
    let basic = basic_form(plain_peer.port, SMTP_PASSWORD);
    save(&server, &admin, &basic).await;
    assert_sends(&server, &admin, &basic, "Basic, AUTH PLAIN").await;
    plain_peer.wait_for(1, "the Basic test email", |m| m.subject.contains("Mail Test")).await;
    assert_sends(&server, &admin, &basic_form(login_peer.port, SMTP_PASSWORD), "Basic, AUTH LOGIN").await;
    login_peer.wait_for(1, "the AUTH LOGIN test email", |m| m.subject.contains("Mail Test")).await;
    plain_peer.wait_for(20, "the settings notice", |m| m.subject.starts_with("SMTP settings were changed")).await;

    // 3. OAuth 2.0 settings: saved and tested (XOAUTH2 with the issued token).
    let oauth_settings = oauth_form(oauth.smtp.port, oauth.token_url());
    save(&server, &admin, &oauth_settings).await;
    assert_sends(&server, &admin, &oauth_settings, "OAuth 2.0, XOAUTH2").await;
    oauth.smtp.wait_for(1, "the OAuth 2.0 test email", |m| m.subject.contains("Mail Test")).await;

    // 4. An invitation and a reset, delivered by the outbox through the saved (OAuth) settings;
    //    both links are opened and the invitation used, as the new user would.
    post_form(
        &admin,
        server.url("/api/users_create"),
        &[("name", "Leak Test User"), ("email", NEW_USER_EMAIL), ("role", "user")],
        "users_create",
    )
    .await;
    let anonymous = browser_like_client(&server.base);
    post_form(&anonymous, server.url("/api/password_reset"), &[("email", NEW_USER_EMAIL)], "password_reset").await;
    let to_user = |m: &Received| m.to.iter().any(|t| t == NEW_USER_EMAIL);
    let invitation =
        oauth.smtp.wait_for(20, "the invitation", |m| to_user(m) && m.subject.starts_with("You are invited")).await;
    let reset = oauth.smtp.wait_for(20, "the reset", |m| to_user(m) && m.subject.starts_with("Reset your")).await;
    let invite_token = link_token(&invitation);
    let reset_token = link_token(&reset);
    for mail in [&invitation, &reset] {
        let page = anonymous.get(link_url(mail)).send().await.unwrap();
        assert!(page.status().is_success(), "{}: {}", link_url(mail), page.status());
    }
    post_form(
        &anonymous,
        server.url("/api/password_set"),
        &[("token", &invite_token), ("password", NEW_USER_PASSWORD)],
        "password_set",
    )
    .await;
    let user = browser_like_client(&server.base);
    post_form(
        &user,
        server.url("/api/login"),
        &[("email", NEW_USER_EMAIL), ("password", NEW_USER_PASSWORD)],
        "user login",
    )
    .await;

    // 4b. A Google service account, with a private CA and a client certificate saved beside it,
    //     saved and tested (JWT-bearer grant, then XOAUTH2 with the issued token).
    let OAuthPeer { smtp: google_peer, endpoint: google_endpoint } =
        OAuthPeer::google(peers.path(), Some(&certs), GOOGLE_SEND_AS, 0);
    let pems = Pems::generate();
    let google = SmtpForm {
        tls_enabled: true,
        auth_type: AuthType::GoogleServiceAccount,
        username: GOOGLE_SEND_AS.into(),
        service_account_key: google_endpoint.key.clone(),
        trusted_ca_pem: pems.ca.clone(),
        client_cert_pem: pems.client_cert.clone(),
        client_key_pem: pems.client_key.clone(),
        ..custom_form(google_peer.port)
    };
    save(&server, &admin, &google).await;
    assert_sends(&server, &admin, &google, "Google service account, XOAUTH2").await;
    assert!(google_peer.received().iter().any(|m| m.subject.contains("Mail Test")), "the Google test email arrived");
    let service_key: Value = serde_json::from_str(&google_endpoint.key).unwrap();
    let service_key_line = longest_line(service_key["private_key"].as_str().unwrap());
    let pem_lines = [&pems.ca, &pems.client_cert, &pems.client_key].map(|pem| longest_line(pem));

    // 5. Stop the server, then search everything it wrote.
    server.stop();
    let flow_secs = started.elapsed().as_secs_f32();

    let log_bytes = read_bytes(&log);
    let log_text = String::from_utf8_lossy(&log_bytes);
    assert!(log_bytes.len() > 10 * 1024, "the log is too small for trace logging: {log_text}");
    assert!(log_text.contains("TRACE"), "no trace-level line in the log");
    assert!(log_text.contains("DEBUG"), "no debug-level line in the log");

    let secrets = [
        ("the SMTP password", SMTP_PASSWORD),
        ("the OAuth client secret", CLIENT_SECRET),
        ("the bearer token", BEARER_TOKEN),
        ("the invitation link token", invite_token.as_str()),
        ("the reset link token", reset_token.as_str()),
        ("the admin password", ADMIN_PASSWORD),
        ("the new user's password", NEW_USER_PASSWORD),
        ("the service account's private key", service_key_line.as_str()),
        ("the Google access token", support::GOOGLE_TOKEN),
        ("the trusted CA certificate (PEM)", pem_lines[0].as_str()),
        ("the client certificate (PEM)", pem_lines[1].as_str()),
        ("the client key (PEM)", pem_lines[2].as_str()),
    ];
    let mut hits = search(&log_bytes, &log, &secrets);
    // A message body in the log (the database keeps bodies sealed; checked by the outbox tests).
    hits.extend(search(&log_bytes, &log, &[("the test email's body", TEST_MAIL_BODY)]));
    let mut files = Vec::new();
    files_under(data.path(), &mut files);
    assert!(files.iter().any(|f| f.starts_with(data.path().join("db"))), "no database files in {files:?}");
    let mut data_bytes = 0;
    for file in &files {
        let bytes = read_bytes(file);
        data_bytes += bytes.len();
        hits.extend(search(&bytes, file, &secrets));
    }
    println!(
        "log_leak: flow {flow_secs:.1} s; log {} bytes ({} lines); {} data files, {data_bytes} bytes; {} hits",
        log_bytes.len(),
        log_text.lines().count(),
        files.len(),
        hits.len()
    );
    if let Ok(keep) = std::env::var("MAILROOM_KEEP_LEAK_LOG") {
        std::fs::copy(&log, &keep).unwrap();
        println!("log_leak: log copied to {keep}");
    }
    assert!(hits.is_empty(), "secrets reached the logs or the database files:\n{}", report(&hits));
}
