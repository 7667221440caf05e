//! Connection types known to Sluice whose drivers are still to come. Their
//! option schemas are final so that `SHOW CONNECTION TYPES` documents them.

use crate::contract::{
    Category, ConnectionType,
    OptionKind::{Integer, Secret, Text},
    OptionSpec as O,
};

const PORT: crate::contract::OptionKind = Integer { min: 1, max: 65535 };

macro_rules! planned {
    ($id:ident, $name:literal, $display:literal, $category:expr, [$($identity:literal),*], $options:expr) => {
        pub(crate) static $id: ConnectionType = ConnectionType {
            name: $name,
            display_name: $display,
            category: $category,
            options: $options,
            identity_options: &[$($identity),*],
            driver: None,
        };
    };
}

planned!(
    ORACLE,
    "oracle",
    "Oracle",
    Category::Relational,
    ["host", "port", "service_name", "user"],
    &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", PORT, "1521", "listener port"),
        O::required("service_name", Text, "service name of the database"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
    ]
);

planned!(
    DB2,
    "db2",
    "IBM Db2",
    Category::Relational,
    ["host", "port", "database", "user"],
    &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", PORT, "50000", "TCP port"),
        O::required("database", Text, "database name"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
    ]
);

planned!(
    TERADATA,
    "teradata",
    "Teradata",
    Category::Warehouse,
    ["host", "port", "database", "user"],
    &[
        O::required("host", Text, "server host name or address"),
        O::with_default("port", PORT, "1025", "TCP port"),
        O::optional("database", Text, "default database"),
        O::required("user", Text, "user name"),
        O::optional("password", Secret, "password"),
    ]
);
