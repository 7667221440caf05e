//! The admin user's SCRAM-SHA-256 verifier and password hashing (for
//! roles too).

use pgwire::api::auth::sasl::scram::gen_salted_password;
use rand::Rng;
use rand::distributions::Alphanumeric;
use sluice_catalog::AdminCredentials;

use crate::scram::{Verifier, hmac_sha256};

/// PBKDF2 iterations, as PostgreSQL's default `scram_iterations`.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Answers "what does this user's SCRAM exchange check against".
#[derive(Clone)]
pub struct AdminAuth {
    user: String,
    verifier: Verifier,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AdminAuth {
    /// Reads stored credentials; `None` when they are not valid hex.
    pub fn from_credentials(credentials: &AdminCredentials) -> Option<Self> {
        Some(Self {
            user: credentials.user.clone(),
            verifier: verifier_of(credentials)?,
        })
    }

    /// The admin user's name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The verifier to check `user`'s login against. An unknown user gets a
    /// made-up one whose salt is stable (derived from the server key and the
    /// name, as PostgreSQL derives it from a server secret), so that the
    /// exchange does not reveal which users exist.
    pub fn verifier(&self, user: &str) -> Verifier {
        if user == self.user {
            return self.verifier.clone();
        }
        let mut salt = hmac_sha256(&self.verifier.server_key, &format!("sluice mock salt\0{user}"));
        salt.truncate(self.verifier.salt.len().clamp(16, 32));
        Verifier {
            salt,
            iterations: self.verifier.iterations,
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
            exists: false,
        }
    }
}

/// The verifier of stored credentials (the admin user's or a role's);
/// `None` when they are not valid hex.
pub fn verifier_of(credentials: &AdminCredentials) -> Option<Verifier> {
    Some(Verifier {
        salt: hex::decode(&credentials.salt).ok()?,
        iterations: credentials.iterations,
        stored_key: hex::decode(&credentials.stored_key).ok()?,
        server_key: hex::decode(&credentials.server_key).ok()?,
        exists: true,
    })
}

/// Hashes a password into the SCRAM-SHA-256 verifier that is stored.
pub fn hash_password(user: &str, password: &str) -> AdminCredentials {
    let salt: [u8; 16] = rand::random();
    let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
    AdminCredentials::from_salted_password(user, &salt, SCRAM_ITERATIONS, &salted)
}

/// A random password for first start.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_get_a_stable_salt_of_their_own() {
        let auth = AdminAuth::from_credentials(&hash_password("admin", "correct horse")).unwrap();
        assert!(auth.verifier("admin").exists);
        let ghost = auth.verifier("ghost");
        assert!(!ghost.exists);
        assert_eq!(ghost.salt, auth.verifier("ghost").salt);
        assert_ne!(ghost.salt, auth.verifier("other").salt);
        assert_eq!(ghost.salt.len(), auth.verifier("admin").salt.len());
    }
}
