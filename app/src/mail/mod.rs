//! Sending mail: the classified SMTP failures every admin sees (shared with the browser) and,
//! behind `ssr`, the transports that produce them.

mod hints;
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
        f.write_str(self.name(crate::language::Locale::en))
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
        f.write_str(self.describe(crate::language::Locale::en))
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
    /// The failure as stored beside its English text (status, hold, outbox rows), so each
    /// reader gets it in their own language.
    pub fn to_json(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }

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
}

/// In English, as the logs and the outbox record read it; pages use [`SmtpFailure::message_in`].
impl fmt::Display for SmtpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_in(crate::language::Locale::en))
    }
}
