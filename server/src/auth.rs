//! SCRAM-SHA-256 authentication of the admin user.

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;
use rand::Rng;
use rand::distributions::Alphanumeric;
use sluice_catalog::AdminCredentials;

/// PBKDF2 iterations, as PostgreSQL's default `scram_iterations`.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Answers SCRAM logins from the stored admin credentials.
#[derive(Debug)]
pub struct AdminAuth {
    user: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
}

impl AdminAuth {
    /// Reads stored credentials; `None` when they are not valid hex.
    pub fn from_credentials(credentials: &AdminCredentials) -> Option<Self> {
        Some(Self {
            user: credentials.user.clone(),
            salt: hex_decode(&credentials.salt)?,
            salted_password: hex_decode(&credentials.salted_password)?,
        })
    }

    /// The admin user's name.
    pub fn user(&self) -> &str {
        &self.user
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a password for storage the way SCRAM-SHA-256 needs it.
pub fn hash_password(user: &str, password: &str) -> AdminCredentials {
    let salt: [u8; 16] = rand::random();
    let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
    AdminCredentials {
        user: user.into(),
        salt: hex_encode(&salt),
        salted_password: hex_encode(&salted),
        iterations: SCRAM_ITERATIONS,
    }
}

/// A random password for first start.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[async_trait]
impl AuthSource for AdminAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() == Some(self.user.as_str()) {
            return Ok(Password::new(Some(self.salt.clone()), self.salted_password.clone()));
        }
        // Unknown users get a random verifier, so that their login fails
        // exactly like a wrong password and does not reveal who exists.
        let salt: [u8; 16] = rand::random();
        let bogus: [u8; 32] = rand::random();
        Ok(Password::new(Some(salt.to_vec()), bogus.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_credentials_round_trip_without_the_password() {
        let credentials = hash_password("admin", "correct horse");
        assert!(!credentials.salted_password.contains("correct"));
        let auth = AdminAuth::from_credentials(&credentials).unwrap();
        assert_eq!(auth.user(), "admin");
        let salt = hex_decode(&credentials.salt).unwrap();
        assert_eq!(auth.salted_password, gen_salted_password("correct horse", &salt, 4096));
        assert_ne!(auth.salted_password, gen_salted_password("wrong", &salt, 4096));
    }
}
