//! Names clients see, shared by the session state, the privilege checks and
//! the error messages.

/// The default database (namespace): what clients that name none use.
pub const DATABASE: &str = sluice_catalog::DEFAULT_NAMESPACE;

/// The schema of the superuser's tables over every database.
pub const ADMIN_SCHEMA: &str = "sluice_admin";

/// Where unqualified names resolve when no `search_path` schema exists.
pub const DEFAULT_SCHEMA: &str = "public";

/// The schema under which the local warehouse's tables are queried.
pub const WAREHOUSE_SCHEMA: &str = "warehouse";
