//! Pasted certificates read on the server: who they are, when they expire, whether a key fits.

use crate::{
    error::AppError,
    i18n::td_string,
    language::Locale,
    smtp_settings::certs::{CertRole, CertSummary},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_cert::der::Decode;

/// Pasted certificates: each one's DER and summary. Bad PEM is the field's error message.
pub fn parse(locale: Locale, pem: &str, role: CertRole) -> Result<Vec<(CertificateDer<'static>, CertSummary)>, String> {
    let l = locale;
    let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| td_string!(l, invalid.not_pem).to_owned())?;
    if ders.is_empty() {
        return Err(td_string!(l, invalid.no_certificate).to_owned());
    }
    ders.into_iter()
        .enumerate()
        .map(|(index, der)| {
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|_| td_string!(l, invalid.certificate_unreadable, index = index + 1).to_string())?;
            let tbs = &cert.tbs_certificate;
            let summary = CertSummary {
                role,
                subject: tbs.subject.to_string(),
                issuer: tbs.issuer.to_string(),
                not_after: tbs.validity.not_after.to_unix_duration().as_millis() as i64,
            };
            Ok((der, summary))
        })
        .collect()
}

/// A client key in PEM (PKCS#8, PKCS#1 or SEC1) that belongs to `cert`.
pub fn check_client_key(locale: Locale, cert: &CertificateDer<'static>, key_pem: &str) -> Result<(), String> {
    let l = locale;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| td_string!(l, invalid.key_not_pem).to_owned())?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::ClientConfig::builder_with_provider(provider.into())
        .with_safe_default_protocol_versions()
        .map_err(|_| td_string!(l, invalid.key_unusable).to_owned())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(vec![cert.clone()], key)
        .map(drop)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => td_string!(l, invalid.key_mismatch).to_owned(),
            _ => td_string!(l, invalid.key_kind).to_owned(),
        })
}

pub async fn inspect(pem: String, role: CertRole) -> Result<Vec<CertSummary>, AppError> {
    crate::error::ssr::bounded("Certificates", &pem, 32 * 1024)?;
    crate::auth::ssr::require_admin().await?;
    let field = match role {
        CertRole::TrustedCa => crate::smtp_settings::form::field::TRUSTED_CA,
        CertRole::Client => crate::smtp_settings::form::field::CLIENT_CERT,
    };
    parse(crate::language::ssr::request_locale(), &pem, role)
        .map(|certs| certs.into_iter().map(|(_, summary)| summary).collect())
        .map_err(|message| AppError::field(field, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::time::format_utc;

    #[test]
    fn a_pasted_chain_is_read_certificate_by_certificate() {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "Relay CA");
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let ca = params.self_signed(&key).unwrap();
        let pem = format!("{}\n{}", ca.pem(), ca.pem());
        let certs = parse(Locale::en, &pem, CertRole::TrustedCa).unwrap();
        assert_eq!(certs.len(), 2);
        let summary = &certs[0].1;
        assert_eq!((summary.subject.as_str(), summary.issuer.as_str()), ("CN=Relay CA", "CN=Relay CA"));
        assert_eq!(format_utc(summary.not_after), "2031-05-17 00:00 UTC");

        let other = KeyPair::generate().unwrap();
        assert_eq!(check_client_key(Locale::en, &certs[0].0, &key.serialize_pem()), Ok(()));
        assert_eq!(
            check_client_key(Locale::en, &certs[0].0, &other.serialize_pem()).unwrap_err(),
            "This key does not belong to the client certificate."
        );
    }

    #[test]
    fn garbage_is_a_field_error_not_a_crash() {
        assert!(parse(Locale::en, "hello", CertRole::TrustedCa).is_err());
        let bad_body = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse(Locale::en, bad_body, CertRole::TrustedCa).unwrap_err(),
            "Certificate 1 cannot be read (not an X.509 certificate)."
        );
    }
}
