//! Parsing the statements on many jobs at once: `CREATE ETL JOBS FOR TABLES
//! IN conn.schema ...`, `ALTER ETL JOBS WHERE ...` and `RUN ETL JOBS WHERE ...`.

use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_engine::jobs::{CreateJobs, SettingValue};
use sluice_engine::scheduler::Schedule;

use super::ast::SluiceStatement;
use super::parse::{PResult, StatementParser};
use super::parse_job::WAREHOUSE;

impl StatementParser<'_> {
    /// A statement on many jobs, or `None` (nothing consumed) for another.
    pub(super) fn fleet_statement(&mut self) -> PResult<Option<SluiceStatement>> {
        if self.words(&["CREATE", "ETL", "JOBS"]) {
            return self.create_jobs().map(Some);
        }
        if self.words(&["ALTER", "ETL", "JOBS"]) {
            let selection = self.selection()?;
            let change = self.job_change()?;
            return Ok(Some(SluiceStatement::AlterJobs { selection, change }));
        }
        if self.words(&["SHOW", "CREATE", "ALL"]) {
            let with_state = self.words(&["WITH", "STATE"]);
            return Ok(Some(SluiceStatement::ShowCreateAll { with_state }));
        }
        if self.words(&["RUN", "ETL", "JOBS"]) {
            let selection = self.selection()?;
            return Ok(Some(SluiceStatement::RunJobs { selection }));
        }
        Ok(None)
    }

    /// `WHERE condition`: a condition on the columns of `sluice.jobs`,
    /// returned as SQL text.
    fn selection(&mut self) -> PResult<String> {
        self.expect_word("WHERE")?;
        let condition = self.parser.parse_expr().map_err(|e| self.parser_error(e))?;
        Ok(condition.to_string())
    }

    /// After `CREATE ETL JOBS`.
    fn create_jobs(&mut self) -> PResult<SluiceStatement> {
        self.expect_word("FOR")?;
        self.expect_word("TABLES")?;
        self.expect_word("IN")?;
        let connection = self.name("connection name")?;
        self.expect(Token::Period)?;
        let schema = self.name("schema name")?;
        let mut request = CreateJobs {
            connection,
            schema,
            like: None,
            except: Vec::new(),
            destination: None,
            start: None,
            schedule: Schedule::manual(),
            settings: Vec::new(),
            name_template: None,
            dry_run: false,
        };
        let mut given = Vec::new();
        loop {
            if self.word("LIKE") {
                self.once(&mut given, "LIKE")?;
                request.like = Some(self.string("a LIKE 'pattern'")?);
            } else if self.word("EXCEPT") {
                self.once(&mut given, "EXCEPT")?;
                self.expect(Token::LParen)?;
                request.except = self.comma_separated(|p| p.name("table name"))?;
                self.expect(Token::RParen)?;
            } else if self.word("INTO") {
                self.once(&mut given, "INTO")?;
                let destination = self.name("destination connection")?;
                request.destination = (destination != WAREHOUSE).then_some(destination);
            } else if let Some(start) = self.incremental_start()? {
                self.once(&mut given, "BACKFILL, SINCE or ALL")?;
                request.start = Some(start);
            } else if self.word("SCHEDULE") {
                self.once(&mut given, "SCHEDULE")?;
                request.schedule = self.schedule()?;
            } else if self.word("WITH") {
                self.once(&mut given, "WITH")?;
                self.expect(Token::LParen)?;
                let mut template = None;
                let settings = self.comma_separated(|p| {
                    p.job_setting(|name, value| {
                        name.eq_ignore_ascii_case("name_template").then(|| match value {
                            SettingValue::Text(t) => {
                                template = Some(t.clone());
                                Ok(())
                            }
                            SettingValue::Number(_) => {
                                Err("name_template must be a 'string' such as '{schema}_{table}'".into())
                            }
                        })
                    })
                })?;
                self.expect(Token::RParen)?;
                request.settings = settings.into_iter().flatten().collect();
                request.name_template = template;
            } else if self.words(&["DRY", "RUN"]) {
                request.dry_run = true;
                break;
            } else {
                break;
            }
        }
        Ok(SluiceStatement::CreateJobs(Box::new(request)))
    }
}

#[cfg(test)]
mod tests {
    use sluice_catalog::IncrementalStart;
    use sluice_engine::jobs::{JobChange, JobSetting};

    use super::*;
    use crate::statements::parse_sluice as parse;

    #[test]
    fn parses_create_etl_jobs() {
        let sql = "CREATE ETL JOBS FOR TABLES IN shop.public LIKE 'order%' EXCEPT (order_notes, \"Audit\") \
                   INTO wh ALL SCHEDULE DAILY AT '02:00' \
                   WITH (labels = 'team=finance', name_template = 'raw_{table}') DRY RUN";
        let SluiceStatement::CreateJobs(request) = parse(sql).unwrap() else {
            panic!("wrong statement");
        };
        assert_eq!(request.like.as_deref(), Some("order%"));
        assert_eq!(request.except, ["order_notes", "Audit"]);
        assert_eq!(request.destination.as_deref(), Some("wh"));
        assert_eq!(request.start, Some(IncrementalStart::All));
        assert_eq!(request.schedule.to_string(), "DAILY AT '02:00'");
        assert_eq!(request.name_template.as_deref(), Some("raw_{table}"));
        assert!(matches!(request.settings[..], [JobSetting::Labels(_)]));
        assert!(request.dry_run);

        let SluiceStatement::CreateJobs(plain) =
            parse("create etl jobs for tables in shop.public into warehouse").unwrap()
        else {
            panic!("wrong statement");
        };
        assert_eq!((plain.destination, plain.start, plain.dry_run), (None, None, false));
        for (sql, needle) in [
            ("CREATE ETL JOBS FOR TABLES IN shop", "expected ."),
            ("CREATE ETL JOBS IN shop.public", "expected FOR"),
            (
                "CREATE ETL JOBS FOR TABLES IN shop.public LIKE 'a' LIKE 'b'",
                "LIKE is given twice",
            ),
            (
                "CREATE ETL JOBS FOR TABLES IN shop.public WITH (name_template = 3)",
                "name_template",
            ),
            ("CREATE ETL JOBS FOR TABLES IN shop.public DRY RUN ALL", "after the end"),
        ] {
            let err = parse(sql).unwrap_err();
            assert!(err.message.contains(needle), "{sql}: {err:?}");
        }
    }

    #[test]
    fn parses_changes_to_a_selection() {
        assert_eq!(
            parse("ALTER ETL JOBS WHERE array_has(string_to_array(labels, ','), 'team=finance') PAUSE").unwrap(),
            SluiceStatement::AlterJobs {
                selection: "array_has(string_to_array(labels, ','), 'team=finance')".into(),
                change: JobChange::Pause
            }
        );
        assert_eq!(
            parse("alter etl jobs where name like 'public_%' and health = 'stale' set (max_retries = 2)").unwrap(),
            SluiceStatement::AlterJobs {
                selection: "name LIKE 'public_%' AND health = 'stale'".into(),
                change: JobChange::Set(vec![JobSetting::MaxRetries(2)])
            }
        );
        assert_eq!(
            parse("RUN ETL JOBS WHERE paused = false").unwrap(),
            SluiceStatement::RunJobs {
                selection: "paused = false".into()
            }
        );
        assert!(
            parse("RUN ETL JOBS paused")
                .unwrap_err()
                .message
                .contains("expected WHERE")
        );
        assert!(parse("ALTER ETL JOBS WHERE true").is_err());
    }
}
