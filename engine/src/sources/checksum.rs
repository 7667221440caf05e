//! VERIFY's aggregate: per bucket of the cursor, the row count and an
//! order-independent checksum of the key and cursor columns, written in
//! each SQL dialect so that the source and the destination compute it where
//! the data is and get the same numbers for the same rows.
//!
//! Each value is rendered as canonical text (integers in decimal, dates as
//! `YYYY-MM-DD`, timestamps as microseconds since 1970: UTC for zoned
//! timestamps, the wall time for plain ones, which is how Arrow holds them),
//! NULL as `~`; the texts are joined with `|`; the row's hash is the first
//! 32 bits of the MD5 of that text, read from its hex digits with `substr`
//! and `strpos`, which every dialect has; the checksum is their sum.

use datafusion::arrow::datatypes::DataType;

use crate::contract::{Dialect, SqlFamily};

/// The width of VERIFY's buckets on a time cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketUnit {
    Hour,
    Day,
    Month,
}

impl BucketUnit {
    /// The keyword in `BY HOUR | DAY | MONTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketUnit::Hour => "hour",
            BucketUnit::Day => "day",
            BucketUnit::Month => "month",
        }
    }
}

/// The label of the one bucket of an untimed comparison.
pub const WHOLE_TABLE: &str = "all";

/// One bucket's row count and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSums {
    pub bucket: String,
    pub rows: i64,
    pub checksum: i128,
}

/// The aggregate over one table.
#[derive(Debug, Clone)]
pub struct ChecksumQuery {
    /// The checksummed columns and their types, in order.
    pub columns: Vec<(String, DataType)>,
    /// The cursor column and type to bucket on, with the bucket width;
    /// `None`: one bucket for all rows.
    pub bucket: Option<(String, DataType, BucketUnit)>,
    /// A condition in the dialect, selecting the compared rows.
    pub filter: Option<String>,
}

impl ChecksumQuery {
    /// The query in `dialect` over the table reference `from`; an error
    /// names a column whose type has no canonical text.
    pub fn sql(&self, dialect: &dyn Dialect, from: &str) -> Result<String, String> {
        let family = dialect.family();
        let texts = self
            .columns
            .iter()
            .map(|(name, data_type)| {
                canonical_text(family, &dialect.quote_ident(name), data_type)
                    .map(|text| format!("COALESCE({text}, '~')"))
                    .ok_or_else(|| format!("column \"{name}\" of type {data_type} cannot be checksummed"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hash = if texts.is_empty() {
            "'00000000'".to_owned()
        } else {
            md5_hex(family, &concat(family, &texts))
        };
        let bucket = match &self.bucket {
            None => format!("'{WHOLE_TABLE}'"),
            Some((name, data_type, unit)) => bucket_label(family, &dialect.quote_ident(name), data_type, *unit)
                .ok_or_else(|| {
                    format!(
                        "column \"{name}\" of type {data_type} cannot be bucketed by {}",
                        unit.as_str()
                    )
                })?,
        };
        let filter = self.filter.as_ref().map(|f| format!(" WHERE {f}")).unwrap_or_default();
        Ok(format!(
            "SELECT b, COUNT(*), SUM({}) FROM (SELECT {bucket} AS b, {hash} AS h FROM {from}{filter}) q GROUP BY b",
            hex_prefix_value(family, "h")
        ))
    }
}

/// Reads the rows of a checksum query (bucket, count, sum).
pub fn parse_sums(rows: &[Vec<Option<String>>]) -> Result<Vec<BucketSums>, String> {
    rows.iter()
        .map(|row| {
            let cell = |i: usize| row.get(i).cloned().flatten();
            let number = |i: usize| {
                let text = cell(i).unwrap_or_else(|| "0".into());
                // Sums may come back as decimals with a zero fraction.
                let whole = text.split('.').next().unwrap_or_default().to_owned();
                whole
                    .parse::<i128>()
                    .map_err(|_| format!("not a whole number in a checksum result: {text}"))
            };
            Ok(BucketSums {
                bucket: cell(0).unwrap_or_else(|| "NULL".into()),
                rows: i64::try_from(number(1)?).map_err(|e| e.to_string())?,
                checksum: number(2)?,
            })
        })
        .collect()
}

/// The canonical text of a value of `data_type` in `family`'s SQL.
fn canonical_text(family: SqlFamily, column: &str, data_type: &DataType) -> Option<String> {
    use SqlFamily as F;
    let as_text = |e: &str| match family {
        F::Postgres => format!("CAST({e} AS text)"),
        F::MySql => format!("CAST({e} AS CHAR)"),
        F::DataFusion => format!("CAST({e} AS VARCHAR)"),
        F::BigQuery => format!("CAST({e} AS STRING)"),
        F::SqlServer => format!("CAST({e} AS nvarchar(40))"),
        // Redshift's `text` is VARCHAR(256); this is its longest string.
        F::Redshift => format!("CAST({e} AS VARCHAR(65535))"),
        F::Snowflake => format!("CAST({e} AS VARCHAR)"),
    };
    Some(match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => as_text(column),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match family {
            F::Postgres => format!("CAST({column} AS text)"),
            F::MySql => format!("CONVERT({column} USING utf8mb4)"),
            F::Redshift => as_text(column),
            F::DataFusion | F::BigQuery | F::SqlServer | F::Snowflake => column.to_owned(),
        },
        DataType::Date32 => match family {
            F::Postgres | F::Redshift | F::Snowflake => format!("to_char({column}, 'YYYY-MM-DD')"),
            F::MySql => format!("DATE_FORMAT({column}, '%Y-%m-%d')"),
            F::DataFusion => format!("to_char({column}, '%Y-%m-%d')"),
            F::BigQuery => format!("FORMAT_DATE('%Y-%m-%d', {column})"),
            F::SqlServer => format!("CONVERT(char(10), {column}, 23)"),
        },
        DataType::Timestamp(_, zone) => match family {
            F::Postgres => as_text(&format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS bigint)")),
            // In a session at +00:00, TIMESTAMP values read as UTC.
            F::MySql => as_text(&format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column})")),
            F::DataFusion => as_text(&format!("CAST({column} AS BIGINT)")),
            F::BigQuery if zone.is_some() => as_text(&format!("UNIX_MICROS({column})")),
            F::BigQuery => as_text(&format!("UNIX_MICROS(TIMESTAMP({column}))")),
            // DATEDIFF_BIG counts crossed microsecond boundaries: the value cut
            // to microseconds, as it loads; a datetimeoffset counts in UTC.
            F::SqlServer => as_text(&format!("DATEDIFF_BIG(MICROSECOND, '1970-01-01', {column})")),
            // Whole seconds, then the microseconds of the second (Redshift's
            // MICROSECONDS part leaves out the whole seconds PostgreSQL's
            // includes; the remainder is the same in both).
            F::Redshift => as_text(&format!(
                "CAST(EXTRACT(EPOCH FROM DATE_TRUNC('second', {column})) AS bigint) * 1000000 \
                 + CAST(EXTRACT(MICROSECONDS FROM {column}) AS bigint) % 1000000"
            )),
            // Zoned values count in UTC.
            F::Snowflake => as_text(&format!("DATE_PART(EPOCH_MICROSECOND, {column})")),
        },
        _ => return None,
    })
}

/// The texts joined (Redshift's `CONCAT` takes two arguments only).
fn concat(family: SqlFamily, texts: &[String]) -> String {
    match family {
        SqlFamily::Redshift => format!("({})", texts.join(" || '|' || ")),
        _ => format!("CONCAT({})", texts.join(", '|', ")),
    }
}

/// MD5 of a text as 32 lower-case hex digits.
fn md5_hex(family: SqlFamily, text: &str) -> String {
    match family {
        SqlFamily::Postgres | SqlFamily::Redshift | SqlFamily::Snowflake => format!("md5({text})"),
        SqlFamily::MySql => format!("LOWER(MD5({text}))"),
        SqlFamily::DataFusion => format!("md5({text})"),
        SqlFamily::BigQuery => format!("TO_HEX(MD5({text}))"),
        // MD5 of the UTF-8 bytes (a UTF-8 collation, SQL Server 2019 and later).
        SqlFamily::SqlServer => format!(
            "LOWER(CONVERT(char(32), HASHBYTES('MD5', CAST(({text}) COLLATE Latin1_General_100_BIN2_UTF8 AS varchar(max))), 2))"
        ),
    }
}

/// The number the first 8 hex digits of `hex` stand for (0 to 2^32 - 1).
fn hex_prefix_value(family: SqlFamily, hex: &str) -> String {
    const DIGITS: &str = "'0123456789abcdef'";
    (1..=8)
        .map(|i| {
            let digit = match family {
                SqlFamily::SqlServer => format!("SUBSTRING({hex}, {i}, 1)"),
                _ => format!("SUBSTR({hex}, {i}, 1)"),
            };
            let position = match family {
                SqlFamily::MySql => format!("LOCATE({digit}, {DIGITS})"),
                SqlFamily::SqlServer => format!("CHARINDEX({digit}, {DIGITS})"),
                SqlFamily::Snowflake => format!("POSITION({digit} IN {DIGITS})"),
                _ => format!("STRPOS({DIGITS}, {digit})"),
            };
            let weight = 16_i64.pow(8 - i);
            // PostgreSQL's integer literals are 32 bits; the sum needs 64.
            let weight = match family {
                SqlFamily::Postgres | SqlFamily::SqlServer | SqlFamily::Redshift => format!("CAST({weight} AS bigint)"),
                _ => weight.to_string(),
            };
            format!("({position} - 1) * {weight}")
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The bucket a time cursor value falls in, as text (`2024-03-01 13:00`,
/// `2024-03-01`, `2024-03`), in UTC for zoned timestamps.
fn bucket_label(family: SqlFamily, column: &str, data_type: &DataType, unit: BucketUnit) -> Option<String> {
    let (zoned, date) = match data_type {
        DataType::Timestamp(_, zone) => (zone.is_some(), false),
        DataType::Date32 => (false, true),
        _ => return None,
    };
    // A date has no hours: its hour buckets are days.
    let unit = if date && unit == BucketUnit::Hour {
        BucketUnit::Day
    } else {
        unit
    };
    let strftime = match unit {
        BucketUnit::Hour => "%Y-%m-%d %H:00",
        BucketUnit::Day => "%Y-%m-%d",
        BucketUnit::Month => "%Y-%m",
    };
    Some(match family {
        SqlFamily::Postgres | SqlFamily::Redshift => {
            let pattern = match unit {
                BucketUnit::Hour => "YYYY-MM-DD HH24:00",
                BucketUnit::Day => "YYYY-MM-DD",
                BucketUnit::Month => "YYYY-MM",
            };
            format!("to_char({column}, '{pattern}')")
        }
        SqlFamily::MySql => format!("DATE_FORMAT({column}, '{strftime}')"),
        SqlFamily::DataFusion => format!("to_char({column}, '{strftime}')"),
        SqlFamily::BigQuery if date => format!("FORMAT_DATE('{strftime}', {column})"),
        SqlFamily::BigQuery if zoned => format!("FORMAT_TIMESTAMP('{strftime}', {column}, 'UTC')"),
        SqlFamily::BigQuery => format!("FORMAT_DATETIME('{strftime}', {column})"),
        // Built from the date parts, which read the same in every Snowflake
        // session (a timestamp's text depends on the output format).
        SqlFamily::Snowflake => {
            let value = if zoned {
                format!("CONVERT_TIMEZONE('UTC', {column})")
            } else {
                column.to_owned()
            };
            let part = |name: &str, width: usize| format!("LPAD(CAST({name}({value}) AS VARCHAR), {width}, '0')");
            let mut label = format!("{} || '-' || {}", part("YEAR", 4), part("MONTH", 2));
            if unit != BucketUnit::Month {
                label.push_str(&format!(" || '-' || {}", part("DAY", 2)));
            }
            if unit == BucketUnit::Hour {
                label.push_str(&format!(" || ' ' || {} || ':00'", part("HOUR", 2)));
            }
            label
        }
        SqlFamily::SqlServer => {
            let pattern = match unit {
                BucketUnit::Hour => "yyyy-MM-dd HH:00",
                BucketUnit::Day => "yyyy-MM-dd",
                BucketUnit::Month => "yyyy-MM",
            };
            let value = if zoned {
                format!("SWITCHOFFSET({column}, '+00:00')")
            } else {
                column.to_owned()
            };
            format!("FORMAT({value}, '{pattern}', 'en-US')")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_parse_from_integer_and_decimal_text() {
        let rows = vec![vec![Some("2024-01-01".into()), Some("3".into()), Some("12.000".into())]];
        assert_eq!(
            parse_sums(&rows).unwrap(),
            [BucketSums {
                bucket: "2024-01-01".into(),
                rows: 3,
                checksum: 12
            }]
        );
        assert!(parse_sums(&[vec![None, Some("x".into()), None]]).is_err());
    }

    #[test]
    fn the_hash_reads_eight_hex_digits() {
        let sql = hex_prefix_value(SqlFamily::DataFusion, "h");
        assert_eq!(sql.matches("STRPOS").count(), 8);
        assert!(
            sql.ends_with("(STRPOS('0123456789abcdef', SUBSTR(h, 8, 1)) - 1) * 1"),
            "{sql}"
        );
        assert!(hex_prefix_value(SqlFamily::Postgres, "h").contains("CAST(268435456 AS bigint)"));
    }

    #[test]
    fn redshift_joins_with_pipes_and_snowflake_buckets_from_date_parts() {
        let ts = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        let texts = [
            canonical_text(SqlFamily::Redshift, "a", &DataType::Utf8).unwrap(),
            "b".into(),
        ];
        assert_eq!(
            concat(SqlFamily::Redshift, &texts),
            "(CAST(a AS VARCHAR(65535)) || '|' || b)"
        );
        let epoch = canonical_text(SqlFamily::Redshift, "t", &ts).unwrap();
        assert!(
            epoch.contains("DATE_TRUNC('second', t)") && epoch.contains("% 1000000"),
            "{epoch}"
        );
        let hour = bucket_label(SqlFamily::Snowflake, "t", &ts, BucketUnit::Hour).unwrap();
        assert!(
            hour.starts_with("LPAD(CAST(YEAR(CONVERT_TIMEZONE('UTC', t)) AS VARCHAR), 4, '0')"),
            "{hour}"
        );
        assert!(hour.ends_with("|| ':00'"), "{hour}");
        let month = bucket_label(SqlFamily::Snowflake, "d", &DataType::Date32, BucketUnit::Month).unwrap();
        assert_eq!(month.matches("LPAD").count(), 2, "{month}");
    }
}
