//! Where a CDC table's change position is kept in BigQuery: a one-row
//! table beside it, `_sluice_position_<table>_<token>`, rewritten in the
//! same transaction as every change batch (and the first load), so the
//! position and the rows it covers commit together. A table label could
//! not hold it (a position's JSON is longer than a label value may be),
//! nor change in a transaction. Only the table's own job writes it, so its
//! transactions never conflict with another job's.

use chrono::{DateTime, Utc};
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;

use super::api::Api;
use super::change_sql::string_literal;
use super::destination::RunNames;
use super::source::DIALECT;
use crate::contract::{CommitState, DestinationError, Dialect};

/// The position table of the table loaded by jobs named with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PositionTable {
    pub name: String,
}

/// What the position table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    pub instance: String,
    pub run_id: u64,
    pub position: String,
    pub at: Option<DateTime<Utc>>,
}

impl Recorded {
    pub(super) fn commit_state(self) -> CommitState {
        CommitState {
            run_id: self.run_id,
            watermark: Some(self.position),
            committed_at: self.at,
        }
    }
}

const COLUMNS: [&str; 6] = ["instance", "run_id", "batch", "position", "bound", "committed_at"];
/// The message of the `ERROR()` that stops a commit behind the recorded
/// position.
const BEHIND: &str = "sluice: the table holds a later change position than this batch (a commit of a failed run \
                      that BigQuery ran late?); nothing of the batch was applied";

impl PositionTable {
    pub(super) fn of(table: &str, token: &str) -> Self {
        Self {
            name: format!("_sluice_position_{}_{token}", super::destination::readable(table)),
        }
    }

    /// Creates the table unless it exists.
    pub(super) async fn ensure(&self, api: &Api, target: &str) -> Result<(), DestinationError> {
        let mut fields = vec![
            TableFieldSchema::string("instance"),
            TableFieldSchema::integer("run_id"),
            TableFieldSchema::string("batch"),
            TableFieldSchema::string("position"),
            TableFieldSchema::string("bound"),
            TableFieldSchema::timestamp("committed_at"),
        ];
        for field in &mut fields {
            field.mode = Some("REQUIRED".into());
        }
        let settings = &api.settings;
        let table = Table::new(
            &settings.project,
            &settings.dataset,
            &self.name,
            TableSchema::new(fields),
        )
        .description(&format!(
            "The change position Sluice committed into table {target} (one row, written with each batch)"
        ));
        api.create_table(&table).await.map_err(|e| e.into_destination(None))?;
        Ok(())
    }

    fn table_ref(&self, dataset: &str) -> String {
        format!("{}.{}", DIALECT.quote_ident(dataset), DIALECT.quote_ident(&self.name))
    }

    /// The statement a commit starts with: it fails the transaction when
    /// the table records a position past `bound` (text that sorts like the
    /// log, [`Position::committed_bound`](crate::contract::Position::committed_bound)),
    /// so that a commit job of a failed run that BigQuery runs after a
    /// later run's commit changes nothing.
    pub(super) fn guard(&self, dataset: &str, bound: &str) -> String {
        format!(
            "SELECT IF(EXISTS(SELECT 1 FROM {} WHERE `bound` > {}), ERROR({}), 0)",
            self.table_ref(dataset),
            string_literal(bound),
            string_literal(BEHIND)
        )
    }

    /// The statements that record `position` (whose bound is `bound`),
    /// committed by batch `batch` (its job-id prefix) of run `run_id` of
    /// catalog `instance`.
    pub(super) fn record(&self, dataset: &str, run: &RunNames, position: &str, bound: &str) -> Vec<String> {
        let table = self.table_ref(dataset);
        let columns: Vec<String> = COLUMNS.iter().map(|c| DIALECT.quote_ident(c)).collect();
        vec![
            format!("DELETE FROM {table} WHERE TRUE"),
            format!(
                "INSERT INTO {table} ({}) VALUES ({}, {}, {}, {}, {}, CURRENT_TIMESTAMP())",
                columns.join(", "),
                string_literal(&run.instance),
                run.run_id,
                string_literal(&run.job_prefix),
                string_literal(position),
                string_literal(bound)
            ),
        ]
    }

    /// What the table holds; `None` when it does not exist or is empty.
    pub(super) async fn read(&self, api: &Api) -> Result<Option<Recorded>, DestinationError> {
        if api
            .get_table(&self.name)
            .await
            .map_err(|e| e.into_destination(None))?
            .is_none()
        {
            return Ok(None);
        }
        let columns: Vec<String> = ["instance", "run_id", "position", "committed_at"]
            .iter()
            .map(|c| DIALECT.quote_ident(c))
            .collect();
        let sql = format!(
            "SELECT {} FROM {}.{}",
            columns.join(", "),
            DIALECT.quote_ident(&api.settings.dataset),
            DIALECT.quote_ident(&self.name)
        );
        let rows = api.query_text(&sql).await.map_err(|e| e.into_destination(None))?;
        let invalid = |what: &str| DestinationError::Changes {
            table: self.name.clone(),
            reason: format!("the position table holds {what}"),
        };
        match rows.rows.as_slice() {
            [] => Ok(None),
            [row] => {
                let text = |i: usize| row.get(i).cloned().flatten();
                Ok(Some(Recorded {
                    instance: text(0).ok_or_else(|| invalid("no instance"))?,
                    run_id: text(1)
                        .and_then(|r| r.parse().ok())
                        .ok_or_else(|| invalid("no run id"))?,
                    position: text(2).ok_or_else(|| invalid("no position"))?,
                    at: text(3)
                        .and_then(|micros| micros.parse::<i64>().ok())
                        .and_then(DateTime::from_timestamp_micros),
                }))
            }
            more => Err(invalid(&format!("{} rows, not one", more.len()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_recorded_in_place_of_the_last_behind_a_guard() {
        let table = PositionTable::of("items-eu", "0a1b2c");
        assert_eq!(table.name, "_sluice_position_items_eu_0a1b2c");
        let run = RunNames::new("items", "0a1b2c", "00ff", 7);
        assert_eq!(
            table.record(
                "raw",
                &run,
                r#"{"postgres":{"commit_lsn":1,"end_lsn":2}}"#,
                "0000000000000001-FFFFFFFF"
            ),
            [
                "DELETE FROM `raw`.`_sluice_position_items_eu_0a1b2c` WHERE TRUE",
                "INSERT INTO `raw`.`_sluice_position_items_eu_0a1b2c` (`instance`, `run_id`, `batch`, `position`, \
                 `bound`, `committed_at`) VALUES ('00ff', 7, 'sluice_items_0a1b2c_00ff_r7', \
                 '{\"postgres\":{\"commit_lsn\":1,\"end_lsn\":2}}', '0000000000000001-FFFFFFFF', CURRENT_TIMESTAMP())"
            ]
        );
        assert_eq!(
            table.guard("raw", "0000000000000001-FFFFFFFF"),
            "SELECT IF(EXISTS(SELECT 1 FROM `raw`.`_sluice_position_items_eu_0a1b2c` WHERE `bound` > \
             '0000000000000001-FFFFFFFF'), ERROR('sluice: the table holds a later change position than this batch (a \
             commit of a failed run that BigQuery ran late?); nothing of the batch was applied'), 0)"
        );
    }
}
