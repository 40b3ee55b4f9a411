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
    i18n::{t, td_string, use_i18n},
    language::{Locale, format_count, format_time},
    mail::SmtpFailure,
    shared::{alert::ErrorAlert, email::EmailAddress, poll::use_polling, table::AdminTable},
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

    /// The state as the Outbox page names it.
    pub fn name(self, locale: Locale) -> &'static str {
        match self {
            Self::Queued => td_string!(locale, outbox.queued),
            Self::Sending => td_string!(locale, outbox.sending),
            Self::Sent => td_string!(locale, outbox.sent),
            Self::Retrying => td_string!(locale, outbox.retrying),
            Self::Held => td_string!(locale, outbox.held),
            Self::Failed => td_string!(locale, outbox.failed),
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
    /// The latest failure itself (JSON), when it was recorded with one: the page words it in
    /// the reader's language; the English text in `delivery` stays for older rows and the API.
    #[serde(default)]
    pub failure: Option<String>,
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
    let i18n = use_i18n();
    view! {
        <AdminFrame>
            <h1>{t!(i18n, outbox.title)}</h1>
            <p class="note">{t!(i18n, outbox.intro)}</p>
            <div class="field inline">
                <label for="outbox-filter">{t!(i18n, common.status)}</label>
                <select id="outbox-filter" on:change=move |ev| filter.set(event_target_value(&ev))>
                    <option value="">{t!(i18n, outbox.all)}</option>
                    {OutboxStatus::ALL.map(|s| view! { <option value=s.as_str()>{move || s.name(i18n.get_locale())}</option> }).collect_view()}
                </select>
            </div>
            <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Ok(list) if list.is_empty() => view! { <p>{t!(i18n, outbox.empty)}</p> }.into_any(),
                        Ok(list) => view! {
                            <AdminTable variant="outbox"
                                headers=&[
                                    |l| td_string!(l, outbox.to),
                                    |l| td_string!(l, outbox.subject),
                                    |l| td_string!(l, common.status),
                                    |l| td_string!(l, outbox.attempts),
                                    |l| td_string!(l, outbox.last_error),
                                    |l| td_string!(l, outbox.next_attempt),
                                    |l| td_string!(l, outbox.actions),
                                ]>
                                    {list.into_iter().map(|m| {
                                        let id = m.id.clone();
                                        let failed = matches!(m.delivery, Delivery::Failed { .. });
                                        let state = m.delivery.status();
                                        let status = state.as_str();
                                        let next = m.delivery.next_attempt_at();
                                        let attempts = m.attempts;
                                        let (error, hint) = m.delivery.last_error().unwrap_or_default();
                                        let (error, hint) = (error.to_owned(), hint.unwrap_or_default().to_owned());
                                        let failure = m.failure.as_deref().and_then(|json| serde_json::from_str::<SmtpFailure>(json).ok());
                                        let worded = move || {
                                            let locale = i18n.get_locale();
                                            match &failure {
                                                Some(failure) => (failure.message_in(locale), format!(" {}", failure.hint_in(locale))),
                                                None if hint.is_empty() => (error.clone(), String::new()),
                                                None => (error.clone(), format!(" {hint}")),
                                            }
                                        };
                                        view! {
                                            <tr data-status=status>
                                                <td>{m.to_addr.to_string()}</td>
                                                <td>{m.subject}</td>
                                                <td><span class=format!("badge {status}")>{move || state.name(i18n.get_locale())}</span></td>
                                                <td>{move || format_count(i18n.get_locale(), attempts)}</td>
                                                <td>{let worded = worded.clone(); move || worded().0}<span class="hint">{move || worded().1}</span></td>
                                                <td>{move || next.map(|at| format_time(i18n.get_locale(), at))}</td>
                                                <td>{failed.then(|| view! {
                                                    <button type="button" class="secondary"
                                                        on:click=move |_| { retry.dispatch(RetryOutbox { id: id.clone() }); }>
                                                        {t!(i18n, outbox.retry)}
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
