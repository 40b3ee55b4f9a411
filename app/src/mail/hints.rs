//! What an admin reads about each failure, in their language: what happened
//! ([`SmtpFailure::message_in`]) and what they can do about it ([`SmtpFailure::hint_in`]), shown under
//! the buttons, on the health banner and in the Outbox. The words are in `locales/*.json`.

use super::{CertProblem, SmtpFailure, Step, TokenFailure};
use crate::{i18n::td_string, language::Locale};

impl Step {
    pub fn name(self, locale: Locale) -> &'static str {
        match self {
            Self::Connect => td_string!(locale, step.connect),
            Self::TlsHandshake => td_string!(locale, step.tls_handshake),
            Self::Greeting => td_string!(locale, step.greeting),
            Self::StartTls => td_string!(locale, step.starttls),
            Self::Auth => td_string!(locale, step.auth),
            Self::MailFrom => td_string!(locale, step.mail_from),
            Self::RcptTo => td_string!(locale, step.rcpt_to),
            Self::Data => td_string!(locale, step.data),
            Self::TokenRequest => td_string!(locale, step.token_request),
        }
    }
}

impl CertProblem {
    pub fn describe(self, locale: Locale) -> &'static str {
        match self {
            Self::UnknownIssuer => td_string!(locale, cert_problem.unknown_issuer),
            Self::Expired => td_string!(locale, cert_problem.expired),
            Self::NotValidYet => td_string!(locale, cert_problem.not_valid_yet),
            Self::WrongName => td_string!(locale, cert_problem.wrong_name),
            Self::CaUsedAsLeaf => td_string!(locale, cert_problem.ca_used_as_leaf),
            Self::NotForServers => td_string!(locale, cert_problem.not_for_servers),
            Self::Revoked => td_string!(locale, cert_problem.revoked),
            Self::BadSignature => td_string!(locale, cert_problem.bad_signature),
            Self::Malformed => td_string!(locale, cert_problem.malformed),
            Self::Unsupported => td_string!(locale, cert_problem.unsupported),
        }
    }
}

impl SmtpFailure {
    /// What happened. The server's own words (its reply text, TLS detail) stay as they came.
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Dns { host } => td_string!(l, failure.dns, host).to_string(),
            Self::ConnectionRefused { host, port } => td_string!(l, failure.connection_refused, host, port).to_string(),
            Self::AddressRefused { host, address, reason, .. } => {
                td_string!(l, failure.address_refused, host, address, reason).to_string()
            }
            Self::Timeout { step, secs } => td_string!(l, failure.timeout, secs, step = step.name(l)).to_string(),
            Self::TlsHandshake { detail } => td_string!(l, failure.tls_handshake, detail).to_string(),
            Self::TlsModeMismatch { port, server_expects_tls: true } => {
                td_string!(l, failure.mismatch_expects_tls, port).to_string()
            }
            Self::TlsModeMismatch { port, server_expects_tls: false } => {
                td_string!(l, failure.mismatch_plain, port).to_string()
            }
            Self::InvalidCertificate { problem } => {
                td_string!(l, failure.invalid_certificate, problem = problem.describe(l)).to_string()
            }
            Self::ClientCertificate { missing: true } => td_string!(l, failure.client_cert_missing).to_owned(),
            Self::ClientCertificate { missing: false } => td_string!(l, failure.client_cert_refused).to_owned(),
            Self::StartTlsNotOffered => td_string!(l, failure.starttls_not_offered).to_owned(),
            Self::NoCommonAuthMechanism { offered } => td_string!(l, failure.no_common_auth, offered).to_string(),
            Self::AuthRejected { code, text } => td_string!(l, failure.auth_rejected, code, text).to_string(),
            Self::XOAuth2Rejected { text } => td_string!(l, failure.xoauth2_rejected, text).to_string(),
            Self::TokenEndpoint(failure) => {
                let error = |error: &str, detail: &str| td_string!(l, failure.token_error, error, detail).to_string();
                match failure {
                    TokenFailure::InvalidClient(d) => error("invalid_client", d),
                    TokenFailure::InvalidScope(d) => error("invalid_scope", d),
                    TokenFailure::DelegationMissing(d) => error("unauthorized_client", d),
                    TokenFailure::InvalidGrant(d) => error("invalid_grant", d),
                    TokenFailure::Rejected { error: e, description } => error(e, description),
                    TokenFailure::HttpStatus(status) => td_string!(l, failure.token_http, status).to_string(),
                    TokenFailure::NotJson { status } => td_string!(l, failure.token_not_json, status).to_string(),
                    TokenFailure::Unreachable(detail) => td_string!(l, failure.token_unreachable, detail).to_string(),
                    TokenFailure::TooLarge => td_string!(l, failure.token_too_large).to_owned(),
                }
            }
            Self::SenderRejected { code, text } => td_string!(l, failure.sender_rejected, code, text).to_string(),
            Self::RecipientRejected { code, text } => td_string!(l, failure.recipient_rejected, code, text).to_string(),
            Self::ServiceUnavailable { code, text } => {
                td_string!(l, failure.service_unavailable, code, text).to_string()
            }
            Self::ConnectionLost { step } => td_string!(l, failure.connection_lost, step = step.name(l)).to_string(),
            Self::Rejected { step, code, text } => {
                td_string!(l, failure.rejected, code, text, step = step.name(l)).to_string()
            }
            Self::Unusable { detail } | Self::BadMessage { detail } | Self::Local { detail } => detail.clone(),
        }
    }

    /// What the admin can do about it, in English (logs, tests and the stored record).
    pub fn hint(&self) -> String {
        self.hint_in(Locale::en)
    }

    /// What the admin can do about it, in `locale`.
    pub fn hint_in(&self, locale: Locale) -> String {
        let l = locale;
        let text: &str = match self {
            Self::Dns { host } => return td_string!(l, hint.dns, host).to_string(),
            Self::AddressRefused { outside_allowed: true, .. } => td_string!(l, hint.outside_allowed),
            Self::AddressRefused { .. } => td_string!(l, hint.address_refused),
            Self::ConnectionRefused { port, .. } => return td_string!(l, hint.connection_refused, port).to_string(),
            Self::Timeout { step: Step::Connect, .. } => td_string!(l, hint.timeout_connect),
            Self::Timeout { step: Step::Greeting, .. } => td_string!(l, hint.timeout_greeting),
            Self::Timeout { step, .. } => return td_string!(l, hint.timeout_step, step = step.name(l)).to_string(),
            Self::TlsHandshake { .. } => td_string!(l, hint.tls_handshake),
            Self::TlsModeMismatch { port, server_expects_tls: true } => {
                return td_string!(l, hint.mismatch_expects_tls, port).to_string();
            }
            Self::TlsModeMismatch { port, server_expects_tls: false } => {
                return td_string!(l, hint.mismatch_plain, port).to_string();
            }
            Self::InvalidCertificate { problem: CertProblem::UnknownIssuer } => td_string!(l, hint.unknown_issuer),
            Self::InvalidCertificate { problem: CertProblem::WrongName } => td_string!(l, hint.wrong_name),
            Self::InvalidCertificate { problem: CertProblem::CaUsedAsLeaf } => td_string!(l, hint.ca_used_as_leaf),
            Self::InvalidCertificate { problem: CertProblem::Expired | CertProblem::NotValidYet } => {
                td_string!(l, hint.expired)
            }
            Self::InvalidCertificate { .. } => td_string!(l, hint.certificate),
            Self::StartTlsNotOffered => td_string!(l, hint.starttls_not_offered),
            Self::NoCommonAuthMechanism { offered } => return td_string!(l, hint.no_common_auth, offered).to_string(),
            Self::AuthRejected { text, .. }
                if text.contains("5.7.139") || text.to_lowercase().contains("smtp auth") =>
            {
                td_string!(l, hint.smtp_auth_disabled)
            }
            Self::AuthRejected { code: 400..=499, .. } => td_string!(l, hint.auth_later),
            Self::AuthRejected { .. } => td_string!(l, hint.auth_rejected),
            Self::XOAuth2Rejected { .. } => td_string!(l, hint.xoauth2_rejected),
            Self::TokenEndpoint(TokenFailure::InvalidClient(_)) => td_string!(l, hint.invalid_client),
            Self::ClientCertificate { missing: true } => td_string!(l, hint.client_cert_missing),
            Self::ClientCertificate { missing: false } => td_string!(l, hint.client_cert_refused),
            Self::TokenEndpoint(TokenFailure::DelegationMissing(_)) => td_string!(l, hint.delegation_missing),
            Self::TokenEndpoint(TokenFailure::InvalidGrant(_)) => td_string!(l, hint.invalid_grant),
            Self::TokenEndpoint(TokenFailure::InvalidScope(_)) => td_string!(l, hint.invalid_scope),
            Self::TokenEndpoint(TokenFailure::Rejected { .. }) => td_string!(l, hint.token_rejected),
            Self::TokenEndpoint(TokenFailure::HttpStatus(500..=599)) => td_string!(l, hint.token_5xx),
            Self::TokenEndpoint(
                TokenFailure::HttpStatus(_) | TokenFailure::NotJson { .. } | TokenFailure::TooLarge,
            ) => {
                td_string!(l, hint.token_not_endpoint)
            }
            Self::TokenEndpoint(TokenFailure::Unreachable(_)) => td_string!(l, hint.token_unreachable),
            Self::SenderRejected { code: 400..=499, .. } | Self::RecipientRejected { code: 400..=499, .. } => {
                td_string!(l, hint.try_later)
            }
            Self::Rejected { step: Step::Greeting, .. } => td_string!(l, hint.greeting_refused),
            Self::SenderRejected { .. } => td_string!(l, hint.sender_rejected),
            Self::RecipientRejected { .. } => td_string!(l, hint.recipient_rejected),
            Self::ServiceUnavailable { .. } => td_string!(l, hint.busy),
            Self::ConnectionLost { .. } => td_string!(l, hint.connection_lost),
            Self::Rejected { code: 400..=499, .. } => td_string!(l, hint.rejected_later),
            Self::Rejected { .. } => td_string!(l, hint.rejected),
            Self::Unusable { .. } => td_string!(l, hint.unusable),
            Self::BadMessage { .. } => td_string!(l, hint.bad_message),
            Self::Local { .. } => td_string!(l, hint.local),
        };
        text.to_owned()
    }
}
