//! The settings as stored: one record, `smtp_settings:current`, versioned; secrets sealed.

use crate::smtp_settings::{
    certs::CertSummary,
    form::{AuthSettings, CustomSettings, SmtpForm},
    types::{AuthType, MinTlsVersion, Mode, TlsMode},
};
use surrealdb::types::{RecordId, SurrealValue};

#[derive(Debug, Clone, Default, PartialEq, SurrealValue)]
pub struct StoredSettings {
    pub mode: Mode,
    pub host: String,
    pub port: i64,
    pub from_mailbox: String,
    pub tls_enabled: bool,
    pub tls_version: MinTlsVersion,
    pub tls_mode: TlsMode,
    pub auth_type: AuthType,
    pub username: String,
    pub client_id: String,
    pub token_url: String,
    pub scope: String,
    pub password_enc: Option<String>,
    pub client_secret_enc: Option<String>,
    // Fields added after the first release default when a record saved before them is read.
    /// The Google service account's JSON key, sealed.
    #[surreal(default)]
    pub service_key_enc: Option<String>,
    /// Its `client_email`, shown on the page while a key is saved.
    #[surreal(default)]
    pub service_account: Option<String>,
    /// Extra CA certificates (PEM), the client certificate (PEM) and its key, sealed.
    #[surreal(default)]
    pub trusted_ca_enc: Option<String>,
    #[surreal(default)]
    pub client_cert_enc: Option<String>,
    #[surreal(default)]
    pub client_key_enc: Option<String>,
    /// Who the saved certificates are and when they expire (for the page and the banner).
    #[surreal(default)]
    pub certificates: Vec<CertSummary>,
    pub version: i64,
    pub saved_by: Option<String>,
    pub saved_at: Option<i64>,
}

pub(super) fn current_id() -> RecordId {
    RecordId::new("smtp_settings", "current")
}

impl StoredSettings {
    /// The form as it should appear in the browser: no secret, ever.
    pub fn to_form(&self) -> SmtpForm {
        SmtpForm {
            mode: self.mode,
            host: self.host.clone(),
            port: if self.port > 0 { self.port.to_string() } else { String::new() },
            from: self.from_mailbox.clone(),
            tls_enabled: self.tls_enabled,
            tls_version: self.tls_version,
            tls_mode: self.tls_mode,
            auth_type: self.auth_type,
            username: self.username.clone(),
            password: String::new(),
            client_id: self.client_id.clone(),
            client_secret: String::new(),
            token_url: self.token_url.clone(),
            scope: self.scope.clone(),
            ..SmtpForm::default()
        }
    }

    pub(super) fn apply(&mut self, settings: &CustomSettings) {
        self.host = settings.host.to_string();
        self.port = i64::from(settings.port.get());
        self.from_mailbox = settings.from.to_string();
        self.tls_enabled = settings.tls.enabled;
        self.tls_version = settings.tls.min_version;
        self.tls_mode = settings.tls.mode;
        self.username = settings.auth.username().to_owned();
        self.auth_type = settings.auth.kind();
        if let AuthSettings::OAuth2 { client_id, token_url, scopes, .. } = &settings.auth {
            self.client_id = client_id.clone();
            self.token_url = token_url.to_string();
            self.scope = scopes.join(" ");
        }
    }

    /// What a save of `after` over `before` (nothing stored yet: `None`) changes, as the admins'
    /// notice names it. The first save chooses the mode, even when it keeps the default one.
    pub(super) fn changed_by_save(before: Option<&Self>, after: &Self) -> Vec<&'static str> {
        let mut changed = before.cloned().unwrap_or_default().changed_fields(after);
        if before.is_none() && !changed.contains(&"Mode") {
            changed.insert(0, "Mode");
        }
        changed
    }

    /// Human names of the fields that differ; secrets by name only.
    pub(super) fn changed_fields(&self, after: &Self) -> Vec<&'static str> {
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
        diff("Service account key", self.service_key_enc != after.service_key_enc);
        diff("Trusted CA certificates", self.trusted_ca_enc != after.trusted_ca_enc);
        diff("Client certificate", self.client_cert_enc != after.client_cert_enc);
        diff("Client key", self.client_key_enc != after.client_key_enc);
        changed
    }
}

/// A changed field's name (as [`StoredSettings::changed_by_save`] and the audit record spell it,
/// in English) as the form labels it in `locale`, for the notice every admin receives.
pub fn field_label(locale: crate::language::Locale, name: &str) -> String {
    use crate::i18n::td_string;
    let l = locale;
    let label = match name {
        "Mode" => td_string!(l, smtp.mode),
        "Email Server" => td_string!(l, smtp.host),
        "Port" => td_string!(l, smtp.port),
        "From" => td_string!(l, smtp.from),
        "TLS/SSL" => td_string!(l, smtp.tls),
        "TLS/SSL version" => td_string!(l, smtp.tls_version),
        "TLS mode" => td_string!(l, smtp.tls_mode),
        "Authentication type" => td_string!(l, smtp.auth_type),
        "Username" => td_string!(l, smtp.username),
        "Password" => td_string!(l, smtp.password),
        "Client ID" => td_string!(l, smtp.client_id),
        "Client Secret" => td_string!(l, smtp.client_secret),
        "Token URL" => td_string!(l, smtp.token_url),
        "Scope" => td_string!(l, smtp.scope),
        "Service account key" => td_string!(l, smtp.service_account_key),
        "Trusted CA certificates" => td_string!(l, trust.trusted_ca),
        "Client certificate" => td_string!(l, trust.client_cert),
        "Client key" => td_string!(l, trust.client_key),
        other => other,
    };
    label.to_owned()
}

#[cfg(test)]
mod tests {
    use super::StoredSettings;
    use crate::smtp_settings::types::Mode;

    #[test]
    fn a_save_names_what_it_changes_and_the_first_one_names_the_mode() {
        let default_mode = StoredSettings::default();
        assert_eq!(StoredSettings::changed_by_save(None, &default_mode), ["Mode"]);
        assert!(StoredSettings::changed_by_save(Some(&default_mode), &default_mode).is_empty());
        let custom = StoredSettings { mode: Mode::Custom, host: "smtp.example.com".into(), ..Default::default() };
        assert_eq!(StoredSettings::changed_by_save(None, &custom), ["Mode", "Email Server"]);
        assert_eq!(StoredSettings::changed_by_save(Some(&custom), &custom), Vec::<&str>::new());
        let moved = StoredSettings { port: 2525, ..custom.clone() };
        assert_eq!(StoredSettings::changed_by_save(Some(&custom), &moved), ["Port"]);
    }
}
