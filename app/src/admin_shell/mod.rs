//! The Admin area's frame: the guard (signed-out visitors go to /login, non-admins get a 403
//! page) and the sidebar with its "Platform" section.

use crate::{
    auth::{CurrentUser, Logout},
    error::AppError,
    shared::alert::ErrorAlert,
    smtp_health::{HealthSignal, SidebarWarning, SmtpHealth, subscribe_live},
};
use leptos::prelude::*;
use leptos_router::components::{A, Redirect};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminContext {
    pub user: CurrentUser,
    pub instance_name: String,
    pub health: SmtpHealth,
}

/// Who is looking at the Admin area. Admins only.
#[server(endpoint = "admin_context")]
pub async fn get_admin_context() -> Result<AdminContext, AppError> {
    crate::error::ssr::respond(ssr::context().await)
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::AdminContext;
    use crate::{auth::ssr::require_admin, error::AppError, smtp_health::ssr::current, state::app_state};

    pub async fn context() -> Result<AdminContext, AppError> {
        let user = require_admin().await?;
        let state = app_state()?;
        let health = current(&state).await?;
        Ok(AdminContext { user, instance_name: state.settings().instance_name.clone(), health })
    }
}

/// Wraps an admin page: checks the caller, then draws the sidebar beside `children`.
#[component]
pub fn AdminFrame(children: ChildrenFn) -> impl IntoView {
    let context = Resource::new(|| (), |_| get_admin_context());
    let children = StoredValue::new(children);
    // Filled from the server's answer (so the first paint is right), then kept live.
    let health = RwSignal::new(SmtpHealth { is_valid: true, ..SmtpHealth::default() });
    provide_context(HealthSignal(health));
    Effect::new(move |_| subscribe_live(health));
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match context.await {
                    Ok(context) => {
                        health.set(context.health.clone());
                        view! {
                        <div class="admin">
                            <Sidebar context=context.clone()/>
                            <main class="admin-main">{children.read_value()()}</main>
                        </div>
                    }.into_any()
                    }
                    Err(AppError::Unauthorized) => view! { <Redirect path="/login"/> }.into_any(),
                    Err(AppError::Forbidden) => view! { <Forbidden/> }.into_any(),
                    Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Sidebar(context: AdminContext) -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    view! {
        <nav class="sidebar" aria-label="Admin">
            <p class="brand">{context.instance_name}" Admin"</p>
            <h2 class="section">"Instance"</h2>
            <ul>
                <li><A href="/admin/users">"Users"</A></li>
            </ul>
            <h2 class="section">"Platform"</h2>
            <ul>
                <li><A href="/admin/smtp">"SMTP"</A><SidebarWarning/></li>
                <li><A href="/admin/outbox">"Outbox"</A></li>
                <li><A href="/admin/mailbox">"Mailbox"</A></li>
            </ul>
            <div class="who">
                <p>{context.user.name}</p>
                <ActionForm action=logout><button type="submit" class="link">"Sign out"</button></ActionForm>
            </div>
        </nav>
    }
}

#[component]
pub fn Forbidden() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::FORBIDDEN);
    }
    view! {
        <section class="card narrow">
            <h1>"403 – Admins only"</h1>
            <p role="alert">"You do not have access to this page. Ask an admin if you need it."</p>
            <p><A href="/">"Back to Mailroom"</A></p>
        </section>
    }
}
