//! The certificates on the SMTP page at rest: extra trusted CAs and a client identity for
//! mutual TLS, each sealed like a password; only their summaries are stored in clear.

use super::{
    certs::{check_client_key, parse},
    stored::StoredSettings,
};
use crate::{
    error::{AppError, FieldErrors},
    i18n::td_string,
    language::Locale,
    mail::ssr::{ClientIdentity, Trust},
    shared::seal::{decrypt, encrypt},
    smtp_settings::{
        certs::CertRole,
        form::{SmtpForm, field},
    },
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use secrecy::{ExposeSecret, SecretString};

const CA_PURPOSE: &str = "smtp.trusted_ca";
const CLIENT_CERT_PURPOSE: &str = "smtp.client_cert";
const CLIENT_KEY_PURPOSE: &str = "smtp.client_key";

/// Applies the certificate fields of `form` to `next`: blank keeps what is saved, a paste
/// replaces it, "remove" forgets it. Problems become field errors.
pub fn apply(locale: Locale, next: &mut StoredSettings, form: &SmtpForm, key: &[u8; 32], errors: &mut FieldErrors) {
    let l = locale;
    if form.remove_trusted_ca {
        next.trusted_ca_enc = None;
        forget(next, CertRole::TrustedCa);
    }
    if !form.trusted_ca_pem.is_empty() {
        match parse(l, &form.trusted_ca_pem, CertRole::TrustedCa) {
            Ok(certs) => {
                next.trusted_ca_enc = Some(encrypt(key, CA_PURPOSE, &form.trusted_ca_pem));
                forget(next, CertRole::TrustedCa);
                next.certificates.extend(certs.into_iter().map(|(_, summary)| summary));
            }
            Err(message) => errors.add(field::TRUSTED_CA, message),
        }
    }
    if form.remove_client_cert {
        next.client_cert_enc = None;
        next.client_key_enc = None;
        forget(next, CertRole::Client);
    }
    if form.client_cert_pem.is_empty() && form.client_key_pem.is_empty() {
        return;
    }
    let leaf = if form.client_cert_pem.is_empty() {
        opened(next.client_cert_enc.as_deref(), key, CLIENT_CERT_PURPOSE)
            .and_then(|pem| CertificateDer::pem_slice_iter(pem.expose_secret().as_bytes()).next()?.ok())
    } else {
        match parse(l, &form.client_cert_pem, CertRole::Client) {
            Ok(certs) => {
                let leaf = certs[0].0.clone();
                next.client_cert_enc = Some(encrypt(key, CLIENT_CERT_PURPOSE, &form.client_cert_pem));
                forget(next, CertRole::Client);
                next.certificates.extend(certs.into_iter().map(|(_, summary)| summary));
                Some(leaf)
            }
            Err(message) => {
                errors.add(field::CLIENT_CERT, message);
                return;
            }
        }
    };
    let Some(leaf) = leaf else {
        errors.add(field::CLIENT_CERT, td_string!(l, invalid.cert_for_key));
        return;
    };
    let key_pem = if form.client_key_pem.is_empty() {
        opened(next.client_key_enc.as_deref(), key, CLIENT_KEY_PURPOSE)
    } else {
        Some(SecretString::from(form.client_key_pem.clone()))
    };
    let Some(key_pem) = key_pem else {
        errors.add(field::CLIENT_KEY, td_string!(l, invalid.key_for_cert));
        return;
    };
    match check_client_key(l, &leaf, key_pem.expose_secret()) {
        Ok(()) if !form.client_key_pem.is_empty() => {
            next.client_key_enc = Some(encrypt(key, CLIENT_KEY_PURPOSE, &form.client_key_pem));
        }
        Ok(()) => {}
        Err(message) => errors.add(field::CLIENT_KEY, message),
    }
}

fn forget(next: &mut StoredSettings, role: CertRole) {
    next.certificates.retain(|c| c.role != role);
}

fn opened(blob: Option<&str>, key: &[u8; 32], purpose: &str) -> Option<SecretString> {
    decrypt(key, purpose, blob?).ok()
}

/// What TLS (to the relay and to the token endpoint) trusts and presents for these settings.
pub fn of(stored: &StoredSettings, key: &[u8; 32]) -> Result<Trust, AppError> {
    let open = |blob: &Option<String>, purpose| -> Result<Option<SecretString>, AppError> {
        blob.as_deref()
            .map(|b| decrypt(key, purpose, b))
            .transpose()
            .map_err(|err| crate::error::ssr::internal("cannot decrypt a stored certificate", &err))
    };
    let roots = match open(&stored.trusted_ca_enc, CA_PURPOSE)? {
        Some(pem) => CertificateDer::pem_slice_iter(pem.expose_secret().as_bytes()).filter_map(Result::ok).collect(),
        None => Vec::new(),
    };
    let client = match (
        open(&stored.client_cert_enc, CLIENT_CERT_PURPOSE)?,
        open(&stored.client_key_enc, CLIENT_KEY_PURPOSE)?,
    ) {
        (Some(cert), Some(key_pem)) => CertificateDer::pem_slice_iter(cert.expose_secret().as_bytes())
            .next()
            .and_then(Result::ok)
            .map(|cert| ClientIdentity { cert, key_pem }),
        _ => None,
    };
    Ok(Trust { roots, client })
}
