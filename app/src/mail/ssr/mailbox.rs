//! The local mailbox: the default service when no relay is configured. Mail is stored in
//! SurrealDB and read under Admin > Platform > Mailbox; it never leaves the instance.

use super::OutgoingMessage;
use crate::{db::now_ms, mail::SmtpFailure, state::Db};
use lettre::Message;

pub async fn store(db: &Db, message: &OutgoingMessage, built: &Message) -> Result<(), SmtpFailure> {
    let message_id = built
        .headers()
        .get_raw("Message-ID")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("<{}@mailroom>", crate::auth::ssr::random_token(16)));
    db.query(
        "CREATE mailbox CONTENT { message_id: $message_id, from_addr: $from, to_addr: $to, subject: $subject,
             text: $text, html: $html, received_at: $now }",
    )
    .bind(("message_id", message_id))
    .bind(("from", message.from.to_string()))
    .bind(("to", message.to.to_string()))
    .bind(("subject", message.subject.clone()))
    .bind(("text", message.text.clone()))
    .bind(("html", message.html.clone()))
    .bind(("now", now_ms()))
    .await
    .and_then(|r| r.check())
    .map_err(|err| {
        tracing::error!(error = %err, "cannot store mail in the local mailbox");
        SmtpFailure::Other { detail: "the local mailbox could not store the message".into() }
    })?;
    Ok(())
}
