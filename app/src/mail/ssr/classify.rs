//! lettre errors → [`SmtpFailure`], using the step where they happened.

use super::{SmtpTarget, Step};
use crate::{mail::SmtpFailure, smtp_settings::types::TlsMode};
use lettre::transport::smtp::{Error, response::Response};
use std::error::Error as _;

fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn io_kind(err: &Error) -> Option<std::io::ErrorKind> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// The reply text lettre puts after "(code): ".
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
    let text = chain(err);
    let lower = text.to_lowercase();
    let implicit = target.tls.enabled && target.tls.mode == TlsMode::Implicit;
    if lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no address")
    {
        return SmtpFailure::Dns { host: target.host.to_string() };
    }
    match io_kind(err) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            return SmtpFailure::ConnectionRefused { host: target.host.to_string(), port: target.port };
        }
        Some(std::io::ErrorKind::TimedOut) => return SmtpFailure::Timeout { step: Step::Connect, secs },
        _ => {}
    }
    if lower.contains("invalid peer certificate") || lower.contains("certificate") && lower.contains("invalid") {
        return SmtpFailure::InvalidCertificate { detail: excerpt(&text) };
    }
    if implicit
        && step == Step::TlsHandshake
        && (lower.contains("corrupt message")
            || lower.contains("invalidcontenttype")
            || lower.contains("invalid content type"))
    {
        return SmtpFailure::TlsModeMismatch { port: target.port, server_expects_tls: false };
    }
    if err.is_tls() || lower.contains("tls") || lower.contains("handshake") || lower.contains("alert") {
        return SmtpFailure::TlsHandshake { detail: excerpt(&text) };
    }
    if lower.contains("no compatible authentication mechanism") {
        return SmtpFailure::NoCommonAuthMechanism { offered: String::new() };
    }
    if err.is_timeout() {
        return SmtpFailure::Timeout { step, secs };
    }
    if matches!(
        io_kind(err),
        Some(
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        )
    ) || lower.contains("incomplete response")
        || lower.contains("connection closed")
        || lower.contains("eof")
    {
        return SmtpFailure::ConnectionLost { step };
    }
    SmtpFailure::Other { detail: excerpt(&text) }
}

pub fn classify_response(response: &Response, step: Step) -> SmtpFailure {
    let code: u16 = response.code().to_string().parse().unwrap_or(0);
    classify_code(code, excerpt(&response.message().collect::<Vec<_>>().join(" ")), step)
}

fn classify_code(code: u16, text: String, step: Step) -> SmtpFailure {
    // The pooled transport reports no step: read the enhanced status code (RFC 3463) and text.
    let lower = text.to_lowercase();
    let step = match step {
        Step::Data if (500..600).contains(&code) && (text.starts_with("5.1.1") || lower.contains("recipient")) => {
            Step::RcptTo
        }
        Step::Data if (500..600).contains(&code) && (text.starts_with("5.1.7") || lower.contains("sender")) => {
            Step::MailFrom
        }
        other => other,
    };
    match (code, step) {
        (421, _) => SmtpFailure::ServiceUnavailable { code, text },
        (500..=599, Step::Auth) => SmtpFailure::AuthRejected { code, text },
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
}
