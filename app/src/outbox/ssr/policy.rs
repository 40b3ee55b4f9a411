//! How the outbox worker retries and leases, from configuration.

use std::time::Duration;

/// How the worker retries; from configuration.
#[derive(Clone, Debug)]
pub struct OutboxPolicy {
    /// Attempts a message may spend on transient failures before it fails.
    pub max_attempts: i64,
    pub retry_base: Duration,
    /// How long a claim lasts (on the database's clock); at least twice the SMTP timeout.
    pub lease: Duration,
    /// Messages sent at once (and the size of the SMTP connection pool).
    pub concurrency: usize,
    /// A message not delivered this long after it was queued fails for good.
    pub max_age: Duration,
    /// How often a queue held by a configuration failure tries again on its own.
    pub hold_retry: Duration,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            concurrency: 4,
            max_age: Duration::from_secs(3 * 86_400),
            hold_retry: Duration::from_secs(120),
        }
    }
}
