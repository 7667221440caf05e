//! The options a connection type declares ([`OptionSpec`]) and the
//! resolved values its driver is opened with ([`ResolvedOptions`]).

use std::collections::BTreeMap;

use sluice_catalog::{MasterKey, OptionValue, SecretValue};

use crate::scrub::Scrubber;

/// The type of one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Text,
    Integer {
        min: i64,
        max: i64,
    },
    Bool,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A secret: `SECRET name` or an inline string stored encrypted.
    Secret,
}

impl OptionKind {
    /// How the type is shown in `SHOW CONNECTION TYPES`.
    pub fn describe(&self) -> String {
        match self {
            OptionKind::Text => "text".into(),
            OptionKind::Integer { .. } => "integer".into(),
            OptionKind::Bool => "boolean".into(),
            OptionKind::Enum(words) => format!("one of {}", words.join("|")),
            OptionKind::Secret => "secret".into(),
        }
    }
}

/// One option a connection type accepts.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    pub required: bool,
    /// The value used when the option is not given.
    pub default: Option<&'static str>,
    pub description: &'static str,
}

impl OptionSpec {
    /// A required option.
    pub const fn required(name: &'static str, kind: OptionKind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            required: true,
            default: None,
            description,
        }
    }

    /// An optional option without a default.
    pub const fn optional(name: &'static str, kind: OptionKind, description: &'static str) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: None,
            description,
        }
    }

    /// An optional option with a default.
    pub const fn with_default(
        name: &'static str,
        kind: OptionKind,
        default: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            required: false,
            default: Some(default),
            description,
        }
    }
}

/// The option every connection type that jobs use accepts: how many
/// scheduled runs may use the connection at once.
pub const MAX_CONCURRENT_RUNS: OptionSpec = OptionSpec::optional(
    "max_concurrent_runs",
    OptionKind::Integer { min: 1, max: 1000 },
    "scheduled runs that may use this connection at once (default: the server's --max-runs-per-connection)",
);

/// Options with secrets decrypted, handed to a driver for one connection
/// attempt. Never log or display it.
#[derive(Debug, Default)]
pub struct ResolvedOptions {
    values: BTreeMap<String, Resolved>,
}

/// An option as [`ResolvedOptions::seal`] writes it before encryption.
#[derive(serde::Serialize, serde::Deserialize)]
enum Sealed {
    Plain(OptionValue),
    Secret(String),
}

#[derive(Debug)]
enum Resolved {
    Plain(OptionValue),
    Secret(SecretValue),
}

impl ResolvedOptions {
    /// Adds an option's value as it is saved.
    pub(crate) fn insert_plain(&mut self, name: String, value: OptionValue) {
        self.values.insert(name, Resolved::Plain(value));
    }

    /// Adds a secret option's plain value.
    pub(crate) fn insert_secret(&mut self, name: String, value: SecretValue) {
        self.values.insert(name, Resolved::Secret(value));
    }

    /// A text option.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            Resolved::Plain(OptionValue::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer option.
    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.values.get(name)? {
            Resolved::Plain(OptionValue::Integer(i)) => Some(*i),
            _ => None,
        }
    }

    /// A boolean option.
    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.values.get(name)? {
            Resolved::Plain(OptionValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A secret option's plain value.
    pub fn secret(&self, name: &str) -> Option<&SecretValue> {
        match self.values.get(name)? {
            Resolved::Secret(s) => Some(s),
            _ => None,
        }
    }

    /// Every secret value, for scrubbing driver messages.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretValue> {
        self.values.values().filter_map(|v| match v {
            Resolved::Secret(s) => Some(s),
            Resolved::Plain(_) => None,
        })
    }

    /// These options, secrets included, encrypted with `key` and bound to
    /// `context`, for handing to another process that holds the key.
    pub fn seal(&self, key: &MasterKey, context: &str) -> Vec<u8> {
        let entries: Vec<(&String, Sealed)> = (self.values.iter())
            .map(|(name, value)| {
                let value = match value {
                    Resolved::Plain(value) => Sealed::Plain(value.clone()),
                    Resolved::Secret(secret) => Sealed::Secret(secret.expose().to_owned()),
                };
                (name, value)
            })
            .collect();
        let plain = serde_json::to_vec(&entries).expect("options serialize to JSON");
        key.seal(context, &plain)
    }

    /// The options [`seal`](Self::seal) encrypted with the same `key` for
    /// the same `context`; `None` for another key or context.
    pub fn unseal(key: &MasterKey, context: &str, sealed: &[u8]) -> Option<Self> {
        let plain = key.open(context, sealed).ok()?;
        let entries: Vec<(String, Sealed)> = serde_json::from_slice(&plain).ok()?;
        let values = (entries.into_iter())
            .map(|(name, value)| {
                let value = match value {
                    Sealed::Plain(value) => Resolved::Plain(value),
                    Sealed::Secret(secret) => Resolved::Secret(SecretValue::new(secret)),
                };
                (name, value)
            })
            .collect();
        Some(Self { values })
    }

    /// A scrubber for the secret values of these options.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber::new(self.secrets().cloned().collect())
    }
}
