//! The commit guard: the upper bound (`cap`) of an incremental run's window
//! on a timestamp cursor, so that a row stamped inside a transaction still
//! open on the source is not passed by the watermark before it commits.
//!
//! The cap is the earliest of the start of the oldest transaction open on
//! the source and a replica's replay point, each minus the job's margin for
//! clock skew, and the source's clock; the run reads `cursor <= cap`. It is read
//! before the scan opens its snapshot, so every transaction that started
//! before the cap has either committed into the snapshot or is still open,
//! and then holds the cap back itself.

use chrono::DateTime;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::scalar::ScalarValue;
use sluice_catalog::{CommitGuard, JobRecord};

use crate::contract::{CommitHorizon, Source, SourceInstant};
use crate::error::EngineError;

/// What the guard decided for one run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    /// The inclusive upper bound of the read, when the guard applies.
    pub cap: Option<ScalarValue>,
    /// What set the cap, or why there is none.
    pub reason: String,
    /// Rows loaded that an open transaction could still precede.
    pub warning: Option<String>,
}

impl Decision {
    fn unguarded(reason: impl Into<String>) -> Self {
        Self {
            cap: None,
            reason: reason.into(),
            warning: None,
        }
    }
}

/// Asks the job's source (when the guard applies) and decides the cap for a
/// run on a cursor of type `cursor`; a source that cannot be asked fails the
/// run.
pub(super) async fn read(job: &JobRecord, source: &dyn Source, cursor: &DataType) -> Result<Decision, EngineError> {
    let horizon = if job.guard.enabled && covers(cursor) {
        horizon(job, source).await?
    } else {
        None
    };
    Ok(decide(&job.guard, cursor, horizon.as_ref()))
}

/// What the job's source says about its open transactions.
pub(super) async fn horizon(job: &JobRecord, source: &dyn Source) -> Result<Option<CommitHorizon>, EngineError> {
    source.commit_horizon().await.map_err(|error| EngineError::Source {
        connection: job.source.connection.clone(),
        error,
    })
}

/// Which cursors the guard covers: timestamps, where the cap is a time.
pub(super) fn covers(cursor: &DataType) -> bool {
    matches!(cursor, DataType::Timestamp(TimeUnit::Microsecond, _))
}

/// Why a cursor the guard does not cover is unguarded.
pub(super) fn uncovered_reason(cursor: &DataType) -> &'static str {
    match cursor {
        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            "unguarded: an integer cursor (a sequence value is taken before commit) needs LOOKBACK to catch late commits"
        }
        _ => "unguarded: the guard covers timestamp cursors only; use LOOKBACK to catch late commits",
    }
}

/// The cap for a run of a job with `settings` on a `cursor` column, from
/// what the source said (`None`: it cannot tell).
pub(super) fn decide(settings: &CommitGuard, cursor: &DataType, horizon: Option<&CommitHorizon>) -> Decision {
    if !settings.enabled {
        return Decision::unguarded("off (commit_guard = 'off')");
    }
    let DataType::Timestamp(TimeUnit::Microsecond, tz) = cursor else {
        return Decision::unguarded(uncovered_reason(cursor));
    };
    let Some(horizon) = horizon else {
        return Decision::unguarded("unguarded: the source cannot report open transactions");
    };
    // A zoned cursor compares in UTC, a plain one in the source's wall time.
    let at = |i: &SourceInstant| if tz.is_some() { i.utc_micros } else { i.wall_micros };
    let now = at(&horizon.now);
    let hold = i64::try_from(settings.max_hold_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let (held, stale): (Vec<_>, Vec<_>) = horizon
        .open
        .iter()
        .partition(|t| now.saturating_sub(at(&t.started)) <= hold);
    let margin = i64::try_from(settings.margin_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    // The clock bound needs no margin: a transaction that starts after this
    // reading stamps its rows later on the same clock. One microsecond off
    // keeps a row stamped in the very same microsecond for the next run.
    let mut bound = if horizon.uploads_in_flight {
        (
            now.saturating_sub(margin),
            "files still uploading (guard_margin)".to_owned(),
        )
    } else {
        (now.saturating_sub(1), "newest row".to_owned())
    };
    if let Some(replay) = horizon
        .replay
        .as_ref()
        .map(|r| at(r).saturating_sub(margin))
        .filter(|&r| r < bound.0)
    {
        bound = (replay, "replica replay".to_owned());
    }
    if let Some(oldest) = held.first() {
        let started = at(&oldest.started);
        if started.saturating_sub(margin) < bound.0 {
            bound = (
                started.saturating_sub(margin),
                format!(
                    "oldest transaction started {} by pid {}",
                    clock_text(started),
                    oldest.holder
                ),
            );
        }
    }
    let mut reason = bound.1;
    if let Some(grant) = &horizon.blind {
        reason = format!("{reason}; unguarded against other users' transactions: the source user needs {grant}");
    }
    let warning = stale.first().map(|t| {
        format!(
            "transaction started {} by pid {} has been open longer than guard_max_hold ({} seconds) and no longer \
             holds the cap back: rows it commits with older cursor values will not be loaded",
            clock_text(at(&t.started)),
            t.holder,
            settings.max_hold_seconds
        )
    });
    Decision {
        cap: Some(ScalarValue::TimestampMicrosecond(Some(bound.0), tz.clone())),
        reason,
        warning,
    }
}

/// An instant as `YYYY-MM-DD HH:MM:SS`, in the cursor's terms.
fn clock_text(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map_or_else(|| micros.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::OpenTransaction;

    const S: i64 = 1_000_000;

    fn instant(seconds: i64) -> SourceInstant {
        SourceInstant {
            utc_micros: seconds * S,
            wall_micros: seconds * S + 3600 * S,
        }
    }

    fn horizon(open: &[(i64, i64)]) -> CommitHorizon {
        CommitHorizon {
            now: instant(10_000),
            open: open
                .iter()
                .map(|&(holder, started)| OpenTransaction {
                    holder,
                    started: instant(started),
                })
                .collect(),
            replay: None,
            blind: None,
            uploads_in_flight: false,
        }
    }

    fn zoned() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    fn cap(decision: &Decision) -> i64 {
        match decision.cap {
            Some(ScalarValue::TimestampMicrosecond(Some(v), _)) => v / S,
            ref other => panic!("no cap: {other:?}"),
        }
    }

    #[test]
    fn the_oldest_open_transaction_caps_the_window_minus_the_margin() {
        let decision = decide(
            &CommitGuard::default(),
            &zoned(),
            Some(&horizon(&[(7, 9_000), (8, 9_500)])),
        );
        assert_eq!(cap(&decision), 9_000 - 5);
        assert!(decision.reason.contains("by pid 7"), "{}", decision.reason);
        assert_eq!(decision.warning, None);
        let idle = decide(&CommitGuard::default(), &zoned(), Some(&horizon(&[])));
        assert_eq!(
            idle.cap,
            Some(ScalarValue::TimestampMicrosecond(
                Some(10_000 * S - 1),
                Some("UTC".into())
            ))
        );
        assert_eq!(idle.reason, "newest row");
    }

    #[test]
    fn files_still_uploading_hold_the_cap_a_margin_behind_now() {
        let mut files = horizon(&[]);
        files.uploads_in_flight = true;
        let decision = decide(&CommitGuard::default(), &zoned(), Some(&files));
        assert_eq!(cap(&decision), 10_000 - 5);
        assert_eq!(decision.reason, "files still uploading (guard_margin)");
    }

    #[test]
    fn a_plain_timestamp_cursor_is_capped_in_wall_time() {
        let plain = DataType::Timestamp(TimeUnit::Microsecond, None);
        let decision = decide(&CommitGuard::default(), &plain, Some(&horizon(&[(7, 9_000)])));
        assert_eq!(cap(&decision), 9_000 + 3600 - 5);
    }

    #[test]
    fn a_transaction_open_past_max_hold_stops_holding_the_cap_and_warns() {
        let settings = CommitGuard {
            max_hold_seconds: 600,
            ..CommitGuard::default()
        };
        let decision = decide(&settings, &zoned(), Some(&horizon(&[(7, 1_000), (8, 9_800)])));
        assert_eq!(cap(&decision), 9_800 - 5);
        assert!(decision.warning.unwrap().contains("pid 7"));
    }

    #[test]
    fn replay_caps_and_off_or_integer_cursors_are_unguarded() {
        let mut replica = horizon(&[]);
        replica.replay = Some(instant(9_900));
        let decision = decide(&CommitGuard::default(), &zoned(), Some(&replica));
        assert_eq!((cap(&decision), decision.reason.as_str()), (9_895, "replica replay"));
        let off = CommitGuard {
            enabled: false,
            ..CommitGuard::default()
        };
        assert_eq!(decide(&off, &zoned(), Some(&replica)).cap, None);
        let integer = decide(&CommitGuard::default(), &DataType::Int64, Some(&replica));
        assert!(integer.cap.is_none() && integer.reason.contains("LOOKBACK"));
        assert!(decide(&CommitGuard::default(), &zoned(), None).cap.is_none());
    }
}
