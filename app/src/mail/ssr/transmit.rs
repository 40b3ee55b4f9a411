//! Sending one message on an open connection: MAIL, RCPT and DATA, pipelined when the server
//! allows.

use super::{Connection, OutgoingMessage, Progress, SmtpTarget, check_positive, mailer, step};
use crate::mail::{SmtpFailure, Step};
use lettre::{
    Address,
    transport::smtp::{
        client::AsyncSmtpConnection,
        commands::{Data, Mail, Rcpt},
        response::Response,
    },
};
use std::{sync::atomic::Ordering, time::Duration};

/// Sends one message on an open connection: MAIL, RCPT, DATA, each reply classified at its
/// step. With PIPELINING the three commands go out in one write and their replies are read in
/// order, so a message costs two round trips instead of four. `progress` tells a caller whether
/// the final dot may have gone out.
pub async fn transmit(
    conn: &mut Connection,
    message: &OutgoingMessage,
    target: &SmtpTarget,
    limit: Duration,
    progress: &Progress,
) -> Result<(), SmtpFailure> {
    let built = message.build()?;
    let envelope = built.envelope().clone();
    let bytes = built.formatted();
    let from: Option<Address> = envelope.from().cloned();
    let mail = Mail::new(from, vec![]);
    let rcpts: Vec<Rcpt> = envelope.to().iter().map(|to| Rcpt::new(to.clone(), vec![])).collect();
    let smtp = &mut conn.smtp;
    if conn.pipelining {
        let commands: String = std::iter::once(mail.to_string())
            .chain(rcpts.iter().map(ToString::to_string))
            .chain(std::iter::once(Data.to_string()))
            .collect();
        pipelined(smtp, commands, rcpts.len(), target, limit, progress).await?;
    } else {
        check_positive(step(progress, Step::MailFrom, limit, smtp.command(mail), target).await?, Step::MailFrom)?;
        for rcpt in rcpts {
            check_positive(step(progress, Step::RcptTo, limit, smtp.command(rcpt), target).await?, Step::RcptTo)?;
        }
        check_positive(step(progress, Step::Data, limit, smtp.command(Data), target).await?, Step::Data)?;
    }
    progress.dot_maybe_written.store(true, Ordering::Relaxed);
    let response = match data_block(&bytes) {
        Some(block) => step(progress, Step::Data, limit, smtp.command(block), target).await?,
        None => step(progress, Step::Data, limit, smtp.message(&bytes), target).await?,
    };
    check_positive(response, Step::Data)
}

/// MAIL, the RCPTs and DATA written at once (RFC 2920), then every reply read, in order, so
/// the connection stays in step whatever the server refused. The first refusal is the answer.
/// A server that accepted DATA after refusing every recipient gets the lone dot it then
/// expects (section 3.1). Every message here has one recipient, so a refusal means no valid
/// recipient and the dot delivers nothing.
async fn pipelined(
    smtp: &mut AsyncSmtpConnection,
    commands: String,
    recipients: usize,
    target: &SmtpTarget,
    limit: Duration,
    progress: &Progress,
) -> Result<(), SmtpFailure> {
    let mut first_refusal = None;
    let mut take = |reply: Result<Response, SmtpFailure>, step: Step| -> Result<bool, SmtpFailure> {
        match reply.and_then(|response| check_positive(response, step)) {
            Ok(()) => Ok(true),
            Err(failure) if mailer::is_reply(&failure) => {
                first_refusal.get_or_insert(failure);
                Ok(false)
            }
            // The connection itself failed: nothing more to read. A refusal read before it
            // (421, closing) says more than the closed connection after it.
            Err(failure) => Err(first_refusal.take().unwrap_or(failure)),
        }
    };
    take(step(progress, Step::MailFrom, limit, smtp.command(commands), target).await, Step::MailFrom)?;
    for _ in 0..recipients {
        take(step(progress, Step::RcptTo, limit, smtp.read_response(), target).await, Step::RcptTo)?;
    }
    let data_accepted = take(step(progress, Step::Data, limit, smtp.read_response(), target).await, Step::Data)?;
    match first_refusal {
        None => Ok(()),
        Some(refusal) => {
            if data_accepted {
                let _ = step(progress, Step::Data, limit, smtp.command(".\r\n"), target).await;
            }
            Err(refusal)
        }
    }
}

/// The message dot-stuffed and terminated, as one write. lettre's `message()` writes the final
/// `.` line separately, and that small second segment waits out the peer's delayed ACK
/// (Nagle): about 40 ms per message on Linux. TCP_NODELAY cures that too, and a plain
/// connection's socket is our own with it set, but lettre opens the TLS ones (implicit or
/// STARTTLS) itself and offers no way to set it, so one write it is. `None` for a body that is
/// not UTF-8.
fn data_block(message: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::data_block;

    #[test]
    fn the_data_block_is_dot_stuffed_and_terminated_once() {
        assert_eq!(data_block(b"a\r\n.b\r\n..\r\nc").unwrap(), "a\r\n..b\r\n...\r\nc\r\n.\r\n");
        assert_eq!(data_block(b".start\r\n").unwrap(), "..start\r\n.\r\n");
        assert!(data_block(&[0xff, 0xfe]).is_none());
    }
}
