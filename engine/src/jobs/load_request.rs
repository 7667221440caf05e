//! The load clause as a statement writes it, before the engine's defaults:
//! `INCREMENTAL BY col` may leave out its start, which the engine fills in
//! here and nowhere else.

use sluice_catalog::{CdcMode, IncrementalStart, LoadType, Lookback};

/// The back-fill window of `INCREMENTAL BY col` without a start clause.
pub const DEFAULT_BACKFILL_DAYS: u32 = 90;

/// How a statement asks a job to load (`CREATE ETL JOB`, `ALTER ETL JOB
/// ... SET INCREMENTAL BY | SET SNAPSHOT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadRequest {
    /// `INCREMENTAL BY cursor [BACKFILL n DAYS | SINCE 'v' | ALL] [LOOKBACK ...]`.
    Incremental {
        cursor: String,
        /// `None` when no start clause was written.
        start: Option<IncrementalStart>,
        lookback: Option<Lookback>,
    },
    /// `SNAPSHOT`.
    Snapshot,
    /// `CDC [MERGE | HISTORY]`.
    Cdc { mode: CdcMode },
}

impl LoadRequest {
    /// Whether the statement chose where an incremental load starts (always
    /// true of the other loads).
    pub fn start_given(&self) -> bool {
        !matches!(self, LoadRequest::Incremental { start: None, .. })
    }

    /// The load the job saves: a missing start back-fills
    /// [`DEFAULT_BACKFILL_DAYS`].
    pub fn resolve(self) -> LoadType {
        match self {
            LoadRequest::Incremental {
                cursor,
                start,
                lookback,
            } => LoadType::Incremental {
                cursor,
                start: start.unwrap_or(IncrementalStart::BackfillDays(DEFAULT_BACKFILL_DAYS)),
                lookback,
            },
            LoadRequest::Snapshot => LoadType::Snapshot,
            LoadRequest::Cdc { mode } => LoadType::Cdc { mode },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_start_backfills_the_default_window_and_says_it_was_not_given() {
        let request = LoadRequest::Incremental {
            cursor: "at".into(),
            start: None,
            lookback: None,
        };
        assert!(!request.start_given());
        assert_eq!(
            request.resolve(),
            LoadType::Incremental {
                cursor: "at".into(),
                start: IncrementalStart::BackfillDays(DEFAULT_BACKFILL_DAYS),
                lookback: None,
            }
        );
    }

    #[test]
    fn a_written_start_is_kept() {
        let request = LoadRequest::Incremental {
            cursor: "at".into(),
            start: Some(IncrementalStart::All),
            lookback: None,
        };
        assert!(request.start_given());
        assert!(matches!(
            request.resolve(),
            LoadType::Incremental {
                start: IncrementalStart::All,
                ..
            }
        ));
        assert!(LoadRequest::Snapshot.start_given());
    }
}
