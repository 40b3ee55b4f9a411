//! Typed configuration from `MAILROOM_*` environment variables (and an optional `.env`).
//! Every problem names the variable, so a bad deployment stops at start-up with a clear
//! message rather than misbehaving later.

use app::shared::email::EmailAddress;
use secrecy::SecretString;
use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, str::FromStr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// The database to open and how to sign in to it (user and password; `Debug` redacts the
/// password).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub namespace: String,
    pub database: String,
    pub credentials: Option<(String, SecretString)>,
}

#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database: DatabaseConfig,
    pub instance_name: String,
    /// The language of email to a user who has not chosen one (`MAILROOM_DEFAULT_LANGUAGE`).
    pub default_language: app::language::Locale,
    /// The first admin, created when the database has no user yet.
    pub first_admin: Option<(EmailAddress, SecretString)>,
    /// A non-admin user created at start-up when absent (demos and end-to-end tests).
    pub seed_user: Option<(EmailAddress, SecretString)>,
    pub secret_key_file: PathBuf,
    pub public_url: Option<String>,
    pub login_per_minute: NonZeroU32,
    pub smtp_per_admin_per_minute: NonZeroU32,
    pub smtp_per_instance_per_minute: NonZeroU32,
    pub default_smtp_url: Option<String>,
    pub smtp_ca_file: Option<PathBuf>,
    pub smtp_timeout_secs: u64,
    pub default_from: String,
    /// This node's name in the SMTP status; generated once and kept beside the secret key.
    pub node_id: Option<String>,
    pub outbox_max_attempts: i64,
    pub outbox_retry_base_ms: u64,
    pub outbox_lease_secs: u64,
    pub outbox_concurrency: usize,
    /// A message not delivered within this many hours fails for good.
    pub outbox_max_age_hours: u64,
    /// How often a held queue tries again on its own.
    pub outbox_hold_retry_secs: u64,
    /// A node without a heartbeat for this long is shown as stale.
    pub status_stale_secs: u64,
    pub invite_hours: i64,
    pub reset_per_hour: NonZeroU32,
    /// The edge: body size, header and request time, open connections.
    pub limits: Limits,
    /// When set, the only networks SMTP servers, token endpoints and the relay may be in.
    pub smtp_allowed_networks: Option<Vec<ipnet::IpNet>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub session_max_days: u64,
    pub max_streams_per_session: usize,
    pub stream_recheck_secs: u64,
}

/// What one request and one client may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024, header_timeout_secs: 10, request_timeout_secs: 60, max_connections: 1024 }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database", &self.database)
            .field("instance_name", &self.instance_name)
            .field("default_language", &self.default_language)
            .field("first_admin", &self.first_admin.as_ref().map(|(email, _)| email))
            .field("seed_user", &self.seed_user.as_ref().map(|(email, _)| email))
            .field("secret_key_file", &self.secret_key_file)
            .field("public_url", &self.public_url)
            .field("login_per_minute", &self.login_per_minute)
            .field("smtp_per_admin_per_minute", &self.smtp_per_admin_per_minute)
            .field("smtp_per_instance_per_minute", &self.smtp_per_instance_per_minute)
            .field("default_smtp_url", &self.default_smtp_url.as_deref().map(redact_url))
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("smtp_timeout_secs", &self.smtp_timeout_secs)
            .field("default_from", &self.default_from)
            .field("node_id", &self.node_id)
            .field("outbox_max_attempts", &self.outbox_max_attempts)
            .field("outbox_retry_base_ms", &self.outbox_retry_base_ms)
            .field("outbox_lease_secs", &self.outbox_lease_secs)
            .field("outbox_concurrency", &self.outbox_concurrency)
            .field("outbox_max_age_hours", &self.outbox_max_age_hours)
            .field("outbox_hold_retry_secs", &self.outbox_hold_retry_secs)
            .field("status_stale_secs", &self.status_stale_secs)
            .field("invite_hours", &self.invite_hours)
            .field("reset_per_hour", &self.reset_per_hour)
            .field("limits", &self.limits)
            .field("smtp_allowed_networks", &self.smtp_allowed_networks)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("session_max_days", &self.session_max_days)
            .field("max_streams_per_session", &self.max_streams_per_session)
            .field("stream_recheck_secs", &self.stream_recheck_secs)
            .finish()
    }
}

/// Every variable Mailroom reads, with its default; the README's table mirrors this list.
pub const VARIABLES: &[(&str, &str)] = &[
    ("MAILROOM_BIND", "127.0.0.1:3000"),
    ("MAILROOM_DATABASE_URL", "surrealkv://data/db"),
    ("MAILROOM_DATABASE_NS", "mailroom"),
    ("MAILROOM_DATABASE_DB", "mailroom"),
    ("MAILROOM_DATABASE_USER", ""),
    ("MAILROOM_DATABASE_PASSWORD", ""),
    ("MAILROOM_INSTANCE_NAME", "Mailroom"),
    ("MAILROOM_ADMIN_EMAIL", ""),
    ("MAILROOM_ADMIN_PASSWORD", ""),
    ("MAILROOM_USER_EMAIL", ""),
    ("MAILROOM_USER_PASSWORD", ""),
    ("MAILROOM_SECRET_KEY_FILE", "data/secret.key"),
    ("MAILROOM_PUBLIC_URL", ""),
    ("MAILROOM_LOGIN_PER_MINUTE", "10"),
    ("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "10"),
    ("MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE", "30"),
    ("MAILROOM_DEFAULT_SMTP_URL", ""),
    ("MAILROOM_DEFAULT_FROM", "no-reply@mailroom.localhost"),
    ("MAILROOM_SMTP_CA_FILE", ""),
    ("MAILROOM_SMTP_TIMEOUT_SECS", "20"),
    ("MAILROOM_NODE_ID", ""),
    ("MAILROOM_OUTBOX_MAX_ATTEMPTS", "8"),
    ("MAILROOM_OUTBOX_RETRY_BASE_MS", "30000"),
    ("MAILROOM_OUTBOX_LEASE_SECS", "120"),
    ("MAILROOM_OUTBOX_CONCURRENCY", "4"),
    ("MAILROOM_OUTBOX_MAX_AGE_HOURS", "72"),
    ("MAILROOM_OUTBOX_HOLD_RETRY_SECS", "120"),
    ("MAILROOM_STATUS_STALE_SECS", "600"),
    ("MAILROOM_INVITE_HOURS", "72"),
    ("MAILROOM_RESET_PER_HOUR", "5"),
    ("MAILROOM_MAX_BODY_BYTES", "65536"),
    ("MAILROOM_HEADER_TIMEOUT_SECS", "10"),
    ("MAILROOM_REQUEST_TIMEOUT_SECS", "60"),
    ("MAILROOM_MAX_CONNECTIONS", "1024"),
    ("MAILROOM_SMTP_ALLOWED_NETWORKS", ""),
    ("MAILROOM_TRUSTED_PROXIES", ""),
    ("MAILROOM_SESSION_MAX_DAYS", "30"),
    ("MAILROOM_MAX_STREAMS_PER_SESSION", "4"),
    ("MAILROOM_STREAM_RECHECK_SECS", "30"),
];

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let parse = |var: &'static str, default: &str, what: &str| -> Result<String, ConfigError> {
            let value = get(var).unwrap_or_else(|| default.to_owned());
            if value.is_empty() { Err(ConfigError { var, reason: format!("must be {what}") }) } else { Ok(value) }
        };

        let bind_text = parse("MAILROOM_BIND", "127.0.0.1:3000", "host:port")?;
        let bind = SocketAddr::from_str(&bind_text).map_err(|_| ConfigError {
            var: "MAILROOM_BIND",
            reason: format!("'{bind_text}' is not an address and port such as 127.0.0.1:3000"),
        })?;

        let url = parse("MAILROOM_DATABASE_URL", "surrealkv://data/db", "a database URL")?;
        let known = ["surrealkv://", "mem://", "ws://", "wss://"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError {
                var: "MAILROOM_DATABASE_URL",
                reason: format!("'{url}' is not supported; use surrealkv://PATH, mem://, or ws://HOST:PORT"),
            });
        }
        let credentials = match (get("MAILROOM_DATABASE_USER"), get("MAILROOM_DATABASE_PASSWORD")) {
            (Some(user), Some(password)) => Some((user, SecretString::from(password))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    var: "MAILROOM_DATABASE_PASSWORD",
                    reason: "is required when MAILROOM_DATABASE_USER is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "MAILROOM_DATABASE_USER",
                    reason: "is required when MAILROOM_DATABASE_PASSWORD is set".into(),
                });
            }
        };
        let database = DatabaseConfig {
            url,
            namespace: parse("MAILROOM_DATABASE_NS", "mailroom", "a namespace name")?,
            database: parse("MAILROOM_DATABASE_DB", "mailroom", "a database name")?,
            credentials,
        };

        let instance_name = parse("MAILROOM_INSTANCE_NAME", "Mailroom", "a name")?;
        if instance_name.chars().any(char::is_control) || instance_name.chars().count() > 80 {
            return Err(ConfigError {
                var: "MAILROOM_INSTANCE_NAME",
                reason: "must be at most 80 characters without control characters".into(),
            });
        }

        let default_language_code = parse("MAILROOM_DEFAULT_LANGUAGE", "en", "a language code")?;
        let default_language = app::language::parse(&default_language_code).ok_or_else(|| ConfigError {
            var: "MAILROOM_DEFAULT_LANGUAGE",
            reason: format!(
                "must be one of: {}",
                app::language::all().iter().map(|l| app::language::code(*l)).collect::<Vec<_>>().join(", ")
            ),
        })?;

        let first_admin = account(&lookup, "MAILROOM_ADMIN_EMAIL", "MAILROOM_ADMIN_PASSWORD")?;
        let seed_user = account(&lookup, "MAILROOM_USER_EMAIL", "MAILROOM_USER_PASSWORD")?;

        let secret_key_file = PathBuf::from(parse("MAILROOM_SECRET_KEY_FILE", "data/secret.key", "a file path")?);

        let public_url = get("MAILROOM_PUBLIC_URL").map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|host| host.is_empty() || host.contains('/')) {
                return Err(ConfigError {
                    var: "MAILROOM_PUBLIC_URL",
                    reason: format!("'{url}' must be an origin such as https://mail.example.com"),
                });
            }
        }

        let per_minute = |var: &'static str, default: &str| -> Result<NonZeroU32, ConfigError> {
            let text = parse(var, default, "a number")?;
            text.parse::<NonZeroU32>()
                .map_err(|_| ConfigError { var, reason: format!("'{text}' is not a whole number of at least 1") })
        };
        let login_per_minute = per_minute("MAILROOM_LOGIN_PER_MINUTE", "10")?;
        let smtp_per_admin_per_minute = per_minute("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "10")?;
        let smtp_per_instance_per_minute = per_minute("MAILROOM_SMTP_ACTIONS_PER_MINUTE_INSTANCE", "30")?;

        let default_smtp_url = get("MAILROOM_DEFAULT_SMTP_URL");
        if let Some(url) = &default_smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(ConfigError {
                    var: "MAILROOM_DEFAULT_SMTP_URL",
                    reason: format!("'{}' must start with smtp:// or smtps://", redact_url(url)),
                });
            }
            app::mail::ssr::relay_target(url).map_err(|reason| ConfigError {
                var: "MAILROOM_DEFAULT_SMTP_URL",
                reason: format!("'{}': {reason}", redact_url(url)),
            })?;
        }
        let default_from = parse("MAILROOM_DEFAULT_FROM", "no-reply@mailroom.localhost", "an address")?;
        if default_from.parse::<app::smtp_settings::Mailbox>().is_err() {
            return Err(ConfigError {
                var: "MAILROOM_DEFAULT_FROM",
                reason: format!("'{default_from}' is not a mailbox"),
            });
        }
        let smtp_ca_file = get("MAILROOM_SMTP_CA_FILE").map(PathBuf::from);
        let timeout = parse("MAILROOM_SMTP_TIMEOUT_SECS", "20", "a number of seconds")?;
        let smtp_timeout_secs =
            timeout.parse::<u64>().ok().filter(|s| (1..=600).contains(s)).ok_or_else(|| ConfigError {
                var: "MAILROOM_SMTP_TIMEOUT_SECS",
                reason: format!("'{timeout}' is not a number of seconds between 1 and 600"),
            })?;

        let node_id = get("MAILROOM_NODE_ID");
        if let Some(id) = &node_id
            && (id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ConfigError {
                var: "MAILROOM_NODE_ID",
                reason: format!("'{id}' must be at most 64 letters, digits, - or _"),
            });
        }

        let number =
            |var: &'static str, default: &str, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
                let text = parse(var, default, "a number")?;
                text.parse::<u64>().ok().filter(|n| range.contains(n)).ok_or_else(|| ConfigError {
                    var,
                    reason: format!("'{text}' is not a whole number from {} to {}", range.start(), range.end()),
                })
            };
        let outbox_max_attempts = number("MAILROOM_OUTBOX_MAX_ATTEMPTS", "8", 1..=100)? as i64;
        let outbox_retry_base_ms = number("MAILROOM_OUTBOX_RETRY_BASE_MS", "30000", 10..=3_600_000)?;
        let outbox_lease_secs = number("MAILROOM_OUTBOX_LEASE_SECS", "120", 1..=86_400)?;
        let outbox_concurrency = number("MAILROOM_OUTBOX_CONCURRENCY", "4", 1..=64)? as usize;
        if outbox_lease_secs < 2 * smtp_timeout_secs {
            return Err(ConfigError {
                var: "MAILROOM_OUTBOX_LEASE_SECS",
                reason: format!(
                    "{outbox_lease_secs} must be at least twice MAILROOM_SMTP_TIMEOUT_SECS ({smtp_timeout_secs}): a send that outlives its lease could be sent again by another node"
                ),
            });
        }
        let outbox_max_age_hours = number("MAILROOM_OUTBOX_MAX_AGE_HOURS", "72", 1..=24 * 365)?;
        let outbox_hold_retry_secs = number("MAILROOM_OUTBOX_HOLD_RETRY_SECS", "120", 1..=86_400)?;
        let status_stale_secs = number("MAILROOM_STATUS_STALE_SECS", "600", 10..=86_400)?;
        let invite_hours = number("MAILROOM_INVITE_HOURS", "72", 1..=24 * 365)? as i64;
        let reset_per_hour = per_minute("MAILROOM_RESET_PER_HOUR", "5")?;

        let limits = Limits {
            max_body_bytes: number("MAILROOM_MAX_BODY_BYTES", "65536", 1024..=16 * 1024 * 1024)? as usize,
            header_timeout_secs: number("MAILROOM_HEADER_TIMEOUT_SECS", "10", 1..=300)?,
            request_timeout_secs: number("MAILROOM_REQUEST_TIMEOUT_SECS", "60", 2..=3600)?,
            max_connections: number("MAILROOM_MAX_CONNECTIONS", "1024", 1..=1_000_000)? as usize,
        };
        if limits.request_timeout_secs <= smtp_timeout_secs {
            return Err(ConfigError {
                var: "MAILROOM_REQUEST_TIMEOUT_SECS",
                reason: format!(
                    "{} must be longer than MAILROOM_SMTP_TIMEOUT_SECS ({smtp_timeout_secs}), or Send Test Email is cut off",
                    limits.request_timeout_secs
                ),
            });
        }
        let networks = |var: &'static str| -> Result<Option<Vec<ipnet::IpNet>>, ConfigError> {
            get(var)
                .map(|text| app::mail::ssr::address_policy::AddressPolicy::parse_networks(&text))
                .transpose()
                .map_err(|reason| ConfigError { var, reason })
        };
        let smtp_allowed_networks = networks("MAILROOM_SMTP_ALLOWED_NETWORKS")?;
        let trusted_proxies = networks("MAILROOM_TRUSTED_PROXIES")?.unwrap_or_default();
        let session_max_days = number("MAILROOM_SESSION_MAX_DAYS", "30", 1..=3650)?;
        let max_streams_per_session = number("MAILROOM_MAX_STREAMS_PER_SESSION", "4", 1..=100)? as usize;
        let stream_recheck_secs = number("MAILROOM_STREAM_RECHECK_SECS", "30", 1..=30)?;

        Ok(Self {
            bind,
            database,
            instance_name,
            default_language,
            first_admin,
            seed_user,
            secret_key_file,
            public_url,
            login_per_minute,
            smtp_per_admin_per_minute,
            smtp_per_instance_per_minute,
            default_smtp_url,
            smtp_ca_file,
            smtp_timeout_secs,
            default_from,
            node_id,
            outbox_max_attempts,
            outbox_retry_base_ms,
            outbox_lease_secs,
            outbox_concurrency,
            outbox_max_age_hours,
            outbox_hold_retry_secs,
            status_stale_secs,
            invite_hours,
            reset_per_hour,
            limits,
            smtp_allowed_networks,
            trusted_proxies,
            session_max_days,
            max_streams_per_session,
            stream_recheck_secs,
        })
    }

    pub fn cookie_secure(&self) -> bool {
        self.public_url.as_deref().is_some_and(|url| url.starts_with("https://"))
    }
}

/// `smtps://user:secret@host` → `smtps://user:***@host`, for messages and logs.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => {
            let (userinfo, host) = rest.rsplit_once('@').unwrap_or((rest, ""));
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// An email + password pair: both or neither, a real address, a long enough password.
fn account(
    lookup: &impl Fn(&str) -> Option<String>,
    email_var: &'static str,
    password_var: &'static str,
) -> Result<Option<(EmailAddress, SecretString)>, ConfigError> {
    let email = lookup(email_var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let password = lookup(password_var).filter(|v| !v.is_empty());
    match (email, password) {
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(ConfigError { var: password_var, reason: format!("is required when {email_var} is set") })
        }
        (None, Some(_)) => {
            Err(ConfigError { var: email_var, reason: format!("is required when {password_var} is set") })
        }
        (Some(email), Some(password)) => {
            let Ok(email) = email.parse::<EmailAddress>() else {
                return Err(ConfigError { var: email_var, reason: format!("'{email}' is not an email address") });
            };
            if password.chars().count() < app::auth::MIN_PASSWORD_LEN {
                return Err(ConfigError {
                    var: password_var,
                    reason: format!("must be at least {} characters", app::auth::MIN_PASSWORD_LEN),
                });
            }
            Ok(Some((email, SecretString::from(password))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(config.database.url, "surrealkv://data/db");
        assert_eq!(config.instance_name, "Mailroom");
        assert_eq!(config.default_language, app::language::Locale::en);
        assert!(config.first_admin.is_none());
        assert!(!config.cookie_secure());
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("MAILROOM_BIND", "localhost")], "MAILROOM_BIND"),
            (&[("MAILROOM_DEFAULT_LANGUAGE", "fr")], "MAILROOM_DEFAULT_LANGUAGE"),
            (&[("MAILROOM_DATABASE_URL", "postgres://x")], "MAILROOM_DATABASE_URL"),
            (&[("MAILROOM_DATABASE_USER", "root")], "MAILROOM_DATABASE_PASSWORD"),
            (&[("MAILROOM_ADMIN_EMAIL", "admin@example.com")], "MAILROOM_ADMIN_PASSWORD"),
            (
                &[("MAILROOM_ADMIN_EMAIL", "not-an-email"), ("MAILROOM_ADMIN_PASSWORD", "long enough pass")],
                "MAILROOM_ADMIN_EMAIL",
            ),
            (
                &[("MAILROOM_ADMIN_EMAIL", "a@example.com"), ("MAILROOM_ADMIN_PASSWORD", "short")],
                "MAILROOM_ADMIN_PASSWORD",
            ),
            (&[("MAILROOM_PUBLIC_URL", "mail.example.com")], "MAILROOM_PUBLIC_URL"),
            (&[("MAILROOM_LOGIN_PER_MINUTE", "0")], "MAILROOM_LOGIN_PER_MINUTE"),
            (&[("MAILROOM_SMTP_ACTIONS_PER_MINUTE", "ten")], "MAILROOM_SMTP_ACTIONS_PER_MINUTE"),
            (&[("MAILROOM_USER_EMAIL", "u@example.com")], "MAILROOM_USER_PASSWORD"),
            (&[("MAILROOM_DEFAULT_SMTP_URL", "relay.example.com")], "MAILROOM_DEFAULT_SMTP_URL"),
            (&[("MAILROOM_SMTP_TIMEOUT_SECS", "0")], "MAILROOM_SMTP_TIMEOUT_SECS"),
            (&[("MAILROOM_OUTBOX_CONCURRENCY", "0")], "MAILROOM_OUTBOX_CONCURRENCY"),
            (&[("MAILROOM_INVITE_HOURS", "soon")], "MAILROOM_INVITE_HOURS"),
            (&[("MAILROOM_DEFAULT_FROM", "not a mailbox")], "MAILROOM_DEFAULT_FROM"),
            (&[("MAILROOM_INSTANCE_NAME", "bad\nname")], "MAILROOM_INSTANCE_NAME"),
            (&[("MAILROOM_DEFAULT_SMTP_URL", "smtp://relay.example.com?tls=sometimes")], "MAILROOM_DEFAULT_SMTP_URL"),
            (&[("MAILROOM_SMTP_ALLOWED_NETWORKS", "10.0.0.0/8, nonsense")], "MAILROOM_SMTP_ALLOWED_NETWORKS"),
            (&[("MAILROOM_TRUSTED_PROXIES", "10.0.0.0/33")], "MAILROOM_TRUSTED_PROXIES"),
            (&[("MAILROOM_MAX_BODY_BYTES", "10")], "MAILROOM_MAX_BODY_BYTES"),
            (&[("MAILROOM_REQUEST_TIMEOUT_SECS", "20")], "MAILROOM_REQUEST_TIMEOUT_SECS"),
            (&[("MAILROOM_SESSION_MAX_DAYS", "0")], "MAILROOM_SESSION_MAX_DAYS"),
        ];
        for (vars, expected) in cases {
            let err = config(vars).expect_err(expected);
            assert_eq!(err.var, *expected, "{vars:?}");
            assert!(err.to_string().starts_with(expected));
        }
    }

    #[test]
    fn the_default_language_is_one_the_instance_has() {
        assert_eq!(config(&[("MAILROOM_DEFAULT_LANGUAGE", "id")]).unwrap().default_language, app::language::Locale::id);
    }

    #[test]
    fn an_https_public_url_makes_cookies_secure() {
        let config = config(&[("MAILROOM_PUBLIC_URL", "https://mail.example.com/")]).unwrap();
        assert_eq!(config.public_url.as_deref(), Some("https://mail.example.com"));
        assert!(config.cookie_secure());
    }

    #[test]
    fn debug_output_never_shows_passwords() {
        let config = config(&[
            ("MAILROOM_ADMIN_EMAIL", "admin@example.com"),
            ("MAILROOM_ADMIN_PASSWORD", "correct horse battery"),
            ("MAILROOM_DATABASE_USER", "root"),
            ("MAILROOM_DATABASE_PASSWORD", "db-secret-value"),
            ("MAILROOM_DEFAULT_SMTP_URL", "smtps://relay:relay-secret-value@relay.example.com"),
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("correct horse battery") && !shown.contains("db-secret-value"), "{shown}");
        assert!(!shown.contains("relay-secret-value") && shown.contains("relay.example.com"), "{shown}");
    }
}
