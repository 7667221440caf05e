//! Table operations Sluice spent on one destination table on one UTC day:
//! BigQuery allows a fixed number per table per day (loads, copies and DML
//! that write the table, failed ones too).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// The count of one destination table, for the last UTC day it was spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOps {
    /// The destination connection.
    pub connection: String,
    pub table: String,
    /// The UTC day counted.
    pub day: NaiveDate,
    pub ops: u64,
}

impl TableOps {
    /// The operations spent on `day` (none when the count is of another day).
    pub fn on(&self, day: NaiveDate) -> u64 {
        if self.day == day { self.ops } else { 0 }
    }
}

/// The key of a destination table's count.
pub(crate) fn table_ops_key(connection: &str, table: &str) -> String {
    format!("{connection}\0{table}")
}

impl Record for TableOps {
    const FAMILY: &'static str = "table_ops";
    const VERSION: u32 = 1;

    fn key(&self) -> String {
        table_ops_key(&self.connection, &self.table)
    }
}
