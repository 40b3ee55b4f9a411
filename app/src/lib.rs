#![recursion_limit = "512"]
//! Mailroom's app: the pages, their server functions and, behind the `ssr` feature, the
//! server half of each domain. The browser build (`hydrate`) never sees server-only crates.

pub mod admin_shell;
pub mod auth;
pub mod error;
pub mod mail;
pub mod mailbox;
pub mod outbox;
pub mod shared;
pub mod smtp_health;
pub mod smtp_settings;
pub mod users;

#[cfg(feature = "ssr")]
pub mod db;
#[cfg(feature = "ssr")]
pub mod limits;
#[cfg(feature = "ssr")]
pub mod state;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Redirect, Route, Router, Routes},
    path,
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <link rel="stylesheet" id="leptos" href=format!("/{}/{}.css", options.site_pkg_dir, options.output_name)/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Marks the page once the WASM has taken over, so end-to-end tests never click too early.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Title text="Mailroom"/>
        <Router>
            <Routes fallback=|| view! { <p class="card narrow">"Page not found."</p> }>
                <Route path=path!("/") view=auth::HomePage ssr=SsrMode::Async/>
                <Route path=path!("/login") view=auth::LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/setup") view=auth::SetupPage ssr=SsrMode::Async/>
                <Route path=path!("/forgot-password") view=auth::ForgotPasswordPage/>
                <Route path=path!("/set-password") view=auth::SetPasswordPage/>
                <Route path=path!("/admin/users") view=users::UsersPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/outbox") view=outbox::OutboxPage ssr=SsrMode::Async/>
                <Route path=path!("/admin") view=|| view! { <Redirect path="/admin/smtp"/> }/>
                <Route path=path!("/admin/smtp") view=smtp_settings::SmtpPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/mailbox") view=mailbox::MailboxPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/mailbox/:id") view=mailbox::MailboxMessagePage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}
