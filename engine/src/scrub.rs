//! Scrubbing secret values out of texts (driver messages, errors) before
//! they are shown, stored or logged.

use sluice_catalog::SecretValue;

/// Removes the secret values of one connection from texts.
#[derive(Debug, Clone, Default)]
pub struct Scrubber(Vec<SecretValue>);

impl Scrubber {
    /// A scrubber for `secrets`; empty values are ignored.
    pub fn new(secrets: Vec<SecretValue>) -> Self {
        Self(secrets.into_iter().filter(|s| !s.expose().is_empty()).collect())
    }

    /// `text` with every secret value replaced by `********`.
    pub fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.expose(), "********")
        })
    }
}
