//! Amazon Redshift: reached through the PostgreSQL connector's endpoint
//! (same options, same TLS), but read as Redshift is: metadata from its
//! catalog views (`svv_tables`, `svv_columns`, `svv_table_info`) and rows
//! through a server-side cursor in text format, all in the simple query
//! protocol (Redshift has no `COPY ... TO STDOUT` and no binary results).

mod decode;
mod dialect;
mod horizon;
mod metadata;
mod source;
pub mod types;

use crate::connection_types::{Category, ConnectionType, Driver};
use crate::options::OptionKind::{Enum, Integer, Secret, Text};
use crate::options::{MAX_CONCURRENT_RUNS, OptionSpec as O};

use super::postgres::{PostgresConnector, SSL_MODES};

pub(crate) static REDSHIFT: ConnectionType = ConnectionType {
    name: "redshift",
    display_name: "Amazon Redshift",
    category: Category::Warehouse,
    options: &[
        O::required("host", Text, "cluster or workgroup endpoint"),
        O::with_default("port", Integer { min: 1, max: 65535 }, "5439", "TCP port"),
        O::required("database", Text, "database name"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
        O::with_default(
            "sslmode",
            Enum(SSL_MODES),
            "verify-if-offered",
            "TLS mode, as libpq's sslmode; the default verifies the certificate and host name when the server offers TLS",
        ),
        O::optional(
            "sslrootcert",
            Text,
            "PEM file of CA certificates trusted for verify-ca/verify-full",
        ),
        O::optional(
            "connect_timeout",
            Integer { min: 1, max: 3600 },
            "seconds to wait for a connection (default: the server's --connect-timeout)",
        ),
        MAX_CONCURRENT_RUNS,
    ],
    identity_options: &["host", "port", "database", "user"],
    driver: Some(Driver {
        // The live test is PostgreSQL's: a login and a simple `SELECT 1`.
        connector: &PostgresConnector,
        source: Some(source::open),
        destination: None,
        cdc: None,
    }),
};
