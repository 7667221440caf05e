//! Names clients see, shared by the session state, the privilege checks and
//! the error messages.

/// The SQL catalog (database) name clients see.
pub const DATABASE: &str = "sluice";

/// The schema under which the local warehouse's tables are queried.
pub const WAREHOUSE_SCHEMA: &str = "warehouse";
