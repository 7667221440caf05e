//! The `WITH (name = value, ...)` settings of a job, shared by
//! `CREATE ETL JOB` and `ALTER ETL JOB ... SET (...)`.

use sluice_catalog::{CatchUp, JobRecord};

/// A setting's value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue {
    Number(u64),
    Text(String),
}

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
    /// Days after which a partition of the new destination table expires.
    PartitionExpirationDays(u32),
    /// Whether queries of the new destination table must filter on its partitions.
    RequirePartitionFilter(bool),
    /// Clustering columns of the new destination table.
    ClusterBy(Vec<String>),
}

/// The settings a job accepts, for error messages.
pub const SETTING_NAMES: &str =
    "batch_rows, max_retries, catch_up, parallelism, partition_expiration_days, require_partition_filter, cluster_by";

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
            "catch_up" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("once") => Ok(JobSetting::CatchUp(CatchUp::Once)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("skip") => Ok(JobSetting::CatchUp(CatchUp::Skip)),
                _ => Err("catch_up must be 'once' or 'skip'".into()),
            },
            "partition_expiration_days" => number(1, 100_000).map(JobSetting::PartitionExpirationDays),
            "require_partition_filter" => match value {
                SettingValue::Text(t) if t.eq_ignore_ascii_case("true") => Ok(JobSetting::RequirePartitionFilter(true)),
                SettingValue::Text(t) if t.eq_ignore_ascii_case("false") => {
                    Ok(JobSetting::RequirePartitionFilter(false))
                }
                _ => Err("require_partition_filter must be true or false".into()),
            },
            "cluster_by" => match value {
                SettingValue::Text(t) if !t.trim().is_empty() => Ok(JobSetting::ClusterBy(
                    t.split(',').map(|c| c.trim().to_owned()).collect(),
                )),
                _ => Err("cluster_by must be 'column[, column ...]'".into()),
            },
            other => Err(format!(
                "unknown job setting \"{other}\"; valid settings: {SETTING_NAMES}"
            )),
        }
    }

    /// The setting's name as written.
    pub fn name(&self) -> &'static str {
        match self {
            JobSetting::BatchRows(_) => "batch_rows",
            JobSetting::MaxRetries(_) => "max_retries",
            JobSetting::CatchUp(_) => "catch_up",
            JobSetting::Parallelism(_) => "parallelism",
            JobSetting::PartitionExpirationDays(_) => "partition_expiration_days",
            JobSetting::RequirePartitionFilter(_) => "require_partition_filter",
            JobSetting::ClusterBy(_) => "cluster_by",
        }
    }

    /// Sets it on a job (layout settings on the job's table layout).
    pub fn apply(self, job: &mut JobRecord) {
        match self {
            JobSetting::BatchRows(rows) => job.batch_rows = rows,
            JobSetting::MaxRetries(n) => job.max_retries = n,
            JobSetting::CatchUp(policy) => job.catch_up = policy,
            JobSetting::Parallelism(n) => job.parallelism = Some(n),
            JobSetting::PartitionExpirationDays(days) => job.layout.partition_expiration_days = Some(days),
            JobSetting::RequirePartitionFilter(required) => job.layout.require_partition_filter = required,
            JobSetting::ClusterBy(columns) => job.layout.cluster_by = columns,
        }
    }

    /// Whether it sets the destination table's layout (fixed once the
    /// table is made).
    pub fn is_layout(&self) -> bool {
        matches!(
            self,
            JobSetting::PartitionExpirationDays(_) | JobSetting::RequirePartitionFilter(_) | JobSetting::ClusterBy(_)
        )
    }
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
            JobSetting::parse("cluster_by", &SettingValue::Text("a, b".into())),
            Ok(JobSetting::ClusterBy(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            JobSetting::parse("require_partition_filter", &SettingValue::Text("TRUE".into())),
            Ok(JobSetting::RequirePartitionFilter(true))
        );
        for (name, value, needle) in [
            ("batch_rows", SettingValue::Number(0), "between 1 and 1000000"),
            ("max_retries", SettingValue::Number(21), "between 0 and 20"),
            ("parallelism", SettingValue::Number(17), "between 1 and 16"),
            ("parallelism", SettingValue::Number(0), "between 1 and 16"),
            ("max_retries", SettingValue::Text("3".into()), "whole number"),
            ("catch_up", SettingValue::Text("always".into()), "'once' or 'skip'"),
            ("parallel", SettingValue::Number(2), "valid settings: batch_rows"),
        ] {
            let err = JobSetting::parse(name, &value).unwrap_err();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
