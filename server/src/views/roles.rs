//! `sluice.roles`, `sluice.grants` and `sluice.audit`: who may do what, and
//! who did what. No password or verifier is ever shown.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_catalog::{Catalog, CatalogError, RoleRecord};

use super::{batch, strings, text, timestamps, timestamptz};

/// `sluice.roles`: the built-in superuser first, then every role with the
/// highest privilege it holds.
pub static ROLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("name"),
        Field::new("superuser", DataType::Boolean, false),
        Field::new("login", DataType::Boolean, false),
        Field::new("has_password", DataType::Boolean, false),
        text("privilege"),
        timestamptz("created_at"),
    ]))
});

pub fn roles(catalog: &Catalog, superuser: &str) -> Result<RecordBatch, CatalogError> {
    let roles = catalog.roles()?;
    let mut privileges = Vec::with_capacity(roles.len());
    for role in &roles {
        privileges.push(
            catalog
                .privilege(catalog.namespace_name(), &role.name)?
                .map(|p| p.as_sql()),
        );
    }
    // The superuser's value, then each role's.
    let bools = |superuser: bool, role: fn(&RoleRecord) -> bool| -> ArrayRef {
        Arc::new(
            std::iter::once(Some(superuser))
                .chain(roles.iter().map(|r| Some(role(r))))
                .collect::<BooleanArray>(),
        )
    };
    Ok(batch(
        &ROLES,
        vec![
            strings(std::iter::once(Some(superuser)).chain(roles.iter().map(|r| Some(r.name.as_str())))),
            bools(true, |_| false),
            bools(true, |r| r.login),
            bools(true, |r| r.verifier.is_some()),
            strings(std::iter::once(None).chain(privileges)),
            timestamps(std::iter::once(None).chain(roles.iter().map(|r| Some(r.created_at)))),
        ],
    ))
}

/// `sluice.grants`: one row per privilege granted on the session's database.
pub static GRANTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        text("database"),
        text("role"),
        text("privilege"),
        text("granted_by"),
        timestamptz("granted_at"),
    ]))
});

/// The grants on the catalog's database (namespace).
pub fn grants(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let database = catalog.namespace_name();
    let grants: Vec<_> = (catalog.grants()?.into_iter())
        .filter(|g| g.database == database)
        .collect();
    Ok(batch(
        &GRANTS,
        vec![
            strings(grants.iter().map(|g| Some(g.database.as_str()))),
            strings(grants.iter().map(|g| Some(g.role.as_str()))),
            strings(grants.iter().map(|g| Some(g.privilege.as_sql()))),
            strings(grants.iter().map(|g| Some(g.granted_by.as_str()))),
            timestamps(grants.iter().map(|g| Some(g.granted_at))),
        ],
    ))
}

/// `sluice.audit`: every statement that changed a definition, a role or a
/// grant, or started or stopped work, oldest first.
pub static AUDIT: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        timestamptz("at"),
        text("role"),
        text("database"),
        text("statement"),
        text("object"),
        text("outcome"),
    ]))
});

/// The audit records of the catalog's database (namespace).
pub fn audit(catalog: &Catalog) -> Result<RecordBatch, CatalogError> {
    let database = catalog.namespace_name();
    let all: Vec<_> = (catalog.audit()?.into_iter())
        .filter(|a| a.database == database)
        .collect();
    Ok(batch(
        &AUDIT,
        vec![
            Arc::new(all.iter().map(|a| Some(a.id as i64)).collect::<Int64Array>()),
            timestamps(all.iter().map(|a| Some(a.at))),
            strings(all.iter().map(|a| Some(a.role.as_str()))),
            strings(all.iter().map(|a| Some(a.database.as_str()))),
            strings(all.iter().map(|a| Some(a.statement.as_str()))),
            strings(all.iter().map(|a| a.object.as_deref())),
            strings(all.iter().map(|a| Some(a.outcome.as_str()))),
        ],
    ))
}
