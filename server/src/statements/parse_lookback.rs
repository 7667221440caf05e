//! The `LOOKBACK window DEDUPE ON (columns)` clauses of `CREATE ETL JOB`.

use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_catalog::{Lookback, LookbackWindow};
use sluice_engine::jobs::LoadRequest;

use super::parse::{PResult, StatementParser};

/// Seconds per unit, largest first (also the order [`window_sql`] tries).
const UNITS: &[(&str, &str, u64)] = &[
    ("DAYS", "DAY", 86_400),
    ("HOURS", "HOUR", 3_600),
    ("MINUTES", "MINUTE", 60),
    ("SECONDS", "SECOND", 1),
];

/// The lookback clauses seen so far, combined with the load at the end.
#[derive(Debug, Default)]
pub(super) struct LookbackClauses {
    window: Option<LookbackWindow>,
    dedupe_on: Option<Vec<String>>,
}

impl StatementParser<'_> {
    /// Parses `LOOKBACK ...` or `DEDUPE ON (...)` if next; false otherwise.
    pub(super) fn lookback_clause(&mut self, clauses: &mut LookbackClauses) -> PResult<bool> {
        if self.word("LOOKBACK") {
            clauses.window = Some(self.lookback_window()?);
        } else if self.words(&["DEDUPE", "ON"]) {
            self.expect(Token::LParen)?;
            clauses.dedupe_on = Some(self.comma_separated(|p| p.name("column name"))?);
            self.expect(Token::RParen)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// `LOOKBACK n UNIT`, `LOOKBACK 'n unit'` or `LOOKBACK n` (cursor values,
    /// for integer cursors).
    fn lookback_window(&mut self) -> PResult<LookbackWindow> {
        let quoted = matches!(self.parser.peek_token_ref().token, Token::SingleQuotedString(_));
        let (amount, unit) = if quoted {
            let text = self.string("a lookback window")?;
            let mut parts = text.split_whitespace();
            let amount = parts.next().and_then(|n| n.parse::<u64>().ok());
            match (amount, parts.next(), parts.next()) {
                (Some(amount), Some(unit), None) => (amount, Some(unit.to_ascii_uppercase())),
                _ => {
                    return Err(self.error(format!(
                        "'{text}' is not a lookback window; write e.g. LOOKBACK '2 hours' or LOOKBACK 2 HOURS"
                    )));
                }
            }
        } else {
            let amount = u64::from(self.whole_number("a lookback window, e.g. 2 HOURS")?);
            let unit = UNITS
                .iter()
                .find(|(plural, singular, _)| self.word(plural) || self.word(singular))
                .map(|(plural, ..)| (*plural).to_owned());
            (amount, unit)
        };
        if amount == 0 {
            return Err(self.error("the lookback window must be positive".into()));
        }
        match unit {
            None => Ok(LookbackWindow::Values(amount)),
            Some(unit) => {
                let seconds = UNITS
                    .iter()
                    .find(|(plural, singular, _)| unit == *plural || unit == *singular)
                    .map(|(.., seconds)| *seconds)
                    .ok_or_else(|| {
                        self.error(format!(
                            "unknown lookback unit \"{unit}\"; use SECONDS, MINUTES, HOURS or DAYS"
                        ))
                    })?;
                amount
                    .checked_mul(seconds)
                    .map(LookbackWindow::Seconds)
                    .ok_or_else(|| self.error("the lookback window is too long".into()))
            }
        }
    }

    /// Adds the lookback clauses to the load; they go together, with
    /// `INCREMENTAL` only.
    pub(super) fn with_lookback(&self, load: LoadRequest, clauses: LookbackClauses) -> PResult<LoadRequest> {
        match (load, clauses.window, clauses.dedupe_on) {
            (load, None, None) => Ok(load),
            (LoadRequest::Snapshot, ..) => Err(self.error(
                "LOOKBACK and DEDUPE ON apply to INCREMENTAL BY loads only (a SNAPSHOT reads everything anyway)".into(),
            )),
            (LoadRequest::Cdc { .. }, ..) => Err(self.error(
                "LOOKBACK and DEDUPE ON apply to INCREMENTAL BY loads only (CDC applies each change once by its \
                 position)"
                    .into(),
            )),
            (LoadRequest::Incremental { cursor, start, .. }, Some(window), Some(dedupe_on)) => {
                Ok(LoadRequest::Incremental {
                    cursor,
                    start,
                    lookback: Some(Lookback { window, dedupe_on }),
                })
            }
            (_, Some(_), None) => Err(self.error(
                "LOOKBACK needs DEDUPE ON (columns): the columns that tell a re-read row from a new one".into(),
            )),
            (_, None, Some(_)) => {
                Err(self
                    .error("DEDUPE ON needs LOOKBACK window: rows are deduplicated within the re-read window".into()))
            }
        }
    }
}

/// `LOOKBACK ... DEDUPE ON (...)` as SQL, in the largest whole unit.
pub fn lookback_sql(lookback: &Lookback, quote: impl Fn(&str) -> String) -> String {
    let window = match lookback.window {
        LookbackWindow::Values(n) => n.to_string(),
        LookbackWindow::Seconds(seconds) => {
            let (plural, _, size) = UNITS
                .iter()
                .find(|(.., size)| seconds % size == 0)
                .expect("every whole number of seconds is whole seconds");
            format!("{} {plural}", seconds / size)
        }
    };
    let columns: Vec<String> = lookback.dedupe_on.iter().map(|c| quote(c)).collect();
    format!("LOOKBACK {window} DEDUPE ON ({})", columns.join(", "))
}

#[cfg(test)]
mod tests {
    use sluice_catalog::IncrementalStart;

    use crate::statements::SluiceStatement;
    use crate::statements::parse_sluice as parse;

    use super::*;

    fn load(sql: &str) -> LoadRequest {
        match parse(sql).unwrap() {
            SluiceStatement::CreateJob(job) => job.load,
            other => panic!("{other:?}"),
        }
    }

    fn lookback(window: LookbackWindow, dedupe_on: &[&str]) -> LoadRequest {
        LoadRequest::Incremental {
            cursor: "at".into(),
            start: Some(IncrementalStart::All),
            lookback: Some(Lookback {
                window,
                dedupe_on: dedupe_on.iter().map(|c| c.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn parses_every_window_form_in_any_clause_order() {
        for (clause, window) in [
            ("LOOKBACK '2 hours'", LookbackWindow::Seconds(7200)),
            ("LOOKBACK 2 HOURS", LookbackWindow::Seconds(7200)),
            ("lookback 1 day", LookbackWindow::Seconds(86_400)),
            ("LOOKBACK '90 Minutes'", LookbackWindow::Seconds(5400)),
            ("LOOKBACK 30 SECONDS", LookbackWindow::Seconds(30)),
            ("LOOKBACK 500", LookbackWindow::Values(500)),
        ] {
            assert_eq!(
                load(&format!(
                    "CREATE ETL JOB j FROM c.s.t INCREMENTAL BY at ALL {clause} DEDUPE ON (id, \"Kind\")"
                )),
                lookback(window, &["id", "Kind"]),
                "{clause}"
            );
        }
        assert_eq!(
            load("CREATE ETL JOB j FROM c.s.t DEDUPE ON (id) SCHEDULE HOURLY LOOKBACK 3 DAYS INCREMENTAL BY at ALL"),
            lookback(LookbackWindow::Seconds(3 * 86_400), &["id"])
        );
    }

    #[test]
    fn shows_the_largest_whole_unit() {
        let sql = |window| {
            lookback_sql(
                &Lookback {
                    window,
                    dedupe_on: vec!["id".into(), "at".into()],
                },
                |c| c.to_owned(),
            )
        };
        assert_eq!(
            sql(LookbackWindow::Seconds(7200)),
            "LOOKBACK 2 HOURS DEDUPE ON (id, at)"
        );
        assert_eq!(
            sql(LookbackWindow::Seconds(5400)),
            "LOOKBACK 90 MINUTES DEDUPE ON (id, at)"
        );
        assert_eq!(
            sql(LookbackWindow::Seconds(172_800)),
            "LOOKBACK 2 DAYS DEDUPE ON (id, at)"
        );
        assert_eq!(sql(LookbackWindow::Values(7)), "LOOKBACK 7 DEDUPE ON (id, at)");
    }

    #[test]
    fn rejects_bad_lookbacks() {
        for (sql, needle) in [
            ("INCREMENTAL BY at LOOKBACK 0 HOURS DEDUPE ON (id)", "positive"),
            (
                "INCREMENTAL BY at LOOKBACK '2 fortnights' DEDUPE ON (id)",
                "unknown lookback unit",
            ),
            (
                "INCREMENTAL BY at LOOKBACK 'soon' DEDUPE ON (id)",
                "not a lookback window",
            ),
            ("INCREMENTAL BY at LOOKBACK 2 HOURS", "needs DEDUPE ON"),
            ("INCREMENTAL BY at DEDUPE ON (id)", "needs LOOKBACK"),
            ("SNAPSHOT LOOKBACK 2 HOURS DEDUPE ON (id)", "INCREMENTAL BY loads only"),
        ] {
            let err = parse(&format!("CREATE ETL JOB j FROM c.s.t {sql}")).unwrap_err();
            assert!(err.message.contains(needle), "{sql}: {err:?}");
        }
    }
}
