//! Where mail goes: one SMTP server with how to reach it, log in and trust it, and the
//! deployment's own SMTP settings.

use super::address_policy::{self, AddressPolicy, ResolveError};
use crate::{
    mail::{SmtpFailure, Step},
    smtp_settings::types::{MinTlsVersion, SmtpHost, Tls, TlsMode},
};
use secrecy::SecretString;
use std::{net::SocketAddr, time::Duration};

/// How Mailroom talks SMTP on this deployment.
#[derive(Clone, Debug)]
pub struct MailConfig {
    /// Extra trusted CA certificates (PEM) for private relays, on top of the web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The limit for one whole delivery or check.
    pub overall_timeout: Duration,
    /// The limit for each step (connect, greeting, TLS, AUTH, each command).
    pub step_timeout: Duration,
    /// `MAILROOM_DEFAULT_SMTP_URL`: the relay behind "Use default email settings".
    pub default_relay: Option<SmtpTarget>,
    /// Which addresses SMTP servers, token endpoints and the relay may resolve to.
    pub address_policy: AddressPolicy,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            ca_pem: None,
            overall_timeout: Duration::from_secs(20),
            step_timeout: Duration::from_secs(10),
            default_relay: None,
            address_policy: AddressPolicy::default(),
        }
    }
}

/// How to log in.
#[derive(Clone)]
pub enum TargetAuth {
    None,
    Basic {
        username: String,
        password: SecretString,
    },
    OAuth2 {
        username: String,
        client_id: String,
        client_secret: SecretString,
        token_url: crate::smtp_settings::types::TokenUrl,
        scopes: Vec<String>,
    },
    /// A Google service account: a JWT signed with its key buys the token (RFC 7523).
    Google {
        send_as: String,
        client_email: String,
        token_url: crate::smtp_settings::types::TokenUrl,
        private_key: SecretString,
    },
}

impl TargetAuth {
    /// The mailbox `AUTH XOAUTH2` logs in as, when this login needs an access token.
    pub fn xoauth2_user(&self) -> Option<&str> {
        match self {
            Self::OAuth2 { username, .. } => Some(username),
            Self::Google { send_as, .. } => Some(send_as),
            Self::None | Self::Basic { .. } => None,
        }
    }
}

/// What TLS trusts beyond the web roots, and presents, for one target: the CAs and client
/// certificate saved on the SMTP page (`MAILROOM_SMTP_CA_FILE` is added for every target).
#[derive(Clone, Default)]
pub struct Trust {
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub client: Option<ClientIdentity>,
}

/// A client certificate (its leaf) and its private key (PEM) for relays that require mutual TLS.
#[derive(Clone)]
pub struct ClientIdentity {
    pub cert: rustls::pki_types::CertificateDer<'static>,
    pub key_pem: SecretString,
}

/// One SMTP server with everything needed to reach it.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: SmtpHost,
    pub port: u16,
    pub tls: Tls,
    pub auth: TargetAuth,
    pub trust: Trust,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpTarget({}:{}, tls={:?})", self.host, self.port, self.tls)
    }
}

/// `MAILROOM_DEFAULT_SMTP_URL` as a target for the step-wise sender: `smtps://` is implicit TLS
/// (port 465), `smtp://…?tls=required` STARTTLS (587), plain `smtp://` no TLS (25); a user and
/// password in the URL (percent-encoded) log in with AUTH PLAIN or LOGIN.
pub fn relay_target(text: &str) -> Result<SmtpTarget, String> {
    let url = url::Url::parse(text).map_err(|err| format!("not a URL ({err})"))?;
    let name = url.host_str().filter(|h| !h.is_empty()).ok_or("names no host")?;
    let host = name.trim_matches(['[', ']']).parse::<SmtpHost>().map_err(|err| err.to_string())?;
    let tls = url.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
    let tls_on = |mode| Tls { enabled: true, min_version: MinTlsVersion::Tls12, mode };
    let (tls, default_port) = match (url.scheme(), tls.as_deref()) {
        ("smtps", None | Some("required")) => (tls_on(TlsMode::Implicit), 465),
        ("smtp", Some("required")) => (tls_on(TlsMode::StartTls), 587),
        ("smtp", None | Some("none")) => {
            (Tls { enabled: false, min_version: MinTlsVersion::Tls12, mode: TlsMode::StartTls }, 25)
        }
        (_, Some(other)) => {
            return Err(format!("tls={other} is not supported: use smtps://, or smtp://…?tls=required"));
        }
        (scheme, None) => return Err(format!("{scheme}:// is not supported: use smtp:// or smtps://")),
    };
    let decode = |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
    let username = decode(url.username());
    let auth = if username.is_empty() {
        TargetAuth::None
    } else {
        TargetAuth::Basic { username, password: SecretString::from(decode(url.password().unwrap_or_default())) }
    };
    Ok(SmtpTarget { host, port: url.port().unwrap_or(default_port), tls, auth, trust: Trust::default() })
}

/// [`AddressPolicy::resolve`] with its failures classified: the host is resolved once, every
/// address checked, and the connection goes to these addresses only (TLS still verifies the name).
pub async fn resolve_checked(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<Vec<SocketAddr>, SmtpFailure> {
    policy.resolve(host, port, limit).await.map_err(|err| match err {
        ResolveError::Dns => SmtpFailure::Dns { host: host.to_owned() },
        ResolveError::Timeout => SmtpFailure::Timeout { step: Step::Connect, secs: limit.as_secs().max(1) },
        ResolveError::Refused { address, refusal } => SmtpFailure::AddressRefused {
            host: host.to_owned(),
            address: address.to_string(),
            reason: refusal.reason().to_owned(),
            outside_allowed: refusal == address_policy::Refusal::NotAllowed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::{TargetAuth, TlsMode, relay_target};
    use secrecy::ExposeSecret;

    #[test]
    fn the_relay_url_becomes_a_step_wise_target() {
        let implicit = relay_target("smtps://relay%2Buser:p%40ss@relay.example.com").unwrap();
        assert_eq!((implicit.host.to_string().as_str(), implicit.port), ("relay.example.com", 465));
        assert!(implicit.tls.enabled && implicit.tls.mode == TlsMode::Implicit);
        let TargetAuth::Basic { username, password } = &implicit.auth else { panic!("basic auth") };
        assert_eq!((username.as_str(), password.expose_secret()), ("relay+user", "p@ss"));

        let starttls = relay_target("smtp://relay.example.com:2525?tls=required").unwrap();
        assert_eq!(starttls.port, 2525);
        assert!(starttls.tls.enabled && starttls.tls.mode == TlsMode::StartTls);
        assert!(matches!(starttls.auth, TargetAuth::None));

        let plain = relay_target("smtp://[::1]").unwrap();
        assert_eq!((plain.host.to_string().as_str(), plain.port, plain.tls.enabled), ("::1", 25, false));

        for bad in ["smtp://relay.example.com?tls=opportunistic", "http://relay.example.com", "smtp://", "not a url"] {
            assert!(relay_target(bad).is_err(), "{bad}");
        }
    }
}
