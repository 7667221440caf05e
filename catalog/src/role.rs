//! Roles that log in with SCRAM-SHA-256, their privileges on a database
//! (`GRANT USAGE | OPERATE | ADMIN ON DATABASE db TO role`), and the audit
//! trail of what changed who did.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::admin::AdminCredentials;
use crate::catalog::Catalog;
use crate::error::{CatalogError, ObjectKind, Result};
use crate::record::Record;

/// A role: its name, whether it may log in, and the SCRAM-SHA-256 verifier
/// of its password (never the password; `None` until one is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: String,
    pub login: bool,
    /// The verifier, as the admin user's is stored; its `user` is the role.
    pub verifier: Option<AdminCredentials>,
    pub created_at: DateTime<Utc>,
}

impl Record for RoleRecord {
    const FAMILY: &'static str = "roles";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A privilege on a database. Each includes the ones before it: OPERATE
/// can do what USAGE can, ADMIN what OPERATE can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Read system tables, explore sources, query the warehouse.
    Usage,
    /// Run, cancel, pause and resume jobs.
    Operate,
    /// Create, alter and drop connections, secrets, jobs and alerts.
    Admin,
}

impl Privilege {
    pub const ALL: [Privilege; 3] = [Privilege::Usage, Privilege::Operate, Privilege::Admin];

    /// The privilege as SQL writes it.
    pub fn as_sql(self) -> &'static str {
        match self {
            Privilege::Usage => "USAGE",
            Privilege::Operate => "OPERATE",
            Privilege::Admin => "ADMIN",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

/// One privilege granted to a role on a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub database: String,
    pub role: String,
    pub privilege: Privilege,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

impl Record for GrantRecord {
    const FAMILY: &'static str = "grants";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        grant_key(&self.database, &self.role, self.privilege)
    }
}

fn grant_key(database: &str, role: &str, privilege: Privilege) -> String {
    format!("{database}\0{role}\0{}", privilege.as_sql())
}

/// One statement that changed something or started work, who ran it and
/// how it ended. Never holds a statement's text (which may hold a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Set when it is saved.
    pub id: u64,
    pub at: DateTime<Utc>,
    pub role: String,
    pub database: String,
    /// The statement's kind, `CREATE CONNECTION`, `RUN ETL JOB`, ...
    pub statement: String,
    /// The object it named, when it names one.
    pub object: Option<String>,
    /// `ok`, or the SQLSTATE it failed with.
    pub outcome: String,
}

impl Record for AuditRecord {
    const FAMILY: &'static str = "audit";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        format!("{:020}", self.id)
    }
}

/// The next audit id, kept in `meta`.
#[derive(Serialize, Deserialize)]
struct AuditSequence {
    next: u64,
}

impl Record for AuditSequence {
    const FAMILY: &'static str = "meta";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        "audit_sequence".into()
    }
}

impl Catalog {
    /// The role named `name`, if it exists.
    pub fn role(&self, name: &str) -> Result<Option<RoleRecord>> {
        self.store.get(name)
    }

    /// Every role, by name.
    pub fn roles(&self) -> Result<Vec<RoleRecord>> {
        self.store.scan()
    }

    /// Saves a new role; refused when the name is taken.
    pub fn create_role(&self, role: &RoleRecord) -> Result<()> {
        let _guard = self.lock();
        if self.role(&role.name)?.is_some() {
            return Err(role_exists(&role.name));
        }
        let mut batch = self.store.batch();
        batch.put(role);
        batch.commit()
    }

    /// Replaces role `name` with `role`; a new name carries its grants over.
    pub fn update_role(&self, name: &str, role: &RoleRecord) -> Result<()> {
        let _guard = self.lock();
        self.role(name)?.ok_or_else(|| role_not_found(name))?;
        let mut batch = self.store.batch();
        if role.name != name {
            if self.role(&role.name)?.is_some() {
                return Err(role_exists(&role.name));
            }
            batch.delete::<RoleRecord>(name);
            for grant in self.grants()?.into_iter().filter(|g| g.role == name) {
                batch.delete::<GrantRecord>(&grant.key());
                batch.put(&GrantRecord {
                    role: role.name.clone(),
                    ..grant
                });
            }
        }
        batch.put(role);
        batch.commit()
    }

    /// Drops a role and its grants. False when it did not exist and
    /// `if_exists` was given.
    pub fn drop_role(&self, name: &str, if_exists: bool) -> Result<bool> {
        let _guard = self.lock();
        if self.role(name)?.is_none() {
            return if if_exists {
                Ok(false)
            } else {
                Err(role_not_found(name))
            };
        }
        let mut batch = self.store.batch();
        batch.delete::<RoleRecord>(name);
        for grant in self.grants()?.into_iter().filter(|g| g.role == name) {
            batch.delete::<GrantRecord>(&grant.key());
        }
        batch.commit()?;
        Ok(true)
    }

    /// Grants a privilege; false when the role held it already.
    pub fn grant(&self, grant: &GrantRecord) -> Result<bool> {
        let _guard = self.lock();
        self.role(&grant.role)?.ok_or_else(|| role_not_found(&grant.role))?;
        if grant.database != crate::DEFAULT_NAMESPACE
            && self.store.get::<crate::NamespaceRecord>(&grant.database)?.is_none()
        {
            return Err(CatalogError::NotFound {
                kind: ObjectKind::Database,
                name: grant.database.clone(),
            });
        }
        if self.store.get::<GrantRecord>(&grant.key())?.is_some() {
            return Ok(false);
        }
        let mut batch = self.store.batch();
        batch.put(grant);
        batch.commit()?;
        Ok(true)
    }

    /// Revokes a privilege; false when the role did not hold it.
    pub fn revoke(&self, database: &str, role: &str, privilege: Privilege) -> Result<bool> {
        let _guard = self.lock();
        self.role(role)?.ok_or_else(|| role_not_found(role))?;
        let key = grant_key(database, role, privilege);
        if self.store.get::<GrantRecord>(&key)?.is_none() {
            return Ok(false);
        }
        let mut batch = self.store.batch();
        batch.delete::<GrantRecord>(&key);
        batch.commit()?;
        Ok(true)
    }

    /// Every grant, by database, role and privilege.
    pub fn grants(&self) -> Result<Vec<GrantRecord>> {
        self.store.scan()
    }

    /// The highest privilege `role` holds on `database`, if any.
    pub fn privilege(&self, database: &str, role: &str) -> Result<Option<Privilege>> {
        let mut held = None;
        for privilege in Privilege::ALL {
            if self
                .store
                .get::<GrantRecord>(&grant_key(database, role, privilege))?
                .is_some()
            {
                held = Some(privilege);
            }
        }
        Ok(held)
    }

    /// Saves an audit record under the next id (returned), deleting the
    /// ones that fall out of the newest `keep` (at least 1): the one just
    /// beyond, and any older ones a larger `keep` left. Written at once,
    /// outside any transaction: a rolled-back block's statements stay
    /// audited.
    pub fn record_audit(&self, record: &AuditRecord, keep: u64) -> Result<u64> {
        let _guard = self.lock();
        let id = self.store.get::<AuditSequence>("audit_sequence")?.map_or(1, |s| s.next);
        let mut batch = self.store.batch();
        batch.put(&AuditRecord { id, ..record.clone() });
        batch.put(&AuditSequence { next: id + 1 });
        // The kept ids are consecutive: delete down from the newest one
        // beyond `keep` until one is already gone.
        let mut old = id.saturating_sub(keep.max(1));
        while old > 0 && self.store.get::<AuditRecord>(&format!("{old:020}"))?.is_some() {
            batch.delete::<AuditRecord>(&format!("{old:020}"));
            old -= 1;
        }
        batch.commit_now()?;
        Ok(id)
    }

    /// Every kept audit record, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditRecord>> {
        self.store.scan()
    }
}

fn role_exists(name: &str) -> CatalogError {
    CatalogError::AlreadyExists {
        kind: ObjectKind::Role,
        name: name.into(),
    }
}

fn role_not_found(name: &str) -> CatalogError {
    CatalogError::NotFound {
        kind: ObjectKind::Role,
        name: name.into(),
    }
}
