//! The errors of statements on public tables (`public_tables`), apart from
//! that module so that `errors` maps them without depending on it.

/// Why a statement on a public table failed.
#[derive(Debug, thiserror::Error)]
pub enum PublicTableError {
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    #[error("{0}")]
    InvalidDefinition(String),
    #[error("public tables do not support {0}")]
    Unsupported(String),
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        constraint: String,
        /// `Key (version)=(20240101) already exists.`
        detail: String,
    },
    #[error("null value in column \"{column}\" of relation \"{table}\" violates not-null constraint")]
    NotNull { table: String, column: String },
    #[error("value too long for type character varying({length}) in column \"{column}\"")]
    TooLong { column: String, length: u32 },
    #[error("invalid value for column \"{column}\": {reason}")]
    InvalidValue { column: String, reason: String },
    #[error("INSERT has more expressions than target columns")]
    TooManyValues,
    #[error("INSERT has more target columns than expressions")]
    TooFewValues,
    #[error(
        "table \"{table}\" would exceed the limit of public tables ({limit}): they are meant for migration tools' bookkeeping"
    )]
    TooLarge { table: String, limit: String },
}

impl PublicTableError {
    /// The SQLSTATE, as PostgreSQL reports the same condition.
    pub fn code(&self) -> &'static str {
        match self {
            PublicTableError::UndefinedTable(_) => "42P01",
            PublicTableError::DuplicateTable(_) => "42P07",
            PublicTableError::UndefinedColumn(_) => "42703",
            PublicTableError::DuplicateColumn(_) => "42701",
            PublicTableError::InvalidDefinition(_) => "42P16",
            PublicTableError::Unsupported(_) => "0A000",
            PublicTableError::UniqueViolation { .. } => "23505",
            PublicTableError::NotNull { .. } => "23502",
            PublicTableError::TooLong { .. } => "22001",
            PublicTableError::InvalidValue { .. } => "22P02",
            PublicTableError::TooManyValues | PublicTableError::TooFewValues => "42601",
            PublicTableError::TooLarge { .. } => "54000",
        }
    }

    /// The DETAIL line, where PostgreSQL sends one.
    pub fn detail(&self) -> Option<String> {
        match self {
            PublicTableError::UniqueViolation { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }
}
