//! The server half of the SMTP settings: storage in SurrealDB (one record, versioned),
//! secrets sealed at rest with the instance key, the re-entry rule and the audit trail.

pub mod certs;
mod reentry;
mod stored;
mod test_send;
mod trust;

pub use reentry::{SecretSource, secret_source, secret_source_in};
pub use stored::StoredSettings;
pub use test_send::send_test;

use super::{
    SaveOutcome, SmtpSettingsView,
    form::{AuthSettings, SmtpForm, field},
    service_account::ServiceAccountKey,
    types::{AuthType, Mode},
};
use crate::{
    auth::{CurrentUser, ssr::require_admin},
    db::{Refusal, now_ms},
    error::{AppError, FieldErrors},
    mail::ssr::{SmtpTarget, TargetAuth},
    shared::seal::{decrypt, encrypt},
    state::{AppState, Db, app_state},
};
use secrecy::{ExposeSecret, SecretString};
use stored::current_id;
use surrealdb::types::SurrealValue;

const PASSWORD_PURPOSE: &str = "smtp.password";
const CLIENT_SECRET_PURPOSE: &str = "smtp.client_secret";
const SERVICE_KEY_PURPOSE: &str = "smtp.service_account_key";

pub async fn load_stored(db: &Db) -> Result<Option<StoredSettings>, AppError> {
    let mut response = db.query("SELECT * OMIT id FROM ONLY $id").bind(("id", current_id())).await?;
    Ok(response.take::<Option<StoredSettings>>(0)?)
}

/// The saved settings from this node's copy when it has one (see [`crate::db::follow`]): for
/// the page, and for Send Test Email, which writes nothing from them (a save on another node
/// reaches it as that node's live query announces it, as it reaches the page). Save reads the
/// database itself: what it writes must follow from the very version it read.
pub async fn shown_settings(state: &AppState) -> Result<Option<StoredSettings>, AppError> {
    // Kept as read, none saved yet included.
    let read = async { load_stored(state.db()).await.map(Some) };
    Ok(state.shared.smtp_settings.get_or_read("current", |_| true, read).await?.flatten())
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
        secrets: secrets_of(&stored),
        version: stored.version.max(0) as u64,
        saved_by: stored.saved_by.clone(),
        saved_at: stored.saved_at,
        default_service,
    }
}

pub async fn load() -> Result<SmtpSettingsView, AppError> {
    require_admin().await?;
    let state = app_state()?;
    Ok(view_of(shown_settings(&state).await?, &state))
}

/// Every SMTP action (save, test) counts against the admin's and the instance's quota, on
/// every node together.
pub async fn check_rate(state: &AppState, admin: &CurrentUser) -> Result<(), AppError> {
    crate::limits::check_quotas(
        state.db(),
        &[(&state.shared.smtp_by_admin, &admin.id), (&state.shared.smtp_instance, "instance")],
    )
    .await
}

/// The settings that will be in force after a save of `form`, with secrets resolved by the
/// re-entry rule (new ones sealed) and pasted certificates read. Nothing is written.
pub fn next_settings(
    state: &AppState,
    stored: Option<&StoredSettings>,
    form: &SmtpForm,
) -> Result<StoredSettings, AppError> {
    let mut next = stored.cloned().unwrap_or_default();
    if form.mode == Mode::Default {
        // Default mode keeps the custom settings for later.
        next.mode = Mode::Default;
        return Ok(next);
    }
    let locale = crate::language::ssr::request_locale();
    let settings = form.parse_custom_in(locale).map_err(AppError::Validation)?;
    let key = state.shared.secret_key.expose_secret();
    let mut errors = FieldErrors::new();
    let (typed, purpose) = match settings.auth {
        AuthSettings::Basic { .. } => (&form.password, PASSWORD_PURPOSE),
        AuthSettings::OAuth2 { .. } => (&form.client_secret, CLIENT_SECRET_PURPOSE),
        AuthSettings::Google { .. } => (&form.service_account_key, SERVICE_KEY_PURPOSE),
    };
    let secret = match secret_source_in(locale, stored, &settings, typed) {
        Ok(SecretSource::Typed) => Some(encrypt(key, purpose, typed)),
        Ok(SecretSource::Stored) => match settings.auth {
            AuthSettings::Basic { .. } => next.password_enc.clone(),
            AuthSettings::OAuth2 { .. } => next.client_secret_enc.clone(),
            AuthSettings::Google { .. } => next.service_key_enc.clone(),
        },
        Ok(SecretSource::NotNeeded) => None,
        Err((field, message)) => {
            errors.demand_secret(field, message);
            None
        }
    };
    if let AuthSettings::Google { .. } = settings.auth
        && !typed.is_empty()
    {
        match google_key(locale, typed) {
            Ok(parsed) => next.service_account = Some(parsed.client_email),
            Err(message) => errors.add(field::SERVICE_ACCOUNT_KEY, message),
        }
    }
    trust::apply(locale, &mut next, form, key, &mut errors);
    errors.into_result()?;
    next.mode = Mode::Custom;
    next.apply(&settings);
    // Only the secret of the active authentication type is kept.
    let kind = settings.auth.kind();
    next.password_enc = secret.clone().filter(|_| kind == AuthType::Basic);
    next.client_secret_enc = secret.clone().filter(|_| kind == AuthType::OAuth2);
    next.service_key_enc = secret.filter(|_| kind == AuthType::GoogleServiceAccount);
    if next.service_key_enc.is_none() {
        next.service_account = None;
    }
    Ok(next)
}

/// A typed service account key that Mailroom can sign with.
fn google_key(locale: crate::language::Locale, text: &str) -> Result<ServiceAccountKey, String> {
    let parsed = text.parse::<ServiceAccountKey>().map_err(|err| err.message_in(locale))?;
    jsonwebtoken::EncodingKey::from_rsa_pem(parsed.private_key.as_bytes())
        .map_err(|_| crate::i18n::td_string!(locale, invalid.key_not_rsa).to_owned())?;
    Ok(parsed)
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
    let changed = StoredSettings::changed_by_save(stored.as_ref(), &next);
    if changed.is_empty()
        && let Some(unchanged) = &stored
    {
        return Ok(outcome(unchanged, changed));
    }
    next.version = current_version as i64 + 1;
    // Every admin hears about it, in the same transaction as the change.
    let fields: Vec<String> = changed.iter().map(|f| (*f).to_owned()).collect();
    let mut admins = state.db().query("SELECT name, email, language FROM user WHERE role = 'admin'").await?;
    let notices: Vec<crate::outbox::ssr::OutboxRow> = admins
        .take::<Vec<AdminRow>>(0)?
        .into_iter()
        .map(|a| {
            let locale =
                crate::outbox::templates::language_for(a.language.as_deref(), state.settings().default_language);
            let fields: Vec<String> = changed.iter().map(|f| stored::field_label(locale, f)).collect();
            crate::outbox::templates::smtp_changed(
                locale,
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
        .bind(("stale", Refusal::StaleSettingsVersion.thrown()))
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
        if Refusal::of(&err) == Some(Refusal::StaleSettingsVersion) || crate::db::is_conflict(&err) {
            return Err(conflict(load_stored(state.db()).await?.as_ref()));
        }
        return Err(err.into());
    }
    tracing::info!(admin = %admin.id, version = next.version, fields = ?changed, "SMTP settings saved");
    // The health shows the saved certificates too: both copies go.
    state.shared.smtp_settings.changed();
    state.shared.health.changed();
    state.shared.mailers.invalidate().await;
    crate::outbox::ssr::wake(&state);
    crate::smtp_health::ssr::spawn_check(state.clone(), crate::smtp_health::StatusSource::PostSaveCheck, next.clone());
    Ok(outcome(&next, changed))
}

#[derive(Debug, SurrealValue)]
struct AdminRow {
    name: String,
    email: crate::shared::email::EmailAddress,
    language: Option<String>,
}

fn outcome(settings: &StoredSettings, changed: Vec<&'static str>) -> SaveOutcome {
    SaveOutcome {
        version: settings.version.max(0) as u64,
        saved_by: settings.saved_by.clone(),
        saved_at: settings.saved_at,
        password_set: settings.password_enc.is_some(),
        client_secret_set: settings.client_secret_enc.is_some(),
        secrets: secrets_of(settings),
        changed: changed.into_iter().map(str::to_owned).collect(),
    }
}

/// What is saved besides the form: who the key and the certificates are, never their contents.
fn secrets_of(stored: &StoredSettings) -> super::SavedSecrets {
    super::SavedSecrets {
        service_account: stored.service_key_enc.as_ref().and(stored.service_account.clone()),
        certificates: stored.certificates.clone(),
        client_key_set: stored.client_key_enc.is_some(),
    }
}

fn conflict(stored: Option<&StoredSettings>) -> AppError {
    let locale = crate::language::ssr::request_locale();
    let who = stored
        .and_then(|s| s.saved_by.clone())
        .unwrap_or_else(|| crate::i18n::td_string!(locale, invalid.another_admin).to_owned());
    let when = stored.and_then(|s| s.saved_at).map(|at| crate::language::format_time(locale, at)).unwrap_or_default();
    AppError::Conflict(crate::i18n::td_string!(locale, invalid.stale_save, who, when).to_string())
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
                .ok_or_else(|| AppError::secret_demanded(field::PASSWORD, "Enter the password."))?,
        },
        AuthSettings::OAuth2 { username, client_id, token_url, scopes } => TargetAuth::OAuth2 {
            username: username.clone(),
            client_id: client_id.clone(),
            client_secret: secret(&stored.client_secret_enc, CLIENT_SECRET_PURPOSE)?
                .ok_or_else(|| AppError::secret_demanded(field::CLIENT_SECRET, "Enter the client secret."))?,
            token_url: token_url.clone(),
            scopes: scopes.clone(),
        },
        AuthSettings::Google { send_as } => {
            let text = secret(&stored.service_key_enc, SERVICE_KEY_PURPOSE)?.ok_or_else(|| {
                AppError::secret_demanded(field::SERVICE_ACCOUNT_KEY, "Enter the service account key.")
            })?;
            let key = google_key(crate::language::Locale::en, text.expose_secret())
                .map_err(|message| AppError::field(field::SERVICE_ACCOUNT_KEY, message))?;
            TargetAuth::Google {
                send_as: send_as.clone(),
                client_email: key.client_email,
                token_url: key.token_uri,
                private_key: SecretString::from(key.private_key),
            }
        }
    };
    let trust = trust::of(stored, key)?;
    Ok(SmtpTarget { host: settings.host, port: settings.port.get(), tls: settings.tls, auth, trust })
}
