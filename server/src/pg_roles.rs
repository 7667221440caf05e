//! `pg_catalog.pg_roles` (what psql's `\du` reads): the built-in
//! superuser and the catalog's roles, through datafusion-pg-catalog's
//! context provider. No password is shown.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use sluice_catalog::Catalog;
use tracing::warn;

/// The roles `pg_roles` lists.
#[derive(Clone)]
pub struct PgRoles {
    pub catalog: Arc<Catalog>,
    pub superuser: String,
}

impl std::fmt::Debug for PgRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgRoles")
    }
}

fn role(name: &str, is_superuser: bool, can_login: bool) -> Role {
    Role {
        name: name.to_owned(),
        is_superuser,
        can_login,
        can_create_db: is_superuser,
        can_create_role: is_superuser,
        can_create_user: is_superuser,
        can_replication: false,
        grants: Vec::new(),
        inherited_roles: Vec::new(),
    }
}

#[async_trait]
impl PgCatalogContextProvider for PgRoles {
    async fn roles(&self) -> Vec<String> {
        let roles = self.catalog.roles().unwrap_or_else(|e| {
            warn!(error = %e, "pg_roles: cannot read the roles");
            Vec::new()
        });
        std::iter::once(self.superuser.clone())
            .chain(roles.into_iter().map(|r| r.name))
            .collect()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        if name == self.superuser {
            return Some(role(name, true, true));
        }
        // `pg_roles` unwraps this for every name `roles` gave: a role
        // dropped in between is shown as one that cannot log in.
        let login = self.catalog.role(name).ok().flatten().is_some_and(|r| r.login);
        Some(role(name, false, login))
    }
}
