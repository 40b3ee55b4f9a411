//! What a failed action or a failed load says: one paragraph with role "alert".

use crate::error::AppError;
use leptos::prelude::*;

/// Shows the message of a failed action with role "alert"; nothing while there is none.
#[component]
pub fn ErrorAlert(
    #[prop(into)] error: Signal<Option<AppError>>,
    /// The form shows validation errors beside its fields: only the other failures show here.
    #[prop(optional)]
    beside_fields: bool,
) -> impl IntoView {
    let i18n = crate::i18n::use_i18n();
    move || {
        error.get().filter(|err| !(beside_fields && err.field_errors().is_some())).map(|err| {
            view! { <p role="alert" class="alert error">{err.message_in(i18n.get_locale())}</p> }
        })
    }
}
