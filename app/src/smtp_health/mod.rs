//! SMTP health: when sending is broken, every admin sees it — a warning on the SMTP page and an
//! icon beside "SMTP" in the sidebar — rendered on the server and pushed live to every open
//! admin page, from every server node.

#[cfg(feature = "hydrate")]
mod live;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod status;

pub use status::{CertNotice, NodeStatus, SmtpHealth};

use crate::shared::time::format_utc;
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
    move || {
        let failing = health.map(|h| !h.get().is_valid).unwrap_or(false);
        failing.then(|| {
            view! { <span class="warn-icon" role="img" aria-label="SMTP has errors" title="SMTP has errors">"⚠"</span> }
        })
    }
}

/// The warning on the SMTP page.
#[component]
pub fn HealthBanner() -> impl IntoView {
    let health = use_health();
    let stale = move || {
        let health = health?.get();
        let nodes: Vec<String> =
            health.stale_nodes().map(|n| format!("{} (last status {})", n.node, format_utc(n.checked_at))).collect();
        (!nodes.is_empty()).then(|| {
            view! {
                <p class="note stale-nodes">
                    "No heartbeat from " {nodes.join(", ")} ": shown as stale; their statuses no longer count."
                </p>
            }
        })
    };
    let banner = move || {
        let health = health?.get();
        let node = health.failing()?.clone();
        let many = health.node_count > 1;
        Some(view! {
            <div role="alert" class="alert warning smtp-alert">
                <p class="title">"SMTP is failing: " {node.message.clone().unwrap_or_default()}</p>
                <p class="hint">{node.hint.clone().unwrap_or_default()}</p>
                <p class="meta">
                    "Seen by the " {node.source.clone()} " at " {format_utc(node.checked_at)}
                    {many.then(|| format!(" on node {}", node.node))} "."
                </p>
            </div>
        })
    };
    let certificates = move || {
        let health = health?.get();
        let notices: Vec<_> = health
            .certificates
            .iter()
            .map(|notice| {
                let class = if notice.expired { "alert warning cert-alert" } else { "alert notice cert-alert" };
                let title = if notice.expired { "SMTP is failing: " } else { "Certificate expiring soon: " };
                view! {
                    <div role="alert" class=class>
                        <p class="title">{format!("{title}{}.", notice.message())}</p>
                        <p class="hint">{notice.hint()}</p>
                    </div>
                }
            })
            .collect();
        (!notices.is_empty()).then_some(notices)
    };
    view! { {banner} {certificates} {stale} }
}
