//! Parsing `CREATE ETL JOB` and its schedule clause.

use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_catalog::{ColumnOverride, IncrementalStart, JobDestination, JobSource, LoadType};
use sluice_engine::jobs::{CreateJob, JobChange};

use super::ast::SluiceStatement;
use super::parse::{PResult, StatementParser};
use super::parse_lookback::LookbackClauses;

/// The name `INTO` uses for the built-in local warehouse.
pub const WAREHOUSE: &str = "warehouse";

const DAYS: &[&str] = &[
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

impl StatementParser<'_> {
    /// After `CREATE ETL JOB`.
    pub(super) fn create_job(&mut self) -> PResult<SluiceStatement> {
        let if_not_exists = self.words(&["IF", "NOT", "EXISTS"]);
        let name = self.name("job name")?;
        self.expect_word("FROM")?;
        let connection = self.name("connection name")?;
        self.expect(Token::Period)?;
        let schema = self.name("schema name")?;
        self.expect(Token::Period)?;
        let table = self.name("table name")?;
        let columns = if self.parser.consume_token(&Token::LParen) {
            let columns = self.comma_separated(|p| p.name("column name"))?;
            self.expect(Token::RParen)?;
            Some(columns)
        } else {
            None
        };
        let mut destination = JobDestination {
            connection: None,
            table: String::new(),
        };
        let mut load = None;
        let mut column_overrides = Vec::new();
        let mut schedule = "MANUAL".to_owned();
        let mut batch_rows = None;
        let mut parallelism = None;
        let mut lookback = LookbackClauses::default();
        loop {
            if self.word("INTO") {
                let first = self.name("destination table")?;
                destination = if self.parser.consume_token(&Token::Period) {
                    let table = self.name("destination table")?;
                    let connection = (first != WAREHOUSE).then_some(first);
                    JobDestination { connection, table }
                } else {
                    JobDestination {
                        connection: None,
                        table: first,
                    }
                };
            } else if self.words(&["INCREMENTAL", "BY"]) {
                let cursor = self.name("cursor column")?;
                let start = if self.word("BACKFILL") {
                    let days = self.whole_number("number of days")?;
                    if !self.word("DAYS") {
                        self.expect_word("DAY")?;
                    }
                    IncrementalStart::BackfillDays(days)
                } else if self.word("SINCE") {
                    IncrementalStart::Since(self.string("a 'date', 'timestamp' or number")?)
                } else if self.word("ALL") {
                    IncrementalStart::All
                } else {
                    IncrementalStart::BackfillDays(DEFAULT_BACKFILL_DAYS)
                };
                load = Some(LoadType::Incremental {
                    cursor,
                    start,
                    lookback: None,
                });
            } else if self.word("SNAPSHOT") {
                load = Some(LoadType::Snapshot);
            } else if self.word("COLUMNS") {
                self.expect(Token::LParen)?;
                column_overrides = self.comma_separated(|p| p.column_override())?;
                self.expect(Token::RParen)?;
            } else if self.word("SCHEDULE") {
                schedule = self.schedule()?;
            } else if self.word("WITH") {
                self.expect(Token::LParen)?;
                let settings = self.comma_separated(|p| {
                    let name = p.name("setting name")?;
                    let _ = p.parser.consume_token(&Token::Eq);
                    Ok((name, p.whole_number("a whole number")?))
                })?;
                self.expect(Token::RParen)?;
                for (name, value) in settings {
                    match name.as_str() {
                        "batch_rows" if (1..=1_000_000).contains(&value) => batch_rows = Some(value),
                        "batch_rows" => return Err(self.error("batch_rows must be between 1 and 1000000".into())),
                        "parallelism" if (1..=MAX_PARALLELISM).contains(&value) => parallelism = Some(value),
                        "parallelism" => {
                            return Err(self.error(format!("parallelism must be between 1 and {MAX_PARALLELISM}")));
                        }
                        other => {
                            return Err(self.error(format!(
                                "unknown job setting \"{other}\"; valid settings: batch_rows, parallelism"
                            )));
                        }
                    }
                }
            } else if !self.lookback_clause(&mut lookback)? {
                break;
            }
        }
        let load = load.ok_or_else(|| self.error("expected INCREMENTAL BY column or SNAPSHOT".into()))?;
        let load = self.with_lookback(load, lookback)?;
        Ok(SluiceStatement::CreateJob(Box::new(CreateJob {
            name,
            if_not_exists,
            source: JobSource {
                connection,
                schema,
                table,
                columns,
            },
            destination,
            load,
            column_overrides,
            schedule,
            batch_rows,
            parallelism,
        })))
    }

    /// After `ALTER ETL JOB`.
    pub(super) fn alter_job(&mut self) -> PResult<SluiceStatement> {
        let name = self.name("job name")?;
        let change = if self.word("PAUSE") {
            JobChange::Pause
        } else if self.word("RESUME") {
            JobChange::Resume
        } else {
            self.expect_word("SET")?;
            if self.word("SCHEDULE") {
                JobChange::Schedule(self.schedule()?)
            } else if self.word("COLUMNS") || self.word("INTO") || self.word("FROM") {
                return Err(self.error(
                    "a job's columns, source and destination cannot change: they define the destination table; \
                     create a new job instead"
                        .into(),
                ));
            } else {
                self.expect(Token::LParen)?;
                let settings = self.comma_separated(|p| {
                    let name = p.name("setting name")?;
                    let _ = p.parser.consume_token(&Token::Eq);
                    Ok((name, p.whole_number("a whole number")?))
                })?;
                self.expect(Token::RParen)?;
                match settings.as_slice() {
                    [(name, rows)] if name == "batch_rows" && (1..=1_000_000).contains(rows) => {
                        JobChange::BatchRows(*rows)
                    }
                    _ => return Err(self.error("expected SET (batch_rows = n) with n between 1 and 1000000".into())),
                }
            }
        };
        Ok(SluiceStatement::AlterJob { name, change })
    }

    /// `col TYPE[(p[, s])] [REQUIRED | NULLABLE]`
    fn column_override(&mut self) -> PResult<ColumnOverride> {
        let column = self.name("column name")?;
        let mut bigquery_type = self.name("a BigQuery type")?.to_ascii_uppercase();
        if self.parser.consume_token(&Token::LParen) {
            let args = self.comma_separated(|p| p.whole_number("precision or scale"))?;
            self.expect(Token::RParen)?;
            let args: Vec<String> = args.iter().map(u32::to_string).collect();
            bigquery_type = format!("{bigquery_type}({})", args.join(", "));
        }
        let required = if self.word("REQUIRED") {
            Some(true)
        } else if self.word("NULLABLE") {
            Some(false)
        } else {
            None
        };
        Ok(ColumnOverride {
            column,
            bigquery_type,
            required,
        })
    }

    /// A schedule, normalised to canonical text.
    fn schedule(&mut self) -> PResult<String> {
        let mut text = if self.word("MANUAL") {
            "MANUAL".to_owned()
        } else if self.word("EVERY") {
            let n = self.whole_number("a number")?;
            let unit = if self.word("MINUTES") || self.word("MINUTE") {
                "MINUTES"
            } else if self.word("HOURS") || self.word("HOUR") {
                "HOURS"
            } else {
                return Err(self.error("expected MINUTES or HOURS".into()));
            };
            if n == 0 {
                return Err(self.error("the interval must be at least 1".into()));
            }
            format!("EVERY {n} {unit}")
        } else if self.word("HOURLY") {
            if self.words(&["AT", "MINUTE"]) {
                let minute = self.whole_number("a minute (0-59)")?;
                if minute > 59 {
                    return Err(self.error("the minute must be 0-59".into()));
                }
                format!("HOURLY AT MINUTE {minute}")
            } else {
                "HOURLY".to_owned()
            }
        } else if self.word("DAILY") {
            format!("DAILY AT '{}'", self.at_time()?)
        } else if self.word("WEEKLY") {
            self.expect_word("ON")?;
            let day = self.name("a day of the week")?.to_ascii_uppercase();
            if !DAYS.contains(&day.as_str()) {
                return Err(self.error(format!("expected a day of the week ({}), found {day}", DAYS.join(", "))));
            }
            format!("WEEKLY ON {day} AT '{}'", self.at_time()?)
        } else if self.word("MONTHLY") {
            self.expect_word("ON")?;
            let day = if self.word("LAST") {
                "LAST".to_owned()
            } else {
                let day = self.whole_number("a day of the month (1-31) or LAST")?;
                if !(1..=31).contains(&day) {
                    return Err(self.error("the day of the month must be 1-31 or LAST".into()));
                }
                day.to_string()
            };
            format!("MONTHLY ON {day} AT '{}'", self.at_time()?)
        } else if self.word("CRON") {
            let expression = self.string("a cron expression")?;
            let fields = expression.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(self.error(format!(
                    "a cron expression has 5 or 6 fields, '{expression}' has {fields}"
                )));
            }
            format!("CRON '{expression}'")
        } else {
            return Err(self.error(
                "expected MANUAL, EVERY n MINUTES|HOURS, HOURLY, DAILY AT 'HH:MM', WEEKLY ON day AT 'HH:MM', MONTHLY ON n|LAST AT 'HH:MM' or CRON '...'".into(),
            ));
        };
        if self.word("TIMEZONE") {
            let zone = self.string("an IANA time zone name")?;
            text.push_str(&format!(" TIMEZONE '{}'", zone.replace('\'', "''")));
        }
        Ok(text)
    }

    /// `AT 'HH:MM'`
    fn at_time(&mut self) -> PResult<String> {
        self.expect_word("AT")?;
        let time = self.string("a time 'HH:MM'")?;
        match chrono::NaiveTime::parse_from_str(&time, "%H:%M") {
            Ok(t) => Ok(t.format("%H:%M").to_string()),
            Err(_) => Err(self.error(format!("'{time}' is not a time of day 'HH:MM'"))),
        }
    }

    pub(super) fn whole_number(&mut self, what: &str) -> PResult<u32> {
        match self.parser.peek_token().token {
            Token::Number(text, _) => match text.parse() {
                Ok(n) => {
                    self.parser.next_token();
                    Ok(n)
                }
                Err(_) => Err(self.error(format!("expected {what}, found {text}"))),
            },
            other => Err(self.error(format!("expected {what}, found \"{other}\""))),
        }
    }
}

/// The most parallel source streams a job may use.
const MAX_PARALLELISM: u32 = 16;

/// The backfill window of `INCREMENTAL BY col` without a start clause.
pub const DEFAULT_BACKFILL_DAYS: u32 = 90;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse;

    fn job(sql: &str) -> CreateJob {
        match parse(sql).unwrap() {
            SluiceStatement::CreateJob(job) => *job,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_full_job() {
        let j = job(
            "CREATE ETL JOB IF NOT EXISTS orders_daily FROM shop.public.orders (id, created_at, amount) \
             INTO warehouse.bq_orders INCREMENTAL BY created_at BACKFILL 30 DAYS \
             COLUMNS (amount NUMERIC(12, 2) REQUIRED, id string) \
             SCHEDULE daily at '2:00' TIMEZONE 'Europe/Warsaw' WITH (batch_rows = 1000)",
        );
        assert!(j.if_not_exists);
        assert_eq!(
            j.source.columns,
            Some(vec!["id".into(), "created_at".into(), "amount".into()])
        );
        assert_eq!(
            j.destination,
            JobDestination {
                connection: None,
                table: "bq_orders".into()
            }
        );
        assert_eq!(
            j.load,
            LoadType::Incremental {
                cursor: "created_at".into(),
                start: IncrementalStart::BackfillDays(30),
                lookback: None
            }
        );
        assert_eq!(j.column_overrides[0].bigquery_type, "NUMERIC(12, 2)");
        assert_eq!(j.column_overrides[0].required, Some(true));
        assert_eq!(j.column_overrides[1].bigquery_type, "STRING");
        assert_eq!(j.schedule, "DAILY AT '02:00' TIMEZONE 'Europe/Warsaw'");
        assert_eq!(j.batch_rows, Some(1000));
        assert_eq!(j.parallelism, None);
        assert_eq!(
            job("CREATE ETL JOB p FROM c.s.t SNAPSHOT WITH (parallelism = 4, batch_rows = 10)").parallelism,
            Some(4)
        );
    }

    #[test]
    fn defaults_and_other_forms() {
        let j = job("CREATE ETL JOB s FROM c.s.t SNAPSHOT");
        assert_eq!(j.destination.table, "");
        assert_eq!(j.schedule, "MANUAL");
        assert_eq!(
            job("create etl job i from c.s.t incremental by id all").load,
            LoadType::Incremental {
                cursor: "id".into(),
                start: IncrementalStart::All,
                lookback: None
            }
        );
        assert_eq!(
            job("CREATE ETL JOB i FROM c.s.t INCREMENTAL BY d").load,
            LoadType::Incremental {
                cursor: "d".into(),
                start: IncrementalStart::BackfillDays(90),
                lookback: None
            }
        );
        assert_eq!(
            job("CREATE ETL JOB i FROM c.s.t INTO wh.x INCREMENTAL BY d SINCE '2024-01-01'").destination,
            JobDestination {
                connection: Some("wh".into()),
                table: "x".into()
            }
        );
        for (clause, normalised) in [
            ("EVERY 15 MINUTES", "EVERY 15 MINUTES"),
            ("HOURLY AT MINUTE 5", "HOURLY AT MINUTE 5"),
            ("WEEKLY ON monday AT '03:30'", "WEEKLY ON MONDAY AT '03:30'"),
            ("MONTHLY ON LAST AT '23:00'", "MONTHLY ON LAST AT '23:00'"),
            ("CRON '0 3 * * *'", "CRON '0 3 * * *'"),
        ] {
            assert_eq!(
                job(&format!("CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE {clause}")).schedule,
                normalised
            );
        }
    }

    #[test]
    fn parses_job_changes() {
        let change = |sql: &str| match parse(sql).unwrap() {
            SluiceStatement::AlterJob { change, .. } => change,
            other => panic!("{other:?}"),
        };
        assert_eq!(change("ALTER ETL JOB j PAUSE"), JobChange::Pause);
        assert_eq!(change("ALTER ETL JOB j RESUME"), JobChange::Resume);
        assert_eq!(
            change("ALTER ETL JOB j SET SCHEDULE EVERY 5 MINUTES"),
            JobChange::Schedule("EVERY 5 MINUTES".into())
        );
        assert_eq!(
            change("ALTER ETL JOB j SET (batch_rows = 100)"),
            JobChange::BatchRows(100)
        );
        assert!(
            parse("ALTER ETL JOB j SET COLUMNS (a STRING)")
                .unwrap_err()
                .message
                .contains("cannot change")
        );
    }

    #[test]
    fn rejects_bad_jobs_with_positions() {
        for (sql, needle) in [
            ("CREATE ETL JOB j FROM c.s.t", "INCREMENTAL BY"),
            ("CREATE ETL JOB j FROM c.t SNAPSHOT", "expected ."),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE DAILY AT '25:00'",
                "time of day",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE WEEKLY ON funday AT '01:00'",
                "day of the week",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE CRON '* *'",
                "5 or 6 fields",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (parallel = 2)",
                "batch_rows, parallelism",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (parallelism = 17)",
                "between 1 and 16",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (parallelism = 0)",
                "between 1 and 16",
            ),
        ] {
            let err = parse(sql).unwrap_err();
            assert!(err.message.contains(needle), "{sql}: {err:?}");
            assert!(err.position.is_some(), "{sql}");
        }
    }
}
