//! The SMTP health as data: each node's latest check or delivery, and certificates near their
//! end. The same on the server (the status table, the stream) and in the browser.

use crate::{
    i18n::td_string,
    language::{Locale, format_time},
    mail::SmtpFailure,
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
    /// The failure itself (JSON), so each admin reads it in their own language; the English
    /// `message` and `hint` stay for the logs, the API and rows written before it existed.
    #[serde(default)]
    pub failure: Option<String>,
    pub source: StatusSource,
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

/// What wrote a node's status; stored and sent as "start-up check", "post-save check" or
/// "delivery".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged))]
pub enum StatusSource {
    /// Each node checks the saved settings when it starts, so every live node has a status.
    #[serde(rename = "start-up check")]
    #[cfg_attr(feature = "ssr", surreal(rename = "start-up check"))]
    StartUpCheck,
    #[serde(rename = "post-save check")]
    #[cfg_attr(feature = "ssr", surreal(rename = "post-save check"))]
    PostSaveCheck,
    #[serde(rename = "delivery")]
    #[cfg_attr(feature = "ssr", surreal(rename = "delivery"))]
    Delivery,
}

impl StatusSource {
    /// Who saw the status, in the reader's language.
    pub fn name(self, locale: Locale) -> &'static str {
        match self {
            Self::StartUpCheck => td_string!(locale, health.source_startup),
            Self::PostSaveCheck => td_string!(locale, health.source_post_save),
            Self::Delivery => td_string!(locale, health.source_delivery),
        }
    }
}

impl std::fmt::Display for StatusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name(Locale::en))
    }
}

impl NodeStatus {
    /// What failed and what to do about it, in `locale`.
    pub fn describe(&self, locale: Locale) -> (String, String) {
        match self.failure.as_deref().and_then(|json| serde_json::from_str::<SmtpFailure>(json).ok()) {
            Some(failure) => (failure.message_in(locale), failure.hint_in(locale)),
            None => (self.message.clone().unwrap_or_default(), self.hint.clone().unwrap_or_default()),
        }
    }
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
    pub fn message(&self, locale: Locale) -> String {
        let c = &self.certificate;
        let (role, subject, when) = (c.role.noun(locale), &c.subject, format_time(locale, c.not_after));
        if self.expired {
            td_string!(locale, health.cert_expired, role, subject, when).to_string()
        } else {
            let days = match self.days_left {
                0 => td_string!(locale, health.less_than_a_day).to_owned(),
                1 => td_string!(locale, health.one_day).to_owned(),
                n => td_string!(locale, health.days, count = n).to_string(),
            };
            td_string!(locale, health.cert_expires, role, subject, days, when).to_string()
        }
    }

    pub fn hint(&self, locale: Locale) -> &'static str {
        if self.certificate.role == CertRole::Client {
            td_string!(locale, health.cert_client_hint)
        } else {
            td_string!(locale, health.cert_ca_hint)
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
