//! Signing in to Google APIs (BigQuery, Firestore, Secret Manager): the
//! credentials a connection gives, and the tokens they yield.

pub(crate) mod auth;
mod impersonate;
mod sign_in_http;

/// How Sluice signs in to Google.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A credentials JSON document (service-account key, `authorized_user`,
    /// `external_account` or `impersonated_service_account`), read from a
    /// file or given as a secret.
    Json(String),
    /// The environment's Application Default Credentials.
    ApplicationDefault,
}

impl Credentials {
    /// The `credentials_file` or `credentials` option (a JSON document or
    /// `application_default`); Application Default Credentials when neither
    /// is given.
    pub(crate) fn from_options(credentials_file: Option<&str>, credentials: Option<&str>) -> Result<Self, String> {
        Ok(match (credentials_file, credentials) {
            (Some(_), Some(_)) => return Err("give either credentials_file or credentials, not both".into()),
            (Some(path), None) => Credentials::Json(
                std::fs::read_to_string(path).map_err(|e| format!("cannot read credentials_file '{path}': {e}"))?,
            ),
            (None, Some(secret)) if secret.trim() == "application_default" => Credentials::ApplicationDefault,
            (None, Some(secret)) => Credentials::Json(secret.to_owned()),
            (None, None) => Credentials::ApplicationDefault,
        })
    }
}
