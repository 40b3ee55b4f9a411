//! SMTP health: when sending is broken, every admin sees it — a warning on the SMTP page and an
//! icon beside "SMTP" in the sidebar — rendered on the server and pushed live to every open
//! admin page, from every server node.

#[cfg(feature = "hydrate")]
mod live;
#[cfg(feature = "ssr")]
pub mod ssr;

use crate::smtp_settings::{
    certs::{CertRole, CertSummary, Expiry},
    format_utc,
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

/// The latest check or delivery seen by one server node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct NodeStatus {
    pub node: String,
    pub is_valid: bool,
    pub message: Option<String>,
    pub hint: Option<String>,
    /// "start-up check", "post-save check" or "delivery".
    pub source: String,
    pub checked_at: i64,
    pub settings_version: i64,
    /// The node's last heartbeat (ms, database clock).
    #[serde(default)]
    pub heartbeat_at: Option<i64>,
    /// The node has not written a heartbeat for longer than the configured limit: it is
    /// probably gone, and its status no longer counts.
    #[serde(default)]
    pub stale: bool,
}

/// What every admin sees; also the answer of `GET /api/smtp_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpHealth {
    pub is_valid: bool,
    pub node_count: usize,
    pub nodes: Vec<NodeStatus>,
    /// Saved certificates that expire within 14 days (a warning) or have expired (an error).
    #[serde(default)]
    pub certificates: Vec<CertNotice>,
}

/// A saved certificate near or past its end, as of when the health was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertNotice {
    pub certificate: CertSummary,
    pub expired: bool,
    pub days_left: i64,
}

impl CertNotice {
    pub fn message(&self) -> String {
        let c = &self.certificate;
        let when = format_utc(c.not_after);
        if self.expired {
            format!("The {} {} expired on {when}", c.role, c.subject)
        } else {
            let days = match self.days_left {
                0 => "less than a day".to_owned(),
                1 => "1 day".to_owned(),
                n => format!("{n} days"),
            };
            format!("The {} {} expires in {days} ({when})", c.role, c.subject)
        }
    }

    pub fn hint(&self) -> String {
        if self.certificate.role == CertRole::Client.noun() {
            "Ask the relay's operator for a renewed client certificate, then paste it and its key into Client certificate (PEM) and Client key (PEM) and save.".into()
        } else {
            "Paste the renewed CA certificate into Trusted CA certificates (PEM) and save.".into()
        }
    }
}

impl SmtpHealth {
    /// Only statuses of live nodes about the newest saved settings count: an older failure, or
    /// one of a node that stopped reporting, is stale.
    pub fn from_nodes(nodes: Vec<NodeStatus>, certificates: &[CertSummary], now_ms: i64) -> Self {
        let certificates = certificates
            .iter()
            .filter_map(|c| match c.expiry(now_ms) {
                Expiry::Valid => None,
                Expiry::Soon { days } => Some(CertNotice { certificate: c.clone(), expired: false, days_left: days }),
                Expiry::Expired => Some(CertNotice { certificate: c.clone(), expired: true, days_left: 0 }),
            })
            .collect();
        let mut health = Self { is_valid: true, node_count: nodes.len(), nodes, certificates };
        health.is_valid = health.failing().is_none() && !health.certificates.iter().any(|c| c.expired);
        health
    }

    fn current(&self) -> impl Iterator<Item = &NodeStatus> {
        let newest = self.nodes.iter().filter(|n| !n.stale).map(|n| n.settings_version).max().unwrap_or_default();
        self.nodes.iter().filter(move |n| !n.stale && n.settings_version == newest)
    }

    /// The most recent failure about the newest settings, from a live node.
    pub fn failing(&self) -> Option<&NodeStatus> {
        self.current().filter(|n| !n.is_valid).max_by_key(|n| n.checked_at)
    }

    /// Nodes that stopped reporting.
    pub fn stale_nodes(&self) -> impl Iterator<Item = &NodeStatus> {
        self.nodes.iter().filter(|n| n.stale)
    }
}

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
