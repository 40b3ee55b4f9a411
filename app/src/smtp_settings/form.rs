//! What the SMTP form holds (plain strings, as typed) and how it becomes [`CustomSettings`].

use super::types::*;
use crate::{error::FieldErrors, i18n::td_string, language::Locale};
use serde::{Deserialize, Serialize};

/// Field names: the keys of field errors and the ids of the inputs.
pub mod field {
    pub const HOST: &str = "host";
    pub const FROM: &str = "from";
    pub const PORT: &str = "port";
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const CLIENT_ID: &str = "client_id";
    pub const CLIENT_SECRET: &str = "client_secret";
    pub const TOKEN_URL: &str = "token_url";
    pub const SCOPE: &str = "scope";
    pub const SERVICE_ACCOUNT_KEY: &str = "service_account_key";
    pub const TRUSTED_CA: &str = "trusted_ca_pem";
    pub const CLIENT_CERT: &str = "client_cert_pem";
    pub const CLIENT_KEY: &str = "client_key_pem";
}

/// The form as the browser sends it. Secrets are blank unless the admin typed one; blank means
/// "keep the stored one" where the re-entry rule allows.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpForm {
    pub mode: Mode,
    pub host: String,
    pub port: String,
    pub from: String,
    pub tls_enabled: bool,
    pub tls_version: MinTlsVersion,
    pub tls_mode: TlsMode,
    pub auth_type: AuthType,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_url: String,
    pub scope: String,
    /// A Google service account's JSON key (write-only, like the password).
    pub service_account_key: String,
    /// Extra CA certificates to trust for this server and its token endpoint (PEM; blank keeps
    /// the saved ones).
    pub trusted_ca_pem: String,
    /// A client certificate and its key for relays that require mutual TLS (blank keeps them).
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub remove_trusted_ca: bool,
    pub remove_client_cert: bool,
}

impl std::fmt::Debug for SmtpForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &str| if s.is_empty() { "" } else { "[redacted]" };
        f.debug_struct("SmtpForm")
            .field("mode", &self.mode)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("tls_enabled", &self.tls_enabled)
            .field("tls_version", &self.tls_version)
            .field("tls_mode", &self.tls_mode)
            .field("auth_type", &self.auth_type)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("token_url", &self.token_url)
            .field("scope", &self.scope)
            .field("service_account_key", &redacted(&self.service_account_key))
            .field("trusted_ca_pem", &redacted(&self.trusted_ca_pem))
            .field("client_cert_pem", &redacted(&self.client_cert_pem))
            .field("client_key_pem", &redacted(&self.client_key_pem))
            .field("remove_trusted_ca", &self.remove_trusted_ca)
            .field("remove_client_cert", &self.remove_client_cert)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// An empty username means no AUTH at all (IP-allowlisted relays).
    Basic {
        username: String,
    },
    OAuth2 {
        username: String,
        client_id: String,
        token_url: TokenUrl,
        scopes: Vec<String>,
    },
    /// The service account comes from its key (typed now, or the saved one).
    Google {
        send_as: String,
    },
}

impl AuthSettings {
    pub fn kind(&self) -> AuthType {
        match self {
            Self::Basic { .. } => AuthType::Basic,
            Self::OAuth2 { .. } => AuthType::OAuth2,
            Self::Google { .. } => AuthType::GoogleServiceAccount,
        }
    }

    pub fn username(&self) -> &str {
        match self {
            Self::Basic { username } | Self::OAuth2 { username, .. } | Self::Google { send_as: username } => username,
        }
    }
}

/// Custom settings that passed every parser (secrets are handled apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSettings {
    pub host: SmtpHost,
    pub port: SmtpPort,
    pub from: FromMailbox,
    pub tls: Tls,
    pub auth: AuthSettings,
}

impl SmtpForm {
    /// Parses every custom field; the errors are keyed by field, in English.
    pub fn parse_custom(&self) -> Result<CustomSettings, FieldErrors> {
        self.parse_custom_in(Locale::en)
    }

    /// Parses every custom field; the errors are keyed by field, worded in `locale`.
    pub fn parse_custom_in(&self, locale: Locale) -> Result<CustomSettings, FieldErrors> {
        let l = locale;
        let mut errors = FieldErrors::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.add(field, message);
            }
        };
        let host = self.host.parse::<SmtpHost>();
        check(field::HOST, host.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));
        let port = self.port.parse::<SmtpPort>();
        check(field::PORT, port.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));
        let from = self.from.parse::<FromMailbox>();
        check(field::FROM, from.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));

        let required = self.auth_type != AuthType::Basic;
        let username = parse_line(&self.username, required, 320);
        check(
            field::USERNAME,
            username.as_ref().map(|_| ()).map_err(|e| match e {
                TextError::Empty => td_string!(l, invalid.username_mailbox).to_owned(),
                other => other.message_in(l),
            }),
        );
        let auth = match self.auth_type {
            AuthType::Basic => username.ok().map(|username| AuthSettings::Basic { username }),
            AuthType::OAuth2 => {
                let client_id = parse_line(&self.client_id, true, 255);
                check(field::CLIENT_ID, client_id.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));
                let token_url = self.token_url.parse::<TokenUrl>();
                check(field::TOKEN_URL, token_url.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));
                let scopes = parse_scopes(&self.scope);
                check(field::SCOPE, scopes.as_ref().map(|_| ()).map_err(|e| e.message_in(l)));
                match (username, client_id, token_url, scopes) {
                    (Ok(username), Ok(client_id), Ok(token_url), Ok(scopes)) => {
                        Some(AuthSettings::OAuth2 { username, client_id, token_url, scopes })
                    }
                    _ => None,
                }
            }
            AuthType::GoogleServiceAccount => {
                if let Ok(send_as) = &username
                    && send_as.parse::<lettre::Address>().is_err()
                {
                    check(field::USERNAME, Err(td_string!(l, invalid.send_as_mailbox).to_owned()));
                }
                if !self.service_account_key.is_empty() {
                    let key = self.service_account_key.parse::<super::service_account::ServiceAccountKey>();
                    check(field::SERVICE_ACCOUNT_KEY, key.map(drop).map_err(|e| e.message_in(l)));
                }
                username.ok().map(|send_as| AuthSettings::Google { send_as })
            }
        };
        let pem_shaped = |text: &str, label: &str| text.is_empty() || text.contains(&format!("-----BEGIN {label}"));
        if !pem_shaped(&self.trusted_ca_pem, "CERTIFICATE-----") {
            errors.add(field::TRUSTED_CA, td_string!(l, invalid.pem_certificates));
        }
        if !pem_shaped(&self.client_cert_pem, "CERTIFICATE-----") {
            errors.add(field::CLIENT_CERT, td_string!(l, invalid.pem_certificate));
        }
        if !self.client_key_pem.is_empty() && !self.client_key_pem.contains("PRIVATE KEY-----") {
            errors.add(field::CLIENT_KEY, td_string!(l, invalid.pem_key));
        }
        if self.password.chars().any(|c| c == '\r' || c == '\n') {
            errors.add(field::PASSWORD, td_string!(l, invalid.password_line_break));
        }
        if self.client_secret.chars().any(char::is_control) {
            errors.add(field::CLIENT_SECRET, td_string!(l, invalid.secret_control));
        }
        match (host, port, from, auth) {
            (Ok(host), Ok(port), Ok(from), Some(auth)) if errors.is_empty() => Ok(CustomSettings {
                host,
                port,
                from,
                tls: Tls { enabled: self.tls_enabled, min_version: self.tls_version, mode: self.tls_mode },
                auth,
            }),
            _ => Err(errors),
        }
    }

    /// Refuses a form with a field far past any sensible length (a request, not a typo), before
    /// any parser, limiter or query sees it. The parsers give the friendly messages below these.
    #[cfg(feature = "ssr")]
    pub fn check_lengths(&self) -> Result<(), crate::error::AppError> {
        use crate::error::ssr::bounded;
        bounded("Email Server", &self.host, 253 + 16)?;
        bounded("Port", &self.port, 16)?;
        bounded("From", &self.from, 512)?;
        bounded("Username", &self.username, 320 + 16)?;
        bounded("Password", &self.password, crate::auth::MAX_PASSWORD_LEN)?;
        bounded("Client ID", &self.client_id, 255 + 16)?;
        bounded("Client Secret", &self.client_secret, 2048)?;
        bounded("Token URL", &self.token_url, 2048)?;
        bounded("Scope", &self.scope, 2048)?;
        bounded("Service account key (JSON)", &self.service_account_key, 16 * 1024)?;
        bounded("Trusted CA certificates (PEM)", &self.trusted_ca_pem, 32 * 1024)?;
        bounded("Client certificate (PEM)", &self.client_cert_pem, 16 * 1024)?;
        bounded("Client key (PEM)", &self.client_key_pem, 16 * 1024)
    }

    /// The message for one field, for live validation while the admin types.
    pub fn field_error(&self, name: &str) -> Option<String> {
        if self.mode == Mode::Default {
            return None;
        }
        self.parse_custom().err().and_then(|errors| errors.get(name).map(str::to_owned))
    }
}
