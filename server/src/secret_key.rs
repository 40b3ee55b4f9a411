//! The instance key that encrypts stored secrets: 32 random bytes, hex in a file created with
//! mode 0600 on first start.

use std::{io::Write, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("MAILROOM_SECRET_KEY_FILE: cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("MAILROOM_SECRET_KEY_FILE: cannot create {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("MAILROOM_SECRET_KEY_FILE: {path} does not hold a key (expected 64 hex characters)")]
    Malformed { path: String },
}

pub fn load_or_create(path: &Path) -> Result<[u8; 32], SecretKeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(text.trim()).ok_or(SecretKeyError::Malformed { path: shown }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(SecretKeyError::Read { path: shown, source }),
    }
}

fn parse(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

fn create(path: &Path) -> Result<[u8; 32], SecretKeyError> {
    use rand::RngCore;
    let error = |source| SecretKeyError::Create { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(error)?;
    file.write_all(hex.as_bytes()).and_then(|()| file.sync_all()).map_err(error)?;
    tracing::info!(path = %path.display(), "created a new instance secret key");
    Ok(key)
}

/// This node's id: read from `node-id` beside the key file, or generated once and written there.
pub fn node_id(key_file: &Path) -> Result<String, SecretKeyError> {
    use rand::RngCore;
    let path = key_file.with_file_name("node-id");
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SecretKeyError::Read { path: shown, source }),
    }
    let mut bytes = [0u8; 6];
    rand::rng().fill_bytes(&mut bytes);
    let id = format!("node-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SecretKeyError::Create { path: shown.clone(), source })?;
    }
    std::fs::write(&path, &id).map_err(|source| SecretKeyError::Create { path: shown, source })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_is_private_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret.key");
        let created = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_file_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(load_or_create(&path), Err(SecretKeyError::Malformed { .. })));
    }
}
