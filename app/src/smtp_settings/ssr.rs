//! The server half of the SMTP settings: storage in SurrealDB (one record, versioned),
//! secrets encrypted at rest with the instance key, the re-entry rule and the audit trail.

use super::{
    SaveOutcome, SmtpSettingsView,
    form::{AuthSettings, CustomSettings, SmtpForm, field},
    types::{AuthType, MinTlsVersion, Mode, TlsMode},
};
use crate::{
    auth::{CurrentUser, ssr::require_admin},
    db::now_ms,
    error::{AppError, FieldErrors},
    mail::ssr::{Mailer, OutgoingMessage, SmtpTarget, TargetAuth},
    state::{AppState, Db, app_state},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use secrecy::{ExposeSecret, SecretString};
use surrealdb::types::{RecordId, SurrealValue};

const PASSWORD_PURPOSE: &str = "smtp.password";
const CLIENT_SECRET_PURPOSE: &str = "smtp.client_secret";

/// The stored settings: one record, `smtp_settings:current`.
#[derive(Debug, Clone, Default, PartialEq, SurrealValue)]
pub struct StoredSettings {
    pub mode: String,
    pub host: String,
    pub port: i64,
    pub from_mailbox: String,
    pub tls_enabled: bool,
    pub tls_version: String,
    pub tls_mode: String,
    pub auth_type: String,
    pub username: String,
    pub client_id: String,
    pub token_url: String,
    pub scope: String,
    pub password_enc: Option<String>,
    pub client_secret_enc: Option<String>,
    pub version: i64,
    pub saved_by: Option<String>,
    pub saved_at: Option<i64>,
}

fn current_id() -> RecordId {
    RecordId::new("smtp_settings", "current")
}

impl StoredSettings {
    fn mode(&self) -> Mode {
        if self.mode == "custom" { Mode::Custom } else { Mode::Default }
    }

    fn auth_type(&self) -> AuthType {
        if self.auth_type == "oauth2" { AuthType::OAuth2 } else { AuthType::Basic }
    }

    /// The form as it should appear in the browser: no secret, ever.
    pub fn to_form(&self) -> SmtpForm {
        SmtpForm {
            mode: self.mode(),
            host: self.host.clone(),
            port: if self.port > 0 { self.port.to_string() } else { String::new() },
            from: self.from_mailbox.clone(),
            tls_enabled: self.tls_enabled,
            tls_version: if self.tls_version == "tls13" { MinTlsVersion::Tls13 } else { MinTlsVersion::Tls12 },
            tls_mode: if self.tls_mode == "implicit" { TlsMode::Implicit } else { TlsMode::StartTls },
            auth_type: self.auth_type(),
            username: self.username.clone(),
            password: String::new(),
            client_id: self.client_id.clone(),
            client_secret: String::new(),
            token_url: self.token_url.clone(),
            scope: self.scope.clone(),
        }
    }

    fn apply(&mut self, settings: &CustomSettings) {
        self.host = settings.host.to_string();
        self.port = i64::from(settings.port.get());
        self.from_mailbox = settings.from.to_string();
        self.tls_enabled = settings.tls.enabled;
        self.tls_version = match settings.tls.min_version {
            MinTlsVersion::Tls12 => "tls12",
            MinTlsVersion::Tls13 => "tls13",
        }
        .into();
        self.tls_mode = match settings.tls.mode {
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
        }
        .into();
        self.username = settings.auth.username().to_owned();
        match &settings.auth {
            AuthSettings::Basic { .. } => {
                self.auth_type = "basic".into();
            }
            AuthSettings::OAuth2 { client_id, token_url, scopes, .. } => {
                self.auth_type = "oauth2".into();
                self.client_id = client_id.clone();
                self.token_url = token_url.to_string();
                self.scope = scopes.join(" ");
            }
        }
    }

    /// Human names of the fields that differ; secrets by name only.
    fn changed_fields(&self, after: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut diff = |name, differs: bool| {
            if differs {
                changed.push(name);
            }
        };
        diff("Mode", self.mode != after.mode);
        diff("Email Server", self.host != after.host);
        diff("Port", self.port != after.port);
        diff("From", self.from_mailbox != after.from_mailbox);
        diff("TLS/SSL", self.tls_enabled != after.tls_enabled);
        diff("TLS/SSL version", self.tls_version != after.tls_version);
        diff("TLS mode", self.tls_mode != after.tls_mode);
        diff("Authentication type", self.auth_type != after.auth_type);
        diff("Username", self.username != after.username);
        diff("Password", self.password_enc != after.password_enc);
        diff("Client ID", self.client_id != after.client_id);
        diff("Client Secret", self.client_secret_enc != after.client_secret_enc);
        diff("Token URL", self.token_url != after.token_url);
        diff("Scope", self.scope != after.scope);
        changed
    }
}

/// Encrypts a secret with the instance key (XChaCha20-Poly1305, random nonce, the purpose as
/// associated data so a password can never be decrypted as a client secret).
pub fn encrypt(key: &[u8; 32], purpose: &str, secret: &str) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: purpose.as_bytes() })
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&sealed);
    B64.encode(blob)
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret cannot be decrypted with this instance key (MAILROOM_SECRET_KEY_FILE changed?)")]
pub struct DecryptError;

pub fn decrypt(key: &[u8; 32], purpose: &str, blob: &str) -> Result<SecretString, DecryptError> {
    let bytes = B64.decode(blob).map_err(|_| DecryptError)?;
    if bytes.len() < 24 {
        return Err(DecryptError);
    }
    let (nonce, sealed) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: purpose.as_bytes() })
        .map_err(|_| DecryptError)?;
    String::from_utf8(plain).map(SecretString::from).map_err(|_| DecryptError)
}

/// Where a secret for the new settings comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretSource {
    Typed,
    Stored,
    NotNeeded,
}

/// The re-entry rule: a stored Password / Client Secret is reused only while the server, port,
/// username, authentication type and TLS (on, and its mode) are unchanged — and, for the client
/// secret, the token URL. Turning TLS off would otherwise send the stored password in clear.
/// Returns the field error to show when the admin must type the secret again.
pub fn secret_source(
    stored: Option<&StoredSettings>,
    settings: &CustomSettings,
    typed: &str,
) -> Result<SecretSource, (&'static str, String)> {
    let (field, noun, stored_secret) = match settings.auth {
        AuthSettings::Basic { .. } => (field::PASSWORD, "password", stored.and_then(|s| s.password_enc.as_ref())),
        AuthSettings::OAuth2 { .. } => {
            (field::CLIENT_SECRET, "client secret", stored.and_then(|s| s.client_secret_enc.as_ref()))
        }
    };
    if !typed.is_empty() {
        return Ok(SecretSource::Typed);
    }
    if let AuthSettings::Basic { username } = &settings.auth
        && username.is_empty()
    {
        return Ok(SecretSource::NotNeeded);
    }
    let (Some(stored), Some(_)) = (stored, stored_secret) else {
        return Err((field, format!("Enter the {noun}.")));
    };
    let changed = if stored.host != settings.host.to_string() {
        Some("the email server changed")
    } else if stored.port != i64::from(settings.port.get()) {
        Some("the port changed")
    } else if stored.username != settings.auth.username() {
        Some("the username changed")
    } else if stored.auth_type() != settings.auth.kind() {
        Some("the authentication type changed")
    } else if stored.tls_enabled && !settings.tls.enabled {
        Some("TLS/SSL was turned off")
    } else if stored.tls_enabled && stored.to_form().tls_mode != settings.tls.mode {
        Some("the TLS mode changed")
    } else if let AuthSettings::OAuth2 { token_url, .. } = &settings.auth {
        (stored.token_url != token_url.to_string()).then_some("the token URL changed")
    } else {
        None
    };
    match changed {
        None => Ok(SecretSource::Stored),
        Some(reason) => Err((field, format!("Re-enter the {noun}: {reason}"))),
    }
}

/// What a save throws when another admin saved first.
const STALE_VERSION: &str = "stale settings version";
pub async fn load_stored(db: &Db) -> Result<Option<StoredSettings>, AppError> {
    let mut response = db.query("SELECT * OMIT id FROM ONLY $id").bind(("id", current_id())).await?;
    Ok(response.take::<Option<StoredSettings>>(0)?)
}

fn view_of(stored: Option<StoredSettings>, state: &AppState) -> SmtpSettingsView {
    let stored = stored.unwrap_or_default();
    let default_service = match &state.settings().mail.default_relay {
        Some(relay) => super::DefaultService::Relay { host: relay.host.to_string() },
        None => super::DefaultService::LocalMailbox,
    };
    SmtpSettingsView {
        form: stored.to_form(),
        password_set: stored.password_enc.is_some(),
        client_secret_set: stored.client_secret_enc.is_some(),
        version: stored.version.max(0) as u64,
        saved_by: stored.saved_by.clone(),
        saved_at: stored.saved_at,
        default_service,
    }
}

pub async fn load() -> Result<SmtpSettingsView, AppError> {
    require_admin().await?;
    let state = app_state()?;
    Ok(view_of(load_stored(state.db()).await?, &state))
}

/// Every SMTP action (save, test) counts against the admin's and the instance's quota, on
/// every node together.
pub async fn check_rate(state: &AppState, admin: &CurrentUser) -> Result<(), AppError> {
    crate::state::check_quotas(
        state.db(),
        &[(&state.shared.smtp_by_admin, &admin.id), (&state.shared.smtp_instance, "instance")],
    )
    .await
}

/// The settings that will be in force after a save of `form`, with secrets resolved by the
/// re-entry rule (new ones encrypted). Nothing is written.
pub fn next_settings(
    state: &AppState,
    stored: Option<&StoredSettings>,
    form: &SmtpForm,
) -> Result<StoredSettings, AppError> {
    let mut next = stored.cloned().unwrap_or_default();
    if form.mode == Mode::Default {
        // Default mode keeps the custom settings for later.
        next.mode = "default".into();
        return Ok(next);
    }
    let settings = form.parse_custom().map_err(AppError::Validation)?;
    let key = state.shared.secret_key.expose_secret();
    let (typed, purpose) = match settings.auth {
        AuthSettings::Basic { .. } => (&form.password, PASSWORD_PURPOSE),
        AuthSettings::OAuth2 { .. } => (&form.client_secret, CLIENT_SECRET_PURPOSE),
    };
    let source = secret_source(stored, &settings, typed).map_err(|(field, message)| {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        AppError::Validation(errors)
    })?;
    let secret = match source {
        SecretSource::Typed => Some(encrypt(key, purpose, typed)),
        SecretSource::Stored => match settings.auth {
            AuthSettings::Basic { .. } => next.password_enc.clone(),
            AuthSettings::OAuth2 { .. } => next.client_secret_enc.clone(),
        },
        SecretSource::NotNeeded => None,
    };
    next.mode = "custom".into();
    next.apply(&settings);
    // Only the secret of the active authentication type is kept.
    match settings.auth {
        AuthSettings::Basic { .. } => {
            next.password_enc = secret;
            next.client_secret_enc = None;
        }
        AuthSettings::OAuth2 { .. } => {
            next.client_secret_enc = secret;
            next.password_enc = None;
        }
    }
    Ok(next)
}

pub async fn save(form: SmtpForm, expected_version: u64) -> Result<SaveOutcome, AppError> {
    form.check_lengths()?;
    let admin = require_admin().await?;
    let state = app_state()?;
    check_rate(&state, &admin).await?;
    let stored = load_stored(state.db()).await?;
    let current_version = stored.as_ref().map_or(0, |s| s.version.max(0) as u64);
    if current_version != expected_version {
        return Err(conflict(stored.as_ref()));
    }
    let mut next = next_settings(&state, stored.as_ref(), &form)?;
    let before = stored.clone().unwrap_or_default();
    let changed = before.changed_fields(&next);
    if changed.is_empty() && stored.is_some() {
        return Ok(outcome(&before, changed));
    }
    next.version = current_version as i64 + 1;
    // Every admin hears about it, in the same transaction as the change.
    let fields: Vec<String> = changed.iter().map(|f| (*f).to_owned()).collect();
    let mut admins = state.db().query("SELECT name, email FROM user WHERE role = 'admin'").await?;
    let notices: Vec<crate::outbox::ssr::OutboxRow> = admins
        .take::<Vec<AdminRow>>(0)?
        .into_iter()
        .map(|a| {
            crate::outbox::templates::smtp_changed(
                &state.settings().instance_name,
                &admin.name,
                &fields,
                &a.name,
                &a.email,
            )
            .queued(state.shared.secret_key.expose_secret())
        })
        .collect();
    next.saved_by = Some(format!("{} <{}>", admin.name, admin.email));
    next.saved_at = Some(now_ms());

    let written = state
        .db()
        .query(
            "BEGIN TRANSACTION;
             LET $current = (SELECT VALUE version FROM ONLY $id) ?? 0;
             IF $current != $expected { THROW $stale };
             UPSERT $id CONTENT $settings;
             CREATE smtp_audit CONTENT { at: $now, actor_id: $actor_id, actor: $actor, fields: $fields, version: $version };
             FOR $notice IN $notices { CREATE outbox CONTENT $notice; };
             COMMIT TRANSACTION;",
        )
        .bind(("id", current_id()))
        .bind(("expected", current_version as i64))
        .bind(("stale", STALE_VERSION))
        .bind(("settings", next.clone()))
        .bind(("now", now_ms()))
        .bind(("actor_id", admin.id.clone()))
        .bind(("actor", next.saved_by.clone()))
        .bind(("fields", fields.clone()))
        .bind(("version", next.version))
        .bind(("notices", notices))
        .await
        .and_then(crate::db::check_transaction);
    if let Err(err) = written {
        tracing::debug!(error = %err, "SMTP settings transaction failed");
        if crate::db::thrown(&err) == Some(STALE_VERSION) || crate::db::is_conflict(&err) {
            return Err(conflict(load_stored(state.db()).await?.as_ref()));
        }
        return Err(err.into());
    }
    tracing::info!(admin = %admin.id, version = next.version, fields = ?changed, "SMTP settings saved");
    state.shared.mailers.invalidate().await;
    crate::outbox::ssr::wake(&state);
    crate::smtp_health::ssr::spawn_check(state.clone(), crate::smtp_health::ssr::POST_SAVE_CHECK, next.clone());
    Ok(outcome(&next, changed))
}

#[derive(Debug, SurrealValue)]
struct AdminRow {
    name: String,
    email: String,
}

fn outcome(settings: &StoredSettings, changed: Vec<&'static str>) -> SaveOutcome {
    SaveOutcome {
        version: settings.version.max(0) as u64,
        saved_by: settings.saved_by.clone(),
        saved_at: settings.saved_at,
        password_set: settings.password_enc.is_some(),
        client_secret_set: settings.client_secret_enc.is_some(),
        changed: changed.into_iter().map(str::to_owned).collect(),
    }
}

fn conflict(stored: Option<&StoredSettings>) -> AppError {
    let who = stored.and_then(|s| s.saved_by.clone()).unwrap_or_else(|| "another admin".into());
    let when = stored.and_then(|s| s.saved_at).map(super::format_utc).unwrap_or_default();
    AppError::Conflict(format!(
        "Not saved: {who} changed these settings at {when} while you were editing. Reload the page to see their version, then make your changes again."
    ))
}

/// The stored settings as something to connect to, secrets decrypted.
pub fn target_from(stored: &StoredSettings, key: &[u8; 32]) -> Result<SmtpTarget, AppError> {
    let settings = stored.to_form().parse_custom().map_err(AppError::Validation)?;
    let secret = |blob: &Option<String>, purpose| -> Result<Option<SecretString>, AppError> {
        blob.as_deref()
            .map(|b| decrypt(key, purpose, b))
            .transpose()
            .map_err(|err| crate::error::ssr::internal("cannot decrypt a stored SMTP secret", &err))
    };
    let auth = match &settings.auth {
        AuthSettings::Basic { username } if username.is_empty() => TargetAuth::None,
        AuthSettings::Basic { username } => TargetAuth::Basic {
            username: username.clone(),
            password: secret(&stored.password_enc, PASSWORD_PURPOSE)?
                .ok_or_else(|| AppError::field(field::PASSWORD, "Enter the password."))?,
        },
        AuthSettings::OAuth2 { username, client_id, token_url, scopes } => TargetAuth::OAuth2 {
            username: username.clone(),
            client_id: client_id.clone(),
            client_secret: secret(&stored.client_secret_enc, CLIENT_SECRET_PURPOSE)?
                .ok_or_else(|| AppError::field(field::CLIENT_SECRET, "Enter the client secret."))?,
            token_url: token_url.clone(),
            scopes: scopes.clone(),
        },
    };
    Ok(SmtpTarget { host: settings.host, port: settings.port.get(), tls: settings.tls, auth })
}

fn test_message(
    state: &AppState,
    from: lettre::message::Mailbox,
    admin: &CurrentUser,
) -> Result<OutgoingMessage, AppError> {
    let instance = &state.settings().instance_name;
    let to = lettre::message::Mailbox::new(
        Some(admin.name.clone()),
        admin
            .email
            .parse()
            .map_err(|_| AppError::Conflict(format!("Your account's email {} cannot receive mail.", admin.email)))?,
    );
    Ok(OutgoingMessage {
        from,
        to,
        subject: format!("{instance} Mail Test"),
        text: format!("{instance} mail is working!"),
        html: None,
        message_id: None,
    })
}

pub async fn send_test(form: SmtpForm) -> Result<String, AppError> {
    form.check_lengths()?;
    let started = std::time::Instant::now();
    let admin = require_admin().await?;
    let state = app_state()?;
    let custom = form.mode == Mode::Custom;
    // The saved settings are read while the quotas are counted (a read, harmless if refused).
    let (_, stored) = tokio::try_join!(check_rate(&state, &admin), async {
        if custom { load_stored(state.db()).await } else { Ok(None) }
    })?;
    let checked = started.elapsed();
    let mail = &state.settings().mail;
    let result = if !custom {
        let from = match form.from.parse::<crate::smtp_settings::types::FromMailbox>() {
            Ok(from) => from.mailbox(),
            Err(_) => state.settings().default_from.parse().map_err(|_| AppError::Internal)?,
        };
        let message = test_message(&state, from, &admin)?;
        Mailer::default_service(&state).send(&message, mail).await
    } else {
        let next = next_settings(&state, stored.as_ref(), &form)?;
        let target = target_from(&next, state.shared.secret_key.expose_secret())?;
        let from = form.parse_custom().map_err(AppError::Validation)?.from.mailbox();
        let message = test_message(&state, from, &admin)?;
        crate::mail::ssr::deliver(&target, mail, &state.shared.tokens, Some(&message)).await
    };
    let sent = started.elapsed();
    let record = crate::outbox::ssr::NewMail {
        kind: "test",
        to_addr: admin.email.clone(),
        to_name: Some(admin.name.clone()),
        subject: format!("{} Mail Test", state.settings().instance_name),
        text: format!("{} mail is working!", state.settings().instance_name),
        html: String::new(),
    };
    crate::outbox::ssr::record_sent_now(&state, record, &result).await;
    // Where the time went (bench/send_test_email.py reads these).
    let (checks_ms, smtp_ms, record_ms) = (ms(checked), ms(sent - checked), ms(started.elapsed() - sent));
    match result {
        Ok(()) => {
            tracing::info!(admin = %admin.id, checks_ms, smtp_ms, record_ms, "test email sent");
            Ok(admin.email)
        }
        Err(failure) => {
            tracing::warn!(admin = %admin.id, failure = %failure, "test email failed");
            Err(AppError::Smtp(failure))
        }
    }
}

fn ms(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> SmtpForm {
        SmtpForm {
            mode: Mode::Custom,
            host: "smtp.example.com".into(),
            port: "587".into(),
            from: "Mailroom <mail@example.com>".into(),
            tls_enabled: true,
            auth_type: AuthType::Basic,
            username: "mailer".into(),
            ..SmtpForm::default()
        }
    }

    fn stored_from(form: &SmtpForm) -> StoredSettings {
        let mut stored = StoredSettings { password_enc: Some("sealed".into()), ..StoredSettings::default() };
        stored.apply(&form.parse_custom().unwrap());
        stored
    }

    #[test]
    fn a_blank_password_keeps_the_stored_one_when_nothing_that_matters_changed() {
        let stored = stored_from(&form());
        let next = SmtpForm { from: "Other <other@example.com>".into(), ..form() };
        assert_eq!(secret_source(Some(&stored), &next.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn each_guarded_change_demands_the_password_again() {
        let stored = stored_from(&form());
        let cases = [
            (
                SmtpForm { host: "smtp.other.example".into(), ..form() },
                "Re-enter the password: the email server changed",
            ),
            (SmtpForm { port: "2525".into(), ..form() }, "Re-enter the password: the port changed"),
            (SmtpForm { username: "someone".into(), ..form() }, "Re-enter the password: the username changed"),
        ];
        for (next, message) in cases {
            let result = secret_source(Some(&stored), &next.parse_custom().unwrap(), "");
            assert_eq!(result, Err((field::PASSWORD, message.to_owned())));
            assert_eq!(secret_source(Some(&stored), &next.parse_custom().unwrap(), "typed"), Ok(SecretSource::Typed));
        }
    }

    #[test]
    fn switching_to_oauth_or_changing_the_token_url_demands_the_client_secret() {
        let stored = stored_from(&form());
        let oauth = SmtpForm {
            auth_type: AuthType::OAuth2,
            client_id: "id".into(),
            token_url: "https://login.example.com/token".into(),
            ..form()
        };
        let result = secret_source(Some(&stored), &oauth.parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::CLIENT_SECRET, "Enter the client secret.".to_owned())));

        let mut stored = stored_from(&oauth);
        stored.client_secret_enc = Some("sealed".into());
        let moved = SmtpForm { token_url: "https://evil.example.com/token".into(), ..oauth.clone() };
        let result = secret_source(Some(&stored), &moved.parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::CLIENT_SECRET, "Re-enter the client secret: the token URL changed".to_owned())));
        assert_eq!(secret_source(Some(&stored), &oauth.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn changing_the_auth_type_back_to_basic_demands_the_password() {
        let mut stored = stored_from(&form());
        stored.auth_type = "oauth2".into();
        let result = secret_source(Some(&stored), &form().parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::PASSWORD, "Re-enter the password: the authentication type changed".to_owned())));
    }

    #[test]
    fn turning_tls_off_or_changing_its_mode_demands_the_password() {
        let stored = stored_from(&form());
        let cases = [
            (SmtpForm { tls_enabled: false, ..form() }, "Re-enter the password: TLS/SSL was turned off"),
            (SmtpForm { tls_mode: TlsMode::Implicit, ..form() }, "Re-enter the password: the TLS mode changed"),
        ];
        for (next, message) in cases {
            let result = secret_source(Some(&stored), &next.parse_custom().unwrap(), "");
            assert_eq!(result, Err((field::PASSWORD, message.to_owned())));
        }
        // A stricter minimum version keeps the stored password.
        let stricter = SmtpForm { tls_version: MinTlsVersion::Tls13, ..form() };
        assert_eq!(secret_source(Some(&stored), &stricter.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn an_empty_username_needs_no_password() {
        let open_relay = SmtpForm { username: String::new(), ..form() };
        assert_eq!(secret_source(None, &open_relay.parse_custom().unwrap(), ""), Ok(SecretSource::NotNeeded));
    }

    #[test]
    fn secrets_round_trip_only_with_the_same_key_and_purpose() {
        let key = [7u8; 32];
        let sealed = encrypt(&key, PASSWORD_PURPOSE, "hunter2 hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(decrypt(&key, PASSWORD_PURPOSE, &sealed).unwrap().expose_secret(), "hunter2 hunter2");
        assert!(decrypt(&[8u8; 32], PASSWORD_PURPOSE, &sealed).is_err());
        assert!(decrypt(&key, CLIENT_SECRET_PURPOSE, &sealed).is_err());
        assert_ne!(encrypt(&key, PASSWORD_PURPOSE, "same"), encrypt(&key, PASSWORD_PURPOSE, "same"), "random nonces");
    }
}
