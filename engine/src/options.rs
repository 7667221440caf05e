//! Connection option schemas and validation.
//!
//! Each connection type declares its options as a table of [`OptionSpec`]s.
//! [`prepare`] checks what the user wrote against that table (unknown
//! options, wrong types, missing required ones), fills in defaults, and turns
//! inline secret values into owned secrets.

use std::collections::BTreeMap;

use sluice_catalog::{Catalog, OptionValue, SecretContent, SecretValue};

use crate::contract::{OptionKind, OptionSpec, ResolvedOptions};
use crate::error::EngineError;
use crate::secret_stores::SecretStores;

/// Options after validation, ready to be saved.
#[derive(Debug, Default)]
pub struct PreparedOptions {
    pub options: BTreeMap<String, OptionValue>,
    /// Values given inline for secret options, under their catalog names.
    pub inline_secrets: Vec<(String, SecretValue)>,
}

/// Validates `given` against `specs` for connection `connection`; fills in
/// defaults and moves inline secret values out of the options.
pub fn prepare(
    type_name: &str,
    specs: &[OptionSpec],
    connection: &str,
    given: BTreeMap<String, OptionValue>,
) -> Result<PreparedOptions, EngineError> {
    let mut prepared = PreparedOptions::default();
    for (name, value) in canonicalize(type_name, specs, given)? {
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| unknown_option(type_name, specs, &name))?;
        let value = normalise(type_name, spec, value)?;
        let value = match (spec.kind, value) {
            (OptionKind::Secret, OptionValue::Text(plain)) => {
                let secret_name = Catalog::inline_secret_name(connection, &name);
                prepared
                    .inline_secrets
                    .push((secret_name.clone(), SecretValue::new(plain)));
                OptionValue::Secret {
                    name: secret_name,
                    owned: true,
                }
            }
            (_, value) => value,
        };
        prepared.options.insert(name, value);
    }
    for spec in specs {
        if prepared.options.contains_key(spec.name) {
            continue;
        }
        if spec.required {
            return Err(EngineError::InvalidOption {
                option: spec.name.into(),
                message: format!(
                    "connection type {type_name} requires option \"{}\" ({}: {})",
                    spec.name,
                    spec.kind.describe(),
                    spec.description
                ),
            });
        }
        if let Some(default) = spec.default {
            let value = normalise(type_name, spec, OptionValue::Text(default.into()))
                .expect("option defaults are valid for their own spec");
            prepared.options.insert(spec.name.into(), value);
        }
    }
    Ok(prepared)
}

/// Other names accepted for common options, as (alias, option).
const ALIASES: &[(&str, &str)] = &[
    ("ssl_mode", "sslmode"),
    ("username", "user"),
    ("hostname", "host"),
    ("dbname", "database"),
];

/// The option `name` stands for in `specs`: itself, or the option it is an
/// alias of; an error (with the closest valid name) when there is none.
pub fn canonical_name(type_name: &str, specs: &[OptionSpec], name: &str) -> Result<&'static str, EngineError> {
    let find = |wanted: &str| specs.iter().find(|s| s.name == wanted).map(|s| s.name);
    find(name)
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .and_then(|(_, option)| find(option))
        })
        .ok_or_else(|| unknown_option(type_name, specs, name))
}

/// `given` with aliases replaced by the options they stand for; an option
/// given twice under two names is an error.
pub fn canonicalize(
    type_name: &str,
    specs: &[OptionSpec],
    given: BTreeMap<String, OptionValue>,
) -> Result<BTreeMap<String, OptionValue>, EngineError> {
    let mut options = BTreeMap::new();
    for (name, value) in given {
        let canonical = canonical_name(type_name, specs, &name)?;
        if options.insert(canonical.to_owned(), value).is_some() {
            return Err(EngineError::InvalidOption {
                option: canonical.into(),
                message: format!("option \"{canonical}\" is given twice (\"{name}\" is another name for it)"),
            });
        }
    }
    Ok(options)
}

/// The error for an option that `specs` does not know, naming the closest
/// valid one when a name is near enough to be a typo.
pub fn unknown_option(type_name: &str, specs: &[OptionSpec], name: &str) -> EngineError {
    let closest = specs
        .iter()
        .map(|s| (strsim::levenshtein(name, s.name), s.name))
        .min()
        .filter(|(distance, option)| *distance <= (option.len() / 3).max(2))
        .map(|(_, option)| format!("; did you mean \"{option}\"?"))
        .unwrap_or_default();
    EngineError::UnknownOption {
        option: name.into(),
        message: format!(
            "connection type {type_name} has no option \"{name}\"{closest} Valid options: {}",
            specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Checks one value against its spec and converts it to the spec's type.
/// `value` checked against `spec` of connection type `type_name` and put in
/// its stored form; the error names the option.
pub fn validated(type_name: &str, spec: &OptionSpec, value: OptionValue) -> Result<OptionValue, EngineError> {
    normalise(type_name, spec, value)
}

fn normalise(type_name: &str, spec: &OptionSpec, value: OptionValue) -> Result<OptionValue, EngineError> {
    let invalid = |what: String| EngineError::InvalidOption {
        option: spec.name.into(),
        message: format!(
            "invalid value for option \"{}\" of connection type {type_name}: {what}; expected {}",
            spec.name,
            spec.kind.describe()
        ),
    };
    match (spec.kind, value) {
        (OptionKind::Secret, value @ (OptionValue::Secret { .. } | OptionValue::Text(_))) => Ok(value),
        (OptionKind::Secret, other) => Err(invalid(format!("{other} is not a string or SECRET name"))),
        (_, OptionValue::Secret { name, .. }) => {
            Err(invalid(format!("SECRET {name} given, but the option is not a secret")))
        }
        (OptionKind::Text, OptionValue::Text(s)) => Ok(OptionValue::Text(s)),
        (OptionKind::Text, other) => Err(invalid(format!("{other} is not a string"))),
        (OptionKind::Integer { min, max }, value) => {
            let number = match value {
                OptionValue::Integer(i) => i,
                OptionValue::Text(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("'{s}' is not an integer")))?,
                other => return Err(invalid(format!("{other} is not an integer"))),
            };
            if !(min..=max).contains(&number) {
                return Err(invalid(format!("{number} is outside {min}..{max}")));
            }
            Ok(OptionValue::Integer(number))
        }
        (OptionKind::Bool, OptionValue::Bool(b)) => Ok(OptionValue::Bool(b)),
        (OptionKind::Bool, OptionValue::Text(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(OptionValue::Bool(true)),
            "false" | "off" | "no" | "0" => Ok(OptionValue::Bool(false)),
            _ => Err(invalid(format!("'{s}' is not a boolean"))),
        },
        (OptionKind::Bool, other) => Err(invalid(format!("{other} is not a boolean"))),
        (OptionKind::Enum(words), OptionValue::Text(s)) => {
            let lower = s.to_ascii_lowercase();
            match words.iter().find(|w| **w == lower) {
                Some(word) => Ok(OptionValue::Text((*word).into())),
                None => Err(invalid(format!("'{s}'"))),
            }
        }
        (OptionKind::Enum(_), other) => Err(invalid(other.to_string())),
    }
}

/// Resolves a connection's options for its driver: secret references are
/// read through the catalog, preferring values given inline in the same
/// statement (not yet saved); secrets kept in an external store are
/// fetched through `stores`.
pub fn resolve(
    options: &BTreeMap<String, OptionValue>,
    inline: &[(String, SecretValue)],
    catalog: &Catalog,
    stores: &SecretStores,
) -> Result<ResolvedOptions, EngineError> {
    let mut resolved = ResolvedOptions::default();
    for (name, value) in options {
        match value {
            OptionValue::Secret { name: secret, .. } => {
                let value = match inline.iter().find(|(n, _)| n == secret) {
                    Some((_, value)) => value.clone(),
                    None => match catalog.secret(secret)? {
                        SecretContent::Value(value) => value,
                        SecretContent::External(external) => {
                            stores.fetch(&external).map_err(|problem| EngineError::ExternalSecret {
                                secret: secret.clone(),
                                external,
                                problem,
                            })?
                        }
                    },
                };
                resolved.insert_secret(name.clone(), value);
            }
            other => resolved.insert_plain(name.clone(), other.clone()),
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::required("host", OptionKind::Text, "server"),
        OptionSpec::with_default("port", OptionKind::Integer { min: 1, max: 65535 }, "5432", "port"),
        OptionSpec::optional("password", OptionKind::Secret, "password"),
        OptionSpec::with_default("sslmode", OptionKind::Enum(&["disable", "require"]), "disable", "tls"),
        OptionSpec::optional("compress", OptionKind::Bool, "compression"),
    ];

    fn given(pairs: &[(&str, OptionValue)]) -> BTreeMap<String, OptionValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn text(s: &str) -> OptionValue {
        OptionValue::Text(s.into())
    }

    #[test]
    fn aliases_name_their_options_and_typos_get_the_closest_name() {
        let prepared = prepare(
            "postgres",
            SPECS,
            "shop",
            given(&[("hostname", text("db")), ("ssl_mode", text("require"))]),
        )
        .unwrap();
        assert_eq!(prepared.options["host"], text("db"));
        assert_eq!(prepared.options["sslmode"], text("require"));
        let twice = prepare(
            "postgres",
            SPECS,
            "shop",
            given(&[("host", text("a")), ("hostname", text("b"))]),
        )
        .unwrap_err();
        assert!(twice.to_string().contains("given twice"), "{twice}");
        let typo = prepare("postgres", SPECS, "shop", given(&[("passwrd", text("x"))])).unwrap_err();
        assert!(matches!(typo, EngineError::UnknownOption { .. }), "{typo:?}");
        assert!(typo.to_string().contains("did you mean \"password\"?"), "{typo}");
        let far = prepare("postgres", SPECS, "shop", given(&[("colour", text("x"))])).unwrap_err();
        assert!(!far.to_string().contains("did you mean"), "{far}");
        assert!(far.to_string().contains("Valid options: host, port"), "{far}");
        // An alias of an option the type lacks is unknown, not mapped.
        assert!(canonical_name("postgres", SPECS, "dbname").is_err());
    }

    #[test]
    fn fills_defaults_and_moves_inline_secrets() {
        let prepared = prepare(
            "postgres",
            SPECS,
            "shop",
            given(&[("host", text("db")), ("password", text("pw"))]),
        )
        .unwrap();
        assert_eq!(prepared.options["port"], OptionValue::Integer(5432));
        assert_eq!(prepared.options["sslmode"], text("disable"));
        assert_eq!(
            prepared.options["password"],
            OptionValue::Secret {
                name: "shop/password".into(),
                owned: true
            }
        );
        assert_eq!(prepared.inline_secrets[0].1.expose(), "pw");
        assert!(!prepared.options.contains_key("compress"));
    }

    #[test]
    fn rejects_unknown_options_listing_valid_ones() {
        let err = prepare(
            "postgres",
            SPECS,
            "c",
            given(&[("host", text("db")), ("hots", text("x"))]),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("\"hots\"") && message.contains("host, port, password, sslmode, compress"),
            "{message}"
        );
    }

    #[test]
    fn rejects_missing_required_and_bad_values() {
        assert!(
            prepare("postgres", SPECS, "c", given(&[]))
                .unwrap_err()
                .to_string()
                .contains("requires option \"host\"")
        );
        for (name, value) in [
            ("port", text("abc")),
            ("port", OptionValue::Integer(70000)),
            ("sslmode", text("sometimes")),
            ("compress", text("maybe")),
            ("host", OptionValue::Integer(3)),
            (
                "host",
                OptionValue::Secret {
                    name: "s".into(),
                    owned: false,
                },
            ),
        ] {
            let mut options = given(&[("host", text("db"))]);
            options.insert(name.into(), value);
            let err = prepare("postgres", SPECS, "c", options).unwrap_err();
            assert!(
                matches!(&err, EngineError::InvalidOption { option, .. } if option == name),
                "{err}"
            );
        }
    }

    #[test]
    fn accepts_numbers_and_booleans_written_as_strings() {
        let prepared = prepare(
            "postgres",
            SPECS,
            "c",
            given(&[
                ("host", text("db")),
                ("port", text("6543")),
                ("compress", text("on")),
                ("sslmode", text("REQUIRE")),
            ]),
        )
        .unwrap();
        assert_eq!(prepared.options["port"], OptionValue::Integer(6543));
        assert_eq!(prepared.options["compress"], OptionValue::Bool(true));
        assert_eq!(prepared.options["sslmode"], text("require"));
    }
}
