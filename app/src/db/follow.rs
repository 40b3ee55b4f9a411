//! Node-local copies of small tables that every signed-in request reads (sessions, users, the
//! SMTP settings, every node's status), kept true by a `LIVE SELECT` on each table; and
//! [`on_changes`], the subscription loop every follower of a table runs on.
//!
//! The rule that keeps a copy from going stale:
//! - a copy is used only while its table's live query is subscribed; when the subscription ends
//!   (the database connection dropped), every copy is dropped and reads go to the database until
//!   the loop has subscribed again;
//! - any change to the table, on any node, drops every copy of it (changes are rare: a sign-in,
//!   a sign-out, a saved form); this node's own writes drop them at once as well, without waiting
//!   for the notification;
//! - a value read from the database is kept only if nothing changed while it was being read: a
//!   [`Ticket`] taken before the read names the generation it belongs to.
//!
//! So a change made on another node is seen here as soon as its notification arrives (a few
//! milliseconds), and a change made here at once.

use crate::state::Db;
use futures::StreamExt;
use std::{collections::HashMap, sync::Mutex, time::Duration};

/// The most copies one table keeps; past it, reads go to the database until a change empties it.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A table's copies on this node.
pub struct Followed<V> {
    table: &'static str,
    capacity: usize,
    copies: Mutex<Copies<V>>,
}

struct Copies<V> {
    /// The live query is subscribed.
    live: bool,
    /// Moves on every change, every subscription and every end of one.
    generation: u64,
    values: HashMap<String, V>,
}

/// Taken before a read from the database; keeping what was read needs an unchanged generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl<V: Clone> Followed<V> {
    pub fn new(table: &'static str, capacity: usize) -> Self {
        Self { table, capacity, copies: Mutex::new(Copies { live: false, generation: 0, values: HashMap::new() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copies<V>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that matters
        // (every change is one insert or one clear): keep going with it.
        self.copies.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The copy of `key`, if this node has one it may use.
    fn get(&self, key: &str) -> Option<V> {
        let copies = self.lock();
        if !copies.live {
            return None;
        }
        copies.values.get(key).cloned()
    }

    /// This node's copy of `key` if it has one that `usable` accepts; else what `read` finds in
    /// the database, kept when it found something and the table did not change meanwhile.
    pub async fn get_or_read<E>(
        &self,
        key: &str,
        usable: impl FnOnce(&V) -> bool,
        read: impl Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<V>, E> {
        if let Some(value) = self.get(key).filter(usable) {
            return Ok(Some(value));
        }
        let ticket = self.ticket();
        let value = read.await?;
        if let Some(value) = &value {
            self.keep(ticket, key, value.clone());
        }
        Ok(value)
    }

    /// Before reading `key` from the database: `None` when nothing read now could be kept.
    fn ticket(&self) -> Option<Ticket> {
        let copies = self.lock();
        copies.live.then_some(Ticket(copies.generation))
    }

    /// Keeps what was read under `ticket`, unless the table changed since it was taken.
    fn keep(&self, ticket: Option<Ticket>, key: &str, value: V) {
        let Some(Ticket(generation)) = ticket else { return };
        let mut copies = self.lock();
        if !copies.live || copies.generation != generation {
            return;
        }
        if copies.values.len() >= self.capacity && !copies.values.contains_key(key) {
            return;
        }
        copies.values.insert(key.to_owned(), value);
    }

    /// Something in the table changed (here or on another node): no copy may be used again.
    pub fn changed(&self) {
        let mut copies = self.lock();
        copies.generation += 1;
        copies.values.clear();
    }

    /// Drops the copies that `stale` names (expired sessions), keeping the rest.
    pub fn drop_where(&self, stale: impl Fn(&V) -> bool) {
        self.lock().values.retain(|_, value| !stale(value));
    }

    fn set_live(&self, live: bool) {
        let mut copies = self.lock();
        copies.live = live;
        copies.generation += 1;
        copies.values.clear();
    }

    /// How many copies this node holds.
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`on_changes`] tells its handler.
pub enum TableEvent {
    /// The live query is subscribed: whatever changed before now is in the database, later
    /// changes arrive as notifications.
    Subscribed,
    /// A record of the table changed, on any node.
    Changed,
    /// The subscription ended (the database connection dropped): no notification arrives until
    /// the next `Subscribed`.
    Ended,
}

/// Follows `table` with a `LIVE SELECT` until the task is aborted. A live query lives on one
/// database connection: when it drops (the database server restarted), the stream ends and this
/// loop subscribes again, backing off from 250 ms to 4 s between attempts.
pub async fn on_changes<F: Future<Output = ()>>(db: &Db, table: &'static str, mut handle: impl FnMut(TableEvent) -> F) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match db.select::<Vec<surrealdb::types::Value>>(table).live().await {
            Ok(mut changes) => {
                backoff = Duration::from_millis(250);
                handle(TableEvent::Subscribed).await;
                while let Some(change) = changes.next().await {
                    if let Err(err) = change {
                        tracing::warn!(table, error = %err, "live query failed");
                        break;
                    }
                    handle(TableEvent::Changed).await;
                }
                handle(TableEvent::Ended).await;
                tracing::info!(table, "live query ended (database connection lost?); subscribing again");
            }
            Err(err) => tracing::warn!(table, error = %err, "cannot start a live query"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(4));
    }
}

/// Keeps `followed` true until the task is aborted: every notification drops the copies; a
/// subscription that ends drops them too, and reads go to the database until it is back.
pub async fn follow<V: Clone>(db: Db, followed: std::sync::Arc<Followed<V>>) {
    on_changes(&db, followed.table, |event| {
        match event {
            TableEvent::Subscribed => followed.set_live(true),
            TableEvent::Changed => followed.changed(),
            TableEvent::Ended => followed.set_live(false),
        }
        std::future::ready(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn live(followed: &Followed<i64>) {
        followed.set_live(true);
    }

    #[test]
    fn nothing_is_kept_or_answered_while_the_table_is_not_followed() {
        let followed = Followed::new("t", 10);
        let ticket = followed.ticket();
        assert_eq!(ticket, None);
        followed.keep(ticket, "a", 1);
        assert_eq!(followed.get("a"), None);
    }

    #[test]
    fn a_value_read_while_the_table_changed_is_not_kept() {
        let followed = Followed::new("t", 10);
        live(&followed);
        let ticket = followed.ticket();
        followed.changed();
        followed.keep(ticket, "a", 1);
        assert_eq!(followed.get("a"), None, "read before the change: may be the old value");
        let ticket = followed.ticket();
        followed.keep(ticket, "a", 2);
        assert_eq!(followed.get("a"), Some(2));
    }

    #[test]
    fn a_change_drops_every_copy_and_an_ended_subscription_stops_their_use() {
        let followed = Followed::new("t", 10);
        live(&followed);
        followed.keep(followed.ticket(), "a", 1);
        followed.keep(followed.ticket(), "b", 2);
        followed.changed();
        assert_eq!((followed.get("a"), followed.get("b")), (None, None));
        followed.keep(followed.ticket(), "a", 1);
        let before_the_end = followed.ticket();
        followed.set_live(false);
        assert_eq!(followed.get("a"), None);
        live(&followed);
        followed.keep(before_the_end, "a", 1);
        assert_eq!(followed.get("a"), None, "a read from before the subscription ended is not kept");
    }

    #[test]
    fn copies_stop_at_the_capacity() {
        let followed = Followed::new("t", 2);
        live(&followed);
        for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
            followed.keep(followed.ticket(), key, value);
        }
        assert_eq!(followed.len(), 2);
        assert_eq!(followed.get("c"), None);
        followed.keep(followed.ticket(), "a", 4);
        assert_eq!(followed.get("a"), Some(4), "a key already kept may be replaced");
        followed.drop_where(|v| *v == 4);
        assert_eq!((followed.get("a"), followed.get("b")), (None, Some(2)));
    }

    #[tokio::test]
    async fn a_write_on_the_table_reaches_the_copies_through_the_live_query() {
        let options = crate::db::DbOptions { url: "mem://", namespace: "test", database: "test", credentials: None };
        let db = crate::db::connect(options).await.unwrap();
        let followed = Arc::new(Followed::<i64>::new("session", 10));
        let task = tokio::spawn(follow(db.clone(), followed.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while followed.ticket().is_none() {
            assert!(std::time::Instant::now() < deadline, "never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        followed.keep(followed.ticket(), "a", 1);
        db.query("CREATE session:x CONTENT { data: '{}', expires_at: 1, user: NONE }").await.unwrap().check().unwrap();
        while followed.get("a").is_some() {
            assert!(std::time::Instant::now() < deadline, "the write on another connection never dropped the copy");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
    }
}
