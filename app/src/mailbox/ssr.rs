//! The mailbox as stored: the list, and one message opened for the admin reading it.

use super::{MailboxEntry, MailboxMessage, addressed_to, mask_links};
use crate::{
    auth::ssr::require_admin,
    error::{AppError, ssr::bounded},
    mail::ssr::mailbox::BODY_PURPOSE,
    shared::seal::decrypt,
    state::app_state,
};
use secrecy::ExposeSecret;
use surrealdb::types::RecordId;

pub async fn list() -> Result<Vec<MailboxEntry>, AppError> {
    require_admin().await?;
    let state = app_state()?;
    let mut response = state
        .db()
        .query(
            "SELECT record::id(id) AS id, from_addr, to_addr, subject, received_at FROM mailbox
             ORDER BY received_at DESC LIMIT 200",
        )
        .await?;
    Ok(response.take::<Vec<MailboxEntry>>(0)?)
}

pub async fn read(id: String) -> Result<MailboxMessage, AppError> {
    bounded("Message id", &id, 64)?;
    let admin = require_admin().await?;
    let state = app_state()?;
    let mut response = state
        .db()
        .query(
            "SELECT record::id(id) AS id, message_id, from_addr, to_addr, subject, text, received_at
             FROM ONLY $id",
        )
        .bind(("id", RecordId::new("mailbox", id.as_str())))
        .await?;
    let mut message = response.take::<Option<MailboxMessage>>(0)?.ok_or_else(|| {
        AppError::NotFound(
            crate::i18n::td_string!(crate::language::ssr::request_locale(), invalid.no_such_message).to_owned(),
        )
    })?;
    let opened = decrypt(state.shared.secret_key.expose_secret(), BODY_PURPOSE, &message.text);
    message.text = match opened {
        Ok(text) if addressed_to(&message.to_addr, admin.email.as_str()) => text.expose_secret().to_owned(),
        Ok(text) => mask_links(text.expose_secret()),
        // Kept before bodies were sealed: shown, with its links masked.
        Err(_) => mask_links(&message.text),
    };
    Ok(message)
}
