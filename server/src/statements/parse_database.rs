//! Parsing `CREATE DATABASE` and `DROP DATABASE`: the namespaces a
//! connection string's `dbname` picks.

use super::ast::SluiceStatement;
use super::parse::{PResult, StatementParser};

impl StatementParser<'_> {
    /// A database statement, or `None` (nothing consumed) for another.
    pub(super) fn database_statement(&mut self) -> PResult<Option<SluiceStatement>> {
        Ok(Some(if self.words(&["CREATE", "DATABASE"]) {
            let if_not_exists = self.words(&["IF", "NOT", "EXISTS"]);
            SluiceStatement::CreateDatabase {
                name: self.name("database name")?,
                if_not_exists,
            }
        } else if self.words(&["DROP", "DATABASE"]) {
            let if_exists = self.words(&["IF", "EXISTS"]);
            let name = self.name("database name")?;
            let cascade = self.word("CASCADE");
            if !cascade {
                let _ = self.word("RESTRICT");
            }
            SluiceStatement::DropDatabase {
                name,
                if_exists,
                cascade,
            }
        } else {
            return Ok(None);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse_sluice as parse;

    #[test]
    fn database_statements_parse() {
        assert_eq!(
            parse("create database Model_5").unwrap(),
            SluiceStatement::CreateDatabase {
                name: "model_5".into(),
                if_not_exists: false
            }
        );
        assert_eq!(
            parse("CREATE DATABASE IF NOT EXISTS \"M5\";").unwrap(),
            SluiceStatement::CreateDatabase {
                name: "M5".into(),
                if_not_exists: true
            }
        );
        assert_eq!(
            parse("DROP DATABASE IF EXISTS m CASCADE").unwrap(),
            SluiceStatement::DropDatabase {
                name: "m".into(),
                if_exists: true,
                cascade: true
            }
        );
        assert_eq!(
            parse("DROP DATABASE m RESTRICT").unwrap(),
            SluiceStatement::DropDatabase {
                name: "m".into(),
                if_exists: false,
                cascade: false
            }
        );
        assert!(parse("CREATE DATABASE").is_err());
        assert!(parse("CREATE DATABASE m WITH OWNER x").is_err());
    }
}
