//! Schedules: the `SCHEDULE ...` clause of a job, parsed, printed in one
//! canonical form, and asked for the next time it fires.
//!
//! Calendar schedules (`HOURLY`, `DAILY`, `WEEKLY`, `MONTHLY`, `CRON`) are
//! evaluated by `croner` in the schedule's time zone, which gives them the
//! Open Cron Pattern Specification's daylight-saving rules: a fixed time that
//! falls in a spring-forward gap fires once, at the first valid minute after
//! the gap; a fixed time in a repeated fall-back hour fires once, at its
//! first occurrence; `HOURLY` fires in both passes of a repeated hour.
//! `EVERY n MINUTES|HOURS` is a fixed interval counted from 1970-01-01 00:00
//! UTC, so it never drifts and ignores the time zone.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The days `WEEKLY ON` accepts, Monday first, as printed.
const DAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cadence: Cadence,
    zone: Tz,
}

/// When a schedule fires, without its time zone.
#[derive(Debug, Clone)]
enum Cadence {
    /// Never by itself: only `RUN ETL JOB`.
    Manual,
    /// Always: a change-data-capture job whose stream stays open.
    Continuous,
    /// Every `count` units, counted from the Unix epoch.
    Every { count: u32, unit: Unit },
    /// A calendar rule, as the text it was written in and the cron pattern
    /// that evaluates it.
    Calendar { rule: Calendar, cron: Box<Cron> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Minutes,
    Hours,
}

impl Unit {
    fn seconds(self) -> i64 {
        match self {
            Unit::Minutes => 60,
            Unit::Hours => 3600,
        }
    }
}

/// The calendar rules, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Calendar {
    Hourly {
        minute: u32,
    },
    Daily {
        at: NaiveTime,
    },
    /// `day` indexes [`DAYS`].
    Weekly {
        day: usize,
        at: NaiveTime,
    },
    /// `None` is the last day of the month.
    Monthly {
        day: Option<u32>,
        at: NaiveTime,
    },
    Cron {
        expression: String,
    },
}

impl Calendar {
    /// The 6-field (seconds first) cron pattern of the rule.
    fn pattern(&self) -> String {
        let hm = |at: &NaiveTime| format!("0 {} {}", at.minute(), at.hour());
        match self {
            Calendar::Hourly { minute } => format!("0 {minute} * * * *"),
            Calendar::Daily { at } => format!("{} * * *", hm(at)),
            Calendar::Weekly { day, at } => format!("{} * * {}", hm(at), &DAYS[*day][..3]),
            Calendar::Monthly { day: Some(day), at } => format!("{} {day} * *", hm(at)),
            Calendar::Monthly { day: None, at } => format!("{} L * *", hm(at)),
            Calendar::Cron { expression } => {
                if expression.split_whitespace().count() == 5 {
                    format!("0 {expression}")
                } else {
                    expression.clone()
                }
            }
        }
    }
}

/// Why a schedule clause is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    /// `MANUAL`: runs only when asked.
    pub fn manual() -> Self {
        Self {
            cadence: Cadence::Manual,
            zone: Tz::UTC,
        }
    }

    /// True for `MANUAL`.
    pub fn is_manual(&self) -> bool {
        matches!(self.cadence, Cadence::Manual)
    }

    /// `CONTINUOUS`: a CDC job whose change stream the scheduler keeps open.
    pub fn continuous() -> Self {
        Self {
            cadence: Cadence::Continuous,
            zone: Tz::UTC,
        }
    }

    /// True for `CONTINUOUS`.
    pub fn is_continuous(&self) -> bool {
        matches!(self.cadence, Cadence::Continuous)
    }

    /// The first time strictly after `after` that the schedule fires; `None`
    /// for `MANUAL` and `CONTINUOUS`, which have no ticks (or a cron pattern
    /// that never matches again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.cadence {
            Cadence::Manual | Cadence::Continuous => None,
            Cadence::Every { count, unit } => {
                let step = i64::from(*count) * unit.seconds();
                let next = (after.timestamp().div_euclid(step) + 1) * step;
                DateTime::from_timestamp(next, 0)
            }
            Cadence::Calendar { cron, .. } => cron
                .find_next_occurrence(&after.with_timezone(&self.zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// Schedules are equal when they fire at the same times: when their
/// canonical texts are equal.
impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Schedule {}

impl fmt::Display for Schedule {
    /// The canonical text, which parses back to the same schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |t: &NaiveTime| t.format("'%H:%M'").to_string();
        match &self.cadence {
            Cadence::Manual => return f.write_str("MANUAL"),
            Cadence::Continuous => return f.write_str("CONTINUOUS"),
            Cadence::Every { count, unit } => {
                let unit = match unit {
                    Unit::Minutes => "MINUTES",
                    Unit::Hours => "HOURS",
                };
                write!(f, "EVERY {count} {unit}")?;
            }
            Cadence::Calendar { rule, .. } => match rule {
                Calendar::Hourly { minute: 0 } => f.write_str("HOURLY")?,
                Calendar::Hourly { minute } => write!(f, "HOURLY AT MINUTE {minute}")?,
                Calendar::Daily { at: t } => write!(f, "DAILY AT {}", at(t))?,
                Calendar::Weekly { day, at: t } => write!(f, "WEEKLY ON {} AT {}", DAYS[*day], at(t))?,
                Calendar::Monthly { day: Some(day), at: t } => write!(f, "MONTHLY ON {day} AT {}", at(t))?,
                Calendar::Monthly { day: None, at: t } => write!(f, "MONTHLY ON LAST AT {}", at(t))?,
                Calendar::Cron { expression } => write!(f, "CRON {}", quote(expression))?,
            },
        }
        if self.zone != Tz::UTC {
            write!(f, " TIMEZONE {}", quote(self.zone.name()))?;
        }
        Ok(())
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    /// Parses a schedule clause (the words after `SCHEDULE`), in any case:
    /// the text the catalog stores.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize()
            .map_err(|e| ScheduleError(format!("{} in the schedule", e.message.to_lowercase())))?;
        Schedule::from_tokens(&tokens)
    }
}

impl Schedule {
    /// Parses a schedule clause from its SQL tokens: the statement parser
    /// hands over the clause as it lexed it.
    pub fn from_tokens(tokens: &[Token]) -> Result<Self, ScheduleError> {
        let mut words = Words::new(tokens)?;
        let cadence = words.cadence()?;
        let zone = if words.keyword("TIMEZONE") {
            let name = words.string("an IANA time zone name such as 'Europe/Warsaw'")?;
            name.parse::<Tz>().map_err(|_| {
                ScheduleError(format!(
                    "unknown time zone '{name}'; use an IANA name such as 'UTC', 'Europe/Warsaw' or 'America/New_York'"
                ))
            })?
        } else {
            Tz::UTC
        };
        if let Some(extra) = words.next() {
            return Err(ScheduleError(format!("unexpected {extra} at the end of the schedule")));
        }
        match cadence {
            Cadence::Manual if zone != Tz::UTC => {
                return Err(ScheduleError("a MANUAL schedule takes no TIMEZONE".into()));
            }
            Cadence::Continuous if zone != Tz::UTC => {
                return Err(ScheduleError("CONTINUOUS takes no TIMEZONE".into()));
            }
            _ => {}
        }
        Ok(Schedule { cadence, zone })
    }
}

/// One lexical item of a schedule clause.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Word(String),
    Number(u32),
    Text(String),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Word(w) => write!(f, "\"{w}\""),
            Item::Number(n) => write!(f, "{n}"),
            Item::Text(t) => f.write_str(&quote(t)),
        }
    }
}

/// The items of a schedule clause, consumed front to back.
struct Words {
    items: std::collections::VecDeque<Item>,
}

impl Words {
    fn new(tokens: &[Token]) -> Result<Self, ScheduleError> {
        let mut items = std::collections::VecDeque::new();
        for token in tokens {
            items.push_back(match token {
                Token::Whitespace(_) | Token::EOF => continue,
                Token::Word(word) => Item::Word(word.value.to_ascii_uppercase()),
                Token::SingleQuotedString(text) => Item::Text(text.clone()),
                Token::Number(digits, _) if digits.bytes().all(|b| b.is_ascii_digit()) => Item::Number(
                    digits
                        .parse()
                        .map_err(|_| ScheduleError(format!("{digits} is too large")))?,
                ),
                other => return Err(ScheduleError(format!("unexpected '{other}' in the schedule"))),
            });
        }
        Ok(Self { items })
    }

    fn next(&mut self) -> Option<Item> {
        self.items.pop_front()
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.items.front(), Some(Item::Word(w)) if w == word) {
            self.items.pop_front();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), ScheduleError> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(self.unexpected(word))
        }
    }

    fn unexpected(&self, wanted: &str) -> ScheduleError {
        match self.items.front() {
            Some(found) => ScheduleError(format!("expected {wanted}, found {found}")),
            None => ScheduleError(format!("expected {wanted} at the end of the schedule")),
        }
    }

    fn number(&mut self, what: &str) -> Result<u32, ScheduleError> {
        match self.items.front() {
            Some(Item::Number(n)) => {
                let n = *n;
                self.items.pop_front();
                Ok(n)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ScheduleError> {
        match self.items.front() {
            Some(Item::Text(t)) => {
                let t = t.clone();
                self.items.pop_front();
                Ok(t)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn cadence(&mut self) -> Result<Cadence, ScheduleError> {
        if self.keyword("MANUAL") {
            return Ok(Cadence::Manual);
        }
        if self.keyword("CONTINUOUS") {
            return Ok(Cadence::Continuous);
        }
        if self.keyword("EVERY") {
            let count = self.number("a number")?;
            let unit = if self.keyword("MINUTES") || self.keyword("MINUTE") {
                Unit::Minutes
            } else if self.keyword("HOURS") || self.keyword("HOUR") {
                Unit::Hours
            } else {
                return Err(self.unexpected("MINUTES or HOURS"));
            };
            if count == 0 || i64::from(count) * unit.seconds() > 366 * 24 * 3600 {
                return Err(ScheduleError(
                    "the interval must be at least 1 and at most a year".into(),
                ));
            }
            return Ok(Cadence::Every { count, unit });
        }
        let rule = if self.keyword("HOURLY") {
            let minute = if self.keyword("AT") {
                self.expect("MINUTE")?;
                let minute = self.number("a minute (0-59)")?;
                if minute > 59 {
                    return Err(ScheduleError(format!("the minute must be 0-59, not {minute}")));
                }
                minute
            } else {
                0
            };
            Calendar::Hourly { minute }
        } else if self.keyword("DAILY") {
            Calendar::Daily { at: self.at_time()? }
        } else if self.keyword("WEEKLY") {
            self.expect("ON")?;
            let day = match self.next() {
                Some(Item::Word(w)) => DAYS.iter().position(|d| *d == w || (w.len() == 3 && d.starts_with(&w))),
                _ => None,
            }
            .ok_or_else(|| ScheduleError(format!("expected a day of the week ({})", DAYS.join(", "))))?;
            Calendar::Weekly {
                day,
                at: self.at_time()?,
            }
        } else if self.keyword("MONTHLY") {
            self.expect("ON")?;
            let day = if self.keyword("LAST") {
                None
            } else {
                let day = self.number("a day of the month (1-31) or LAST")?;
                if !(1..=31).contains(&day) {
                    return Err(ScheduleError(format!(
                        "the day of the month must be 1-31 or LAST, not {day}"
                    )));
                }
                Some(day)
            };
            Calendar::Monthly {
                day,
                at: self.at_time()?,
            }
        } else if self.keyword("CRON") {
            let expression = self.string("a quoted cron expression such as '0 3 * * *'")?;
            let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
            let fields = expression.split(' ').filter(|f| !f.is_empty()).count();
            if !(5..=6).contains(&fields) {
                return Err(ScheduleError(format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 (seconds first), \
                     '{expression}' has {fields}"
                )));
            }
            Calendar::Cron { expression }
        } else {
            return Err(self.unexpected(
                "MANUAL, CONTINUOUS, EVERY n MINUTES|HOURS, HOURLY [AT MINUTE m], DAILY AT 'HH:MM', WEEKLY ON day AT 'HH:MM', \
                 MONTHLY ON n|LAST AT 'HH:MM' or CRON '...'",
            ));
        };
        let pattern = rule.pattern();
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .build()
            .parse(&pattern)
            .map_err(|e| match &rule {
                Calendar::Cron { expression } => ScheduleError(format!("invalid cron expression '{expression}': {e}")),
                _ => ScheduleError(format!("invalid schedule: {e}")),
            })?;
        Ok(Cadence::Calendar {
            rule,
            cron: Box::new(cron),
        })
    }

    /// `AT 'HH:MM'`
    fn at_time(&mut self) -> Result<NaiveTime, ScheduleError> {
        self.expect("AT")?;
        let text = self.string("a time 'HH:MM'")?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map_err(|_| ScheduleError(format!("'{text}' is not a time of day 'HH:MM' (00:00 to 23:59)")))
    }
}

/// Schedules parsed by their text, each text once: a listing of thousands
/// of jobs that share a few schedules parses a few.
#[derive(Default)]
pub struct ParsedSchedules(HashMap<String, Option<Schedule>>);

impl ParsedSchedules {
    /// `text` parsed; `None` when it is not a schedule.
    pub fn get(&mut self, text: &str) -> Option<&Schedule> {
        if !self.0.contains_key(text) {
            self.0.insert(text.to_owned(), text.parse().ok());
        }
        self.0[text].as_ref()
    }
}

#[cfg(test)]
mod tests;
