//! Admin > Platform > Mailbox: the mail the default service kept on this instance.

use crate::{admin_shell::AdminFrame, error::AppError, smtp_settings::format_utc};
use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_params_map};
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct MailboxEntry {
    pub id: String,
    pub from_addr: String,
    pub to_addr: String,
    pub subject: String,
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct MailboxMessage {
    pub id: String,
    pub message_id: String,
    pub from_addr: String,
    pub to_addr: String,
    pub subject: String,
    pub text: String,
    pub received_at: i64,
}

#[server(endpoint = "mailbox_list")]
pub async fn list_mailbox() -> Result<Vec<MailboxEntry>, AppError> {
    crate::error::ssr::respond(
        async {
            crate::auth::ssr::require_admin().await?;
            let state = crate::state::app_state()?;
            let mut response = state
                .db()
                .query(
                    "SELECT record::id(id) AS id, from_addr, to_addr, subject, received_at FROM mailbox
                     ORDER BY received_at DESC LIMIT 200",
                )
                .await?;
            Ok(response.take::<Vec<MailboxEntry>>(0)?)
        }
        .await,
    )
}

#[server(endpoint = "mailbox_read")]
pub async fn read_mailbox(id: String) -> Result<MailboxMessage, AppError> {
    crate::error::ssr::respond(
        async {
            crate::auth::ssr::require_admin().await?;
            let state = crate::state::app_state()?;
            let mut response = state
                .db()
                .query(
                    "SELECT record::id(id) AS id, message_id, from_addr, to_addr, subject, text, received_at
                     FROM ONLY $id",
                )
                .bind(("id", surrealdb::types::RecordId::new("mailbox", id.as_str())))
                .await?;
            response.take::<Option<MailboxMessage>>(0)?.ok_or_else(|| AppError::NotFound("No such message.".into()))
        }
        .await,
    )
}

#[component]
pub fn MailboxPage() -> impl IntoView {
    let messages = Resource::new(|| (), |_| list_mailbox());
    view! {
        <AdminFrame>
            <h1>"Mailbox"</h1>
            <p class="note">"Mail sent by the default service when no relay is configured. It does not leave the instance."</p>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match messages.await {
                        Ok(list) if list.is_empty() => view! { <p>"The mailbox is empty."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="list">
                                <thead><tr><th>"From"</th><th>"To"</th><th>"Subject"</th><th>"Date"</th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|m| view! {
                                        <tr>
                                            <td>{m.from_addr}</td>
                                            <td>{m.to_addr}</td>
                                            <td><A href=format!("/admin/mailbox/{}", m.id)>{m.subject}</A></td>
                                            <td>{format_utc(m.received_at)}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <p class="alert error">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </AdminFrame>
    }
}

#[component]
pub fn MailboxMessagePage() -> impl IntoView {
    let params = use_params_map();
    let message = Resource::new(move || params.read().get("id").unwrap_or_default(), read_mailbox);
    view! {
        <AdminFrame>
            <p><A href="/admin/mailbox">"← Mailbox"</A></p>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match message.await {
                        Ok(m) => view! {
                            <article class="mail">
                                <h1>{m.subject}</h1>
                                <dl>
                                    <dt>"From"</dt><dd>{m.from_addr}</dd>
                                    <dt>"To"</dt><dd>{m.to_addr}</dd>
                                    <dt>"Date"</dt><dd>{format_utc(m.received_at)}</dd>
                                    <dt>"Message-ID"</dt><dd>{m.message_id}</dd>
                                </dl>
                                <pre class="body">{m.text}</pre>
                            </article>
                        }.into_any(),
                        Err(err) => view! { <p class="alert error">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </AdminFrame>
    }
}
