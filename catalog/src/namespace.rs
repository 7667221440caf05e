//! Namespaces: the databases a client picks with its connection string's
//! `dbname`. Each has its own connections, secrets, jobs, runs, alerts and
//! public tables under a key prefix ([`crate::store`]); roles, grants, the
//! audit trail and the run sequence are shared.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::error::{CatalogError, ObjectKind, Result};
use crate::record::Record;
use crate::role::GrantRecord;

/// The default namespace: what a catalog made before namespaces holds, and
/// where a client without a `dbname` of its own lands.
pub const DEFAULT_NAMESPACE: &str = "sluice";

/// Longest namespace name, as PostgreSQL's identifiers.
const MAX_NAME_BYTES: usize = 63;

/// One namespace besides the default one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl Record for NamespaceRecord {
    const FAMILY: &'static str = "namespaces";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Whether `name` can name a namespace: 1 to 63 ASCII letters, digits and
/// underscores, not starting with a digit. It becomes a folder name in the
/// warehouse and a part of names made at sources (CDC slots), so nothing
/// else is allowed.
pub fn check_namespace_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(CatalogError::InvalidName {
            kind: ObjectKind::Database,
            name: name.to_owned(),
            rule: "1 to 63 letters, digits and underscores, not starting with a digit",
        })
    }
}

impl Catalog {
    /// This view's namespace.
    pub fn namespace_name(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The catalog seen from namespace `name`; `NotFound` when it does not
    /// exist.
    pub fn namespace(&self, name: &str) -> Result<Catalog> {
        if name == DEFAULT_NAMESPACE {
            return Ok(self.view(None));
        }
        if self.store.get::<NamespaceRecord>(name)?.is_none() {
            return Err(CatalogError::NotFound {
                kind: ObjectKind::Database,
                name: name.to_owned(),
            });
        }
        Ok(self.view(Some(name)))
    }

    fn view(&self, namespace: Option<&str>) -> Catalog {
        let instance = match namespace {
            None => self.shared.instance.clone(),
            Some(name) => derived_instance_id(&self.shared.instance, name),
        };
        Catalog {
            store: self.store.in_namespace(namespace),
            shared: self.shared.clone(),
            namespace: namespace.map(str::to_owned),
            instance,
        }
    }

    /// The names of every namespace, the default one first, then by name.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let others = self.store.scan::<NamespaceRecord>()?.into_iter().map(|n| n.name);
        Ok(std::iter::once(DEFAULT_NAMESPACE.to_owned()).chain(others).collect())
    }

    /// Creates namespace `name`. False when it existed and `if_not_exists`
    /// was given.
    pub fn create_namespace(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        check_namespace_name(name)?;
        let _guard = self.lock();
        if name == DEFAULT_NAMESPACE || self.store.get::<NamespaceRecord>(name)?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(CatalogError::AlreadyExists {
                    kind: ObjectKind::Database,
                    name: name.to_owned(),
                })
            };
        }
        let mut batch = self.store.batch();
        batch.put(&NamespaceRecord {
            name: name.to_owned(),
            created_at: Utc::now(),
        });
        // Clears what a task of a dropped namespace of the same name may
        // have written after the drop: a new namespace starts empty.
        self.store.clear_namespace(name, batch)?;
        Ok(true)
    }

    /// Deletes namespace `name` with every record in it and every grant on
    /// it, in one synced write: after a crash it is either whole or gone.
    /// The caller first releases what its jobs hold outside the catalog.
    pub fn drop_namespace(&self, name: &str) -> Result<()> {
        let _guard = self.lock();
        if name == DEFAULT_NAMESPACE || self.store.get::<NamespaceRecord>(name)?.is_none() {
            return Err(CatalogError::NotFound {
                kind: ObjectKind::Database,
                name: name.to_owned(),
            });
        }
        let mut batch = self.store.batch();
        batch.delete::<NamespaceRecord>(name);
        for grant in self.grants()?.into_iter().filter(|g| g.database == name) {
            batch.delete::<GrantRecord>(&grant.key());
        }
        self.store.clear_namespace(name, batch)
    }
}

/// A namespace's instance id: the first 16 hex digits of
/// SHA-256(catalog instance id, NUL, namespace name).
fn derived_instance_id(instance: &str, namespace: &str) -> String {
    let digest = Sha256::new()
        .chain_update(instance.as_bytes())
        .chain_update([0])
        .chain_update(namespace.as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectionRecord, MasterKey, SecretValue};

    fn open(dir: &tempfile::TempDir) -> Catalog {
        Catalog::open(dir.path(), MasterKey::from_hex(&"ab".repeat(32)).unwrap()).unwrap()
    }

    /// A connection to `host`, all with the same identity: duplicate
    /// detection is per namespace.
    fn connection(name: &str, host: &str) -> ConnectionRecord {
        ConnectionRecord {
            name: name.into(),
            kind: "postgres".into(),
            options: [("host".to_owned(), crate::OptionValue::Text(host.to_owned()))]
                .into_iter()
                .collect(),
            identity: Some("postgres://same".into()),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            status: crate::ConnectionStatus::Unknown,
            last_tested_at: None,
            last_error: None,
            last_used_at: None,
        }
    }

    fn host(catalog: &Catalog, name: &str) -> String {
        catalog.connection(name).unwrap().options["host"].to_string()
    }

    #[test]
    fn namespaces_hold_the_same_names_apart() {
        let dir = tempfile::tempdir().unwrap();
        let default = open(&dir);
        assert!(default.create_namespace("model_5", false).unwrap());
        let model_5 = default.namespace("model_5").unwrap();
        default.create_connection(&connection("pg", "a"), &[]).unwrap();
        model_5.create_connection(&connection("pg", "b"), &[]).unwrap();
        model_5.create_secret("s", &SecretValue::new("five"), false).unwrap();
        let names = |c: &Catalog| c.connections().unwrap().into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(names(&default), ["pg"]);
        assert_eq!(names(&model_5), ["pg"]);
        assert_eq!(
            (host(&default, "pg"), host(&model_5, "pg")),
            ("'a'".into(), "'b'".into())
        );
        assert!(
            default.secrets().unwrap().is_empty(),
            "the default namespace sees no secret of model_5"
        );
        assert_eq!(model_5.secret_value("s").unwrap(), SecretValue::new("five"));
        assert_ne!(default.instance_id(), model_5.instance_id());
        assert_eq!(model_5.namespace_name(), "model_5");
        assert_eq!(default.namespaces().unwrap(), ["sluice", "model_5"]);
    }

    #[test]
    fn dropping_a_namespace_deletes_its_records_and_grants_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let default = open(&dir);
        default.create_namespace("a", false).unwrap();
        default.create_namespace("b", false).unwrap();
        for name in ["a", "b"] {
            let view = default.namespace(name).unwrap();
            view.create_connection(&connection("pg", name), &[]).unwrap();
            view.create_secret("s", &SecretValue::new(name), false).unwrap();
        }
        default.create_connection(&connection("pg", "default"), &[]).unwrap();
        let role = crate::RoleRecord {
            name: "r".into(),
            login: true,
            verifier: None,
            created_at: Utc::now(),
        };
        default.create_role(&role).unwrap();
        for database in ["a", "b"] {
            default
                .grant(&GrantRecord {
                    database: database.into(),
                    role: "r".into(),
                    privilege: crate::Privilege::Usage,
                    granted_by: "admin".into(),
                    granted_at: Utc::now(),
                })
                .unwrap();
        }
        default.drop_namespace("a").unwrap();
        assert!(matches!(default.namespace("a"), Err(CatalogError::NotFound { .. })));
        let b = default.namespace("b").unwrap();
        assert_eq!(host(&b, "pg"), "'b'");
        assert_eq!(b.secret_value("s").unwrap(), SecretValue::new("b"));
        assert_eq!(host(&default, "pg"), "'default'");
        let grants: Vec<_> = default.grants().unwrap().into_iter().map(|g| g.database).collect();
        assert_eq!(grants, ["b"]);
        // Re-created, it starts empty.
        default.create_namespace("a", false).unwrap();
        assert!(default.namespace("a").unwrap().connections().unwrap().is_empty());
        assert!(default.namespace("a").unwrap().secrets().unwrap().is_empty());
    }

    #[test]
    fn a_sealed_secret_opens_only_in_its_own_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let default = open(&dir);
        default.create_namespace("a", false).unwrap();
        let a = default.namespace("a").unwrap();
        default.create_secret("s", &SecretValue::new("x"), false).unwrap();
        let record: crate::secret::SecretRecord = default.store.get("s").unwrap().unwrap();
        let mut batch = a.store.batch();
        batch.put(&record);
        batch.commit().unwrap();
        assert!(
            a.secret_value("s").is_err(),
            "a value copied across namespaces must not open"
        );
    }

    #[test]
    fn names_that_cannot_be_folders_are_refused() {
        for bad in ["", "5x", "a-b", "a/b", "A b", "é", &"x".repeat(64)] {
            assert!(check_namespace_name(bad).is_err(), "{bad:?}");
        }
        for good in ["model_5", "_x", "Abc", &"x".repeat(63)] {
            check_namespace_name(good).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let default = open(&dir);
        assert!(matches!(
            default.create_namespace("sluice", false),
            Err(CatalogError::AlreadyExists { .. })
        ));
        assert!(!default.create_namespace("sluice", true).unwrap());
        assert!(default.drop_namespace("sluice").is_err());
    }
}
