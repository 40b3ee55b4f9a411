//! What an admin can do about each failure: one sentence, shown under the buttons and on the
//! health banner.

use super::{CertProblem, SmtpFailure, Step, TokenFailure};

impl SmtpFailure {
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
