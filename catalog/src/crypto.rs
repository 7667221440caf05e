//! Encryption of secret values at rest (XChaCha20-Poly1305, RustCrypto).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::error::{CatalogError, Result};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// The 256-bit key that encrypts every secret in the catalog.
///
/// It comes from `SLUICE_MASTER_KEY` (64 hex digits) or from a key file that
/// is created, mode 0600, the first time Sluice starts.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl MasterKey {
    /// Parses a key given as 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim()).map_err(|_| bad_key_text())?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| bad_key_text())?;
        Ok(Self::from_bytes(&key))
    }

    fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Reads the key file, or creates it with a fresh random key (mode 0600).
    pub fn load_or_create_file(path: &Path) -> Result<Self> {
        let io = |action, source| CatalogError::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path).map_err(|e| io("inspect", e))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(CatalogError::MasterKey(format!(
                        "master key file {} is readable by other users (mode {:o}); run chmod 600 on it",
                        path.display(),
                        mode & 0o777
                    )));
                }
                Self::from_hex(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; KEY_LEN] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|e| io("create", e))?;
                }
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| io("create", e))?;
                file.write_all(hex::encode(key).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("write", e))?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(io("read", e)),
        }
    }

    /// Encrypts `plain`, binding it to `context` (the secret's name) so a
    /// ciphertext cannot be moved to another record.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return Err(wrong_key());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| wrong_key())
    }
}

fn bad_key_text() -> CatalogError {
    CatalogError::MasterKey(
        "the master key must be 64 hexadecimal digits (32 bytes); generate one with `openssl rand -hex 32`".into(),
    )
}

fn wrong_key() -> CatalogError {
    CatalogError::MasterKey(
        "the master key does not decrypt this catalog's secrets; start Sluice with the key the data directory was created with (SLUICE_MASTER_KEY or the key file)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_context() {
        let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("pg_pass", b"s3cr3t");
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(key.open("pg_pass", &sealed).unwrap(), b"s3cr3t");
        assert!(key.open("other", &sealed).is_err());
        let other = MasterKey::from_hex(&"cd".repeat(32)).unwrap();
        assert!(other.open("pg_pass", &sealed).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = MasterKey::load_or_create_file(&path).unwrap();
        let sealed = first.seal("x", b"value");
        assert_eq!(second.open("x", &sealed).unwrap(), b"value");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(MasterKey::load_or_create_file(&path).is_err());
    }

    #[test]
    fn rejects_malformed_hex_keys() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
