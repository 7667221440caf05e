//! The connection option `tables`: glob patterns, relative to the prefix,
//! mapped to table names (`orders=exports/orders/*.csv.gz,
//! events=events/**/*.parquet`). With it, a connection's tables are exactly
//! those; a file belongs to the first pattern it matches.

use glob::{MatchOptions, Pattern};

/// The name of the option.
pub(crate) const OPTION: &str = "tables";

/// What the option says, for `SHOW CONNECTION TYPES`.
pub(crate) const DESCRIPTION: &str = "tables as glob patterns relative to the prefix, instead of one table per file \
     or folder: 'orders=exports/orders/*.csv.gz, events=events/**/*.parquet' (* stays within a folder, ** spans \
     folders)";

/// One table of the option.
#[derive(Debug, Clone)]
pub(crate) struct TableGlob {
    pub(crate) name: String,
    pattern: Pattern,
}

impl TableGlob {
    /// Whether the file at `relative` (its path below the prefix) is one of
    /// the table's.
    pub(crate) fn matches(&self, relative: &str) -> bool {
        self.pattern.matches_with(
            relative,
            MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            },
        )
    }
}

/// The tables an option value names, or why it is not valid.
pub(crate) fn parse(value: &str) -> Result<Vec<TableGlob>, String> {
    let mut tables: Vec<TableGlob> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, pattern) = item
            .split_once('=')
            .map(|(name, pattern)| (name.trim(), pattern.trim().trim_start_matches('/')))
            .filter(|(name, pattern)| !name.is_empty() && !pattern.is_empty())
            .ok_or_else(|| format!("option {OPTION}: \"{item}\" is not name=pattern"))?;
        if tables.iter().any(|t| t.name == name) {
            return Err(format!("option {OPTION}: table \"{name}\" is given twice"));
        }
        let pattern = Pattern::new(pattern)
            .map_err(|e| format!("option {OPTION}: the pattern of table \"{name}\" is not a glob: {e}"))?;
        tables.push(TableGlob {
            name: name.to_owned(),
            pattern,
        });
    }
    if tables.is_empty() {
        return Err(format!(
            "option {OPTION} names no table; write it as 'name=pattern, ...'"
        ));
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_and_across_folders() {
        let tables = parse("orders=exports/orders/*.csv.gz, events = /events/**/*.parquet").unwrap();
        let [orders, events] = &tables[..] else { panic!() };
        assert_eq!((orders.name.as_str(), events.name.as_str()), ("orders", "events"));
        assert!(orders.matches("exports/orders/2026-01-01.csv.gz"));
        assert!(
            !orders.matches("exports/orders/old/2025.csv.gz"),
            "* stays in its folder"
        );
        assert!(events.matches("events/a.parquet"));
        assert!(events.matches("events/day=1/hour=2/b.parquet"));
        assert!(
            !events.matches("events/.tmp/b.parquet"),
            "hidden folders are not matched"
        );
    }

    #[test]
    fn bad_values_name_the_problem() {
        assert!(parse("orders").unwrap_err().contains("not name=pattern"));
        assert!(parse("a=x/*.csv, a=y/*.csv").unwrap_err().contains("given twice"));
        assert!(parse("a=x/[.csv").unwrap_err().contains("table \"a\""));
        assert!(parse(" , ").unwrap_err().contains("names no table"));
    }
}
