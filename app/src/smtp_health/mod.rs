//! SMTP health: when sending is broken, every admin sees it — a warning on the SMTP page and an
//! icon beside "SMTP" in the sidebar — rendered on the server and pushed live to every open
//! admin page, from every server node.

#[cfg(feature = "hydrate")]
mod live;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod status;

pub use status::{CertNotice, NodeStatus, SmtpHealth, StatusSource};

use crate::{
    i18n::{t_string, td_string, use_i18n},
    language::format_time,
};
use leptos::prelude::*;

/// The health an admin page shows; updated live.
#[derive(Clone, Copy)]
pub struct HealthSignal(pub RwSignal<SmtpHealth>);

pub fn use_health() -> Option<RwSignal<SmtpHealth>> {
    use_context::<HealthSignal>().map(|h| h.0)
}

/// Starts the live subscription for this page (browser only); closed when the page goes.
pub fn subscribe_live(health: RwSignal<SmtpHealth>) {
    #[cfg(feature = "hydrate")]
    live::subscribe(health);
    #[cfg(not(feature = "hydrate"))]
    let _ = health;
}

/// The icon beside "SMTP" in the sidebar.
#[component]
pub fn SidebarWarning() -> impl IntoView {
    let health = use_health();
    let i18n = use_i18n();
    move || {
        let failing = health.map(|h| !h.get().is_valid).unwrap_or(false);
        failing.then(|| {
            let name = move || t_string!(i18n, shell.smtp_has_errors);
            view! { <span class="warn-icon" role="img" aria-label=name title=name>"⚠"</span> }
        })
    }
}

/// The warning on the SMTP page.
#[component]
pub fn HealthBanner() -> impl IntoView {
    let health = use_health();
    let i18n = use_i18n();
    let stale = move || {
        let health = health?.get();
        let locale = i18n.get_locale();
        let nodes: Vec<String> = health
            .stale_nodes()
            .map(|n| {
                td_string!(locale, health.stale_node, node = &n.node, when = format_time(locale, n.checked_at))
                    .to_string()
            })
            .collect();
        (!nodes.is_empty()).then(|| {
            view! { <p class="note stale-nodes">{td_string!(locale, health.stale, nodes = nodes.join(", ")).to_string()}</p> }
        })
    };
    let banner = move || {
        let health = health?.get();
        let node = health.failing()?.clone();
        let locale = i18n.get_locale();
        let (message, hint) = node.describe(locale);
        let (source, when) = (node.source.name(locale), format_time(locale, node.checked_at));
        let seen = if health.node_count > 1 {
            td_string!(locale, health.seen_by_on_node, source = source, when = when, node = &node.node).to_string()
        } else {
            td_string!(locale, health.seen_by, source = source, when = when).to_string()
        };
        Some(view! {
            <div role="alert" class="alert warning smtp-alert">
                <p class="title">{td_string!(locale, health.failing)}" "{message}</p>
                <p class="hint">{hint}</p>
                <p class="meta">{seen}</p>
            </div>
        })
    };
    let certificates = move || {
        let health = health?.get();
        let locale = i18n.get_locale();
        let notices: Vec<_> = health
            .certificates
            .iter()
            .map(|notice| {
                let class = if notice.expired { "alert warning cert-alert" } else { "alert notice cert-alert" };
                let title = if notice.expired {
                    td_string!(locale, health.failing)
                } else {
                    td_string!(locale, health.expiring)
                };
                view! {
                    <div role="alert" class=class>
                        <p class="title">{format!("{title} {}.", notice.message(locale))}</p>
                        <p class="hint">{notice.hint(locale)}</p>
                    </div>
                }
            })
            .collect();
        (!notices.is_empty()).then_some(notices)
    };
    view! { {banner} {certificates} {stale} }
}
