//! The `WITH (name = value, ...)` settings of a job, shared by
//! `CREATE ETL JOB` and `ALTER ETL JOB ... SET (...)`.

use std::collections::BTreeMap;

use sluice_catalog::{CatchUp, Execution, JobRecord, OptionValue, SchemaChangePolicy, VerifySchedule};

pub use crate::contract::SettingValue;

/// One valid job setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSetting {
    /// Rows per Arrow batch while extracting (1 to 1,000,000).
    BatchRows(u32),
    /// Retries of a failed scheduled run (0 to 20).
    MaxRetries(u32),
    /// What the scheduler does with ticks missed while Sluice was down.
    CatchUp(CatchUp),
    /// Parallel source streams (1 to 16; PostgreSQL sources).
    Parallelism(u32),
    /// Where the job's loads run.
    Execution(Execution),
    /// An option of the table the destination creates, declared by its
    /// connection type (BigQuery's `cluster_by`), with the value it keeps.
    Table(&'static str, serde_json::Value),
    /// Whether incremental runs wait for transactions open on the source.
    CommitGuard(bool),
    /// Seconds the guard's cap stays below the oldest open transaction.
    GuardMargin(u64),
    /// Seconds after which an open transaction stops holding the cap back.
    GuardMaxHold(u64),
    /// What a run does when the source table changed.
    OnSchemaChange(SchemaChangePolicy),
    /// Seconds the newest loaded data may age before the job is `stale`.
    FreshnessTarget(u64),
    /// `key=value` labels, replacing the job's labels.
    Labels(BTreeMap<String, String>),
    /// Whether the scheduler verifies the job after its runs.
    Verify(VerifySchedule),
    /// CDC `MERGE`: deletes set `_sluice_deleted_at` instead of removing rows.
    SoftDelete(bool),
    /// CDC: bytes of WAL the job's slot may hold back before it is given up.
    MaxRetainedWal(u64),
    /// CDC: change rows after which a run commits a micro-batch.
    FlushRows(u32),
    /// CDC: seconds after which a run commits the changes it holds.
    FlushInterval(u32),
    /// CDC from PostgreSQL: an existing publication to stream from.
    Publication(String),
    /// CDC from MySQL/MariaDB: the replica id the binlog is read as.
    ServerId(u32),
    /// A document store's mapping option (`sample`, `keep_document`,
    /// `on_type_mismatch`) for this job's reads, over the connection's.
    Source(&'static str, OptionValue),
}

/// The settings a job accepts, for error messages.
pub const SETTING_NAMES: &str = "batch_rows, max_retries, catch_up, parallelism, execution, \
     commit_guard, guard_margin, guard_max_hold, on_schema_change, freshness_target, labels, verify, soft_delete, \
     max_retained_wal, flush_rows, flush_interval, publication, server_id, sample, keep_document, on_type_mismatch";

impl JobSetting {
    /// Validates one `name = value` pair; the error says what is allowed.
    pub fn parse(name: &str, value: &SettingValue) -> Result<Self, String> {
        let number = |min: u64, max: u64| match value {
            SettingValue::Number(n) if (min..=max).contains(n) => Ok(*n as u32),
            _ => Err(format!("{name} must be a whole number between {min} and {max}")),
        };
        match name.to_ascii_lowercase().as_str() {
            "batch_rows" => number(1, 1_000_000).map(JobSetting::BatchRows),
            "max_retries" => number(0, 20).map(JobSetting::MaxRetries),
            "parallelism" => number(1, 16).map(JobSetting::Parallelism),
            "execution" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("local") => Ok(JobSetting::Execution(Execution::Local)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("cluster") => {
                    Ok(JobSetting::Execution(Execution::Cluster))
                }
                SettingValue::Text(t) if t.eq_ignore_ascii_case("default") => {
                    Ok(JobSetting::Execution(Execution::Default))
                }
                _ => Err("execution must be 'local', 'cluster' or 'default'".into()),
            },
            "catch_up" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("once") => Ok(JobSetting::CatchUp(CatchUp::Once)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("skip") => Ok(JobSetting::CatchUp(CatchUp::Skip)),
                _ => Err("catch_up must be 'once' or 'skip'".into()),
            },
            "commit_guard" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("on") => Ok(JobSetting::CommitGuard(true)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("off") => Ok(JobSetting::CommitGuard(false)),
                _ => Err("commit_guard must be 'on' or 'off'".into()),
            },
            "guard_margin" => seconds(value, 86_400)
                .map(JobSetting::GuardMargin)
                .ok_or_else(|| "guard_margin must be a duration such as '5 seconds' (at most 1 day)".into()),
            "guard_max_hold" => seconds(value, 30 * 86_400)
                .filter(|&s| s > 0)
                .map(JobSetting::GuardMaxHold)
                .ok_or_else(|| "guard_max_hold must be a duration such as '1 hour' (at most 30 days)".into()),
            "on_schema_change" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("evolve") => {
                    Ok(JobSetting::OnSchemaChange(SchemaChangePolicy::Evolve))
                }
                SettingValue::Text(t) if t.eq_ignore_ascii_case("fail") => {
                    Ok(JobSetting::OnSchemaChange(SchemaChangePolicy::Fail))
                }
                _ => Err("on_schema_change must be 'evolve' or 'fail'".into()),
            },
            "freshness_target" => seconds(value, 365 * 86_400)
                .filter(|&s| s > 0)
                .map(JobSetting::FreshnessTarget)
                .ok_or_else(|| "freshness_target must be a duration such as '2 hours' (at most 365 days)".into()),
            "sample" => number(1, 100_000).map(|n| JobSetting::Source("sample", OptionValue::Integer(n.into()))),
            "keep_document" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("true") => {
                    Ok(JobSetting::Source("keep_document", OptionValue::Bool(true)))
                }
                SettingValue::Text(t) if t.eq_ignore_ascii_case("false") => {
                    Ok(JobSetting::Source("keep_document", OptionValue::Bool(false)))
                }
                _ => Err("keep_document must be true or false".into()),
            },
            "on_type_mismatch" => match value {
                SettingValue::Text(t) if ["fail", "null", "json"].contains(&t.to_ascii_lowercase().as_str()) => Ok(
                    JobSetting::Source("on_type_mismatch", OptionValue::Text(t.to_ascii_lowercase())),
                ),
                _ => Err("on_type_mismatch must be 'fail', 'null' or 'json'".into()),
            },
            "labels" => match value {
                SettingValue::Text(text) => labels(text).map(JobSetting::Labels),
                SettingValue::Number(_) => Err("labels must be text such as 'team=finance, tier=1'".into()),
            },
            "verify" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("daily") => {
                    Ok(JobSetting::Verify(VerifySchedule::Daily))
                }
                SettingValue::Text(t) if t.eq_ignore_ascii_case("off") => Ok(JobSetting::Verify(VerifySchedule::Off)),
                _ => Err("verify must be 'daily' or 'off'".into()),
            },
            "soft_delete" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("true") => Ok(JobSetting::SoftDelete(true)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("false") => Ok(JobSetting::SoftDelete(false)),
                _ => Err("soft_delete must be true or false".into()),
            },
            "flush_rows" => number(1, 10_000_000).map(JobSetting::FlushRows),
            "flush_interval" => seconds(value, 3_600)
                .filter(|&s| s > 0)
                .map(|s| JobSetting::FlushInterval(s as u32))
                .ok_or_else(|| "flush_interval must be a duration such as '10 seconds' (1 second to 1 hour)".into()),
            "publication" => match value {
                SettingValue::Text(name) if (1..=63).contains(&name.len()) => Ok(JobSetting::Publication(name.clone())),
                _ => Err("publication must be the name of an existing publication, such as 'orders_pub'".into()),
            },
            "server_id" => number(1, u64::from(u32::MAX)).map(JobSetting::ServerId),
            "max_retained_wal" => bytes(value)
                .filter(|&b| b > 0)
                .map(JobSetting::MaxRetainedWal)
                .ok_or_else(|| "max_retained_wal must be a size such as '500 MB' or '10 GB'".into()),
            other => match crate::connectors::table_option(other) {
                Some(option) => (option.parse)(value).map(|kept| JobSetting::Table(option.name, kept)),
                None => Err(format!(
                    "unknown job setting \"{other}\"; valid settings: {SETTING_NAMES}; destination table options: {}",
                    crate::connectors::table_option_names().join(", ")
                )),
            },
        }
    }

    /// The setting's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            JobSetting::BatchRows(_) => "batch_rows",
            JobSetting::MaxRetries(_) => "max_retries",
            JobSetting::CatchUp(_) => "catch_up",
            JobSetting::Parallelism(_) => "parallelism",
            JobSetting::Execution(_) => "execution",
            JobSetting::Table(name, _) => name,
            JobSetting::CommitGuard(_) => "commit_guard",
            JobSetting::GuardMargin(_) => "guard_margin",
            JobSetting::GuardMaxHold(_) => "guard_max_hold",
            JobSetting::OnSchemaChange(_) => "on_schema_change",
            JobSetting::FreshnessTarget(_) => "freshness_target",
            JobSetting::Labels(_) => "labels",
            JobSetting::Verify(_) => "verify",
            JobSetting::SoftDelete(_) => "soft_delete",
            JobSetting::MaxRetainedWal(_) => "max_retained_wal",
            JobSetting::FlushRows(_) => "flush_rows",
            JobSetting::FlushInterval(_) => "flush_interval",
            JobSetting::Publication(_) => "publication",
            JobSetting::ServerId(_) => "server_id",
            JobSetting::Source(name, _) => name,
        }
    }

    /// Sets it on a job (table options on the job's table layout).
    pub fn apply(self, job: &mut JobRecord) {
        match self {
            JobSetting::BatchRows(rows) => job.batch_rows = rows,
            JobSetting::MaxRetries(n) => job.max_retries = n,
            JobSetting::CatchUp(policy) => job.catch_up = policy,
            JobSetting::Parallelism(n) => job.parallelism = Some(n),
            JobSetting::Execution(execution) => job.execution = execution,
            JobSetting::Table(name, value) => job.layout.set(name, value),
            JobSetting::CommitGuard(on) => job.guard.enabled = on,
            JobSetting::GuardMargin(seconds) => job.guard.margin_seconds = seconds,
            JobSetting::GuardMaxHold(seconds) => job.guard.max_hold_seconds = seconds,
            JobSetting::OnSchemaChange(policy) => job.on_schema_change = policy,
            JobSetting::FreshnessTarget(seconds) => job.freshness_target_seconds = Some(seconds),
            JobSetting::Labels(labels) => job.labels = labels,
            JobSetting::Verify(schedule) => job.verify = schedule,
            JobSetting::SoftDelete(on) => job.cdc.soft_delete = on,
            JobSetting::MaxRetainedWal(bytes) => job.cdc.max_retained_wal = Some(bytes),
            JobSetting::FlushRows(rows) => job.cdc.flush_rows = Some(rows),
            JobSetting::FlushInterval(seconds) => job.cdc.flush_interval_seconds = Some(seconds),
            JobSetting::Publication(name) => job.cdc.publication = Some(name),
            JobSetting::ServerId(id) => job.cdc.server_id = Some(id),
            JobSetting::Source(name, value) => {
                job.source_settings.insert(name.to_owned(), value);
            }
        }
    }

    /// Whether it sets the destination table's layout (fixed once the
    /// table is made).
    pub fn is_layout(&self) -> bool {
        matches!(self, JobSetting::Table(..) | JobSetting::SoftDelete(_))
    }
}

/// Parses `'key=value, key=value'` labels: keys of lower-case letters,
/// digits, `_` and `-`; values without `,` or `=`; an empty text clears them.
fn labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.contains('='))
            .ok_or_else(|| format!("label \"{pair}\" must be key=value, as in labels = 'team=finance, tier=1'"))?;
        let key_ok = key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !key_ok {
            return Err(format!(
                "label key \"{key}\" may hold only lower-case letters, digits, '_' and '-'"
            ));
        }
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("label \"{key}\" is given twice"));
        }
    }
    Ok(labels)
}

/// Labels as `sluice.jobs` shows them and `WITH (labels = ...)` takes them.
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A size in bytes: a number of bytes or text such as `'500 MB'`,
/// `'10 GB'`, `'1 kB'` (units of 1024).
fn bytes(value: &SettingValue) -> Option<u64> {
    match value {
        SettingValue::Number(n) => Some(*n),
        SettingValue::Text(text) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let n: u64 = text[..split].parse().ok()?;
            let shift = match text[split..].trim().to_ascii_lowercase().as_str() {
                "" | "b" | "bytes" => 0,
                "kb" => 10,
                "mb" => 20,
                "gb" => 30,
                "tb" => 40,
                _ => return None,
            };
            n.checked_mul(1 << shift)
        }
    }
}

/// Bytes as [`bytes`] reads them back: in the largest unit that divides them.
pub fn bytes_text(bytes: u64) -> String {
    let (shift, unit) = [(40, "TB"), (30, "GB"), (20, "MB"), (10, "kB")]
        .into_iter()
        .find(|&(shift, _)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .unwrap_or((0, "bytes"));
    format!("{} {unit}", bytes >> shift)
}

/// A duration setting in whole seconds, at most `max`: a number of seconds
/// or text such as `'5 seconds'`, `'10 minutes'`, `'1 hour'`.
fn seconds(value: &SettingValue, max: u64) -> Option<u64> {
    let seconds = match value {
        SettingValue::Number(n) => *n,
        SettingValue::Text(text) => {
            let mut words = text.split_whitespace();
            let n: u64 = words.next()?.parse().ok()?;
            let unit = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("s" | "second" | "seconds") => 1,
                Some("min" | "minute" | "minutes") => 60,
                Some("h" | "hour" | "hours") => 3600,
                Some("day" | "days") => 86_400,
                Some(_) => return None,
            };
            if words.next().is_some() {
                return None;
            }
            n.checked_mul(unit)?
        }
    };
    (seconds <= max).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names_and_ranges() {
        assert_eq!(
            JobSetting::parse("BATCH_ROWS", &SettingValue::Number(100)),
            Ok(JobSetting::BatchRows(100))
        );
        assert_eq!(
            JobSetting::parse("catch_up", &SettingValue::Text("SKIP".into())),
            Ok(JobSetting::CatchUp(CatchUp::Skip))
        );
        assert_eq!(
            JobSetting::parse("max_retries", &SettingValue::Number(0)),
            Ok(JobSetting::MaxRetries(0))
        );
        assert_eq!(
            JobSetting::parse("execution", &SettingValue::Text("Cluster".into())),
            Ok(JobSetting::Execution(Execution::Cluster))
        );
        assert!(
            JobSetting::parse("execution", &SettingValue::Text("remote".into()))
                .unwrap_err()
                .contains("'local', 'cluster' or 'default'")
        );
        assert_eq!(
            JobSetting::parse("cluster_by", &SettingValue::Text("a, b".into())),
            Ok(JobSetting::Table("cluster_by", serde_json::json!(["a", "b"])))
        );
        assert_eq!(
            JobSetting::parse("require_partition_filter", &SettingValue::Text("TRUE".into())),
            Ok(JobSetting::Table("require_partition_filter", serde_json::json!(true)))
        );
        assert_eq!(
            JobSetting::parse("guard_margin", &SettingValue::Text("2 minutes".into())),
            Ok(JobSetting::GuardMargin(120))
        );
        assert_eq!(
            JobSetting::parse("guard_max_hold", &SettingValue::Text("1 hour".into())),
            Ok(JobSetting::GuardMaxHold(3600))
        );
        assert_eq!(
            JobSetting::parse("commit_guard", &SettingValue::Text("OFF".into())),
            Ok(JobSetting::CommitGuard(false))
        );
        assert_eq!(
            JobSetting::parse("on_schema_change", &SettingValue::Text("FAIL".into())),
            Ok(JobSetting::OnSchemaChange(SchemaChangePolicy::Fail))
        );
        assert_eq!(
            JobSetting::parse("max_retained_wal", &SettingValue::Text("500 MB".into())),
            Ok(JobSetting::MaxRetainedWal(500 << 20))
        );
        assert_eq!(
            JobSetting::parse("max_retained_wal", &SettingValue::Text("1kB".into())),
            Ok(JobSetting::MaxRetainedWal(1024))
        );
        for size in [1, 1024, 500 << 20, 10 << 30, 3 << 40, 1500] {
            assert_eq!(bytes(&SettingValue::Text(bytes_text(size))), Some(size), "{size}");
        }
        assert_eq!(bytes_text(10 << 30), "10 GB");
        assert_eq!(
            JobSetting::parse("soft_delete", &SettingValue::Text("TRUE".into())),
            Ok(JobSetting::SoftDelete(true))
        );
        assert_eq!(
            JobSetting::parse("flush_rows", &SettingValue::Number(100_000)),
            Ok(JobSetting::FlushRows(100_000))
        );
        assert_eq!(
            JobSetting::parse("flush_interval", &SettingValue::Text("2 minutes".into())),
            Ok(JobSetting::FlushInterval(120))
        );
        assert_eq!(
            JobSetting::parse("publication", &SettingValue::Text("orders_pub".into())),
            Ok(JobSetting::Publication("orders_pub".into()))
        );
        assert_eq!(
            JobSetting::parse("freshness_target", &SettingValue::Text("2 hours".into())),
            Ok(JobSetting::FreshnessTarget(7200))
        );
        let Ok(JobSetting::Labels(labels)) =
            JobSetting::parse("labels", &SettingValue::Text(" team=finance , tier=1".into()))
        else {
            panic!("labels did not parse");
        };
        assert_eq!(labels_text(&labels), "team=finance,tier=1");
        assert_eq!(
            JobSetting::parse("labels", &SettingValue::Text("".into())),
            Ok(JobSetting::Labels(BTreeMap::new()))
        );
        for (name, value, needle) in [
            (
                "freshness_target",
                SettingValue::Text("0 seconds".into()),
                "such as '2 hours'",
            ),
            ("labels", SettingValue::Text("team".into()), "must be key=value"),
            (
                "max_retained_wal",
                SettingValue::Text("10 parsecs".into()),
                "such as '500 MB'",
            ),
            ("max_retained_wal", SettingValue::Number(0), "such as '500 MB'"),
            (
                "flush_interval",
                SettingValue::Text("2 hours".into()),
                "1 second to 1 hour",
            ),
            (
                "publication",
                SettingValue::Number(1),
                "name of an existing publication",
            ),
            ("soft_delete", SettingValue::Number(1), "true or false"),
            ("flush_rows", SettingValue::Number(0), "between 1 and 10000000"),
            ("labels", SettingValue::Text("Team=x".into()), "lower-case letters"),
            ("labels", SettingValue::Text("a=1,a=2".into()), "given twice"),
            ("batch_rows", SettingValue::Number(0), "between 1 and 1000000"),
            ("max_retries", SettingValue::Number(21), "between 0 and 20"),
            ("parallelism", SettingValue::Number(17), "between 1 and 16"),
            ("parallelism", SettingValue::Number(0), "between 1 and 16"),
            ("max_retries", SettingValue::Text("3".into()), "whole number"),
            ("catch_up", SettingValue::Text("always".into()), "'once' or 'skip'"),
            ("parallel", SettingValue::Number(2), "valid settings: batch_rows"),
            ("commit_guard", SettingValue::Text("maybe".into()), "'on' or 'off'"),
            (
                "on_schema_change",
                SettingValue::Text("ignore".into()),
                "'evolve' or 'fail'",
            ),
            ("on_schema_change", SettingValue::Number(1), "'evolve' or 'fail'"),
            (
                "guard_margin",
                SettingValue::Text("5 fortnights".into()),
                "such as '5 seconds'",
            ),
            (
                "guard_max_hold",
                SettingValue::Text("0 seconds".into()),
                "such as '1 hour'",
            ),
        ] {
            let err = JobSetting::parse(name, &value).unwrap_err();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
