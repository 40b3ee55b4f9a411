//! The browser's side of the live push: an EventSource on `/api/smtp_status/stream`. The browser
//! reconnects a dropped stream by itself; a refused one is retried here with backoff while the
//! page still belongs to a signed-in admin, and given up once the server says it does not
//! (signed out, session expired, admin role taken away: 401/403). Every (re)connection starts
//! with the current status, so the page resynchronises.
//!
//! Written against `web_sys` rather than leptos-use's `use_event_source`: that one `forget()`s
//! its listeners on every (re)connect, the very leak this module exists to avoid. Here each
//! connection owns its two listeners, and they are dropped with it: when it is replaced by the
//! next connection or the page goes away.

use super::SmtpHealth;
use crate::error::AppError;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::Duration,
};
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{EventSource, MessageEvent};

const STREAM: &str = "/api/smtp_status/stream";
/// The one event the stream sends; anything else on it is ignored.
const EVENT: &str = "smtp_status";

/// One open stream with the listeners registered on it; dropping it closes the stream and
/// frees them.
struct Connection {
    source: EventSource,
    _on_status: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.source.close();
        // Unregistered before they are freed: nothing can call them afterwards.
        self.source.set_onerror(None);
        let _ = self.source.remove_event_listener_with_callback(EVENT, self._on_status.as_ref().unchecked_ref());
    }
}

/// What the page's subscription shares between its connections and retries.
#[derive(Clone)]
struct Subscription {
    health: RwSignal<SmtpHealth>,
    stopped: Rc<Cell<bool>>,
    current: Rc<RefCell<Option<Connection>>>,
}

pub fn subscribe(health: RwSignal<SmtpHealth>) {
    let subscription = Subscription { health, stopped: Rc::default(), current: Rc::default() };
    subscription.connect(0);
    let cleanup = SendWrapper::new(subscription);
    on_cleanup(move || {
        let subscription = cleanup.take();
        subscription.stopped.set(true);
        // Drops the connection and its listeners, which also breaks the Rc cycle through them.
        subscription.current.borrow_mut().take();
    });
}

impl Subscription {
    fn connect(&self, attempt: u32) {
        if self.stopped.get() {
            return;
        }
        let Ok(source) = EventSource::new(STREAM) else {
            self.retry(attempt);
            return;
        };
        let health = self.health;
        let on_status = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string()
                && let Ok(status) = serde_json::from_str::<SmtpHealth>(&text)
            {
                health.try_set(status);
            }
        });
        let _ = source.add_event_listener_with_callback(EVENT, on_status.as_ref().unchecked_ref());

        let (subscription, watched) = (self.clone(), source.clone());
        let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            // A dropped stream is reopened by the browser (CONNECTING); CLOSED means refused.
            if watched.ready_state() == EventSource::CLOSED {
                subscription.retry(attempt + 1);
            }
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // Replacing the previous connection drops it (outside its own listener: retries run
        // from a timer).
        let previous = self.current.replace(Some(Connection { source, _on_status: on_status, _on_error: on_error }));
        drop(previous);
    }

    /// After a backoff, reconnects if the page still belongs to an admin.
    fn retry(&self, attempt: u32) {
        let delay = Duration::from_millis((500u64 << attempt.min(6)).min(30_000));
        let next = SendWrapper::new(self.clone());
        set_timeout(
            move || {
                leptos::task::spawn_local(async move {
                    let subscription = next.take();
                    // EventSource hides the status of a refused connection: ask who we are.
                    match crate::auth::get_current_user().await {
                        Ok(Some(user)) if user.is_admin() => subscription.connect(attempt),
                        Ok(_) | Err(AppError::Unauthorized | AppError::Forbidden) => {
                            subscription.stopped.set(true);
                        }
                        Err(_) => subscription.retry(attempt + 1),
                    }
                });
            },
            delay,
        );
    }
}
