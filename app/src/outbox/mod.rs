//! The outbox: every email the instance sends — invitations, password resets, admin notices,
//! test emails — durable in SurrealDB, delivered by one worker per node, retried and visible
//! under Admin > Platform > Outbox. Delivery is at-least-once.

#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
pub mod templates;

use crate::{
    admin_shell::AdminFrame,
    error::AppError,
    shared::{alert::ErrorAlert, email::EmailAddress, poll::use_polling, table::AdminTable, time::format_utc},
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

/// Where a message is in its delivery: the `status` column, stored as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged, rename_all = "snake_case"))]
pub enum OutboxStatus {
    Queued,
    Sending,
    Sent,
    Retrying,
    Held,
    Failed,
}

impl OutboxStatus {
    pub const ALL: [Self; 6] = [Self::Queued, Self::Sending, Self::Sent, Self::Retrying, Self::Held, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::Held => "held",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for OutboxStatus {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|status| status.as_str() == text).ok_or(())
    }
}

/// What the page knows of a message in each state. On the wire it is flattened into the entry,
/// `status` naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    Queued {
        next_attempt_at: i64,
    },
    Sending,
    Sent {
        sent_at: i64,
    },
    /// After a failure, or released untried when a node stopped (no error then).
    Retrying {
        next_attempt_at: i64,
        last_error: Option<String>,
        last_hint: Option<String>,
    },
    /// The queue is held by a configuration failure: why, and what to change.
    Held {
        last_error: String,
        last_hint: Option<String>,
    },
    Failed {
        last_error: String,
        last_hint: Option<String>,
    },
}

impl Delivery {
    pub fn status(&self) -> OutboxStatus {
        match self {
            Self::Queued { .. } => OutboxStatus::Queued,
            Self::Sending => OutboxStatus::Sending,
            Self::Sent { .. } => OutboxStatus::Sent,
            Self::Retrying { .. } => OutboxStatus::Retrying,
            Self::Held { .. } => OutboxStatus::Held,
            Self::Failed { .. } => OutboxStatus::Failed,
        }
    }

    /// When the worker tries the message next, while it waits for that.
    pub fn next_attempt_at(&self) -> Option<i64> {
        match self {
            Self::Queued { next_attempt_at } | Self::Retrying { next_attempt_at, .. } => Some(*next_attempt_at),
            _ => None,
        }
    }

    /// The latest failure and its hint, in the states that have one.
    pub fn last_error(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Self::Retrying { last_error: Some(last_error), last_hint, .. }
            | Self::Held { last_error, last_hint }
            | Self::Failed { last_error, last_hint } => Some((last_error, last_hint.as_deref())),
            _ => None,
        }
    }
}

/// One outbox message as the Outbox page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub id: String,
    pub kind: String,
    pub to_addr: EmailAddress,
    pub subject: String,
    pub attempts: i64,
    pub created_at: i64,
    #[serde(flatten)]
    pub delivery: Delivery,
}

#[server(endpoint = "outbox_list")]
pub async fn list_outbox(status: Option<OutboxStatus>) -> Result<Vec<OutboxEntry>, AppError> {
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
    let entries = Resource::new(move || (filter.get(), tick.get()), |(filter, _)| list_outbox(filter.parse().ok()));
    let retry = ServerAction::<RetryOutbox>::new();
    // The page follows the worker: it reloads the list every two seconds while open.
    use_polling(Duration::from_secs(2), move || tick.update(|t| *t += 1));
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
                    {OutboxStatus::ALL.map(|s| view! { <option value=s.as_str()>{s.as_str()}</option> }).collect_view()}
                </select>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Ok(list) if list.is_empty() => view! { <p>"No messages."</p> }.into_any(),
                        Ok(list) => view! {
                            <AdminTable variant="outbox"
                                headers=&["To", "Subject", "Status", "Attempts", "Last error", "Next attempt", ""]>
                                    {list.into_iter().map(|m| {
                                        let id = m.id.clone();
                                        let failed = matches!(m.delivery, Delivery::Failed { .. });
                                        let status = m.delivery.status().as_str();
                                        let (error, hint) = m.delivery.last_error().unwrap_or_default();
                                        let (error, hint) = (error.to_owned(), hint.map(|h| format!(" {h}")).unwrap_or_default());
                                        view! {
                                            <tr data-status=status>
                                                <td>{m.to_addr.to_string()}</td>
                                                <td>{m.subject}</td>
                                                <td><span class=format!("badge {status}")>{status}</span></td>
                                                <td>{m.attempts}</td>
                                                <td>{error}<span class="hint">{hint}</span></td>
                                                <td>{m.delivery.next_attempt_at().map(format_utc)}</td>
                                                <td>{failed.then(|| view! {
                                                    <button type="button" class="secondary"
                                                        on:click=move |_| { retry.dispatch(RetryOutbox { id: id.clone() }); }>
                                                        "Retry now"
                                                    </button>
                                                })}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                            </AdminTable>
                        }.into_any(),
                        Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                    }
                })}
            </Transition>
        </AdminFrame>
    }
}
