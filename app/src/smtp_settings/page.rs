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
    shared::{
        alert::ErrorAlert,
        fields::{EnumSelect, TextArea, TextField},
        time::format_utc,
    },
};
use leptos::prelude::*;
use std::collections::BTreeSet;

#[component]
pub fn SmtpPage() -> impl IntoView {
    view! {
        <AdminFrame>
            <h1>"SMTP"</h1>
            <crate::smtp_health::HealthBanner/>
            <SmtpSettings/>
        </AdminFrame>
    }
}

#[component]
fn SmtpSettings() -> impl IntoView {
    let settings = Resource::new(|| (), |_| load_smtp_settings());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading settings…"</p> }>
            {move || Suspend::new(async move {
                match settings.await {
                    Ok(initial) => view! { <SettingsForm initial/> }.into_any(),
                    Err(err) => view! { <ErrorAlert error=Some(err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// What the line under the buttons says.
#[derive(Clone, PartialEq)]
enum Outcome {
    Success(String),
    Failure(String),
}

fn suggested_port(form: &SmtpForm) -> String {
    SmtpPort::suggested(form.tls_enabled.then_some(form.tls_mode)).to_string()
}

#[component]
fn SettingsForm(initial: SmtpSettingsView) -> impl IntoView {
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
        form.with(
            |f| if f.mode == Mode::Custom { f.parse_custom().err().unwrap_or_default() } else { FieldErrors::new() },
        )
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
            Ok(address) => outcome.set(Some(Outcome::Success(format!("Test email sent to {address}")))),
            Err(AppError::Smtp(failure)) => {
                outcome.set(Some(Outcome::Failure(format!("{failure}. {}", failure.hint()))));
            }
            Err(err) => {
                let message = summary(&err);
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
            outcome.set(Some(Outcome::Failure("Some fields need attention.".into())));
            return;
        }
        outcome.set(None);
        test.dispatch(SendTestEmail { form: form.get_untracked() });
    };
    let busy = move || save.pending().get() || test.pending().get();
    let default_note = match &initial.default_service {
        DefaultService::LocalMailbox => {
            "The built-in mail service is the local Mailbox: mail does not leave the instance. \
             Read it under Admin › Platform › Mailbox. Your custom settings stay stored for when you switch back."
                .to_owned()
        }
        DefaultService::Relay { host } => format!(
            "The built-in mail service sends through the instance's relay {host}; no setup is needed. \
             Your custom settings stay stored for when you switch back."
        ),
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
                outcome.set(Some(Outcome::Success("Settings saved".into())));
            }
            Err(err) => {
                let message = summary(&err);
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
            outcome.set(Some(Outcome::Failure("Some fields need attention.".into())));
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
                <legend>"How this instance sends email"</legend>
                <label class="choice">
                    <input type="radio" name="mode" value="default"
                        prop:checked=move || !custom()
                        on:change=move |_| form.update(|f| f.mode = Mode::Default)/>
                    "Use default email settings"
                </label>
                <label class="choice">
                    <input type="radio" name="mode" value="custom"
                        prop:checked=custom
                        on:change=move |_| form.update(|f| f.mode = Mode::Custom)/>
                    "Use custom email settings"
                </label>
            </fieldset>

            <Show when=move || !custom()>
                <p class="note">{default_note.clone()}</p>
            </Show>

            <Show when=custom>
                <TextField id=field::HOST label="Email Server" placeholder="smtp.example.com"
                    value=value(|f| f.host.clone()) error=error_for(field::HOST)
                    on_input=edit(field::HOST, |f, v| f.host = v)/>
                <TextField id=field::FROM label="From" placeholder="Mailroom <mail@example.com>"
                    hint="Display Name <name@example.com> or name@example.com. Letters, digits and spaces in the name; . - _ + in the address."
                    value=value(|f| f.from.clone()) error=error_for(field::FROM)
                    on_input=edit(field::FROM, |f, v| f.from = v)/>
                <TextField id=field::PORT label="Port" input_mode="numeric"
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
                    <label for="tls_enabled">"TLS/SSL"</label>
                </div>
                <Show when=tls_on>
                    <div class="field">
                        <EnumSelect id="tls_version" label="TLS/SSL version"
                            choices=&[(MinTlsVersion::Tls12, "tls12", "TLS 1.2 (recommended)"), (MinTlsVersion::Tls13, "tls13", "TLS 1.3")]
                            value=Signal::derive(move || form.with(|f| f.tls_version))
                            on_change=Callback::new(move |v| form.update(|f| f.tls_version = v))/>
                    </div>
                    <div class="field">
                        <EnumSelect id="tls_mode" label="TLS mode"
                            choices=&[(TlsMode::StartTls, "starttls", "STARTTLS"), (TlsMode::Implicit, "implicit", "Implicit TLS")]
                            value=Signal::derive(move || form.with(|f| f.tls_mode))
                            on_change=Callback::new(move |v| {
                                form.update(|f| f.tls_mode = v);
                                follow_tls();
                            })/>
                    </div>
                </Show>

                <div class="field">
                    <EnumSelect id="auth_type" label="Authentication type"
                        choices=&[
                            (AuthType::Basic, "basic", "Basic Authentication"),
                            (AuthType::OAuth2, "oauth2", "OAuth 2.0"),
                            (AuthType::GoogleServiceAccount, "google", "Google service account"),
                        ]
                        value=Signal::derive(move || form.with(|f| f.auth_type))
                        on_change=Callback::new(move |v| form.update(|f| f.auth_type = v))/>
                </div>
                <Show when=move || !google()>
                    <TextField id=field::USERNAME label="Username"
                        hint=Signal::derive(move || if oauth() { "The mailbox to send as.".to_owned() } else { "Leave empty for a relay that needs no login.".to_owned() })
                        value=value(|f| f.username.clone()) error=error_for(field::USERNAME)
                        on_input=edit(field::USERNAME, |f, v| f.username = v)/>
                </Show>
                <Show when=google>
                    <TextField id=field::USERNAME label="Send as" placeholder="mail@example.com"
                        hint="The Workspace mailbox the service account sends as (domain-wide delegation)."
                        value=value(|f| f.username.clone()) error=error_for(field::USERNAME)
                        on_input=edit(field::USERNAME, |f, v| f.username = v)/>
                    <TextArea id=field::SERVICE_ACCOUNT_KEY label="Service account key (JSON)"
                        upload=("Or choose the downloaded key file", ".json,application/json")
                        placeholder=Signal::derive(move || if secrets.with(|s| s.service_account.is_some()) { "Saved – leave blank to keep".to_owned() } else { "{ \"type\": \"service_account\", … }".to_owned() })
                        hint=Signal::derive(move || secrets.with(|s| s.service_account.as_ref().map(|a| format!("A key for {a} is saved.")).unwrap_or_default()))
                        value=value(|f| f.service_account_key.clone()) error=error_for(field::SERVICE_ACCOUNT_KEY)
                        on_input=edit(field::SERVICE_ACCOUNT_KEY, |f, v| f.service_account_key = v)/>
                </Show>
                <Show when=basic>
                    <TextField id=field::PASSWORD label="Password" kind="password" autocomplete="new-password"
                        placeholder=Signal::derive(move || if password_set.get() { "Saved – leave blank to keep".to_owned() } else { String::new() })
                        hint=Signal::derive(move || if password_set.get() { "A password is saved.".to_owned() } else { String::new() })
                        value=value(|f| f.password.clone()) error=error_for(field::PASSWORD)
                        on_input=edit(field::PASSWORD, |f, v| f.password = v)/>
                </Show>
                <Show when=oauth>
                    <TextField id=field::CLIENT_ID label="Client ID"
                        value=value(|f| f.client_id.clone()) error=error_for(field::CLIENT_ID)
                        on_input=edit(field::CLIENT_ID, |f, v| f.client_id = v)/>
                    <TextField id=field::CLIENT_SECRET label="Client Secret" kind="password" autocomplete="new-password"
                        placeholder=Signal::derive(move || if client_secret_set.get() { "Saved – leave blank to keep".to_owned() } else { String::new() })
                        hint=Signal::derive(move || if client_secret_set.get() { "A client secret is saved.".to_owned() } else { String::new() })
                        value=value(|f| f.client_secret.clone()) error=error_for(field::CLIENT_SECRET)
                        on_input=edit(field::CLIENT_SECRET, |f, v| f.client_secret = v)/>
                    <TextField id=field::TOKEN_URL label="Token URL" placeholder="https://login.example.com/oauth2/v2.0/token"
                        value=value(|f| f.token_url.clone()) error=error_for(field::TOKEN_URL)
                        on_input=edit(field::TOKEN_URL, |f, v| f.token_url = v)/>
                    <TextField id=field::SCOPE label="Scope" placeholder="https://outlook.office365.com/.default"
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
                    {move || if save.pending().get() { "Saving…" } else { "Save" }}
                </button>
                <button type="button" class="secondary" disabled=busy on:click=on_test>
                    {move || if test.pending().get() { "Sending…" } else { "Send Test Email" }}
                </button>
            </div>
            <p class="result" role="status" aria-live="polite"
                class:success=move || matches!(outcome.get(), Some(Outcome::Success(_)))
                class:failure=move || matches!(outcome.get(), Some(Outcome::Failure(_)))>
                {move || outcome.get().map(|o| match o { Outcome::Success(m) | Outcome::Failure(m) => m })}
            </p>
            <p class="meta">
                {move || saved.get().0.map(|who| {
                    let when = saved.get().1.map(format_utc).unwrap_or_default();
                    format!("Last saved by {who} at {when} (version {}).", version.get())
                })}
            </p>
        </form>
    }
}

/// The line under the buttons for a failed save: a re-entry demand is named outright.
fn summary(err: &AppError) -> String {
    match err {
        AppError::Validation(errors) => [field::PASSWORD, field::CLIENT_SECRET, field::SERVICE_ACCOUNT_KEY]
            .iter()
            .filter_map(|name| errors.get(name))
            .find(|m| m.starts_with("Re-enter") || m.starts_with("Enter the"))
            .map_or_else(|| "Some fields need attention.".to_owned(), str::to_owned),
        other => other.to_string(),
    }
}
