//! Admin > Platform > Mailbox: the mail the default service kept on this instance.

#[cfg(feature = "ssr")]
pub mod ssr;

use crate::{
    admin_shell::AdminFrame,
    error::AppError,
    i18n::{t, td_string, use_i18n},
    language::format_time,
    shared::{alert::ErrorAlert, table::AdminTable},
};
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
    crate::error::ssr::respond(ssr::list().await)
}

/// One message. Its body is opened with the instance key; one-time links in it are shown only
/// to the admin it is addressed to (otherwise admin A could ask for B's reset and read B's link).
#[server(endpoint = "mailbox_read")]
pub async fn read_mailbox(id: String) -> Result<MailboxMessage, AppError> {
    crate::error::ssr::respond(ssr::read(id).await)
}

/// Whether a `To` value (`Name <address>` or `address`) is this email address.
pub fn addressed_to(to: &str, email: &str) -> bool {
    let address = to.rsplit_once('<').map_or(to, |(_, rest)| rest.trim_end_matches('>'));
    address.trim().eq_ignore_ascii_case(email.trim())
}

/// One-time link tokens (`token=` and 32 or more hex digits) replaced by a notice.
pub fn mask_links(text: &str) -> String {
    const MARK: &str = "token=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let (before, after) = rest.split_at(at + MARK.len());
        out.push_str(before);
        let run = after.chars().take_while(char::is_ascii_hexdigit).count();
        if run >= 32 {
            out.push_str("[hidden: only the recipient sees this link]");
        } else {
            out.push_str(&after[..run]);
        }
        rest = &after[run..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_masked_and_the_rest_kept() {
        let token = "ab".repeat(32);
        let text = format!("Hi,\nhttp://x/set-password?token={token}\nbye token=12 end");
        let masked = mask_links(&text);
        assert!(!masked.contains(&token), "{masked}");
        assert!(masked.contains("set-password?token=[hidden: only the recipient sees this link]"));
        assert!(masked.ends_with("bye token=12 end"));
    }

    #[test]
    fn the_recipient_is_read_from_either_form() {
        assert!(addressed_to("Ann Admin <ann@example.com>", "ANN@example.com"));
        assert!(addressed_to("ann@example.com", "ann@example.com"));
        assert!(!addressed_to("Bob <bob@example.com>", "ann@example.com"));
        assert!(!addressed_to("Eve <eve@example.com> ann@example.com", "ann@example.com"));
    }
}

#[component]
pub fn MailboxPage() -> impl IntoView {
    let messages = Resource::new(|| (), |_| list_mailbox());
    let i18n = use_i18n();
    view! {
        <AdminFrame>
            <h1>{t!(i18n, mailbox.title)}</h1>
            <p class="note">{t!(i18n, mailbox.intro)}</p>
            <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || Suspend::new(async move {
                    match messages.await {
                        Ok(list) if list.is_empty() => view! { <p>{t!(i18n, mailbox.empty)}</p> }.into_any(),
                        Ok(list) => view! {
                            <AdminTable headers=&[
                                |l| td_string!(l, mailbox.from),
                                |l| td_string!(l, mailbox.to),
                                |l| td_string!(l, mailbox.subject),
                                |l| td_string!(l, mailbox.date),
                            ]>
                                {list.into_iter().map(|m| {
                                    let at = m.received_at;
                                    view! {
                                    <tr>
                                        <td>{m.from_addr}</td>
                                        <td>{m.to_addr}</td>
                                        <td><A href=format!("/admin/mailbox/{}", m.id)>{m.subject}</A></td>
                                        <td>{move || format_time(i18n.get_locale(), at)}</td>
                                    </tr>
                                }}).collect_view()}
                            </AdminTable>
                        }.into_any(),
                        Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
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
    let i18n = use_i18n();
    view! {
        <AdminFrame>
            <p><A href="/admin/mailbox">{t!(i18n, mailbox.back)}</A></p>
            <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || Suspend::new(async move {
                    match message.await {
                        Ok(m) => {
                            let at = m.received_at;
                            view! {
                            <article class="mail">
                                <h1>{m.subject}</h1>
                                <dl>
                                    <dt>{t!(i18n, mailbox.from)}</dt><dd>{m.from_addr}</dd>
                                    <dt>{t!(i18n, mailbox.to)}</dt><dd>{m.to_addr}</dd>
                                    <dt>{t!(i18n, mailbox.date)}</dt><dd>{move || format_time(i18n.get_locale(), at)}</dd>
                                    <dt>{t!(i18n, mailbox.message_id)}</dt><dd>{m.message_id}</dd>
                                </dl>
                                <pre class="body">{m.text}</pre>
                            </article>
                        }.into_any()
                        }
                        Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                    }
                })}
            </Suspense>
        </AdminFrame>
    }
}
