//! Secrets at rest: sealed with the instance key (XChaCha20-Poly1305, a random nonce, the
//! purpose as associated data so a password can never be opened as a client secret).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use secrecy::SecretString;

/// Encrypts a secret with the instance key (XChaCha20-Poly1305, random nonce, the purpose as
/// associated data so a password can never be decrypted as a client secret).
pub fn encrypt(key: &[u8; 32], purpose: &str, secret: &str) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: secret.as_bytes(), aad: purpose.as_bytes() })
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&sealed);
    B64.encode(blob)
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret cannot be decrypted with this instance key (MAILROOM_SECRET_KEY_FILE changed?)")]
pub struct DecryptError;

pub fn decrypt(key: &[u8; 32], purpose: &str, blob: &str) -> Result<SecretString, DecryptError> {
    let bytes = B64.decode(blob).map_err(|_| DecryptError)?;
    if bytes.len() < 24 {
        return Err(DecryptError);
    }
    let (nonce, sealed) = bytes.split_at(24);
    let cipher = XChaCha20Poly1305::new(key.into());
    let plain = cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: purpose.as_bytes() })
        .map_err(|_| DecryptError)?;
    String::from_utf8(plain).map(SecretString::from).map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_round_trip_only_with_the_same_key_and_purpose() {
        let key = [7u8; 32];
        let sealed = encrypt(&key, "smtp.password", "hunter2 hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(decrypt(&key, "smtp.password", &sealed).unwrap().expose_secret(), "hunter2 hunter2");
        assert!(decrypt(&[8u8; 32], "smtp.password", &sealed).is_err());
        assert!(decrypt(&key, "smtp.client_secret", &sealed).is_err());
        assert_ne!(encrypt(&key, "smtp.password", "same"), encrypt(&key, "smtp.password", "same"), "random nonces");
    }
}
