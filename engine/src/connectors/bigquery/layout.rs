//! The options of the tables a BigQuery destination creates
//! (`WITH (partition_expiration_days = 30, require_partition_filter = true,
//! cluster_by = 'a, b')` of a job), kept in the catalog by name.

use serde::Deserialize;

use crate::contract::{SettingValue, TableOption, TableOptions};

/// The options, in the order the docs list them.
pub const TABLE_OPTIONS: &[TableOption] = &[
    TableOption {
        name: "partition_expiration_days",
        parse: partition_expiration_days,
    },
    TableOption {
        name: "require_partition_filter",
        parse: require_partition_filter,
    },
    TableOption {
        name: "cluster_by",
        parse: cluster_by,
    },
];

/// A job's BigQuery table options, read from the catalog's.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableLayout {
    /// Days after which a time partition expires.
    pub partition_expiration_days: Option<u32>,
    /// Whether queries must filter on the partitioning column.
    pub require_partition_filter: bool,
    /// Clustering columns, replacing the default.
    pub cluster_by: Vec<String>,
}

impl TableLayout {
    /// Reads the options a job saved; an error names what is unreadable.
    pub fn from_options(options: &TableOptions) -> Result<Self, String> {
        serde_json::from_value(options.to_json()).map_err(|e| format!("unreadable BigQuery table options: {e}"))
    }
}

fn partition_expiration_days(value: &SettingValue) -> Result<serde_json::Value, String> {
    match value {
        SettingValue::Number(days @ 1..=100_000) => Ok((*days).into()),
        _ => Err("partition_expiration_days must be a whole number between 1 and 100000".into()),
    }
}

fn require_partition_filter(value: &SettingValue) -> Result<serde_json::Value, String> {
    match value {
        SettingValue::Text(t) if t.eq_ignore_ascii_case("true") => Ok(true.into()),
        SettingValue::Text(t) if t.eq_ignore_ascii_case("false") => Ok(false.into()),
        _ => Err("require_partition_filter must be true or false".into()),
    }
}

fn cluster_by(value: &SettingValue) -> Result<serde_json::Value, String> {
    match value {
        SettingValue::Text(t) if !t.trim().is_empty() => {
            Ok(t.split(',').map(|c| c.trim().to_owned()).collect::<Vec<_>>().into())
        }
        _ => Err("cluster_by must be 'column[, column ...]'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &str, value: SettingValue) -> Result<serde_json::Value, String> {
        let option = TABLE_OPTIONS.iter().find(|o| o.name == name).unwrap();
        (option.parse)(&value)
    }

    #[test]
    fn options_as_written_read_back_as_the_layout() {
        let mut options = TableOptions::default();
        for (name, value) in [
            ("partition_expiration_days", SettingValue::Number(30)),
            ("require_partition_filter", SettingValue::Text("TRUE".into())),
            ("cluster_by", SettingValue::Text("id, at".into())),
        ] {
            options.set(name, parsed(name, value).unwrap());
        }
        assert_eq!(
            TableLayout::from_options(&options).unwrap(),
            TableLayout {
                partition_expiration_days: Some(30),
                require_partition_filter: true,
                cluster_by: vec!["id".into(), "at".into()],
            }
        );
        assert_eq!(
            TableLayout::from_options(&TableOptions::default()).unwrap(),
            TableLayout::default()
        );
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        for (name, value, expected) in [
            (
                "partition_expiration_days",
                SettingValue::Number(0),
                "between 1 and 100000",
            ),
            (
                "require_partition_filter",
                SettingValue::Text("yes".into()),
                "true or false",
            ),
            ("cluster_by", SettingValue::Text(" ".into()), "'column[, column ...]'"),
        ] {
            let error = parsed(name, value).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let mut options = TableOptions::default();
        options.set("partition_expiration_days", "soon".into());
        assert!(TableLayout::from_options(&options).is_err());
    }
}
