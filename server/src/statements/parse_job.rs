//! Parsing `CREATE ETL JOB` and its schedule clause.

use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_catalog::{CdcMode, ColumnOverride, IncrementalStart, JobDestination, JobSource};
use sluice_engine::jobs::{
    ColumnSpec, CreateJob, CursorWindow, JobChange, JobEdit, JobSetting, LoadRequest, SettingValue,
};
use sluice_engine::scheduler::{Schedule, ScheduleError};
use sluice_engine::sources::BucketUnit;

use super::ast::SluiceStatement;
use super::parse::{PResult, ParseError, ParseErrorKind, StatementParser};
use super::parse_lookback::LookbackClauses;

/// The name `INTO` uses for the built-in local warehouse.
pub const WAREHOUSE: &str = "warehouse";

/// `SCHEDULE ...` and `CONTINUOUS`, of which a job has one.
const SCHEDULE_CLAUSE: &str = "SCHEDULE (or CONTINUOUS)";

/// Words that end a schedule clause: the next clause starts.
const CLAUSES: &[&str] = &[
    "WITH",
    "COLUMNS",
    "INTO",
    "INCREMENTAL",
    "SNAPSHOT",
    "CDC",
    "CONTINUOUS",
    "SCHEDULE",
    "LOOKBACK",
    "DEDUPE",
    "BACKFILL",
    "ALL",
    "DRY",
    "LIKE",
    "EXCEPT",
];

impl StatementParser<'_> {
    /// After `CREATE ETL JOB`.
    pub(super) fn create_job(&mut self, or_replace: bool) -> PResult<SluiceStatement> {
        let if_not_exists = self.if_not_exists(or_replace)?;
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
        let mut destination = None;
        let mut load = None;
        let mut column_overrides = Vec::new();
        let mut schedule = Schedule::manual();
        let mut settings = Vec::new();
        let mut lookback = LookbackClauses::default();
        let mut given = Vec::new();
        loop {
            if self.word("INTO") {
                self.once(&mut given, "INTO")?;
                let first = self.name("destination table")?;
                destination = Some(if self.parser.consume_token(&Token::Period) {
                    let table = self.name("destination table")?;
                    let connection = (first != WAREHOUSE).then_some(first);
                    JobDestination { connection, table }
                } else {
                    JobDestination {
                        connection: None,
                        table: first,
                    }
                });
            } else if self.words(&["INCREMENTAL", "BY"]) {
                self.once(&mut given, LOAD_CLAUSE)?;
                let cursor = self.name("cursor column")?;
                let start = self.incremental_start()?;
                load = Some(LoadRequest::Incremental {
                    cursor,
                    start,
                    lookback: None,
                });
            } else if self.word("SNAPSHOT") {
                self.once(&mut given, LOAD_CLAUSE)?;
                load = Some(LoadRequest::Snapshot);
            } else if self.word("CDC") {
                self.once(&mut given, LOAD_CLAUSE)?;
                let mode = if self.word("HISTORY") {
                    CdcMode::History
                } else {
                    self.word("MERGE");
                    CdcMode::Merge
                };
                load = Some(LoadRequest::Cdc { mode });
            } else if self.word("CONTINUOUS") {
                // In place of a schedule: the scheduler keeps the stream open.
                self.once(&mut given, SCHEDULE_CLAUSE)?;
                schedule = Schedule::continuous();
            } else if self.word("COLUMNS") {
                self.once(&mut given, "COLUMNS")?;
                self.expect(Token::LParen)?;
                column_overrides = self.comma_separated(|p| p.column_override())?;
                self.expect(Token::RParen)?;
            } else if self.word("SCHEDULE") {
                self.once(&mut given, SCHEDULE_CLAUSE)?;
                schedule = self.schedule()?;
            } else if self.word("WITH") {
                self.once(&mut given, "WITH")?;
                settings.extend(self.job_settings()?);
            } else if !self.lookback_clause(&mut lookback)? {
                break;
            }
        }
        let load = load.ok_or_else(|| self.error("expected INCREMENTAL BY column, SNAPSHOT or CDC".into()))?;
        let load = self.with_lookback(load, lookback)?;
        let job = Box::new(CreateJob {
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
            settings,
        });
        Ok(if or_replace {
            SluiceStatement::CreateOrReplaceJob(job)
        } else {
            SluiceStatement::CreateJob(job)
        })
    }

    /// `BACKFILL n DAYS`, `SINCE 'value'` or `ALL`, when one comes next.
    pub(super) fn incremental_start(&mut self) -> PResult<Option<IncrementalStart>> {
        Ok(Some(if self.word("BACKFILL") {
            let days = self.whole_number("number of days")?;
            if days > MAX_BACKFILL_DAYS {
                return Err(self.out_of_range(
                    ParseErrorKind::DatetimeOutOfRange,
                    format!(
                        "BACKFILL {days} DAYS reaches too far back: at most {MAX_BACKFILL_DAYS} days (about 1000 years); write ALL to read every row"
                    ),
                ));
            }
            if !self.word("DAYS") {
                self.expect_word("DAY")?;
            }
            IncrementalStart::BackfillDays(days)
        } else if self.word("SINCE") {
            IncrementalStart::Since(self.string("a 'date', 'timestamp' or number")?)
        } else if self.word("ALL") {
            IncrementalStart::All
        } else {
            return Ok(None);
        }))
    }

    /// Refuses a clause of `CREATE ETL JOB` given a second time (the last
    /// one silently won before).
    pub(super) fn once(&self, given: &mut Vec<&'static str>, clause: &'static str) -> PResult<()> {
        if given.contains(&clause) {
            return Err(self.error(format!("{clause} is given twice: write it once")));
        }
        given.push(clause);
        Ok(())
    }

    /// After `ALTER ETL JOB`.
    pub(super) fn alter_job(&mut self) -> PResult<SluiceStatement> {
        let name = self.name("job name")?;
        if let Some(edit) = self.job_edit()? {
            return Ok(SluiceStatement::EditJob { name, edit });
        }
        let change = self.job_change()?;
        Ok(SluiceStatement::AlterJob { name, change })
    }

    /// `ADD [COLUMN] col [type] | DROP [COLUMN] col | SET COLUMNS (col
    /// [type], ...) | SET INCREMENTAL BY col [start] | SET SNAPSHOT | RESET
    /// WATERMARK` of `ALTER ETL JOB`, when one comes next.
    fn job_edit(&mut self) -> PResult<Option<JobEdit>> {
        Ok(Some(if self.word("ADD") {
            let _ = self.word("COLUMN");
            JobEdit::AddColumn(self.column_spec()?)
        } else if self.word("DROP") {
            let _ = self.word("COLUMN");
            JobEdit::DropColumn(self.name("column name")?)
        } else if self.words(&["SET", "COLUMNS"]) {
            self.expect(Token::LParen)?;
            let columns = self.comma_separated(|p| p.column_spec())?;
            self.expect(Token::RParen)?;
            JobEdit::SetColumns(columns)
        } else if self.words(&["SET", "INCREMENTAL", "BY"]) {
            let cursor = self.name("cursor column")?;
            let start = self.incremental_start()?;
            JobEdit::SetLoad(LoadRequest::Incremental {
                cursor,
                start,
                lookback: None,
            })
        } else if self.words(&["SET", "SNAPSHOT"]) {
            JobEdit::SetLoad(LoadRequest::Snapshot)
        } else if self.words(&["RESET", "WATERMARK"]) {
            JobEdit::ResetWatermark
        } else {
            return Ok(None);
        }))
    }

    /// `col [TYPE[(p[, s])] [REQUIRED | NULLABLE]]`
    fn column_spec(&mut self) -> PResult<ColumnSpec> {
        let name = self.name("column name")?;
        let typed = match self.parser.peek_token_ref().token {
            Token::Comma | Token::RParen | Token::SemiColon | Token::EOF => None,
            _ => Some(self.column_type(name.clone())?),
        };
        Ok(ColumnSpec { name, typed })
    }

    /// `PAUSE | RESUME | SET SCHEDULE ... | SET (...)` of `ALTER ETL JOB(S)`.
    pub(super) fn job_change(&mut self) -> PResult<JobChange> {
        Ok(if self.word("PAUSE") {
            JobChange::Pause
        } else if self.word("RESUME") {
            JobChange::Resume
        } else {
            self.expect_word("SET")?;
            if self.word("SCHEDULE") {
                JobChange::Schedule(self.schedule()?)
            } else if self.word("WATERMARK") {
                JobChange::Watermark(self.string("the watermark as a 'string'")?)
            } else if self.word("COLUMNS") || self.word("INCREMENTAL") || self.word("SNAPSHOT") {
                return Err(self.error(
                    "SET COLUMNS, SET INCREMENTAL BY and SET SNAPSHOT change one job at a time: use ALTER ETL JOB name"
                        .into(),
                ));
            } else if self.word("INTO") || self.word("FROM") {
                return Err(
                    self.error("a job's source and destination tables cannot change: create a new job instead".into())
                );
            } else {
                JobChange::Set(self.job_settings()?)
            }
        })
    }

    /// After `VERIFY ETL JOB`.
    pub(super) fn verify_job(&mut self) -> PResult<SluiceStatement> {
        let name = self.name("job name")?;
        let mut within = CursorWindow::default();
        if self.word("BETWEEN") {
            within.from = Some(self.string("the window's first cursor value as a 'string'")?);
            self.expect_word("AND")?;
            within.to = Some(self.string("the cursor value that ends the window as a 'string'")?);
        }
        let by = if self.word("BY") {
            Some(if self.word("HOUR") {
                BucketUnit::Hour
            } else if self.word("DAY") {
                BucketUnit::Day
            } else if self.word("MONTH") {
                BucketUnit::Month
            } else {
                return Err(self.error("expected HOUR, DAY or MONTH after BY".into()));
            })
        } else {
            None
        };
        Ok(SluiceStatement::VerifyJob { name, within, by })
    }

    /// `col TYPE[(p[, s])] [REQUIRED | NULLABLE]`
    fn column_override(&mut self) -> PResult<ColumnOverride> {
        let column = self.name("column name")?;
        self.column_type(column)
    }

    /// `TYPE [REQUIRED | NULLABLE]` of `column` (the type with its
    /// precision and scale, or a nested RECORD / REPEATED type).
    fn column_type(&mut self, column: String) -> PResult<ColumnOverride> {
        let bigquery_type = self.override_type()?;
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

    /// A `COLUMNS` type as canonical text: `NUMERIC(12, 2)`, `REPEATED
    /// STRING`, `RECORD(street STRING, tags REPEATED STRING)` (the engine
    /// checks the names).
    fn override_type(&mut self) -> PResult<String> {
        let name = self.name("a BigQuery type")?.to_ascii_uppercase();
        if name == "REPEATED" {
            return Ok(format!("REPEATED {}", self.override_type()?));
        }
        if !self.parser.consume_token(&Token::LParen) {
            return Ok(name);
        }
        let args = if name == "RECORD" || name == "STRUCT" {
            self.comma_separated(|p| {
                let field = p.name("a RECORD field name")?;
                let field = if field
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    field
                } else {
                    format!("\"{}\"", field.replace('"', "\"\""))
                };
                Ok(format!("{field} {}", p.override_type()?))
            })?
        } else {
            let args = self.comma_separated(|p| p.whole_number("precision or scale"))?;
            args.iter().map(u32::to_string).collect()
        };
        self.expect(Token::RParen)?;
        Ok(format!("{name}({})", args.join(", ")))
    }

    /// The schedule clause after `SCHEDULE`, up to the next clause, parsed
    /// from its tokens by the engine's schedule grammar.
    pub(super) fn schedule(&mut self) -> PResult<Schedule> {
        // A clause word of its own (`CDC CONTINUOUS`), so read here.
        if self.word("CONTINUOUS") {
            return Ok(Schedule::continuous());
        }
        let at_start = self.error(String::new());
        let mut tokens = Vec::new();
        loop {
            let token = self.parser.peek_token_ref().token.clone();
            match &token {
                Token::EOF | Token::SemiColon => break,
                Token::Word(w)
                    if w.quote_style.is_none() && CLAUSES.contains(&w.value.to_ascii_uppercase().as_str()) =>
                {
                    break;
                }
                _ => {}
            }
            self.parser.next_token();
            tokens.push(token);
        }
        Schedule::from_tokens(&tokens).map_err(|e: ScheduleError| ParseError {
            message: format!("syntax error: invalid schedule: {e}"),
            position: at_start.position,
            kind: ParseErrorKind::Syntax,
        })
    }

    /// `(name = value, ...)` job settings, each validated.
    fn job_settings(&mut self) -> PResult<Vec<JobSetting>> {
        self.expect(Token::LParen)?;
        let settings = self.comma_separated(|p| p.job_setting(|_, _| None))?;
        self.expect(Token::RParen)?;
        Ok(settings.into_iter().flatten().collect())
    }

    /// One `name = value` job setting; `other` may take a setting that is
    /// not a job's (it returns `Some(result)`), which then gives `None`.
    pub(super) fn job_setting(
        &mut self,
        mut other: impl FnMut(&str, &SettingValue) -> Option<Result<(), String>>,
    ) -> PResult<Option<JobSetting>> {
        let name = self.name("setting name")?;
        let _ = self.parser.consume_token(&Token::Eq);
        let value = match self.parser.peek_token().token {
            Token::SingleQuotedString(text) => {
                self.parser.next_token();
                SettingValue::Text(text)
            }
            Token::Word(w) if w.quote_style.is_none() => {
                self.parser.next_token();
                SettingValue::Text(w.value)
            }
            _ => SettingValue::Number(self.whole_number("a whole number or a 'word'")?.into()),
        };
        if let Some(taken) = other(&name, &value) {
            return taken.map(|()| None).map_err(|message| self.error(message));
        }
        JobSetting::parse(&name, &value)
            .map(Some)
            .map_err(|message| self.error(message))
    }

    pub(super) fn whole_number(&mut self, what: &str) -> PResult<u32> {
        match self.parser.peek_token().token {
            Token::Number(text, _) => match text.parse() {
                Ok(n) => {
                    self.parser.next_token();
                    Ok(n)
                }
                Err(_) if text.bytes().all(|b| b.is_ascii_digit()) => Err(self.out_of_range(
                    ParseErrorKind::NumberOutOfRange,
                    format!("{text} is out of range for {what} (at most {})", u32::MAX),
                )),
                Err(_) => Err(self.error(format!("expected {what}, found {text}"))),
            },
            other => Err(self.error(format!("expected {what}, found \"{other}\""))),
        }
    }
}

/// The load-type clauses, of which a job has one.
const LOAD_CLAUSE: &str = "INCREMENTAL BY, SNAPSHOT or CDC";

/// The longest backfill window: about 1000 years, so the start stays a date
/// every source and destination accepts.
pub const MAX_BACKFILL_DAYS: u32 = 365_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::parse_sluice as parse;

    fn job(sql: &str) -> CreateJob {
        match parse(sql).unwrap() {
            SluiceStatement::CreateJob(job) => *job,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_cdc_jobs_and_refuses_continuous() {
        let cdc = |sql: &str| job(sql).load;
        assert_eq!(
            cdc("CREATE ETL JOB j FROM pg.public.t CDC"),
            LoadRequest::Cdc { mode: CdcMode::Merge }
        );
        assert_eq!(
            cdc("CREATE ETL JOB j FROM pg.public.t CDC MERGE INTO t2"),
            LoadRequest::Cdc { mode: CdcMode::Merge }
        );
        let j = job("CREATE ETL JOB j FROM pg.public.t CDC HISTORY SCHEDULE EVERY 5 MINUTES INTO h");
        assert_eq!(j.load, LoadRequest::Cdc { mode: CdcMode::History });
        assert_eq!(j.destination.unwrap().table, "h");
        let j = job("CREATE ETL JOB j FROM pg.public.t CDC CONTINUOUS WITH (flush_interval = '2 seconds')");
        assert!(j.schedule.is_continuous());
        assert!(
            job("CREATE ETL JOB j FROM pg.public.t CDC SCHEDULE CONTINUOUS")
                .schedule
                .is_continuous()
        );
        let err = parse("CREATE ETL JOB j FROM pg.public.t CDC CONTINUOUS SCHEDULE HOURLY").unwrap_err();
        assert!(err.message.contains("is given twice"), "{}", err.message);
        let err = parse("CREATE ETL JOB j FROM pg.public.t CDC SNAPSHOT").unwrap_err();
        assert!(err.message.contains("is given twice"), "{}", err.message);
    }

    #[test]
    fn parses_nested_column_types() {
        let j = job(
            "CREATE ETL JOB j FROM c.s.t SNAPSHOT COLUMNS (address record(Street STRING, \"Zip Code\" int64), \
             tags REPEATED string, items REPEATED RECORD(sku STRING, qty INT64) NULLABLE)",
        );
        let types: Vec<_> = j.column_overrides.iter().map(|o| o.bigquery_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "RECORD(street STRING, \"Zip Code\" INT64)",
                "REPEATED STRING",
                "REPEATED RECORD(sku STRING, qty INT64)"
            ]
        );
        assert_eq!(j.column_overrides[2].required, Some(false));
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
            Some(JobDestination {
                connection: None,
                table: "bq_orders".into()
            })
        );
        assert_eq!(
            j.load,
            LoadRequest::Incremental {
                cursor: "created_at".into(),
                start: Some(IncrementalStart::BackfillDays(30)),
                lookback: None
            }
        );
        assert_eq!(j.column_overrides[0].bigquery_type, "NUMERIC(12, 2)");
        assert_eq!(j.column_overrides[0].required, Some(true));
        assert_eq!(j.column_overrides[1].bigquery_type, "STRING");
        assert_eq!(j.schedule.to_string(), "DAILY AT '02:00' TIMEZONE 'Europe/Warsaw'");
        assert_eq!(j.settings, [JobSetting::BatchRows(1000)]);
        assert_eq!(
            job("CREATE ETL JOB p FROM c.s.t SNAPSHOT WITH (parallelism = 4, batch_rows = 10)").settings,
            [JobSetting::Parallelism(4), JobSetting::BatchRows(10)]
        );
    }

    #[test]
    fn defaults_and_other_forms() {
        let j = job("CREATE ETL JOB s FROM c.s.t SNAPSHOT");
        assert_eq!(j.destination, None, "the engine names the table");
        assert!(j.schedule.is_manual());
        assert_eq!(
            job("create etl job i from c.s.t incremental by id all").load,
            LoadRequest::Incremental {
                cursor: "id".into(),
                start: Some(IncrementalStart::All),
                lookback: None
            }
        );
        assert_eq!(
            job("CREATE ETL JOB i FROM c.s.t INCREMENTAL BY d").load,
            LoadRequest::Incremental {
                cursor: "d".into(),
                start: None,
                lookback: None
            }
        );
        assert_eq!(
            job("CREATE ETL JOB i FROM c.s.t INTO wh.x INCREMENTAL BY d SINCE '2024-01-01'").destination,
            Some(JobDestination {
                connection: Some("wh".into()),
                table: "x".into()
            })
        );
        for (clause, normalised) in [
            ("EVERY 15 MINUTES", "EVERY 15 MINUTES"),
            ("HOURLY AT MINUTE 5", "HOURLY AT MINUTE 5"),
            ("WEEKLY ON monday AT '03:30'", "WEEKLY ON MONDAY AT '03:30'"),
            ("MONTHLY ON LAST AT '23:00'", "MONTHLY ON LAST AT '23:00'"),
            (
                "CRON '0 3 * * *' TIMEZONE 'America/New_York'",
                "CRON '0 3 * * *' TIMEZONE 'America/New_York'",
            ),
        ] {
            assert_eq!(
                job(&format!(
                    "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE {clause} WITH (max_retries = 1)"
                ))
                .schedule
                .to_string(),
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
        match change("ALTER ETL JOB j SET SCHEDULE EVERY 5 MINUTES") {
            JobChange::Schedule(s) => assert_eq!(s.to_string(), "EVERY 5 MINUTES"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            change("ALTER ETL JOB j SET (batch_rows = 100, max_retries = 0, catch_up = 'skip')"),
            JobChange::Set(vec![
                JobSetting::BatchRows(100),
                JobSetting::MaxRetries(0),
                JobSetting::CatchUp(sluice_catalog::CatchUp::Skip)
            ])
        );
        assert!(
            parse("ALTER ETL JOB j SET INTO x")
                .unwrap_err()
                .message
                .contains("cannot change")
        );
        let edit = |sql: &str| match parse(sql).unwrap() {
            SluiceStatement::EditJob { edit, .. } => edit,
            other => panic!("{other:?}"),
        };
        let spec = |name: &str, typed: Option<(&str, Option<bool>)>| ColumnSpec {
            name: name.into(),
            typed: typed.map(|(t, required)| ColumnOverride {
                column: name.into(),
                bigquery_type: t.into(),
                required,
            }),
        };
        assert_eq!(
            edit("ALTER ETL JOB j ADD COLUMN note"),
            JobEdit::AddColumn(spec("note", None))
        );
        assert_eq!(
            edit("alter etl job j add amount numeric(12, 2) nullable"),
            JobEdit::AddColumn(spec("amount", Some(("NUMERIC(12, 2)", Some(false)))))
        );
        assert_eq!(
            edit("ALTER ETL JOB j DROP COLUMN note"),
            JobEdit::DropColumn("note".into())
        );
        assert_eq!(
            edit("ALTER ETL JOB j SET COLUMNS (id, note STRING)"),
            JobEdit::SetColumns(vec![spec("id", None), spec("note", Some(("STRING", None)))])
        );
        assert_eq!(
            edit("ALTER ETL JOB j SET INCREMENTAL BY id ALL"),
            JobEdit::SetLoad(LoadRequest::Incremental {
                cursor: "id".into(),
                start: Some(IncrementalStart::All),
                lookback: None
            })
        );
        assert_eq!(
            edit("ALTER ETL JOB j SET SNAPSHOT"),
            JobEdit::SetLoad(LoadRequest::Snapshot)
        );
        assert_eq!(edit("ALTER ETL JOB j RESET WATERMARK"), JobEdit::ResetWatermark);
        assert!(
            parse("ALTER ETL JOBS WHERE true SET COLUMNS (a)")
                .unwrap_err()
                .message
                .contains("one job at a time")
        );
    }

    #[test]
    fn parses_explain_verify_and_repair() {
        assert_eq!(
            parse("explain etl job Orders").unwrap(),
            SluiceStatement::ExplainJob { name: "orders".into() }
        );
        assert_eq!(
            parse("VERIFY ETL JOB o BETWEEN '2024-01-01' AND '2024-02-01' BY hour").unwrap(),
            SluiceStatement::VerifyJob {
                name: "o".into(),
                within: CursorWindow {
                    from: Some("2024-01-01".into()),
                    to: Some("2024-02-01".into())
                },
                by: Some(BucketUnit::Hour)
            }
        );
        assert_eq!(
            parse("VERIFY ETL JOB o").unwrap(),
            SluiceStatement::VerifyJob {
                name: "o".into(),
                within: CursorWindow::default(),
                by: None
            }
        );
        assert_eq!(
            parse("REPAIR ETL JOB o FROM '2024-01-01' TO '2024-01-02'").unwrap(),
            SluiceStatement::RepairJob {
                name: "o".into(),
                from: "2024-01-01".into(),
                to: "2024-01-02".into()
            }
        );
        assert_eq!(
            parse("resync etl job o").unwrap(),
            SluiceStatement::ResyncJob { name: "o".into() }
        );
        assert!(
            parse("VERIFY ETL JOB o BY WEEK")
                .unwrap_err()
                .message
                .contains("HOUR, DAY or MONTH")
        );
        assert!(
            parse("REPAIR ETL JOB o FROM '2024-01-01'")
                .unwrap_err()
                .message
                .contains("expected TO")
        );
        assert!(crate::statements::parse("explain etl job o").is_some());
        assert!(crate::statements::parse("EXPLAIN SELECT 1").is_none());
    }

    #[test]
    fn rejects_bad_jobs_with_positions() {
        for (sql, needle) in [
            (
                "CREATE ETL JOB j FROM c.s.t INCREMENTAL BY a SNAPSHOT",
                "INCREMENTAL BY, SNAPSHOT or CDC is given twice",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t INTO x INTO y SNAPSHOT",
                "INTO is given twice",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE EVERY 1 HOUR SCHEDULE DAILY AT '01:00'",
                "SCHEDULE (or CONTINUOUS) is given twice",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (batch_rows = 10) WITH (parallelism = 2)",
                "WITH is given twice",
            ),
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
            ("CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE CRON '* *'", "5 fields"),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT SCHEDULE DAILY AT '01:00' TIMEZONE 'Nowhere'",
                "unknown time zone",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (catch_up = 'never')",
                "'once' or 'skip'",
            ),
            (
                "CREATE ETL JOB j FROM c.s.t SNAPSHOT WITH (parallel = 2)",
                "catch_up, parallelism",
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
