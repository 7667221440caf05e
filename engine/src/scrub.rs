//! Scrubbing secret values out of texts (driver messages, errors) before
//! they are shown, stored or logged.

use sluice_catalog::SecretValue;

/// Fields of a JSON secret (a service-account key) that are secret on their
/// own: a service may quote one of them without the rest of the key.
const SECRET_JSON_FIELDS: &[&str] = &["private_key", "private_key_id", "client_secret", "refresh_token"];

/// Removes the secret values of one connection from texts.
#[derive(Debug, Clone, Default)]
pub struct Scrubber(Vec<SecretValue>);

impl Scrubber {
    /// A scrubber for `secrets`; empty values are ignored. A secret that is
    /// a JSON key also has its secret fields (and each line of a PEM private
    /// key) scrubbed on their own.
    pub fn new(secrets: Vec<SecretValue>) -> Self {
        let mut values: Vec<String> = secrets.iter().flat_map(|s| secret_pieces(s.expose())).collect();
        values.retain(|v| !v.is_empty());
        // Longest first, so that a value containing another is removed whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self(values.into_iter().map(SecretValue::new).collect())
    }

    /// `text` with every secret value replaced by `********`.
    pub fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.expose(), "********")
        })
    }
}

/// The value itself, and the secret fields of a JSON key.
fn secret_pieces(value: &str) -> Vec<String> {
    let mut pieces = vec![value.to_owned()];
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(value) else {
        return pieces;
    };
    for name in SECRET_JSON_FIELDS {
        let Some(field) = fields.get(*name).and_then(|v| v.as_str()) else {
            continue;
        };
        pieces.push(field.to_owned());
        // A PEM key's base64 lines (the armour lines are not secret).
        pieces.extend(
            field
                .lines()
                .map(str::trim)
                .filter(|line| line.len() >= 16 && !line.starts_with("-----"))
                .map(str::to_owned),
        );
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_key_has_its_secret_fields_scrubbed_on_their_own() {
        let key = r#"{"type": "service_account", "project_id": "acme",
            "private_key_id": "0123456789abcdef",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"}"#;
        let scrubber = Scrubber::new(vec![SecretValue::new(key), SecretValue::new("")]);
        assert_eq!(scrubber.scrub(key), "********");
        assert_eq!(
            scrubber.scrub("key 0123456789abcdef of project acme: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "key ******** of project acme: ********"
        );
        assert_eq!(scrubber.scrub("nothing secret"), "nothing secret");
    }
}
