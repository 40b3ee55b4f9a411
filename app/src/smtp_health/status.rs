//! The SMTP health as data: each node's latest check or delivery, and certificates near their
//! end. The same on the server (the status table, the stream) and in the browser.

use crate::{
    shared::time::format_utc,
    smtp_settings::certs::{CertRole, CertSummary, Expiry},
};
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
            format!("The {} {} expired on {when}", c.role.noun(), c.subject)
        } else {
            let days = match self.days_left {
                0 => "less than a day".to_owned(),
                1 => "1 day".to_owned(),
                n => format!("{n} days"),
            };
            format!("The {} {} expires in {days} ({when})", c.role.noun(), c.subject)
        }
    }

    pub fn hint(&self) -> String {
        if self.certificate.role == CertRole::Client {
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
