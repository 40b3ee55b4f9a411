//! lettre errors → [`SmtpFailure`], by type: the reply code lettre parsed, the `io::ErrorKind`
//! and the `rustls::Error` (with webpki's certificate error inside it) found on the error's
//! source chain. No message text is matched; what a peer said is shown as an excerpt only.

use super::{SmtpTarget, Step};
use crate::{
    mail::{CertProblem, SmtpFailure},
    smtp_settings::types::TlsMode,
};
use lettre::transport::smtp::{Error, response::Response};
use rustls::{AlertDescription, CertificateError, PeerIncompatible};
use std::{error::Error as StdError, io};

/// The first error of type `T` on the chain, looking inside `io::Error`s too (rustls' errors
/// travel wrapped in one).
pub fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(cause) = current {
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = cause.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && let Some(found) = find::<T>(inner)
        {
            return Some(found);
        }
        current = cause.source();
    }
    None
}

/// The reply text lettre keeps after "(code): ".
fn reply_text(err: &Error) -> String {
    let text = err.to_string();
    excerpt(&text.split_once("): ").map_or(text.clone(), |(_, rest)| rest.to_owned()))
}

/// At most [`EXCERPT_CHARS`] printable characters of what a peer said: a port that is not an
/// SMTP server (or a hostile one) must not put raw bytes or pages of text on an admin's screen.
pub const EXCERPT_CHARS: usize = 160;

pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for ch in text.chars() {
        let ch = if ch.is_control() || ch == '\u{fffd}' { ' ' } else { ch };
        if ch.is_whitespace() {
            if last_space || out.is_empty() {
                continue;
            }
            last_space = true;
            out.push(' ');
        } else {
            last_space = false;
            out.push(ch);
        }
        count += 1;
        if count >= EXCERPT_CHARS {
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
    }
    out.trim_end().to_owned()
}

/// `secs` is the limit the step ran under, for the timeouts lettre itself reports.
pub fn classify(err: &Error, step: Step, target: &SmtpTarget, secs: u64) -> SmtpFailure {
    if let Some(code) = err.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        return classify_code(code, reply_text(err), step);
    }
    if let Some(tls) = find::<rustls::Error>(err) {
        let implicit = target.tls.enabled && target.tls.mode == TlsMode::Implicit;
        return classify_tls(tls, implicit && step == Step::TlsHandshake, target.port);
    }
    if err.is_timeout() {
        return SmtpFailure::Timeout { step, secs };
    }
    let handshaking = matches!(step, Step::StartTls | Step::TlsHandshake);
    match find::<io::Error>(err).map(io::Error::kind) {
        Some(io::ErrorKind::ConnectionRefused) => {
            SmtpFailure::ConnectionRefused { host: target.host.to_string(), port: target.port }
        }
        Some(io::ErrorKind::TimedOut) => SmtpFailure::Timeout { step, secs },
        // Some TLS stacks hang up instead of sending an alert when nothing matches.
        _ if handshaking => SmtpFailure::TlsHandshake {
            detail:
                "the server closed the connection during the TLS handshake (often: no TLS version or cipher in common)"
                    .into(),
        },
        Some(
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected,
        ) => SmtpFailure::ConnectionLost { step },
        // lettre reads a closed connection as an empty, incomplete response.
        None if err.is_response() || err.is_transport_shutdown() => SmtpFailure::ConnectionLost { step },
        _ if err.is_tls() => SmtpFailure::TlsHandshake { detail: "the TLS connection could not be set up".into() },
        _ => SmtpFailure::ConnectionLost { step },
    }
}

/// A failed TCP connect of our own (a plain connection, [`super::ehlo_tap::connect`]), read as
/// [`classify`] reads the same `io::Error` inside lettre's: at the greeting step, which covers
/// the connect.
pub fn classify_connect(err: &io::Error, target: &SmtpTarget, secs: u64) -> SmtpFailure {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            SmtpFailure::ConnectionRefused { host: target.host.to_string(), port: target.port }
        }
        io::ErrorKind::TimedOut => SmtpFailure::Timeout { step: Step::Greeting, secs },
        _ => SmtpFailure::ConnectionLost { step: Step::Greeting },
    }
}

/// A rustls error as one sentence. `plain_port_suspected` is set for the handshake of implicit
/// TLS, where an answer that is not TLS at all means the port speaks plain SMTP.
pub fn classify_tls(err: &rustls::Error, plain_port_suspected: bool, port: u16) -> SmtpFailure {
    use rustls::Error as E;
    let handshake = |detail: &str| SmtpFailure::TlsHandshake { detail: detail.to_owned() };
    match err {
        E::InvalidCertificate(certificate) => SmtpFailure::InvalidCertificate { problem: cert_problem(certificate) },
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. }
            if plain_port_suspected =>
        {
            SmtpFailure::TlsModeMismatch { port, server_expects_tls: false }
        }
        E::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired,
        )
        | E::AlertReceived(AlertDescription::ProtocolVersion) => {
            handshake("the server and Mailroom have no TLS version in common")
        }
        E::PeerIncompatible(_) | E::AlertReceived(AlertDescription::HandshakeFailure) => {
            handshake("the server and Mailroom have no cipher or key exchange in common")
        }
        E::AlertReceived(AlertDescription::CertificateRequired) => SmtpFailure::ClientCertificate { missing: true },
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate,
        ) => SmtpFailure::ClientCertificate { missing: false },
        E::AlertReceived(_) => handshake("the server ended the handshake with an alert"),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            handshake("the server's answer is not a valid TLS handshake")
        }
        E::NoCertificatesPresented => handshake("the server presented no certificate"),
        _ => handshake("the TLS connection could not be set up"),
    }
}

fn cert_problem(err: &CertificateError) -> CertProblem {
    use CertificateError as C;
    match err {
        C::UnknownIssuer => CertProblem::UnknownIssuer,
        C::Expired | C::ExpiredContext { .. } => CertProblem::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => CertProblem::NotValidYet,
        C::NotValidForName | C::NotValidForNameContext { .. } => CertProblem::WrongName,
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => CertProblem::NotForServers,
        C::Revoked => CertProblem::Revoked,
        C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => CertProblem::BadSignature,
        C::BadEncoding => CertProblem::Malformed,
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => CertProblem::CaUsedAsLeaf,
            Some(webpki::Error::EndEntityUsedAsCa | webpki::Error::UnknownIssuer) => CertProblem::UnknownIssuer,
            Some(webpki::Error::CertNotValidForName(_)) => CertProblem::WrongName,
            Some(webpki::Error::CertExpired { .. }) => CertProblem::Expired,
            Some(webpki::Error::BadDer | webpki::Error::BadDerTime) => CertProblem::Malformed,
            _ => CertProblem::Unsupported,
        },
        _ => CertProblem::Unsupported,
    }
}

pub fn classify_response(response: &Response, step: Step) -> SmtpFailure {
    let code: u16 = response.code().to_string().parse().unwrap_or(0);
    classify_code(code, excerpt(&response.message().collect::<Vec<_>>().join(" ")), step)
}

/// A reply code at the step it answered. 421 anywhere is the server closing; otherwise the step
/// says whose problem it is.
fn classify_code(code: u16, text: String, step: Step) -> SmtpFailure {
    match (code, step) {
        (421, _) => SmtpFailure::ServiceUnavailable { code, text },
        (_, Step::Auth) => SmtpFailure::AuthRejected { code, text },
        (_, Step::MailFrom) => SmtpFailure::SenderRejected { code, text },
        (_, Step::RcptTo) => SmtpFailure::RecipientRejected { code, text },
        _ => SmtpFailure::Rejected { step, code, text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_short_printable_and_single_line() {
        assert_eq!(excerpt("250 ok"), "250 ok");
        assert_eq!(
            excerpt("HTTP/1.1 400 Bad Request\r\nServer: x\r\n\r\n\u{0}\u{7}<html>"),
            "HTTP/1.1 400 Bad Request Server: x <html>"
        );
        let long = "x".repeat(10_000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert!(!excerpt("a\u{1b}[31mred").contains('\u{1b}'));
    }

    #[test]
    fn certificate_errors_are_read_by_type() {
        let ca_as_leaf = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(webpki::Error::CaUsedAsEndEntity),
        )));
        let failure = classify_tls(&ca_as_leaf, false, 465);
        assert_eq!(failure, SmtpFailure::InvalidCertificate { problem: CertProblem::CaUsedAsLeaf });
        assert_eq!(failure.to_string(), "Invalid certificate: the server presents a CA certificate as its own");
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, ca_as_leaf);
        assert!(find::<rustls::Error>(&wrapped).is_some(), "found inside an io::Error");

        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(classify_tls(&unknown, false, 587).hint().contains("MAILROOM_SMTP_CA_FILE"));
        let not_tls = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(
            classify_tls(&not_tls, true, 25),
            SmtpFailure::TlsModeMismatch { port: 25, server_expects_tls: false }
        );
    }
}
