//! `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`, `GRANT` and `REVOKE`: roles
//! and their privileges in the catalog. Only the superuser gets here
//! (see [`crate::privileges`]).

use chrono::Utc;
use sluice_catalog::{Catalog, GrantRecord, RoleRecord, SecretValue};

use crate::auth::hash_password;
use crate::errors::StatementError;
use crate::statements::{Grant, RoleChange, RoleOptions};

/// The catalog's roles, next to the built-in superuser.
pub struct Roles<'a> {
    pub catalog: &'a Catalog,
    pub superuser: &'a str,
}

impl Roles<'_> {
    /// `CREATE ROLE`: a role without LOGIN (the default) cannot log in.
    pub fn create(&self, name: &str, options: RoleOptions) -> Result<(), StatementError> {
        self.not_built_in(name)?;
        self.catalog.create_role(&RoleRecord {
            name: name.to_owned(),
            login: options.login.unwrap_or(false),
            verifier: options.password.map(|p| verifier(name, &p)),
            created_at: Utc::now(),
        })?;
        Ok(())
    }

    /// `ALTER ROLE`: LOGIN, NOLOGIN, a new password or a new name.
    pub fn alter(&self, name: &str, change: RoleChange) -> Result<(), StatementError> {
        self.not_the_superuser(name)?;
        let mut role = self.existing(name)?;
        match change {
            RoleChange::Set(options) => {
                role.login = options.login.unwrap_or(role.login);
                if let Some(password) = options.password {
                    role.verifier = Some(verifier(name, &password));
                }
            }
            RoleChange::Rename(new_name) => {
                self.not_built_in(&new_name)?;
                // A SCRAM verifier does not depend on the name: it stays valid.
                if let Some(verifier) = &mut role.verifier {
                    verifier.user.clone_from(&new_name);
                }
                role.name = new_name;
            }
        }
        self.catalog.update_role(name, &role)?;
        Ok(())
    }

    /// `DROP ROLE`: its grants go with it. False when it did not exist and
    /// `IF EXISTS` was given.
    pub fn drop_role(&self, name: &str, if_exists: bool) -> Result<bool, StatementError> {
        self.not_the_superuser(name)?;
        Ok(self.catalog.drop_role(name, if_exists)?)
    }

    /// `GRANT` (`revoke` false) or `REVOKE`; NOTICEs for what did not apply.
    pub fn grant(&self, grant: Grant, revoke: bool) -> Result<Vec<String>, StatementError> {
        // The database must exist (3D000), checked again under the
        // catalog's lock when granting.
        self.catalog.namespace(&grant.database)?;
        let mut notices = Vec::new();
        for role in &grant.roles {
            if role == self.superuser {
                notices.push(format!(
                    "role \"{role}\" is the superuser and holds every privilege; nothing changed"
                ));
                continue;
            }
            for &privilege in &grant.privileges {
                if revoke {
                    self.catalog.revoke(&grant.database, role, privilege)?;
                } else {
                    self.catalog.grant(&GrantRecord {
                        database: grant.database.clone(),
                        role: role.clone(),
                        privilege,
                        granted_by: self.superuser.to_owned(),
                        granted_at: Utc::now(),
                    })?;
                }
            }
        }
        Ok(notices)
    }

    fn existing(&self, name: &str) -> Result<RoleRecord, StatementError> {
        self.catalog.role(name)?.ok_or_else(|| {
            sluice_catalog::CatalogError::NotFound {
                kind: sluice_catalog::ObjectKind::Role,
                name: name.to_owned(),
            }
            .into()
        })
    }

    fn not_built_in(&self, name: &str) -> Result<(), StatementError> {
        if name == self.superuser {
            return Err(StatementError::BuiltInRole(name.to_owned()));
        }
        Ok(())
    }

    fn not_the_superuser(&self, name: &str) -> Result<(), StatementError> {
        if name == self.superuser {
            return Err(StatementError::Unsupported(format!(
                "role \"{name}\" is the built-in superuser: its name is --user and its password SLUICE_PASSWORD, set at start-up"
            )));
        }
        Ok(())
    }
}

/// The SCRAM-SHA-256 verifier of a role's password.
fn verifier(name: &str, password: &SecretValue) -> sluice_catalog::AdminCredentials {
    hash_password(name, password.expose())
}
