//! The admin user's SCRAM-SHA-256 verifier, stored in `meta`.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::Record;

/// The admin user and their SCRAM-SHA-256 verifier: salt, iteration count,
/// StoredKey and ServerKey, as PostgreSQL stores them. Neither the password
/// nor the salted password is kept, so reading this record is not enough to
/// log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredentials {
    pub user: String,
    /// Hex-encoded salt.
    pub salt: String,
    pub iterations: u32,
    /// Hex-encoded `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: String,
    /// Hex-encoded `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: String,
}

impl AdminCredentials {
    /// The verifier for a SCRAM salted password (`Hi(password, salt, i)`);
    /// the salted password itself is not kept.
    pub fn from_salted_password(user: &str, salt: &[u8], iterations: u32, salted_password: &[u8]) -> Self {
        let client_key = hmac_sha256(salted_password, b"Client Key");
        Self {
            user: user.into(),
            salt: hex::encode(salt),
            iterations,
            stored_key: hex::encode(Sha256::digest(client_key)),
            server_key: hex::encode(hmac_sha256(salted_password, b"Server Key")),
        }
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl Record for AdminCredentials {
    const FAMILY: &'static str = "meta";
    /// Version 1 stored the salted password, which is enough to log in.
    const VERSION: u32 = 2;

    fn key(&self) -> String {
        "admin".into()
    }

    fn migrate(version: u32, data: Value) -> Result<Value, String> {
        #[derive(Deserialize)]
        struct V1 {
            user: String,
            salt: String,
            salted_password: String,
            iterations: u32,
        }
        if version != 1 {
            return Err(format!(
                "no migration from record version {version} to {}",
                Self::VERSION
            ));
        }
        let old: V1 = serde_json::from_value(data).map_err(|e| e.to_string())?;
        let salt = hex::decode(&old.salt).map_err(|e| format!("salt: {e}"))?;
        let salted = hex::decode(&old.salted_password).map_err(|e| format!("salted password: {e}"))?;
        let migrated = Self::from_salted_password(&old.user, &salt, old.iterations, &salted);
        serde_json::to_value(migrated).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record;

    #[test]
    fn version_1_records_migrate_to_a_verifier_without_the_salted_password() {
        let salted = [7u8; 32];
        let v1 = serde_json::json!({
            "v": 1,
            "data": {"user": "admin", "salt": "0102", "salted_password": hex::encode(salted), "iterations": 4096}
        });
        let migrated: AdminCredentials = record::decode(b"admin", v1.to_string().as_bytes()).unwrap();
        assert_eq!(
            migrated,
            AdminCredentials::from_salted_password("admin", &[1, 2], 4096, &salted)
        );
        let stored = String::from_utf8(record::encode(&migrated)).unwrap();
        assert!(!stored.contains(&hex::encode(salted)), "{stored}");
    }
}
