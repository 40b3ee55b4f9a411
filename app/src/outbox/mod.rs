//! The outbox: every email the instance sends — invitations, password resets, admin notices,
//! test emails — durable in SurrealDB, delivered by one worker per node, retried and visible
//! under Admin > Platform > Outbox. Delivery is at-least-once.

#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
pub mod templates;

use crate::{admin_shell::AdminFrame, error::AppError, smtp_settings::format_utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

pub const STATUSES: [&str; 6] = ["queued", "sending", "sent", "retrying", "held", "failed"];

/// One outbox message as the Outbox page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct OutboxEntry {
    pub id: String,
    pub kind: String,
    pub to_addr: String,
    pub subject: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub last_hint: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

#[server(endpoint = "outbox_list")]
pub async fn list_outbox(status: Option<String>) -> Result<Vec<OutboxEntry>, AppError> {
    crate::error::ssr::respond(ssr::list(status).await)
}

#[server(endpoint = "outbox_retry")]
pub async fn retry_outbox(id: String) -> Result<(), AppError> {
    crate::error::ssr::respond(ssr::retry_now(id).await)
}

#[component]
pub fn OutboxPage() -> impl IntoView {
    let filter = RwSignal::new(String::new());
    let tick = RwSignal::new(0u64);
    let entries = Resource::new(
        move || (filter.get(), tick.get()),
        |(filter, _)| list_outbox((!filter.is_empty()).then_some(filter)),
    );
    let retry = ServerAction::<RetryOutbox>::new();
    // The page follows the worker: it reloads the list every two seconds while open.
    Effect::new(move |_| {
        if let Ok(handle) =
            set_interval_with_handle(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(2))
        {
            on_cleanup(move || handle.clear());
        }
    });
    Effect::new(move |_| {
        if retry.version().get() > 0 {
            tick.update(|t| *t += 1);
        }
    });
    view! {
        <AdminFrame>
            <h1>"Outbox"</h1>
            <p class="note">"Every email the instance sends. Failed mail stays here; nothing is deleted."</p>
            <div class="field inline">
                <label for="outbox-filter">"Status"</label>
                <select id="outbox-filter" on:change=move |ev| filter.set(event_target_value(&ev))>
                    <option value="">"All"</option>
                    {crate::outbox::STATUSES.map(|s| view! { <option value=s>{s}</option> }).collect_view()}
                </select>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Ok(list) if list.is_empty() => view! { <p>"No messages."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="list outbox">
                                <thead><tr>
                                    <th>"To"</th><th>"Subject"</th><th>"Status"</th><th>"Attempts"</th>
                                    <th>"Last error"</th><th>"Next attempt"</th><th></th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|m| {
                                        let id = m.id.clone();
                                        let failed = m.status == "failed";
                                        let waiting = matches!(m.status.as_str(), "queued" | "retrying");
                                        view! {
                                            <tr data-status=m.status.clone()>
                                                <td>{m.to_addr}</td>
                                                <td>{m.subject}</td>
                                                <td><span class=format!("badge {}", m.status)>{m.status.clone()}</span></td>
                                                <td>{m.attempts}</td>
                                                <td>
                                                    {m.last_error.unwrap_or_default()}
                                                    <span class="hint">{m.last_hint.map(|h| format!(" {h}")).unwrap_or_default()}</span>
                                                </td>
                                                <td>{waiting.then(|| format_utc(m.next_attempt_at))}</td>
                                                <td>{failed.then(|| view! {
                                                    <button type="button" class="secondary"
                                                        on:click=move |_| { retry.dispatch(RetryOutbox { id: id.clone() }); }>
                                                        "Retry now"
                                                    </button>
                                                })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <p class="alert error">{err.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </AdminFrame>
    }
}
