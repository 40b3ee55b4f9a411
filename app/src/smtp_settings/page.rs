//! The SMTP page: every field validates live through the same parsers the server uses.

use super::{
    DefaultService, SaveOutcome, SaveSmtpSettings, SendTestEmail, SmtpSettingsView,
    form::{SmtpForm, field},
    load_smtp_settings,
    types::{AuthType, MinTlsVersion, Mode, SmtpPort, TlsMode},
};
use crate::{
    admin_shell::AdminFrame,
    error::{AppError, FieldErrors},
    i18n::{t, t_string, td_string, use_i18n},
    language::{Locale, format_count, format_time},
    shared::{
        alert::ErrorAlert,
        fields::{EnumSelect, TextArea, TextField},
    },
};
use leptos::prelude::*;
use std::collections::BTreeSet;

#[component]
pub fn SmtpPage() -> impl IntoView {
    let i18n = use_i18n();
    view! {
        <AdminFrame>
            <h1>{t!(i18n, smtp.title)}</h1>
            <crate::smtp_health::HealthBanner/>
            <SmtpSettings/>
        </AdminFrame>
    }
}

#[component]
fn SmtpSettings() -> impl IntoView {
    let settings = Resource::new(|| (), |_| load_smtp_settings());
    let i18n = use_i18n();
    view! {
        <Suspense fallback=move || view! { <p class="loading">{t!(i18n, smtp.loading)}</p> }>
            {move || Suspend::new(async move {
                match settings.await {
                    Ok(initial) => view! { <SettingsForm initial/> }.into_any(),
                    Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// What the line under the buttons says; worded when shown, so a language switch rewords it.
#[derive(Clone, PartialEq)]
enum Outcome {
    Saved,
    TestSent(String),
    NeedsAttention,
    Smtp(crate::mail::SmtpFailure),
    Failure(String),
}

impl Outcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Saved | Self::TestSent(_))
    }

    fn text(&self, locale: Locale) -> String {
        match self {
            Self::Saved => td_string!(locale, smtp.saved).to_owned(),
            Self::TestSent(address) => td_string!(locale, smtp.test_sent, address).to_string(),
            Self::NeedsAttention => td_string!(locale, smtp.needs_attention).to_owned(),
            Self::Smtp(failure) => format!("{}. {}", failure.message_in(locale), failure.hint_in(locale)),
            Self::Failure(message) => message.clone(),
        }
    }
}

fn suggested_port(form: &SmtpForm) -> String {
    SmtpPort::suggested(form.tls_enabled.then_some(form.tls_mode)).to_string()
}

#[component]
fn SettingsForm(initial: SmtpSettingsView) -> impl IntoView {
    let i18n = use_i18n();
    let form = RwSignal::new(initial.form.clone());
    let version = RwSignal::new(initial.version);
    let password_set = RwSignal::new(initial.password_set);
    let client_secret_set = RwSignal::new(initial.client_secret_set);
    let secrets = RwSignal::new(initial.secrets.clone());
    let saved = RwSignal::new((initial.saved_by.clone(), initial.saved_at));
    // The port follows the TLS choice until the admin types one (a saved port counts as typed).
    let port_typed = RwSignal::new(!initial.form.port.is_empty());
    if initial.form.port.is_empty() {
        form.update(|f| f.port = suggested_port(f));
    }
    let touched = RwSignal::new(BTreeSet::<&'static str>::new());
    let submitted = RwSignal::new(false);
    let server_errors = RwSignal::new(FieldErrors::new());
    let outcome = RwSignal::new(None::<Outcome>);

    let live_errors = Memo::new(move |_| {
        form.with(|f| {
            if f.mode == Mode::Custom {
                f.parse_custom_in(i18n.get_locale()).err().unwrap_or_default()
            } else {
                FieldErrors::new()
            }
        })
    });
    let error_for = move |name: &'static str| {
        Signal::derive(move || {
            if let Some(message) = server_errors.with(|e| e.get(name).map(str::to_owned)) {
                return Some(message);
            }
            let shown = submitted.get() || touched.with(|t| t.contains(name));
            shown.then(|| live_errors.with(|e| e.get(name).map(str::to_owned))).flatten()
        })
    };
    let edit = move |name: &'static str, apply: fn(&mut SmtpForm, String)| {
        Callback::new(move |value: String| {
            form.update(|f| apply(f, value));
            touched.update(|t| {
                t.insert(name);
            });
            server_errors.update(|e| {
                e.0.remove(name);
            });
        })
    };
    let follow_tls = move || {
        if !port_typed.get_untracked() {
            form.update(|f| f.port = suggested_port(f));
        }
    };

    let save = ServerAction::<SaveSmtpSettings>::new();
    let test = ServerAction::<SendTestEmail>::new();
    Effect::new(move |_| {
        let Some(result) = test.value().get() else { return };
        match result {
            Ok(address) => outcome.set(Some(Outcome::TestSent(address))),
            Err(AppError::Smtp(failure)) => outcome.set(Some(Outcome::Smtp(failure))),
            Err(err) => {
                let message = summary(&err, i18n.get_locale_untracked());
                if let AppError::Validation(errors) = err {
                    server_errors.set(errors);
                }
                outcome.set(Some(Outcome::Failure(message)));
            }
        }
    });
    let on_test = move |_| {
        submitted.set(true);
        if !live_errors.with(FieldErrors::is_empty) {
            outcome.set(Some(Outcome::NeedsAttention));
            return;
        }
        outcome.set(None);
        test.dispatch(SendTestEmail { form: form.get_untracked() });
    };
    let busy = move || save.pending().get() || test.pending().get();
    let default_service = initial.default_service.clone();
    let default_note = move || match &default_service {
        DefaultService::LocalMailbox => t_string!(i18n, smtp.default_local).to_string(),
        DefaultService::Relay { host } => t_string!(i18n, smtp.default_relay, host).to_string(),
    };
    Effect::new(move |_| {
        let Some(result) = save.value().get() else { return };
        match result {
            Ok(SaveOutcome {
                version: v,
                saved_by,
                saved_at,
                password_set: p,
                client_secret_set: c,
                secrets: s,
                ..
            }) => {
                version.set(v);
                password_set.set(p);
                client_secret_set.set(c);
                secrets.set(s);
                saved.set((saved_by, saved_at));
                form.update(|f| {
                    f.password.clear();
                    f.client_secret.clear();
                    f.service_account_key.clear();
                    f.trusted_ca_pem.clear();
                    f.client_cert_pem.clear();
                    f.client_key_pem.clear();
                    f.remove_trusted_ca = false;
                    f.remove_client_cert = false;
                });
                server_errors.set(FieldErrors::new());
                outcome.set(Some(Outcome::Saved));
            }
            Err(err) => {
                let message = summary(&err, i18n.get_locale_untracked());
                if let AppError::Validation(errors) = err {
                    server_errors.set(errors);
                }
                outcome.set(Some(Outcome::Failure(message)));
            }
        }
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitted.set(true);
        if !live_errors.with(FieldErrors::is_empty) {
            outcome.set(Some(Outcome::NeedsAttention));
            return;
        }
        outcome.set(None);
        save.dispatch(SaveSmtpSettings { form: form.get_untracked(), version: version.get_untracked() });
    };

    let custom = move || form.with(|f| f.mode == Mode::Custom);
    let tls_on = move || form.with(|f| f.tls_enabled);
    let oauth = move || form.with(|f| f.auth_type == AuthType::OAuth2);
    let google = move || form.with(|f| f.auth_type == AuthType::GoogleServiceAccount);
    let basic = move || form.with(|f| f.auth_type == AuthType::Basic);
    let value = move |get: fn(&SmtpForm) -> String| Signal::derive(move || form.with(get));

    view! {
        <form class="smtp-form" on:submit=on_submit novalidate>
            <fieldset class="mode">
                <legend>{t!(i18n, smtp.mode_legend)}</legend>
                <label class="choice">
                    <input type="radio" name="mode" value="default"
                        prop:checked=move || !custom()
                        on:change=move |_| form.update(|f| f.mode = Mode::Default)/>
                    {t!(i18n, smtp.mode_default)}
                </label>
                <label class="choice">
                    <input type="radio" name="mode" value="custom"
                        prop:checked=custom
                        on:change=move |_| form.update(|f| f.mode = Mode::Custom)/>
                    {t!(i18n, smtp.mode_custom)}
                </label>
            </fieldset>

            <Show when=move || !custom()>
                <p class="note">{default_note.clone()}</p>
            </Show>

            <Show when=custom>
                <TextField id=field::HOST label=move || t_string!(i18n, smtp.host) placeholder="smtp.example.com"
                    value=value(|f| f.host.clone()) error=error_for(field::HOST)
                    on_input=edit(field::HOST, |f, v| f.host = v)/>
                <TextField id=field::FROM label=move || t_string!(i18n, smtp.from) placeholder="Mailroom <mail@example.com>"
                    hint=Signal::derive(move || {
                        let full = format!("{} <name@example.com>", t_string!(i18n, smtp.display_name));
                        t_string!(i18n, smtp.from_hint, full, bare = "name@example.com").to_string()
                    })
                    value=value(|f| f.from.clone()) error=error_for(field::FROM)
                    on_input=edit(field::FROM, |f, v| f.from = v)/>
                <TextField id=field::PORT label=move || t_string!(i18n, smtp.port) input_mode="numeric"
                    value=value(|f| f.port.clone()) error=error_for(field::PORT)
                    on_input=Callback::new(move |v: String| {
                        port_typed.set(true);
                        edit(field::PORT, |f, v| f.port = v).run(v);
                    })/>

                <div class="field checkbox">
                    <input type="checkbox" id="tls_enabled" prop:checked=tls_on
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            form.update(|f| {
                                f.tls_enabled = on;
                                if on && !port_typed.get_untracked() {
                                    f.tls_mode = TlsMode::StartTls;
                                } else if on {
                                    f.tls_mode = f.port.trim().parse().map(TlsMode::for_port).unwrap_or_default();
                                }
                            });
                            follow_tls();
                        }/>
                    <label for="tls_enabled">{t!(i18n, smtp.tls)}</label>
                </div>
                <Show when=tls_on>
                    <div class="field">
                        <EnumSelect id="tls_version" label=move || t_string!(i18n, smtp.tls_version)
                            choices=&[
                                (MinTlsVersion::Tls12, "tls12", |l| td_string!(l, smtp.tls12)),
                                (MinTlsVersion::Tls13, "tls13", |l| td_string!(l, smtp.tls13)),
                            ]
                            value=Signal::derive(move || form.with(|f| f.tls_version))
                            on_change=Callback::new(move |v| form.update(|f| f.tls_version = v))/>
                    </div>
                    <div class="field">
                        <EnumSelect id="tls_mode" label=move || t_string!(i18n, smtp.tls_mode)
                            choices=&[
                                (TlsMode::StartTls, "starttls", |l| td_string!(l, smtp.starttls)),
                                (TlsMode::Implicit, "implicit", |l| td_string!(l, smtp.implicit)),
                            ]
                            value=Signal::derive(move || form.with(|f| f.tls_mode))
                            on_change=Callback::new(move |v| {
                                form.update(|f| f.tls_mode = v);
                                follow_tls();
                            })/>
                    </div>
                </Show>

                <div class="field">
                    <EnumSelect id="auth_type" label=move || t_string!(i18n, smtp.auth_type)
                        choices=&[
                            (AuthType::Basic, "basic", |l| td_string!(l, smtp.basic)),
                            (AuthType::OAuth2, "oauth2", |l| td_string!(l, smtp.oauth2)),
                            (AuthType::GoogleServiceAccount, "google", |l| td_string!(l, smtp.google)),
                        ]
                        value=Signal::derive(move || form.with(|f| f.auth_type))
                        on_change=Callback::new(move |v| form.update(|f| f.auth_type = v))/>
                </div>
                <Show when=move || !google()>
                    <TextField id=field::USERNAME label=move || t_string!(i18n, smtp.username)
                        hint=Signal::derive(move || if oauth() { t_string!(i18n, smtp.username_oauth_hint).to_owned() } else { t_string!(i18n, smtp.username_basic_hint).to_owned() })
                        value=value(|f| f.username.clone()) error=error_for(field::USERNAME)
                        on_input=edit(field::USERNAME, |f, v| f.username = v)/>
                </Show>
                <Show when=google>
                    <TextField id=field::USERNAME label=move || t_string!(i18n, smtp.send_as) placeholder="mail@example.com"
                        hint=Signal::derive(move || t_string!(i18n, smtp.send_as_hint).to_owned())
                        value=value(|f| f.username.clone()) error=error_for(field::USERNAME)
                        on_input=edit(field::USERNAME, |f, v| f.username = v)/>
                    <TextArea id=field::SERVICE_ACCOUNT_KEY label=move || t_string!(i18n, smtp.service_account_key)
                        upload=(TextProp::from(move || t_string!(i18n, smtp.key_upload)), ".json,application/json")
                        placeholder=Signal::derive(move || if secrets.with(|s| s.service_account.is_some()) { t_string!(i18n, smtp.saved_keep).to_owned() } else { "{ \"type\": \"service_account\", … }".to_owned() })
                        hint=Signal::derive(move || secrets.with(|s| s.service_account.as_ref().map(|account| t_string!(i18n, smtp.key_saved, account).to_string()).unwrap_or_default()))
                        value=value(|f| f.service_account_key.clone()) error=error_for(field::SERVICE_ACCOUNT_KEY)
                        on_input=edit(field::SERVICE_ACCOUNT_KEY, |f, v| f.service_account_key = v)/>
                </Show>
                <Show when=basic>
                    <TextField id=field::PASSWORD label=move || t_string!(i18n, smtp.password) kind="password" autocomplete="new-password"
                        placeholder=Signal::derive(move || if password_set.get() { t_string!(i18n, smtp.saved_keep).to_owned() } else { String::new() })
                        hint=Signal::derive(move || if password_set.get() { t_string!(i18n, smtp.password_saved).to_owned() } else { String::new() })
                        value=value(|f| f.password.clone()) error=error_for(field::PASSWORD)
                        on_input=edit(field::PASSWORD, |f, v| f.password = v)/>
                </Show>
                <Show when=oauth>
                    <TextField id=field::CLIENT_ID label=move || t_string!(i18n, smtp.client_id)
                        value=value(|f| f.client_id.clone()) error=error_for(field::CLIENT_ID)
                        on_input=edit(field::CLIENT_ID, |f, v| f.client_id = v)/>
                    <TextField id=field::CLIENT_SECRET label=move || t_string!(i18n, smtp.client_secret) kind="password" autocomplete="new-password"
                        placeholder=Signal::derive(move || if client_secret_set.get() { t_string!(i18n, smtp.saved_keep).to_owned() } else { String::new() })
                        hint=Signal::derive(move || if client_secret_set.get() { t_string!(i18n, smtp.client_secret_saved).to_owned() } else { String::new() })
                        value=value(|f| f.client_secret.clone()) error=error_for(field::CLIENT_SECRET)
                        on_input=edit(field::CLIENT_SECRET, |f, v| f.client_secret = v)/>
                    <TextField id=field::TOKEN_URL label=move || t_string!(i18n, smtp.token_url) placeholder="https://login.example.com/oauth2/v2.0/token"
                        value=value(|f| f.token_url.clone()) error=error_for(field::TOKEN_URL)
                        on_input=edit(field::TOKEN_URL, |f, v| f.token_url = v)/>
                    <TextField id=field::SCOPE label=move || t_string!(i18n, smtp.scope) placeholder="https://outlook.office365.com/.default"
                        value=value(|f| f.scope.clone()) error=error_for(field::SCOPE)
                        on_input=edit(field::SCOPE, |f, v| f.scope = v)/>
                </Show>
                <super::trust_fields::TrustFields form secrets
                    ca_error=error_for(field::TRUSTED_CA) cert_error=error_for(field::CLIENT_CERT)
                    key_error=error_for(field::CLIENT_KEY)
                    on_ca=edit(field::TRUSTED_CA, |f, v| f.trusted_ca_pem = v)
                    on_cert=edit(field::CLIENT_CERT, |f, v| f.client_cert_pem = v)
                    on_key=edit(field::CLIENT_KEY, |f, v| f.client_key_pem = v)/>
            </Show>

            <div class="buttons">
                <button type="submit" disabled=busy>
                    {move || if save.pending().get() { t_string!(i18n, smtp.saving) } else { t_string!(i18n, smtp.save) }}
                </button>
                <button type="button" class="secondary" disabled=busy on:click=on_test>
                    {move || if test.pending().get() { t_string!(i18n, smtp.sending) } else { t_string!(i18n, smtp.send_test) }}
                </button>
            </div>
            <p class="result" role="status" aria-live="polite"
                class:success=move || outcome.with(|o| o.as_ref().is_some_and(Outcome::succeeded))
                class:failure=move || outcome.with(|o| o.as_ref().is_some_and(|o| !o.succeeded()))>
                {move || outcome.get().map(|o| o.text(i18n.get_locale()))}
            </p>
            <p class="meta">
                {move || saved.get().0.map(|who| {
                    let locale = i18n.get_locale();
                    let when = saved.get().1.map(|at| format_time(locale, at)).unwrap_or_default();
                    let version = format_count(locale, version.get() as i64);
                    t_string!(i18n, smtp.last_saved, who, when, version).to_string()
                })}
            </p>
        </form>
    }
}

/// The line under the buttons for a failed save: a re-entry demand is named outright.
fn summary(err: &AppError, locale: Locale) -> String {
    match err {
        AppError::Validation(errors) => {
            errors.demanded_secret().map_or_else(|| td_string!(locale, smtp.needs_attention).to_owned(), str::to_owned)
        }
        other => other.message_in(locale),
    }
}
