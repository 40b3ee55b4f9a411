//! Sign-in slow-down per email: failures make the next attempts wait longer instead of locking
//! the account, so an attacker cannot lock a named admin out, and guessing stays slow.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failures before any delay.
const FREE_FAILURES: u32 = 3;
/// The first delay; it doubles with every further failure up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A key with no failure for this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Past this many keys, forgotten ones are dropped at once (bounded memory).
const PRUNE_AT: usize = 50_000;

#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<[u8; 16], (u32, Instant)>>,
}

fn key(email: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(email.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The wait before an attempt after `failures` recent failures.
pub fn delay_after(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

impl SignInThrottle {
    /// How long a sign-in for `email` waits before its password is checked.
    pub fn delay(&self, email: &str) -> Duration {
        let failures = self.failures.lock().expect("throttle lock");
        match failures.get(&key(email)) {
            Some((count, last)) if last.elapsed() < FORGET_AFTER => delay_after(*count),
            _ => Duration::ZERO,
        }
    }

    pub fn failed(&self, email: &str) {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() >= PRUNE_AT {
            failures.retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
        }
        let entry = failures.entry(key(email)).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.lock().expect("throttle lock").remove(&key(email));
    }

    pub fn prune(&self) {
        self.failures.lock().expect("throttle lock").retain(|_, (_, last)| last.elapsed() < FORGET_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_failures_and_stops_growing_at_the_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::from_millis(500));
        assert_eq!(delay_after(4), Duration::from_secs(1));
        assert_eq!(delay_after(6), Duration::from_secs(4));
        assert_eq!(delay_after(40), MAX_DELAY);
    }

    #[test]
    fn failures_slow_one_email_and_a_success_clears_them() {
        let throttle = SignInThrottle::default();
        for _ in 0..5 {
            throttle.failed("admin@example.com");
        }
        assert_eq!(throttle.delay("admin@example.com"), Duration::from_secs(2));
        assert_eq!(throttle.delay("other@example.com"), Duration::ZERO);
        throttle.succeeded("admin@example.com");
        assert_eq!(throttle.delay("admin@example.com"), Duration::ZERO);
    }
}
