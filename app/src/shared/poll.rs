//! Pages that follow the server by asking again, on a timer that lives as long as the page.

use std::time::Duration;

/// Runs `tick` every `period` while the calling component is mounted; stopped when it goes.
/// Browser only: the server renders a page once.
///
/// Call it in the component's body, not in an `Effect`: leptos-use ties the interval to the
/// component's owner and clears it on cleanup. The Outbox page reloads its list with
/// `use_polling(Duration::from_secs(2), move || tick.update(|t| *t += 1))`.
pub fn use_polling(period: Duration, tick: impl Fn() + Clone + 'static) {
    #[cfg(feature = "hydrate")]
    {
        let millis = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let _ = leptos_use::use_interval_fn(tick, millis);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (period, tick);
}
