//! A message to send, as lettre builds it.

use crate::mail::SmtpFailure;
use lettre::message::{Mailbox, Message, MultiPart, header::ContentType};

/// A message to send: plain text and an optional HTML part.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    pub from: Mailbox,
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Kept from the outbox so a retried message keeps its Message-ID; generated when `None`.
    pub message_id: Option<String>,
}

impl OutgoingMessage {
    pub fn build(&self) -> Result<Message, SmtpFailure> {
        let builder = Message::builder()
            .from(self.from.clone())
            .to(self.to.clone())
            .subject(self.subject.clone())
            .message_id(Some(self.message_id.clone().unwrap_or_else(new_message_id)));
        let built = match &self.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(self.text.clone(), html.clone())),
            None => builder.header(ContentType::TEXT_PLAIN).body(self.text.clone()),
        };
        built.map_err(|err| SmtpFailure::BadMessage { detail: format!("cannot build the message: {err}") })
    }
}

/// A globally unique Message-ID: 128 random bits at a name of our own.
pub fn new_message_id() -> String {
    format!("<{}@mailroom.localhost>", crate::shared::token::random_token(16))
}
