//! Admin > Platform > SMTP.

use crate::admin_shell::AdminFrame;
pub use lettre::Address;
use leptos::prelude::*;

#[component]
pub fn SmtpPage() -> impl IntoView {
    view! {
        <AdminFrame>
            <h1>"SMTP"</h1>
        </AdminFrame>
    }
}
