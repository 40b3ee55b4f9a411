//! One error type for every server function.
//!
//! Internal causes are logged once, with their cause chain, where they are turned into
//! [`AppError::Internal`]; the client only ever learns "Something went wrong".

use crate::{i18n::td_string, language::Locale};
use serde::{Deserialize, Serialize};
use server_fn::{
    ServerFnError,
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use std::collections::BTreeMap;

/// Messages keyed by the form field they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    /// The key that names the field of a demanded secret (see [`FieldErrors::demand_secret`]).
    pub const SECRET_DEMANDED: &str = "secret_demanded";

    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The secret field the admin must type (again) — the re-entry rule — with its message, also
    /// named under [`FieldErrors::SECRET_DEMANDED`] so the page can say it outright.
    pub fn demand_secret(&mut self, field: &str, message: impl Into<String>) {
        self.add(field, message);
        self.add(Self::SECRET_DEMANDED, field);
    }

    /// The message of the secret field the admin must type (again), if one is demanded.
    pub fn demanded_secret(&self) -> Option<&str> {
        self.get(Self::SECRET_DEMANDED).and_then(|field| self.get(field))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(AppError::Validation)` when any field failed.
    pub fn into_result(self) -> Result<(), AppError> {
        if self.is_empty() { Ok(()) } else { Err(AppError::Validation(self)) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum AppError {
    #[error("Some fields need attention.")]
    Validation(FieldErrors),
    #[error("Sign in to continue.")]
    Unauthorized,
    /// Deliberately the same for an unknown email and a wrong password.
    #[error("Wrong email or password.")]
    InvalidCredentials,
    #[error("You do not have access to this page.")]
    Forbidden,
    #[error("Too many attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// Sending failed; the page shows the failure and its hint.
    #[error("{0}")]
    Smtp(crate::mail::SmtpFailure),
    #[error("Something went wrong. Try again, and tell the operator if it keeps happening.")]
    Internal,
    /// The request never reached the function (network, encoding).
    #[error("Could not reach the server: {0}")]
    Transport(String),
    /// The request itself is malformed (arguments of the wrong shape, a field far too long).
    #[error("The request was not understood: {0}")]
    BadRequest(String),
    #[error("The request is larger than the {limit_bytes} bytes this server accepts.")]
    TooLarge { limit_bytes: usize },
    #[error("The request took too long to arrive or to answer.")]
    RequestTimeout,
}

impl AppError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        Self::Validation(errors)
    }

    /// A refusal that demands the secret of `field` (see [`FieldErrors::demand_secret`]).
    pub fn secret_demanded(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.demand_secret(field, message);
        Self::Validation(errors)
    }

    /// The message a person reads, in `locale` (`Display` is the English one, for logs).
    pub fn message_in(&self, locale: Locale) -> String {
        let l = locale;
        match self {
            Self::Validation(_) => td_string!(l, error.validation).to_owned(),
            Self::Unauthorized => td_string!(l, error.unauthorized).to_owned(),
            Self::InvalidCredentials => td_string!(l, error.invalid_credentials).to_owned(),
            Self::Forbidden => td_string!(l, error.forbidden).to_owned(),
            Self::RateLimited { retry_after_secs } => {
                td_string!(l, error.rate_limited, secs = retry_after_secs).to_string()
            }
            Self::Conflict(message) | Self::NotFound(message) => message.clone(),
            Self::Smtp(failure) => failure.message_in(l),
            Self::Internal => td_string!(l, error.internal).to_owned(),
            Self::Transport(detail) => td_string!(l, error.transport, detail).to_string(),
            Self::BadRequest(detail) => td_string!(l, error.bad_request, detail).to_string(),
            Self::TooLarge { limit_bytes } => td_string!(l, error.too_large, limit = limit_bytes).to_string(),
            Self::RequestTimeout => td_string!(l, error.timeout).to_owned(),
        }
    }

    pub fn field_errors(&self) -> Option<&FieldErrors> {
        match self {
            Self::Validation(errors) => Some(errors),
            _ => None,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Self::Validation(_) => 422,
            Self::Unauthorized | Self::InvalidCredentials => 401,
            Self::Forbidden => 403,
            Self::RateLimited { .. } => 429,
            Self::Conflict(_) => 409,
            Self::NotFound(_) => 404,
            Self::Transport(_) | Self::BadRequest(_) => 400,
            Self::TooLarge { .. } => 413,
            Self::RequestTimeout => 408,
            Self::Internal => 500,
            Self::Smtp(_) => 502,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // Raised on the server when the request's arguments cannot be read: the caller's fault.
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => Self::BadRequest(value.to_string()),
            other => Self::Transport(other.to_string()),
        }
    }
}

impl From<ServerFnError> for AppError {
    fn from(value: ServerFnError) -> Self {
        Self::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::AppError;
    use std::fmt::Write;

    /// Logs `err` with its whole cause chain and returns the opaque [`AppError::Internal`].
    pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> AppError {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let _ = write!(chain, ": {cause}");
            source = cause.source();
        }
        tracing::error!(error = %chain, "{context}");
        AppError::Internal
    }

    impl From<surrealdb::Error> for AppError {
        fn from(err: surrealdb::Error) -> Self {
            internal("database error", &err)
        }
    }

    /// Plain axum handlers and middleware answer with the error as the same JSON body server
    /// functions use, its status and (for rate limits) `Retry-After`.
    impl axum::response::IntoResponse for AppError {
        fn into_response(self) -> axum::response::Response {
            use server_fn::error::FromServerFnError;
            let status =
                http::StatusCode::from_u16(self.http_status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            let retry_after = match &self {
                AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            };
            let mut response = (
                status,
                [(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))],
                self.ser(),
            )
                .into_response();
            if let Some(secs) = retry_after
                && let Ok(value) = http::HeaderValue::from_str(&secs.to_string())
            {
                response.headers_mut().insert(http::header::RETRY_AFTER, value);
            }
            response
        }
    }

    /// `Err(BadRequest)` when `value` is longer than `max` characters: checked before a value
    /// reaches a limiter, a hash or the database.
    pub fn bounded(field: &str, value: &str, max: usize) -> Result<(), AppError> {
        if value.len() > max * 4 || value.chars().count() > max {
            return Err(AppError::BadRequest(format!("{field} is longer than {max} characters.")));
        }
        Ok(())
    }

    /// Puts the error's HTTP status (and `Retry-After`) on the response of the current
    /// request, so clients that are not Leptos still see 401/403/429/...
    pub fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        if let Err(err) = &result
            && let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>()
        {
            let status =
                http::StatusCode::from_u16(err.http_status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            response.set_status(status);
            if let AppError::RateLimited { retry_after_secs } = err
                && let Ok(value) = http::HeaderValue::from_str(&retry_after_secs.to_string())
            {
                response.insert_header(http::header::RETRY_AFTER, value);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_travel_as_json_and_come_back_equal() {
        let mut fields = FieldErrors::new();
        fields.add("from", "bad");
        for err in [
            AppError::Validation(fields),
            AppError::RateLimited { retry_after_secs: 7 },
            AppError::Conflict("saved by x".into()),
            AppError::Internal,
        ] {
            let bytes = err.ser();
            assert_eq!(AppError::de(bytes), err);
        }
    }

    #[test]
    fn every_message_is_the_same_in_english_as_display() {
        let mut fields = FieldErrors::new();
        fields.add("from", "bad");
        for err in [
            AppError::Validation(fields),
            AppError::Unauthorized,
            AppError::InvalidCredentials,
            AppError::Forbidden,
            AppError::RateLimited { retry_after_secs: 7 },
            AppError::Conflict("saved by x".into()),
            AppError::Internal,
            AppError::Transport("x".into()),
            AppError::BadRequest("y".into()),
            AppError::TooLarge { limit_bytes: 10 },
            AppError::RequestTimeout,
        ] {
            assert_eq!(err.message_in(Locale::en), err.to_string());
            assert_ne!(err.message_in(Locale::id), "", "{err:?}");
        }
        assert_eq!(
            AppError::RateLimited { retry_after_secs: 7 }.message_in(Locale::id),
            "Terlalu banyak percobaan. Coba lagi dalam 7 detik."
        );
    }

    #[test]
    fn a_demanded_secret_is_found_by_its_key_not_its_words() {
        let mut errors = FieldErrors::new();
        errors.add("from", "bad");
        errors.add("password", "Sandi tidak boleh berisi baris baru.");
        assert_eq!(errors.demanded_secret(), None, "a secret field's own error is no demand");
        let mut errors = FieldErrors::new();
        errors.demand_secret("password", "Masukkan ulang sandi: port berubah");
        assert_eq!(errors.demanded_secret(), Some("Masukkan ulang sandi: port berubah"));
        assert_eq!(errors.get("password"), Some("Masukkan ulang sandi: port berubah"));
    }

    #[test]
    fn unknown_email_and_wrong_password_share_one_message_and_status() {
        assert_eq!(AppError::InvalidCredentials.http_status(), 401);
        assert_eq!(AppError::InvalidCredentials.to_string(), "Wrong email or password.");
    }
}
