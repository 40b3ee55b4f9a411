//! Admin > Users: the people of the instance. Creating one queues an invitation with a one-time
//! link to set a password, in the same transaction as the user.

#[cfg(feature = "ssr")]
pub mod ssr;

use crate::{
    admin_shell::AdminFrame,
    auth::Role,
    error::AppError,
    i18n::{t, t_string, td_string, use_i18n},
    language::Locale,
    shared::{alert::ErrorAlert, fields::EnumSelect, table::AdminTable},
};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
#[cfg(feature = "ssr")]
use surrealdb::types::SurrealValue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(SurrealValue))]
pub struct UserEntry {
    pub id: String,
    pub name: String,
    pub email: crate::shared::email::EmailAddress,
    pub role: crate::auth::Role,
    /// False until the user has set a password.
    pub active: bool,
}

#[server(endpoint = "users_list")]
pub async fn list_users() -> Result<Vec<UserEntry>, AppError> {
    crate::error::ssr::respond(ssr::list().await)
}

#[server(endpoint = "users_create")]
pub async fn create_user(
    name: String,
    email: String,
    role: crate::auth::Role,
    #[server(default)] language: Option<String>,
) -> Result<String, AppError> {
    crate::error::ssr::respond(ssr::create(name, email, role, language).await)
}

#[component]
pub fn UsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let users = Resource::new(move || create.version().get(), |_| list_users());
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let field = move |name: &'static str| {
        move || error.get().as_ref().and_then(AppError::field_errors).and_then(|f| f.get(name).map(str::to_owned))
    };
    let role = RwSignal::new(Role::User);
    let i18n = use_i18n();
    // A new user's email: the instance's default (MAILROOM_DEFAULT_LANGUAGE), or the language
    // the admin picks for them.
    let new_language = RwSignal::new(None::<Locale>);
    view! {
        <AdminFrame>
            <h1>{t!(i18n, users.title)}</h1>
            <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! {
                            <AdminTable headers=&[
                                |l| td_string!(l, common.name),
                                |l| td_string!(l, common.email),
                                |l| td_string!(l, users.role),
                                |l| td_string!(l, common.status),
                            ]>
                                {list.into_iter().map(|u| {
                                    let role = u.role;
                                    view! {
                                    <tr>
                                        <td>{u.name}</td><td>{u.email.to_string()}</td>
                                        <td>{move || match role {
                                            Role::Admin => t_string!(i18n, users.role_admin),
                                            Role::User => t_string!(i18n, users.role_user),
                                        }}</td>
                                        <td>{move || if u.active { t_string!(i18n, users.active) } else { t_string!(i18n, users.invited) }}</td>
                                    </tr>
                                }}).collect_view()}
                            </AdminTable>
                        }.into_any(),
                        Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                    }
                })}
            </Transition>
            <h2>{t!(i18n, users.create_title)}</h2>
            <ActionForm action=create>
                <label for="new-name">{t!(i18n, common.name)}</label>
                <input id="new-name" name="name" required aria-invalid=move || field("name")().map(|_| "true")
                    aria-describedby="new-name-error"/>
                <p id="new-name-error" class="field-error">{field("name")}</p>
                <label for="new-email">{t!(i18n, common.email)}</label>
                <input id="new-email" name="email" type="email" required
                    aria-invalid=move || field("email")().map(|_| "true") aria-describedby="new-email-error"/>
                <p id="new-email-error" class="field-error">{field("email")}</p>
                <EnumSelect id="new-role" name="role" label=move || t_string!(i18n, users.role)
                    choices=&[(Role::User, "user", |l| td_string!(l, users.role_user)), (Role::Admin, "admin", |l| td_string!(l, users.role_admin))]
                    value=role on_change=Callback::new(move |chosen| role.set(chosen))/>
                <EnumSelect id="new-language" name="language" label=move || t_string!(i18n, users.language)
                    choices=&[
                        (None, "", |l| td_string!(l, users.language_default)),
                        (Some(Locale::en), "en", |_| td_string!(Locale::en, lang.en)),
                        (Some(Locale::id), "id", |_| td_string!(Locale::id, lang.id)),
                    ]
                    value=new_language on_change=Callback::new(move |chosen| new_language.set(chosen))/>
                <button type="submit" disabled=move || create.pending().get()>{t!(i18n, users.create)}</button>
            </ActionForm>
            <p class="result" role="status">
                {move || create.value().get().and_then(Result::ok).map(|email| t_string!(i18n, users.invited_to, email).to_string())}
            </p>
            <ErrorAlert error/>
        </AdminFrame>
    }
}
