//! Sending mail: the classified SMTP failures every admin sees (shared with the browser) and,
//! behind `ssr`, the transports that produce them.

#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where in a delivery something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Connect,
    TlsHandshake,
    Greeting,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    TokenRequest,
}

impl Step {
    const ALL: [Step; 9] = [
        Self::Connect,
        Self::TlsHandshake,
        Self::Greeting,
        Self::StartTls,
        Self::Auth,
        Self::MailFrom,
        Self::RcptTo,
        Self::Data,
        Self::TokenRequest,
    ];

    pub fn index(self) -> u8 {
        Self::ALL.iter().position(|s| *s == self).unwrap_or_default() as u8
    }

    pub fn from_index(index: u8) -> Self {
        Self::ALL.get(index as usize).copied().unwrap_or(Self::Connect)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting",
            Self::TlsHandshake => "the TLS handshake",
            Self::Greeting => "waiting for the server's greeting",
            Self::StartTls => "STARTTLS",
            Self::Auth => "authentication (AUTH)",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "sending the message (DATA)",
            Self::TokenRequest => "the OAuth 2.0 token request",
        })
    }
}

/// What went wrong at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenFailure {
    InvalidClient(String),
    /// `unauthorized_client` from Google: no domain-wide delegation for this client and scope.
    DelegationMissing(String),
    /// `invalid_grant`: the signed request was refused (key, clock, or the mailbox).
    InvalidGrant(String),
    InvalidScope(String),
    Rejected {
        error: String,
        description: String,
    },
    HttpStatus(u16),
    NotJson {
        status: u16,
    },
    Unreachable(String),
    TooLarge,
}

/// What a failure means for the queue (see the README's outbox section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureClass {
    /// This message cannot be delivered as it is (5xx for its recipient or its content): it
    /// fails; the rest of the queue goes on.
    Recipient,
    /// May work later (4xx, connection lost, timeouts, a busy server): the message is retried
    /// with backoff and spends one attempt.
    Transient,
    /// The same for every message (login, TLS, certificate, token endpoint, sender, refused
    /// address): the queue is held, no attempt is spent, and every admin sees the error.
    Configuration,
}

/// What is wrong with a server's certificate, from rustls' and webpki's own error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertProblem {
    UnknownIssuer,
    Expired,
    NotValidYet,
    WrongName,
    CaUsedAsLeaf,
    NotForServers,
    Revoked,
    BadSignature,
    Malformed,
    Unsupported,
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownIssuer => "it is signed by an authority Mailroom does not trust",
            Self::Expired => "it has expired",
            Self::NotValidYet => "it is not valid yet",
            Self::WrongName => "it is not issued for this server name",
            Self::CaUsedAsLeaf => "the server presents a CA certificate as its own",
            Self::NotForServers => "it is not a certificate for a server",
            Self::Revoked => "it has been revoked",
            Self::BadSignature => "its signature does not verify",
            Self::Malformed => "it cannot be read",
            Self::Unsupported => "it uses something Mailroom cannot verify",
        })
    }
}

/// An SMTP failure classified for an admin: what happened, and (see [`SmtpFailure::hint`]) what
/// to do about it; [`SmtpFailure::class`] says what it means for the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpFailure {
    Dns {
        host: String,
    },
    ConnectionRefused {
        host: String,
        port: u16,
    },
    /// The outbound address policy refused every connection to this host: nothing was connected.
    AddressRefused {
        host: String,
        address: String,
        reason: String,
        /// True when the address is outside `MAILROOM_SMTP_ALLOWED_NETWORKS` (rather than one
        /// of the kinds that are always refused).
        outside_allowed: bool,
    },
    Timeout {
        step: Step,
        secs: u64,
    },
    /// The TLS handshake failed; `detail` is one sentence made from rustls' error type.
    TlsHandshake {
        detail: String,
    },
    /// The client and the port disagree about TLS: `server_expects_tls` is true when the port
    /// speaks implicit TLS and we spoke plaintext (or STARTTLS), false for the reverse.
    TlsModeMismatch {
        port: u16,
        server_expects_tls: bool,
    },
    InvalidCertificate {
        problem: CertProblem,
    },
    /// The server wants a client certificate (`missing`) or did not accept the one it was given.
    ClientCertificate {
        missing: bool,
    },
    StartTlsNotOffered,
    NoCommonAuthMechanism {
        offered: String,
    },
    AuthRejected {
        code: u16,
        text: String,
    },
    XOAuth2Rejected {
        text: String,
    },
    TokenEndpoint(TokenFailure),
    SenderRejected {
        code: u16,
        text: String,
    },
    RecipientRejected {
        code: u16,
        text: String,
    },
    ServiceUnavailable {
        code: u16,
        text: String,
    },
    ConnectionLost {
        step: Step,
    },
    Rejected {
        step: Step,
        code: u16,
        text: String,
    },
    /// The saved settings (or the deployment's own) cannot be used as they are.
    Unusable {
        detail: String,
    },
    /// This one message cannot be sent as stored (its address or body).
    BadMessage {
        detail: String,
    },
    /// Mailroom itself could not finish (its database, its shutdown): try again.
    Local {
        detail: String,
    },
}

impl SmtpFailure {
    /// Recipient, transient or configuration: what the outbox does with the message.
    pub fn class(&self) -> FailureClass {
        use FailureClass::{Configuration, Recipient, Transient};
        match self {
            Self::Timeout { .. } | Self::ConnectionLost { .. } | Self::ServiceUnavailable { .. } => Transient,
            Self::ConnectionRefused { .. } | Self::Local { .. } => Transient,
            Self::TokenEndpoint(TokenFailure::Unreachable(_) | TokenFailure::HttpStatus(500..=599)) => Transient,
            // 5xx before MAIL FROM comes from the server, not from this message: an overloaded
            // server says 554 in its greeting, and the next attempt may find it well.
            Self::Rejected { code: 400..=499, .. }
            | Self::Rejected { step: Step::Connect | Step::Greeting | Step::TlsHandshake, .. } => Transient,
            Self::AuthRejected { code: 400..=499, .. }
            | Self::SenderRejected { code: 400..=499, .. }
            | Self::RecipientRejected { code: 400..=499, .. } => Transient,
            Self::RecipientRejected { .. } | Self::BadMessage { .. } => Recipient,
            Self::Rejected { step: Step::RcptTo | Step::Data, .. } => Recipient,
            Self::Rejected { .. } => Configuration,
            Self::Dns { .. }
            | Self::AddressRefused { .. }
            | Self::TlsHandshake { .. }
            | Self::TlsModeMismatch { .. }
            | Self::InvalidCertificate { .. }
            | Self::ClientCertificate { .. }
            | Self::StartTlsNotOffered
            | Self::NoCommonAuthMechanism { .. }
            | Self::AuthRejected { .. }
            | Self::XOAuth2Rejected { .. }
            | Self::TokenEndpoint(_)
            | Self::SenderRejected { .. }
            | Self::Unusable { .. } => Configuration,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == FailureClass::Transient
    }

    /// Whether the whole queue waits: a configuration failure (until the settings change or the
    /// slow timer fires), or a transient failure of the server itself (a short, growing pause
    /// with one probe message) — neither spends the messages' attempts.
    pub fn holds_queue(&self) -> bool {
        match self.class() {
            FailureClass::Configuration => true,
            FailureClass::Transient => self.is_about_the_server(),
            FailureClass::Recipient => false,
        }
    }

    /// Whether it happened before a message was offered (MAIL FROM): the server as a whole, not
    /// this message. Such failures raise the SMTP status for every admin.
    pub fn is_about_the_server(&self) -> bool {
        match self {
            Self::Timeout { step, .. } | Self::ConnectionLost { step } | Self::Rejected { step, .. } => {
                !matches!(step, Step::MailFrom | Step::RcptTo | Step::Data)
            }
            Self::ServiceUnavailable { .. } => false,
            Self::RecipientRejected { .. } | Self::BadMessage { .. } | Self::Local { .. } => false,
            Self::SenderRejected { code, .. } => *code >= 500,
            _ => true,
        }
    }

    /// What the admin can do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::Dns { host } => format!("Check the Email Server name: {host} does not resolve."),
            Self::AddressRefused { outside_allowed: true, .. } => {
                "Mailroom may only connect to the networks in MAILROOM_SMTP_ALLOWED_NETWORKS: use a server inside them, or ask the operator to add this network to that setting.".into()
            }
            Self::AddressRefused { .. } => {
                "Mailroom never connects to link-local (cloud metadata), unspecified, multicast or broadcast addresses. Enter the email server's real host name or address; the operator can restrict connections further with MAILROOM_SMTP_ALLOWED_NETWORKS.".into()
            }
            Self::ConnectionRefused { port, .. } => format!(
                "Nothing accepts connections on port {port}. Check the Email Server and Port, and that a firewall allows the connection."
            ),
            Self::Timeout { step: Step::Connect, .. } => {
                "The server did not answer. Check the Email Server and Port, and that outbound connections to that port are allowed.".into()
            }
            Self::Timeout { step: Step::Greeting, .. } => {
                "The server accepted the connection but did not answer (greeting or EHLO). If this port expects implicit TLS (often 465), tick TLS/SSL and choose Implicit TLS.".into()
            }
            Self::Timeout { step, .. } => format!("The server stopped answering during {step}. Try again later or ask its operator."),
            Self::TlsHandshake { .. } => {
                "The TLS handshake failed. If the server only offers an older TLS version, choose \"TLS 1.2 (recommended)\"; otherwise check the TLS mode for this port.".into()
            }
            Self::TlsModeMismatch { port, server_expects_tls: true } => {
                format!("Port {port} expects implicit TLS: tick TLS/SSL and choose TLS mode \"Implicit TLS\".")
            }
            Self::TlsModeMismatch { port, server_expects_tls: false } => format!(
                "Port {port} speaks plain SMTP: choose TLS mode \"STARTTLS\" (usually port 587) instead of Implicit TLS."
            ),
            Self::InvalidCertificate { problem: CertProblem::UnknownIssuer } => {
                "Paste the private CA that signed it into Trusted CA certificates (PEM) and save (or give it to Mailroom with MAILROOM_SMTP_CA_FILE), or ask the server's operator for a certificate from a public CA.".into()
            }
            Self::InvalidCertificate { problem: CertProblem::WrongName } => {
                "Use the host name on the server's certificate in Email Server (not an IP address or an alias).".into()
            }
            Self::InvalidCertificate { problem: CertProblem::CaUsedAsLeaf } => {
                "The server must present its own certificate, issued by that CA, not the CA certificate itself: ask its operator to fix the server's certificate.".into()
            }
            Self::InvalidCertificate { problem: CertProblem::Expired | CertProblem::NotValidYet } => {
                "Ask the server's operator to renew its certificate, and check this server's clock.".into()
            }
            Self::InvalidCertificate { .. } => {
                "The server's certificate cannot be trusted: ask its operator to fix it. Mailroom never sends mail over an unverified connection.".into()
            }
            Self::StartTlsNotOffered => {
                "The server does not offer STARTTLS, so mail would travel unencrypted. Use Implicit TLS on its TLS port, or untick TLS/SSL only for a trusted local relay.".into()
            }
            Self::NoCommonAuthMechanism { offered } => format!(
                "The server offers no login method Mailroom speaks (it offers: {offered}). Use OAuth 2.0 if it offers XOAUTH2, or ask for PLAIN or LOGIN over TLS."
            ),
            Self::AuthRejected { text, .. } if text.contains("5.7.139") || text.to_lowercase().contains("smtp auth") => {
                "The provider has SMTP AUTH disabled for this mailbox or tenant: enable authenticated SMTP for it, or use OAuth 2.0.".into()
            }
            Self::AuthRejected { code: 400..=499, .. } => {
                "The server could not check the login just now; Mailroom will retry.".into()
            }
            Self::AuthRejected { .. } => {
                "535: check the Username and Password, and that SMTP AUTH is enabled for this account.".into()
            }
            Self::XOAuth2Rejected { .. } => {
                "The server refused the OAuth 2.0 token: check that Username is the mailbox the app may send as, and that the app has the SMTP.Send permission for the Scope.".into()
            }
            Self::TokenEndpoint(TokenFailure::InvalidClient(_)) => {
                "The token endpoint rejected the client: check the Client ID and Client Secret (it may have expired).".into()
            }
            Self::ClientCertificate { missing: true } => {
                "The server requires a client certificate: paste it and its key into Client certificate (PEM) and Client key (PEM), then save.".into()
            }
            Self::ClientCertificate { missing: false } => {
                "The server did not accept the client certificate: check that its CA is one the server trusts and that it has not expired.".into()
            }
            Self::TokenEndpoint(TokenFailure::DelegationMissing(_)) => {
                "Google refused the service account for this mailbox: domain-wide delegation is not granted for this client ID and scope. In the Google Admin console (Security › API controls › Domain-wide delegation) add the service account's client ID with the scope https://mail.google.com/, and check that Send as is a user of the Workspace domain.".into()
            }
            Self::TokenEndpoint(TokenFailure::InvalidGrant(_)) => {
                "The token endpoint refused the signed request: the key may have been deleted or disabled in Google Cloud (paste a new one), Send as may not be a user of the domain, or this server's clock is wrong.".into()
            }
            Self::TokenEndpoint(TokenFailure::InvalidScope(_)) => {
                "The token endpoint rejected the Scope: for Microsoft 365 use https://outlook.office365.com/.default.".into()
            }
            Self::TokenEndpoint(TokenFailure::Rejected { .. }) => "Check the Client ID, Client Secret, Token URL and Scope.".into(),
            Self::TokenEndpoint(TokenFailure::HttpStatus(500..=599)) => {
                "The token endpoint is failing (HTTP 5xx). Mailroom will retry; if it lasts, check the provider's status.".into()
            }
            Self::TokenEndpoint(TokenFailure::HttpStatus(_) | TokenFailure::NotJson { .. } | TokenFailure::TooLarge) => {
                "The Token URL does not look like an OAuth 2.0 token endpoint: check it.".into()
            }
            Self::TokenEndpoint(TokenFailure::Unreachable(_)) => {
                "The token endpoint could not be reached: check the Token URL and the network.".into()
            }
            Self::SenderRejected { code: 400..=499, .. } | Self::RecipientRejected { code: 400..=499, .. } => {
                "The server asked Mailroom to try again later (greylisting or a temporary limit); it will.".into()
            }
            Self::Rejected { step: Step::Greeting, .. } => {
                "The server refused the connection: it may be overloaded or blocking this address. Mailroom will retry.".into()
            }
            Self::SenderRejected { .. } => {
                "The server refused the sender: make the From address one this account may send as.".into()
            }
            Self::RecipientRejected { .. } => "The server refused the recipient address.".into(),
            Self::ServiceUnavailable { .. } => "The server is busy or closing (421). Mailroom will retry; try again later.".into(),
            Self::ConnectionLost { .. } => "The server closed the connection. Try again; if it keeps happening, check the TLS mode and port.".into(),
            Self::Rejected { code: 400..=499, .. } => "The server asked Mailroom to try again later; it will.".into(),
            Self::Rejected { .. } => "The server refused the request; its answer says why.".into(),
            Self::Unusable { .. } => "Open Admin > Platform > SMTP, correct the settings and save them again.".into(),
            Self::BadMessage { .. } => "This message cannot be sent as stored; the rest of the queue is not affected.".into(),
            Self::Local { .. } => "Mailroom will try again shortly; if it keeps happening, check the server's log.".into(),
        }
    }
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns { host } => write!(f, "DNS lookup failed for {host}"),
            Self::ConnectionRefused { host, port } => write!(f, "Connection refused by {host}:{port}"),
            Self::AddressRefused { host, address, reason, .. } => {
                write!(f, "Not connecting to {host} ({address}): {reason}")
            }
            Self::Timeout { step, secs } => write!(f, "Timed out after {secs} s during {step}"),
            Self::TlsHandshake { detail } => write!(f, "TLS handshake failed: {detail}"),
            Self::TlsModeMismatch { port, server_expects_tls: true } => {
                write!(f, "TLS mode mismatch: port {port} expects implicit TLS")
            }
            Self::TlsModeMismatch { port, server_expects_tls: false } => {
                write!(f, "TLS mode mismatch: port {port} does not speak implicit TLS")
            }
            Self::InvalidCertificate { problem } => write!(f, "Invalid certificate: {problem}"),
            Self::ClientCertificate { missing: true } => f.write_str("The server requires a client certificate"),
            Self::ClientCertificate { missing: false } => f.write_str("The server refused the client certificate"),
            Self::StartTlsNotOffered => write!(f, "The server does not offer STARTTLS"),
            Self::NoCommonAuthMechanism { offered } => {
                write!(f, "No common authentication mechanism (server offers: {offered})")
            }
            Self::AuthRejected { code, text } => write!(f, "Authentication rejected: {code} {text}"),
            Self::XOAuth2Rejected { text } => write!(f, "XOAUTH2 token rejected: {text}"),
            Self::TokenEndpoint(failure) => match failure {
                TokenFailure::InvalidClient(d) => write!(f, "Token endpoint: invalid_client {d}"),
                TokenFailure::InvalidScope(d) => write!(f, "Token endpoint: invalid_scope {d}"),
                TokenFailure::DelegationMissing(d) => write!(f, "Token endpoint: unauthorized_client {d}"),
                TokenFailure::InvalidGrant(d) => write!(f, "Token endpoint: invalid_grant {d}"),
                TokenFailure::Rejected { error, description } => write!(f, "Token endpoint: {error} {description}"),
                TokenFailure::HttpStatus(status) => write!(f, "Token endpoint answered HTTP {status}"),
                TokenFailure::NotJson { status } => {
                    write!(f, "Token endpoint answered HTTP {status} without a JSON token")
                }
                TokenFailure::Unreachable(d) => write!(f, "Token endpoint unreachable: {d}"),
                TokenFailure::TooLarge => write!(f, "Token endpoint answer too large"),
            },
            Self::SenderRejected { code, text } => write!(f, "Sender rejected: {code} {text}"),
            Self::RecipientRejected { code, text } => write!(f, "Recipient rejected: {code} {text}"),
            Self::ServiceUnavailable { code, text } => write!(f, "Service unavailable: {code} {text}"),
            Self::ConnectionLost { step } => write!(f, "Connection lost during {step}"),
            Self::Rejected { step, code, text } => write!(f, "Refused during {step}: {code} {text}"),
            Self::Unusable { detail } | Self::BadMessage { detail } | Self::Local { detail } => {
                write!(f, "{detail}")
            }
        }
    }
}
