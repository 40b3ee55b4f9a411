#![recursion_limit = "512"]
//! Mailroom's app: the pages, their server functions and, behind the `ssr` feature, the
//! server half of each domain. The browser build (`hydrate`) never sees server-only crates.

pub mod admin_shell;
pub mod auth;
pub mod error;
pub mod language;
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

include!(concat!(env!("OUT_DIR"), "/i18n/mod.rs"));

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
        <html>
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
    // The choice is kept for a year, for the whole site (not only the page it was made on).
    let cookie = leptos_use::UseCookieOptions::default()
        .path("/")
        .max_age(language::COOKIE_MAX_AGE_SECS * 1000)
        .same_site(leptos_use::SameSite::Lax);
    view! {
        <i18n::I18nContextProvider cookie_name=language::COOKIE cookie_options=cookie>
            <Title text="Mailroom"/>
            <Router>
                <shared::language_switch::LanguageBar/>
                <Routes fallback=|| view! { <NotFound/> }>
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
        </i18n::I18nContextProvider>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    let i18n = i18n::use_i18n();
    view! { <main class="card narrow"><p>{i18n::t!(i18n, common.page_not_found)}</p></main> }
}
