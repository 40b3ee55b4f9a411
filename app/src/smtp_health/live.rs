//! The browser's side of the live push: an EventSource on `/api/smtp_status/stream`. The browser
//! reconnects a dropped stream by itself; a refused one is retried here with backoff while the
//! page still belongs to a signed-in admin, and given up once the server says it does not
//! (signed out, session expired, admin role taken away: 401/403). Every (re)connection starts
//! with the current status, so the page resynchronises.

use super::SmtpHealth;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use std::{cell::Cell, rc::Rc, time::Duration};
use wasm_bindgen::{JsCast, closure::Closure};
use web_sys::{EventSource, MessageEvent};

pub fn subscribe(health: RwSignal<SmtpHealth>) {
    let stopped = Rc::new(Cell::new(false));
    let current: Rc<std::cell::RefCell<Option<EventSource>>> = Rc::default();
    connect(health, stopped.clone(), current.clone(), 0);
    let cleanup = SendWrapper::new((stopped, current));
    on_cleanup(move || {
        let (stopped, current) = cleanup.take();
        stopped.set(true);
        if let Some(source) = current.borrow_mut().take() {
            source.close();
        }
    });
}

fn connect(
    health: RwSignal<SmtpHealth>,
    stopped: Rc<Cell<bool>>,
    current: Rc<std::cell::RefCell<Option<EventSource>>>,
    attempt: u32,
) {
    if stopped.get() {
        return;
    }
    let Ok(source) = EventSource::new("/api/smtp_status/stream") else {
        retry(health, stopped, current, attempt);
        return;
    };
    let on_status = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(text) = event.data().as_string()
            && let Ok(status) = serde_json::from_str::<SmtpHealth>(&text)
        {
            health.try_set(status);
        }
    });
    let _ = source.add_event_listener_with_callback("smtp_status", on_status.as_ref().unchecked_ref());
    on_status.forget();

    let (retry_stopped, retry_current, watched) = (stopped.clone(), current.clone(), source.clone());
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
        if watched.ready_state() == EventSource::CLOSED {
            retry(health, retry_stopped.clone(), retry_current.clone(), attempt + 1);
        }
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    *current.borrow_mut() = Some(source);
}

fn retry(
    health: RwSignal<SmtpHealth>,
    stopped: Rc<Cell<bool>>,
    current: Rc<std::cell::RefCell<Option<EventSource>>>,
    attempt: u32,
) {
    let delay = Duration::from_millis((500u64 << attempt.min(6)).min(30_000));
    let next = SendWrapper::new((stopped, current));
    set_timeout(
        move || {
            leptos::task::spawn_local(async move {
                let (stopped, current) = next.take();
                // EventSource hides the status of a refused connection: ask who we are.
                match crate::auth::get_current_user().await {
                    Ok(Some(user)) if user.is_admin() => connect(health, stopped, current, attempt),
                    Ok(_) | Err(crate::error::AppError::Unauthorized | crate::error::AppError::Forbidden) => {
                        stopped.set(true);
                    }
                    Err(_) => retry(health, stopped, current, attempt + 1),
                }
            });
        },
        delay,
    );
}
