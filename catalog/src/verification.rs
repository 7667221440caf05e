//! Results of `VERIFY ETL JOB`: which buckets of a job's loaded window
//! differ between its source and its destination.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// One VERIFY of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub job: String,
    pub verified_at: DateTime<Utc>,
    /// The compared cursor window `[from, to)` as cursor text; `None` ends
    /// are open (the job's first loaded value, the watermark inclusive).
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    /// The bucket width (`hour`, `day`, `month`), or `all` for one bucket.
    pub bucket_by: String,
    /// Buckets holding rows on either side.
    pub buckets: u64,
    /// The buckets whose row count or checksum differ.
    pub differences: Vec<BucketDifference>,
}

/// A bucket whose row count or checksum differ between the two sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDifference {
    pub bucket: String,
    pub source_rows: i64,
    pub destination_rows: i64,
    /// The checksums, as decimal text (they may pass 64 bits).
    pub source_checksum: String,
    pub destination_checksum: String,
}

impl Record for VerificationRecord {
    const FAMILY: &'static str = "verifications";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        format!("{}\0{:020}", self.job, self.verified_at.timestamp_micros().max(0))
    }
}
