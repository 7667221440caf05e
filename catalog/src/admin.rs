//! The admin user's SCRAM credentials, stored hashed in `meta`.

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// The admin user and their SCRAM-SHA-256 salted password (never the
/// password itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredentials {
    pub user: String,
    /// Hex-encoded salt.
    pub salt: String,
    /// Hex-encoded PBKDF2 salted password, as SCRAM-SHA-256 stores it.
    pub salted_password: String,
    pub iterations: u32,
}

impl Record for AdminCredentials {
    const FAMILY: &'static str = "meta";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        "admin".into()
    }
}
