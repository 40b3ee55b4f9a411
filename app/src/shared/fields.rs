//! Form fields every page uses: a label, the input (or select), its error and its hint, tied
//! together for assistive technology.

use crate::{i18n::use_i18n, language::Words};
use leptos::prelude::*;

/// One labelled input with its error and hint.
#[component]
pub fn TextField(
    id: &'static str,
    #[prop(into)] label: TextProp,
    #[prop(into)] value: Signal<String>,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(into)] on_input: Callback<String>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "off")] autocomplete: &'static str,
    #[prop(optional)] input_mode: Option<&'static str>,
    #[prop(optional, into)] placeholder: Signal<String>,
    #[prop(optional, into)] hint: Signal<String>,
) -> impl IntoView {
    let (error_id, hint_id, described_by) = described_by(id);
    view! {
        <div class="field">
            <label for=id>{move || label.get()}</label>
            // `value` puts the initial text in the server's HTML; `prop:value` follows the form.
            <input id=id name=id type=kind autocomplete=autocomplete inputmode=input_mode
                placeholder=move || placeholder.get()
                value=value.get_untracked()
                prop:value=move || value.get()
                on:input=move |ev| on_input.run(event_target_value(&ev))
                aria-invalid=move || error.get().map(|_| "true")
                aria-describedby=described_by/>
            <p id=error_id class="field-error">{move || error.get()}</p>
            <p id=hint_id class="hint">{move || hint.get()}</p>
        </div>
    }
}

/// A multi-line [`TextField`] for pasted keys and certificates: write-only, never spell-checked.
#[component]
pub fn TextArea(
    id: &'static str,
    #[prop(into)] label: TextProp,
    #[prop(into)] value: Signal<String>,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(into)] on_input: Callback<String>,
    #[prop(optional, into)] placeholder: Signal<String>,
    #[prop(optional, into)] hint: Signal<String>,
    /// Offer a file picker too: its label, and the file types it accepts.
    #[prop(optional)]
    upload: Option<(TextProp, &'static str)>,
) -> impl IntoView {
    let (error_id, hint_id, described_by) = described_by(id);
    let upload = upload.map(|(upload_label, accept)| {
        view! {
            <label class="upload">
                {move || upload_label.get()}
                <input type="file" accept=accept on:change=move |ev| read_file(ev, on_input)/>
            </label>
        }
    });
    view! {
        <div class="field">
            <label for=id>{move || label.get()}</label>
            {upload}
            <textarea id=id name=id class="pem" spellcheck="false" autocomplete="off"
                placeholder=move || placeholder.get()
                prop:value=move || value.get()
                on:input=move |ev| on_input.run(event_target_value(&ev))
                aria-invalid=move || error.get().map(|_| "true")
                aria-describedby=described_by></textarea>
            <p id=error_id class="field-error">{move || error.get()}</p>
            <p id=hint_id class="hint">{move || hint.get()}</p>
        </div>
    }
}

/// A labelled `<select>` over the values of an enum. Each choice is `(value, form value, label)`:
/// the form value is what a submitted form sends, the label what the person reads. Only the
/// label and the select: the caller lays them out (inside a `div.field` on the SMTP page).
#[component]
pub fn EnumSelect<T>(
    id: &'static str,
    #[prop(into)] label: TextProp,
    choices: &'static [(T, &'static str, Words)],
    #[prop(into)] value: Signal<T>,
    #[prop(into)] on_change: Callback<T>,
    /// The name a submitted form sends the choice under.
    #[prop(optional)]
    name: Option<&'static str>,
) -> impl IntoView
where
    T: Copy + PartialEq + Send + Sync + 'static,
{
    let chosen = move |ev| {
        let form_value = event_target_value(&ev);
        if let Some(&(choice, ..)) = choices.iter().find(|(_, sent, _)| *sent == form_value) {
            on_change.run(choice);
        }
    };
    let i18n = use_i18n();
    view! {
        <label for=id>{move || label.get()}</label>
        <select id=id name=name on:change=chosen>
            {choices.iter().map(|&(choice, sent, text)| view! {
                <option value=sent selected=move || value.get() == choice>{move || text(i18n.get_locale())}</option>
            }).collect_view()}
        </select>
    }
}

/// The ids of a field's error and hint, and the `aria-describedby` that names both.
fn described_by(id: &str) -> (String, String, String) {
    let (error_id, hint_id) = (format!("{id}-error"), format!("{id}-hint"));
    let both = format!("{error_id} {hint_id}");
    (error_id, hint_id, both)
}

/// Puts the text of the file chosen in a file input through `on_input`, as if it were pasted.
#[cfg(feature = "hydrate")]
fn read_file(ev: leptos::ev::Event, on_input: Callback<String>) {
    use wasm_bindgen::JsCast;
    let input = ev.target().and_then(|target| target.dyn_into::<web_sys::HtmlInputElement>().ok());
    let Some(file) = input.and_then(|input| input.files()).and_then(|files| files.get(0)) else {
        return;
    };
    leptos::task::spawn_local(async move {
        if let Ok(text) = wasm_bindgen_futures::JsFuture::from(file.text()).await
            && let Some(text) = text.as_string()
        {
            on_input.run(text);
        }
    });
}

#[cfg(not(feature = "hydrate"))]
fn read_file(_: leptos::ev::Event, _: Callback<String>) {}
