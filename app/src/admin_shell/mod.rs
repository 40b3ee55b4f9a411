//! The Admin area's frame: the guard (signed-out visitors go to /login, non-admins get a 403
//! page) and the sidebar with its "Platform" section.

use crate::{
    auth::{CurrentUser, Logout},
    error::AppError,
    i18n::{t, t_string, use_i18n},
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
    let i18n = use_i18n();
    view! {
        <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
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
    let i18n = use_i18n();
    let instance = context.instance_name;
    view! {
        <nav class="sidebar" aria-label=move || t_string!(i18n, shell.nav_label)>
            <p class="brand">{move || t_string!(i18n, shell.brand, instance = instance.clone()).to_string()}</p>
            <h2 class="section">{t!(i18n, shell.instance)}</h2>
            <ul>
                <li><A href="/admin/users">{t!(i18n, shell.users)}</A></li>
            </ul>
            <h2 class="section">{t!(i18n, shell.platform)}</h2>
            <ul>
                <li><A href="/admin/smtp">{t!(i18n, shell.smtp)}</A><SidebarWarning/></li>
                <li><A href="/admin/outbox">{t!(i18n, shell.outbox)}</A></li>
                <li><A href="/admin/mailbox">{t!(i18n, shell.mailbox)}</A></li>
            </ul>
            <div class="who">
                <p>{context.user.name}</p>
                <ActionForm action=logout><button type="submit" class="link">{t!(i18n, common.sign_out)}</button></ActionForm>
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
    let i18n = use_i18n();
    view! {
        <main class="card narrow">
            <h1>{t!(i18n, shell.forbidden_title)}</h1>
            <p role="alert">{t!(i18n, shell.forbidden_text)}</p>
            <p><A href="/">{t!(i18n, shell.back_home)}</A></p>
        </main>
    }
}
