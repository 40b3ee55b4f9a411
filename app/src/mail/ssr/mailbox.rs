//! The local mailbox: the default service when no relay is configured. Mail is stored in
//! SurrealDB, its bodies sealed with the instance key (they hold one-time links), and read under
//! Admin > Platform > Mailbox; it never leaves the instance.

use super::OutgoingMessage;
use crate::{db::now_ms, mail::SmtpFailure, state::Db};
use lettre::Message;

/// What the sealed bodies are bound to: a mailbox body cannot be opened as anything else.
pub const BODY_PURPOSE: &str = "mailbox.body";

pub async fn store(db: &Db, key: &[u8; 32], message: &OutgoingMessage, built: &Message) -> Result<(), SmtpFailure> {
    use crate::shared::seal::encrypt;
    let message_id = built
        .headers()
        .get_raw("Message-ID")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("<{}@mailroom>", crate::shared::token::random_token(16)));
    db.query(
        "CREATE mailbox CONTENT { message_id: $message_id, from_addr: $from, to_addr: $to, subject: $subject,
             text: $text, html: $html, received_at: $now }",
    )
    .bind(("message_id", message_id))
    .bind(("from", message.from.to_string()))
    .bind(("to", message.to.to_string()))
    .bind(("subject", message.subject.clone()))
    .bind(("text", encrypt(key, BODY_PURPOSE, &message.text)))
    .bind(("html", message.html.as_deref().map(|html| encrypt(key, BODY_PURPOSE, html))))
    .bind(("now", now_ms()))
    .await
    .and_then(|r| r.check())
    .map_err(|err| {
        tracing::error!(error = %err, "cannot store mail in the local mailbox");
        SmtpFailure::Local { detail: "the local mailbox could not store the message".into() }
    })?;
    Ok(())
}
