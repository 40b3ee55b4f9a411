//! The language switch at the top of every page: changes the words at once (no reload), keeps
//! the choice in a cookie, and for a signed-in user in their account too.

use crate::{
    i18n::{t, use_i18n},
    language::{self, Locale},
};
use leptos::prelude::*;

#[component]
pub fn LanguageBar() -> impl IntoView {
    let i18n = use_i18n();
    let choose = move |ev| {
        let Some(chosen) = language::parse(&event_target_value(&ev)) else { return };
        i18n.set_locale(chosen);
        leptos::task::spawn_local(async move {
            // Signed out, the cookie alone remembers it; a failure here changes nothing on screen.
            let _ = crate::auth::set_language(language::code(chosen).to_owned()).await;
        });
    };
    view! {
        <header class="language-bar">
            <label for="language">{t!(i18n, lang.label)}</label>
            <select id="language" on:change=choose>
                {language::all().iter().map(|&choice| view! {
                    <option value=language::code(choice) lang=language::code(choice)
                        selected=move || i18n.get_locale() == choice>
                        {name(choice)}
                    </option>
                }).collect_view()}
            </select>
        </header>
    }
}

/// Each language by its own name, whatever the page's language is.
fn name(locale: Locale) -> &'static str {
    match locale {
        Locale::en => crate::i18n::td_string!(Locale::en, lang.en),
        Locale::id => crate::i18n::td_string!(Locale::id, lang.id),
    }
}
