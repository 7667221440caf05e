//! What the engine builds on any [`Source`](crate::contract::Source): a
//! DataFusion table with projection, filters and limit pushed into the
//! source query ([`SourceTable`]), secret scrubbing ([`Scrubbed`]), load
//! recommendations from a description, VERIFY's checksum queries,
//! offset push-down and key-range splits.

mod checksum;
pub(crate) mod datafusion_sql;
pub(crate) mod decimal_text;
mod describe;
pub(crate) mod freeze;
pub(crate) mod key_ranges;
mod offset;
mod pushdown;
mod scrubbed;
pub(crate) mod stream_table;
mod table;

pub use checksum::{BucketSums, BucketUnit, ChecksumQuery, WHOLE_TABLE, parse_sums};
pub use describe::{LoadRecommendation, TimestampCandidate};
pub use offset::PushDownOffset;
pub use scrubbed::Scrubbed;
pub use table::SourceTable;
