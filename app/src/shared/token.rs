//! Random tokens (session ids, one-time links, record keys) and how they are keyed at rest.

use sha2::{Digest, Sha256};

/// `bytes` random bytes from the thread's CSPRNG, in hex.
pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// SHA-256 of a secret, in hex: how tokens are keyed in the database, which never holds a
/// usable one.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_of_the_asked_length_and_never_repeat() {
        let (a, b) = (random_token(32), random_token(32));
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_text() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
