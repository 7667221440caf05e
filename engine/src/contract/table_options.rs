//! Options of the tables a destination creates, given in a job's
//! `WITH (...)` (BigQuery: `partition_expiration_days`,
//! `require_partition_filter`, `cluster_by`). Each destination type
//! declares its own ([`TableOption`]) in its connector folder; the catalog
//! keeps the values opaque ([`TableOptions`]).

pub use sluice_catalog::TableOptions;

/// A setting's value as written in `WITH (name = value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    Number(u64),
    Text(String),
}

/// One option a destination's tables take.
#[derive(Debug)]
pub struct TableOption {
    /// The name in `WITH (...)`.
    pub name: &'static str,
    /// Checks a value as written and returns what the catalog keeps; the
    /// error says what is allowed.
    pub parse: fn(&SettingValue) -> Result<serde_json::Value, String>,
}

/// A saved option value as SQL, for `SHOW CREATE`: numbers and booleans
/// bare, texts quoted, a list of texts as one quoted comma-separated text
/// (as `cluster_by = 'a, b'` is written).
pub fn option_sql(value: &serde_json::Value) -> String {
    let quoted = |text: &str| format!("'{}'", text.replace('\'', "''"));
    match value {
        serde_json::Value::String(text) => quoted(text),
        serde_json::Value::Array(items) => quoted(
            &items
                .iter()
                .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn saved_values_read_back_as_the_sql_that_sets_them() {
        assert_eq!(option_sql(&json!(30)), "30");
        assert_eq!(option_sql(&json!(true)), "true");
        assert_eq!(option_sql(&json!("it's")), "'it''s'");
        assert_eq!(option_sql(&json!(["id", "at"])), "'id, at'");
    }
}
