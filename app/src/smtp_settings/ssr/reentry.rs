//! The re-entry rule for stored secrets.

use super::stored::StoredSettings;
use crate::{
    i18n::td_string,
    language::Locale,
    smtp_settings::form::{AuthSettings, CustomSettings, field},
};

/// Where a secret for the new settings comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretSource {
    Typed,
    Stored,
    NotNeeded,
}

/// The re-entry rule: a stored Password / Client Secret / service account key is reused only
/// while the server, port, username (the mailbox to send as), authentication type and TLS (on,
/// and its mode) are unchanged — and, for the client secret, the token URL (a service account's
/// token URI is inside its sealed key, so it cannot change without the key). Turning TLS off would otherwise send the stored password in clear.
/// Returns the field error to show when the admin must type the secret again.
pub fn secret_source(
    stored: Option<&StoredSettings>,
    settings: &CustomSettings,
    typed: &str,
) -> Result<SecretSource, (&'static str, String)> {
    secret_source_in(Locale::en, stored, settings, typed)
}

/// [`secret_source`], with the field error worded in `locale`.
pub fn secret_source_in(
    locale: Locale,
    stored: Option<&StoredSettings>,
    settings: &CustomSettings,
    typed: &str,
) -> Result<SecretSource, (&'static str, String)> {
    let l = locale;
    let (field, noun, stored_secret) = match settings.auth {
        AuthSettings::Basic { .. } => {
            (field::PASSWORD, td_string!(l, invalid.noun_password), stored.and_then(|s| s.password_enc.as_ref()))
        }
        AuthSettings::OAuth2 { .. } => (
            field::CLIENT_SECRET,
            td_string!(l, invalid.noun_client_secret),
            stored.and_then(|s| s.client_secret_enc.as_ref()),
        ),
        AuthSettings::Google { .. } => (
            field::SERVICE_ACCOUNT_KEY,
            td_string!(l, invalid.noun_service_account_key),
            stored.and_then(|s| s.service_key_enc.as_ref()),
        ),
    };
    if !typed.is_empty() {
        return Ok(SecretSource::Typed);
    }
    if let AuthSettings::Basic { username } = &settings.auth
        && username.is_empty()
    {
        return Ok(SecretSource::NotNeeded);
    }
    let (Some(stored), Some(_)) = (stored, stored_secret) else {
        return Err((field, td_string!(l, invalid.enter_secret, noun).to_string()));
    };
    let changed = if stored.host != settings.host.to_string() {
        Some(td_string!(l, invalid.reason_host))
    } else if stored.port != i64::from(settings.port.get()) {
        Some(td_string!(l, invalid.reason_port))
    } else if stored.username != settings.auth.username() {
        Some(td_string!(l, invalid.reason_username))
    } else if stored.auth_type != settings.auth.kind() {
        Some(td_string!(l, invalid.reason_auth_type))
    } else if stored.tls_enabled && !settings.tls.enabled {
        Some(td_string!(l, invalid.reason_tls_off))
    } else if stored.tls_enabled && stored.tls_mode != settings.tls.mode {
        Some(td_string!(l, invalid.reason_tls_mode))
    } else if let AuthSettings::OAuth2 { token_url, .. } = &settings.auth {
        (stored.token_url != token_url.to_string()).then_some(td_string!(l, invalid.reason_token_url))
    } else {
        None
    };
    match changed {
        None => Ok(SecretSource::Stored),
        Some(reason) => Err((field, td_string!(l, invalid.reenter_secret, noun, reason).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp_settings::{
        form::SmtpForm,
        types::{AuthType, MinTlsVersion, Mode, TlsMode},
    };

    fn form() -> SmtpForm {
        SmtpForm {
            mode: Mode::Custom,
            host: "smtp.example.com".into(),
            port: "587".into(),
            from: "Mailroom <mail@example.com>".into(),
            tls_enabled: true,
            auth_type: AuthType::Basic,
            username: "mailer".into(),
            ..SmtpForm::default()
        }
    }

    fn stored_from(form: &SmtpForm) -> StoredSettings {
        let mut stored = StoredSettings { password_enc: Some("sealed".into()), ..StoredSettings::default() };
        stored.apply(&form.parse_custom().unwrap());
        stored
    }

    #[test]
    fn a_blank_password_keeps_the_stored_one_when_nothing_that_matters_changed() {
        let stored = stored_from(&form());
        let next = SmtpForm { from: "Other <other@example.com>".into(), ..form() };
        assert_eq!(secret_source(Some(&stored), &next.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn each_guarded_change_demands_the_password_again() {
        let stored = stored_from(&form());
        let cases = [
            (
                SmtpForm { host: "smtp.other.example".into(), ..form() },
                "Re-enter the password: the email server changed",
            ),
            (SmtpForm { port: "2525".into(), ..form() }, "Re-enter the password: the port changed"),
            (SmtpForm { username: "someone".into(), ..form() }, "Re-enter the password: the username changed"),
        ];
        for (next, message) in cases {
            let result = secret_source(Some(&stored), &next.parse_custom().unwrap(), "");
            assert_eq!(result, Err((field::PASSWORD, message.to_owned())));
            assert_eq!(secret_source(Some(&stored), &next.parse_custom().unwrap(), "typed"), Ok(SecretSource::Typed));
        }
    }

    #[test]
    fn switching_to_oauth_or_changing_the_token_url_demands_the_client_secret() {
        let stored = stored_from(&form());
        let oauth = SmtpForm {
            auth_type: AuthType::OAuth2,
            client_id: "id".into(),
            token_url: "https://login.example.com/token".into(),
            ..form()
        };
        let result = secret_source(Some(&stored), &oauth.parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::CLIENT_SECRET, "Enter the client secret.".to_owned())));

        let mut stored = stored_from(&oauth);
        stored.client_secret_enc = Some("sealed".into());
        let moved = SmtpForm { token_url: "https://evil.example.com/token".into(), ..oauth.clone() };
        let result = secret_source(Some(&stored), &moved.parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::CLIENT_SECRET, "Re-enter the client secret: the token URL changed".to_owned())));
        assert_eq!(secret_source(Some(&stored), &oauth.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn changing_the_auth_type_back_to_basic_demands_the_password() {
        let mut stored = stored_from(&form());
        stored.auth_type = AuthType::OAuth2;
        let result = secret_source(Some(&stored), &form().parse_custom().unwrap(), "");
        assert_eq!(result, Err((field::PASSWORD, "Re-enter the password: the authentication type changed".to_owned())));
    }

    #[test]
    fn turning_tls_off_or_changing_its_mode_demands_the_password() {
        let stored = stored_from(&form());
        let cases = [
            (SmtpForm { tls_enabled: false, ..form() }, "Re-enter the password: TLS/SSL was turned off"),
            (SmtpForm { tls_mode: TlsMode::Implicit, ..form() }, "Re-enter the password: the TLS mode changed"),
        ];
        for (next, message) in cases {
            let result = secret_source(Some(&stored), &next.parse_custom().unwrap(), "");
            assert_eq!(result, Err((field::PASSWORD, message.to_owned())));
        }
        // A stricter minimum version keeps the stored password.
        let stricter = SmtpForm { tls_version: MinTlsVersion::Tls13, ..form() };
        assert_eq!(secret_source(Some(&stored), &stricter.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
    }

    #[test]
    fn a_service_account_key_is_guarded_like_the_password() {
        let google =
            SmtpForm { auth_type: AuthType::GoogleServiceAccount, username: "sender@example.com".into(), ..form() };
        let mut stored = stored_from(&google);
        assert_eq!(
            secret_source(Some(&stored), &google.parse_custom().unwrap(), ""),
            Err((field::SERVICE_ACCOUNT_KEY, "Enter the service account key.".to_owned()))
        );
        stored.service_key_enc = Some("sealed".into());
        assert_eq!(secret_source(Some(&stored), &google.parse_custom().unwrap(), ""), Ok(SecretSource::Stored));
        let other_mailbox = SmtpForm { username: "ceo@example.com".into(), ..google.clone() };
        assert_eq!(
            secret_source(Some(&stored), &other_mailbox.parse_custom().unwrap(), ""),
            Err((field::SERVICE_ACCOUNT_KEY, "Re-enter the service account key: the username changed".to_owned()))
        );
        let other_server = SmtpForm { host: "smtp.other.example".into(), ..google };
        assert_eq!(
            secret_source(Some(&stored), &other_server.parse_custom().unwrap(), ""),
            Err((field::SERVICE_ACCOUNT_KEY, "Re-enter the service account key: the email server changed".to_owned()))
        );
    }

    #[test]
    fn an_empty_username_needs_no_password() {
        let open_relay = SmtpForm { username: String::new(), ..form() };
        assert_eq!(secret_source(None, &open_relay.parse_custom().unwrap(), ""), Ok(SecretSource::NotNeeded));
    }
}
