//! How Redshift spells identifiers and literals: PostgreSQL's, except that a
//! Redshift string literal treats a backslash as an escape character, so
//! strings with one are never written (their filters stay in DataFusion).

use datafusion::scalar::ScalarValue;

use crate::connectors::postgres::dialect::DIALECT as POSTGRES;
use crate::contract::{Dialect, SqlFamily};

/// The Redshift dialect.
pub(super) struct RedshiftDialect;

/// The one instance, for [`Source::dialect`](crate::contract::Source::dialect).
pub(super) static DIALECT: RedshiftDialect = RedshiftDialect;

impl Dialect for RedshiftDialect {
    fn family(&self) -> SqlFamily {
        SqlFamily::Redshift
    }

    fn quote_ident(&self, ident: &str) -> String {
        POSTGRES.quote_ident(ident)
    }

    fn literal(&self, value: &ScalarValue) -> Option<String> {
        use ScalarValue as S;
        match value {
            S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => string(s),
            _ => POSTGRES.literal(value),
        }
    }
}

/// A string constant, or `None` for text with a backslash (an escape
/// character in Redshift, not in PostgreSQL) or a NUL.
pub(super) fn string(s: &str) -> Option<String> {
    (!s.contains(['\\', '\0'])).then(|| format!("'{}'", s.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_with_a_backslash_stay_in_datafusion() {
        let lit = |s: &str| DIALECT.literal(&ScalarValue::Utf8(Some(s.into())));
        assert_eq!(lit("it's").as_deref(), Some("'it''s'"));
        assert_eq!(lit("a\\nb"), None);
        assert_eq!(lit("a\0b"), None);
    }

    #[test]
    fn other_values_are_written_as_postgres_writes_them() {
        assert_eq!(DIALECT.quote_ident("Order \"x\""), "\"Order \"\"x\"\"\"");
        assert_eq!(DIALECT.literal(&ScalarValue::Int64(Some(-5))).as_deref(), Some("-5"));
        assert_eq!(
            DIALECT
                .literal(&ScalarValue::TimestampMicrosecond(Some(0), Some("UTC".into())))
                .as_deref(),
            Some("'1970-01-01 00:00:00.000000+00'::timestamptz")
        );
        assert_eq!(DIALECT.literal(&ScalarValue::Binary(Some(vec![1]))), None);
    }
}
