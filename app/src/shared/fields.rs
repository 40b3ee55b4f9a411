//! Form fields every page uses: a label, the input, its error and its hint, tied together for
//! assistive technology.

use leptos::prelude::*;

/// One labelled input with its error and hint.
#[component]
pub fn TextField(
    id: &'static str,
    label: &'static str,
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
            <label for=id>{label}</label>
            <input id=id name=id type=kind autocomplete=autocomplete inputmode=input_mode
                placeholder=move || placeholder.get()
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
    label: &'static str,
    #[prop(into)] value: Signal<String>,
    #[prop(into)] error: Signal<Option<String>>,
    #[prop(into)] on_input: Callback<String>,
    #[prop(optional, into)] placeholder: Signal<String>,
    #[prop(optional, into)] hint: Signal<String>,
) -> impl IntoView {
    let (error_id, hint_id, described_by) = described_by(id);
    view! {
        <div class="field">
            <label for=id>{label}</label>
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

/// The ids of a field's error and hint, and the `aria-describedby` that names both.
fn described_by(id: &str) -> (String, String, String) {
    let (error_id, hint_id) = (format!("{id}-error"), format!("{id}-hint"));
    let both = format!("{error_id} {hint_id}");
    (error_id, hint_id, both)
}
