//! Users, sign-in, sign-out and the one-time "Create the first admin" page.

#[cfg(feature = "ssr")]
pub mod client;
#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
pub mod throttle;

use crate::{
    error::AppError,
    i18n::{t, t_string, use_i18n},
    shared::alert::ErrorAlert,
};
use leptos::prelude::*;
use leptos_router::components::{A, Redirect};
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

/// Stored and sent as "admin" / "user".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ssr", derive(SurrealValue), surreal(untagged, rename_all = "snake_case"))]
pub enum Role {
    Admin,
    User,
}

/// The signed-in user as the browser sees it (no hash, nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: String,
    pub email: crate::shared::email::EmailAddress,
    pub name: String,
    pub role: Role,
    /// The language the user chose (pages after sign-in, and their email); `None` until then.
    pub language: Option<crate::language::Locale>,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest accepted values, checked before anything else looks at them.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MAX_EMAIL_LEN: usize = 254;
pub const MAX_NAME_LEN: usize = 100;
/// One-time link tokens are 64 hex digits.
pub const MAX_TOKEN_LEN: usize = 128;

#[server(endpoint = "current_user")]
pub async fn get_current_user() -> Result<Option<CurrentUser>, AppError> {
    crate::error::ssr::respond(ssr::current_user().await)
}

/// Signs in; answers the language the user chose, if any, for the page to switch to.
#[server(endpoint = "login")]
pub async fn login(email: String, password: String) -> Result<Option<crate::language::Locale>, AppError> {
    crate::error::ssr::respond(ssr::login(&email, &password).await)
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    crate::error::ssr::respond(ssr::logout().await)
}

#[server(endpoint = "language")]
pub async fn set_language(code: String) -> Result<(), AppError> {
    crate::error::ssr::respond(ssr::set_language(&code).await)
}

#[server(endpoint = "first_admin_needed")]
pub async fn first_admin_needed() -> Result<bool, AppError> {
    crate::error::ssr::respond(ssr::first_admin_needed().await)
}

#[server(endpoint = "create_first_admin")]
pub async fn create_first_admin(
    name: String,
    email: String,
    password: String,
    setup_code: String,
) -> Result<(), AppError> {
    crate::error::ssr::respond(ssr::create_first_admin(name, email, password, setup_code).await)
}

#[server(endpoint = "password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    crate::error::ssr::respond(crate::users::ssr::request_reset(email).await)
}

#[server(endpoint = "password_set")]
pub async fn set_password(token: String, password: String) -> Result<(), AppError> {
    crate::error::ssr::respond(crate::users::ssr::set_password_from_link(token, password).await)
}

fn field_error(error: Option<AppError>, field: &str) -> Option<String> {
    error.as_ref().and_then(AppError::field_errors).and_then(|f| f.get(field).map(str::to_owned))
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let i18n = use_i18n();
    let login = ServerAction::<Login>::new();
    let setup = Resource::new(|| (), |_| first_admin_needed());
    let error = Signal::derive(move || login.value().get().and_then(Result::err));
    let query = leptos_router::hooks::use_query_map();
    // The pages after sign-in speak the language this user chose, wherever they chose it.
    Effect::new(move |_| {
        if let Some(Ok(Some(language))) = login.value().get() {
            i18n.set_locale(language);
        }
    });
    view! {
        <main class="card narrow">
            <h1>{t!(i18n, login.title)}</h1>
            <ActionForm action=login>
                <label for="email">{t!(i18n, common.email)}</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <label for="password">{t!(i18n, common.password)}</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                <button type="submit" disabled=move || login.pending().get()>{t!(i18n, login.submit)}</button>
            </ActionForm>
            <ErrorAlert error/>
            <p class="hint"><A href="/forgot-password">{t!(i18n, login.forgot)}</A></p>
            {move || {
                (query.read().get("password").as_deref() == Some("set"))
                    .then(|| view! { <p role="status" class="success">{t!(i18n, login.password_set)}</p> })
            }}
            <Suspense>
                {move || Suspend::new(async move {
                    matches!(setup.await, Ok(true)).then(|| view! {
                        <p class="hint">{t!(i18n, login.no_admin)}" "<A href="/setup">{t!(i18n, login.create_first_admin)}</A></p>
                    })
                })}
            </Suspense>
        </main>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let i18n = use_i18n();
    let create = ServerAction::<CreateFirstAdmin>::new();
    let needed = Resource::new(|| (), |_| first_admin_needed());
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let message = move |field: &'static str| move || field_error(error.get(), field);
    view! {
        <Suspense fallback=move || view! { <p>{t!(i18n, common.loading)}</p> }>
            {move || Suspend::new(async move {
                match needed.await {
                    Ok(true) => view! {
                        <main class="card narrow">
                            <h1>{t!(i18n, setup.title)}</h1>
                            <ActionForm action=create>
                                <label for="name">{t!(i18n, common.name)}</label>
                                <input id="name" name="name" required
                                    aria-invalid=move || message("name")().is_some().then_some("true")
                                    aria-describedby="name-error"/>
                                <p id="name-error" class="field-error">{message("name")}</p>
                                <label for="email">{t!(i18n, common.email)}</label>
                                <input id="email" name="email" type="email" required
                                    aria-invalid=move || message("email")().is_some().then_some("true")
                                    aria-describedby="email-error"/>
                                <p id="email-error" class="field-error">{message("email")}</p>
                                <label for="password">{t!(i18n, common.password)}</label>
                                <input id="password" name="password" type="password" required
                                    autocomplete="new-password"
                                    aria-invalid=move || message("password")().is_some().then_some("true")
                                    aria-describedby="password-error"/>
                                <p id="password-error" class="field-error">{message("password")}</p>
                                <label for="setup_code">{t!(i18n, setup.setup_code)}</label>
                                <input id="setup_code" name="setup_code" required autocomplete="off"
                                    aria-invalid=move || message("setup_code")().is_some().then_some("true")
                                    aria-describedby="setup_code-hint setup_code-error"/>
                                <p id="setup_code-hint" class="hint">{t!(i18n, setup.setup_code_hint)}</p>
                                <p id="setup_code-error" class="field-error">{message("setup_code")}</p>
                                <button type="submit" disabled=move || create.pending().get()>{t!(i18n, setup.submit)}</button>
                            </ActionForm>
                            <ErrorAlert error beside_fields=true/>
                        </main>
                    }.into_any(),
                    _ => view! { <Redirect path="/login"/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let i18n = use_i18n();
    let request = ServerAction::<RequestPasswordReset>::new();
    let error = Signal::derive(move || request.value().get().and_then(Result::err));
    view! {
        <main class="card narrow">
            <h1>{t!(i18n, forgot.title)}</h1>
            <p>{t!(i18n, forgot.intro)}</p>
            <ActionForm action=request>
                <label for="email">{t!(i18n, common.email)}</label>
                <input id="email" name="email" type="email" autocomplete="username" required/>
                <button type="submit" disabled=move || request.pending().get()>{t!(i18n, forgot.submit)}</button>
            </ActionForm>
            <p class="result" role="status">
                {move || matches!(request.value().get(), Some(Ok(()))).then(|| t!(i18n, forgot.sent))}
            </p>
            <ErrorAlert error/>
            <p class="hint"><A href="/login">{t!(i18n, forgot.back)}</A></p>
        </main>
    }
}

#[component]
pub fn SetPasswordPage() -> impl IntoView {
    let i18n = use_i18n();
    let query = leptos_router::hooks::use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let set = ServerAction::<SetPassword>::new();
    let error = Signal::derive(move || set.value().get().and_then(Result::err));
    let password_error = move || field_error(error.get(), "password");
    view! {
        <main class="card narrow">
            <h1>{t!(i18n, set_password.title)}</h1>
            <ActionForm action=set>
                <input type="hidden" name="token" prop:value=token/>
                <label for="password">{t!(i18n, set_password.new_password)}</label>
                <input id="password" name="password" type="password" autocomplete="new-password" required
                    aria-invalid=move || password_error().map(|_| "true") aria-describedby="password-error"/>
                <p id="password-error" class="field-error">{password_error}</p>
                <button type="submit" disabled=move || set.pending().get()>{t!(i18n, set_password.submit)}</button>
            </ActionForm>
            <ErrorAlert error beside_fields=true/>
        </main>
    }
}

#[component]
pub fn HomePage() -> impl IntoView {
    let i18n = use_i18n();
    let user = Resource::new(|| (), |_| get_current_user());
    let logout = ServerAction::<Logout>::new();
    view! {
        <Suspense fallback=move || view! { <p>{t!(i18n, common.loading)}</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(user)) => {
                        let (name, email) = (user.name.clone(), user.email.to_string());
                        view! {
                        <main class="card narrow">
                            <h1>"Mailroom"</h1>
                            <p>{move || t_string!(i18n, home.signed_in_as, name = name.clone(), email = email.clone()).to_string()}</p>
                            {user.is_admin().then(|| view! { <p><A href="/admin/smtp">{t!(i18n, home.admin)}</A></p> })}
                            <ActionForm action=logout><button type="submit">{t!(i18n, common.sign_out)}</button></ActionForm>
                        </main>
                    }.into_any()
                    }
                    _ => view! { <Redirect path="/login"/> }.into_any(),
                }
            })}
        </Suspense>
    }
}
