//! The "Private relays" part of the SMTP form: CA certificates to trust and a client
//! certificate for mutual TLS. Pasted certificates are read on the server as they are typed, so
//! the admin sees whose they are and when they expire before saving.

use super::{
    SavedSecrets,
    certs::{CertRole, CertSummary},
    form::SmtpForm,
    inspect_certificates,
};
use crate::{
    error::AppError,
    i18n::{t, t_string, use_i18n},
    shared::fields::TextArea,
};
use leptos::prelude::*;

#[component]
pub fn TrustFields(
    form: RwSignal<SmtpForm>,
    secrets: RwSignal<SavedSecrets>,
    #[prop(into)] ca_error: Signal<Option<String>>,
    #[prop(into)] cert_error: Signal<Option<String>>,
    #[prop(into)] key_error: Signal<Option<String>>,
    on_ca: Callback<String>,
    on_cert: Callback<String>,
    on_key: Callback<String>,
) -> impl IntoView {
    let i18n = use_i18n();
    let ca = Inspection::new(CertRole::TrustedCa);
    let client = Inspection::new(CertRole::Client);
    let saved = move |role: CertRole| {
        secrets.with(|s| s.certificates.iter().filter(|c| c.role == role).cloned().collect::<Vec<_>>())
    };
    let value = move |get: fn(&SmtpForm) -> String| Signal::derive(move || form.with(get));
    let saved_hint = move |role: CertRole| {
        Signal::derive(move || {
            let count = saved(role).len();
            match (count, role) {
                (0, CertRole::TrustedCa) => t_string!(i18n, trust.ca_hint).to_owned(),
                (0, CertRole::Client) => t_string!(i18n, trust.client_hint).to_owned(),
                (1, _) => t_string!(i18n, trust.one_saved).to_owned(),
                (n, _) => t_string!(i18n, trust.many_saved, count = n).to_string(),
            }
        })
    };
    let saved_of = move |role: CertRole| Signal::derive(move || saved(role));
    view! {
        <fieldset class="trust">
            <legend>{t!(i18n, trust.legend)}</legend>
            <CertField id=super::form::field::TRUSTED_CA label=move || t_string!(i18n, trust.trusted_ca) inspection=ca
                hint=saved_hint(CertRole::TrustedCa) saved=saved_of(CertRole::TrustedCa)
                value=value(|f| f.trusted_ca_pem.clone()) error=ca_error on_input=on_ca/>
            <RemoveBox id="remove_trusted_ca" label=move || t_string!(i18n, trust.remove_ca)
                shown=Signal::derive(move || !saved(CertRole::TrustedCa).is_empty())
                checked=Signal::derive(move || form.with(|f| f.remove_trusted_ca))
                on_change=Callback::new(move |on| form.update(|f| f.remove_trusted_ca = on))/>

            <CertField id=super::form::field::CLIENT_CERT label=move || t_string!(i18n, trust.client_cert) inspection=client
                hint=saved_hint(CertRole::Client) saved=saved_of(CertRole::Client)
                value=value(|f| f.client_cert_pem.clone()) error=cert_error on_input=on_cert/>
            <TextArea id=super::form::field::CLIENT_KEY label=move || t_string!(i18n, trust.client_key)
                placeholder=Signal::derive(move || if secrets.with(|s| s.client_key_set) { t_string!(i18n, smtp.saved_keep).to_owned() } else { "-----BEGIN PRIVATE KEY-----".to_owned() })
                hint=Signal::derive(move || if secrets.with(|s| s.client_key_set) { t_string!(i18n, trust.client_key_saved).to_owned() } else { String::new() })
                value=value(|f| f.client_key_pem.clone()) error=key_error on_input=on_key/>
            <RemoveBox id="remove_client_cert" label=move || t_string!(i18n, trust.remove_client)
                shown=Signal::derive(move || !saved(CertRole::Client).is_empty())
                checked=Signal::derive(move || form.with(|f| f.remove_client_cert))
                on_change=Callback::new(move |on| form.update(|f| f.remove_client_cert = on))/>
        </fieldset>
    }
}

/// A PEM field whose paste the server reads as it is typed, with the pasted and the saved
/// certificates listed under it.
#[component]
fn CertField(
    id: &'static str,
    #[prop(into)] label: TextProp,
    inspection: Inspection,
    hint: Signal<String>,
    saved: Signal<Vec<CertSummary>>,
    value: Signal<String>,
    error: Signal<Option<String>>,
    on_input: Callback<String>,
) -> impl IntoView {
    view! {
        <TextArea id label placeholder="-----BEGIN CERTIFICATE-----" hint value
            error=Signal::derive(move || error.get().or_else(|| inspection.error()))
            on_input=Callback::new(move |pem: String| { inspection.inspect(&pem); on_input.run(pem); })/>
        <CertList certificates=Signal::derive(move || inspection.read()) pasted=true/>
        <CertList certificates=saved pasted=false/>
    }
}

/// "Forget what is saved", shown only while something is.
#[component]
fn RemoveBox(
    id: &'static str,
    #[prop(into)] label: TextProp,
    shown: Signal<bool>,
    checked: Signal<bool>,
    on_change: Callback<bool>,
) -> impl IntoView {
    view! {
        <Show when=move || shown.get()>
            <div class="field checkbox">
                <input type="checkbox" id=id prop:checked=move || checked.get()
                    on:change=move |ev| on_change.run(event_target_checked(&ev))/>
                <label for=id>{let label = label.clone(); move || label.get()}</label>
            </div>
        </Show>
    }
}

/// Certificates as a list: subject, issuer, expiry.
#[component]
fn CertList(certificates: Signal<Vec<CertSummary>>, pasted: bool) -> impl IntoView {
    let i18n = use_i18n();
    move || {
        let certificates = certificates.get();
        let locale = i18n.get_locale();
        let (label, list) = if pasted {
            (t_string!(i18n, trust.pasted), t_string!(i18n, trust.pasted_list))
        } else {
            (t_string!(i18n, trust.saved), t_string!(i18n, trust.saved_list))
        };
        (!certificates.is_empty()).then(|| {
            view! {
                <ul class="cert-list" aria-label=list>
                    {certificates.into_iter().map(|c| view! { <li>{format!("{label}: {}", c.describe(locale))}</li> }).collect_view()}
                </ul>
            }
        })
    }
}

/// The server's reading of what is pasted in one field (the latest paste wins).
#[derive(Clone, Copy)]
struct Inspection {
    role: CertRole,
    i18n: leptos_i18n::I18nContext<crate::language::Locale>,
    latest: RwSignal<u64>,
    result: RwSignal<Option<Result<Vec<CertSummary>, String>>>,
}

impl Inspection {
    fn new(role: CertRole) -> Self {
        Self { role, i18n: use_i18n(), latest: RwSignal::new(0), result: RwSignal::new(None) }
    }

    fn inspect(self, pem: &str) {
        let ticket = self.latest.get_untracked() + 1;
        self.latest.set(ticket);
        if pem.trim().is_empty() {
            self.result.set(None);
            return;
        }
        let (pem, role, locale) = (pem.to_owned(), self.role, self.i18n.get_locale_untracked());
        leptos::task::spawn_local(async move {
            let answer = inspect_certificates(pem, role).await.map_err(|err| match err {
                AppError::Validation(errors) => errors.0.into_values().next().unwrap_or_default(),
                other => other.message_in(locale),
            });
            if self.latest.get_untracked() == ticket {
                self.result.set(Some(answer));
            }
        });
    }

    fn read(self) -> Vec<CertSummary> {
        self.result.with(|r| r.as_ref().and_then(|r| r.as_ref().ok()).cloned().unwrap_or_default())
    }

    fn error(self) -> Option<String> {
        self.result.with(|r| r.as_ref().and_then(|r| r.as_ref().err()).cloned())
    }
}
