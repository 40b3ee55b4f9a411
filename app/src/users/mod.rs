//! Admin > Users: the people of the instance. Creating one queues an invitation with a one-time
//! link to set a password, in the same transaction as the user.

#[cfg(feature = "ssr")]
pub mod ssr;

use crate::{
    admin_shell::AdminFrame,
    auth::Role,
    error::AppError,
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
pub async fn create_user(name: String, email: String, role: crate::auth::Role) -> Result<String, AppError> {
    crate::error::ssr::respond(ssr::create(name, email, role).await)
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
    view! {
        <AdminFrame>
            <h1>"Users"</h1>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! {
                            <AdminTable headers=&["Name", "Email", "Role", "Status"]>
                                {list.into_iter().map(|u| view! {
                                    <tr>
                                        <td>{u.name}</td><td>{u.email.to_string()}</td><td>{u.role.as_str()}</td>
                                        <td>{if u.active { "active" } else { "invited" }}</td>
                                    </tr>
                                }).collect_view()}
                            </AdminTable>
                        }.into_any(),
                        Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                    }
                })}
            </Transition>
            <h2>"Create a user"</h2>
            <ActionForm action=create>
                <label for="new-name">"Name"</label>
                <input id="new-name" name="name" required aria-invalid=move || field("name")().map(|_| "true")
                    aria-describedby="new-name-error"/>
                <p id="new-name-error" class="field-error">{field("name")}</p>
                <label for="new-email">"Email"</label>
                <input id="new-email" name="email" type="email" required
                    aria-invalid=move || field("email")().map(|_| "true") aria-describedby="new-email-error"/>
                <p id="new-email-error" class="field-error">{field("email")}</p>
                <EnumSelect id="new-role" name="role" label="Role"
                    choices=&[(Role::User, "user", "User"), (Role::Admin, "admin", "Admin")]
                    value=role on_change=Callback::new(move |chosen| role.set(chosen))/>
                <button type="submit" disabled=move || create.pending().get()>"Create user"</button>
            </ActionForm>
            <p class="result" role="status">
                {move || create.value().get().and_then(Result::ok).map(|email| format!("Invitation sent to {email}"))}
            </p>
            <ErrorAlert error/>
        </AdminFrame>
    }
}
