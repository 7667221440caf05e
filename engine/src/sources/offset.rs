//! `OFFSET` pushdown: DataFusion gives a table provider only `limit =
//! offset + fetch`, so [`PushDownOffset`] moves the offset of a `Limit`
//! straight over the scan of a source that can skip rows itself
//! ([`Source::supports_offset`](super::Source::supports_offset)) into the
//! scanned [`SourceTable`].

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::{Limit, LogicalPlan, TableScan, lit};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::SourceTable;

/// Rewrites `Limit(skip m > 0, fetch n)` directly over the `TableScan` of a
/// [`SourceTable`] whose source supports offsets into `Limit(fetch n)` over
/// a scan of the same table skipping `m` rows, with fetch `n`. Projection
/// and filters stay in the scan. A `Sort` or a `Filter` between the limit
/// and the scan (an `ORDER BY`, a filter the source cannot run exactly)
/// leaves the plan alone: the rows to skip are then only known above it.
#[derive(Debug, Default)]
pub struct PushDownOffset;

impl OptimizerRule for PushDownOffset {
    fn name(&self) -> &str {
        "sluice_push_down_offset"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Limit(limit) = &plan else {
            return Ok(Transformed::no(plan));
        };
        Ok(match skipped_in_scan(limit)? {
            Some(rewritten) => Transformed::yes(rewritten),
            None => Transformed::no(plan),
        })
    }
}

/// `limit` with its offset moved into the source scan below it, or `None`
/// when it has no offset, no source scan below it, or the source cannot
/// skip rows.
fn skipped_in_scan(limit: &Limit) -> Result<Option<LogicalPlan>> {
    let (SkipType::Literal(skip), FetchType::Literal(fetch)) = (limit.get_skip_type()?, limit.get_fetch_type()?) else {
        return Ok(None);
    };
    let LogicalPlan::TableScan(scan) = limit.input.as_ref() else {
        return Ok(None);
    };
    if skip == 0 || fetch == Some(0) {
        return Ok(None);
    }
    // The scan yields at most `scan.fetch` rows; the limit keeps those after
    // the first `skip`.
    let after_skip = match scan.fetch {
        Some(rows) if rows <= skip => return Ok(None),
        rows => rows.map(|rows| rows - skip),
    };
    let fetch = match (fetch, after_skip) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(None);
    };
    let Some(table) = provider.downcast_ref::<SourceTable>().and_then(|t| t.skipping(skip)) else {
        return Ok(None);
    };
    let scan = LogicalPlan::TableScan(TableScan {
        source: provider_as_source(Arc::new(table)),
        fetch,
        ..scan.clone()
    });
    Ok(Some(match fetch {
        Some(n) => LogicalPlan::Limit(Limit {
            skip: None,
            fetch: Some(Box::new(lit(n as i64))),
            input: Arc::new(scan),
        }),
        None => scan,
    }))
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    use super::*;
    use crate::contract::{
        ColumnInfo, Dialect, ScanRequest, Source, SourceError, SqlFamily, TableDescription, TableInfo, TableKind,
        TableRef, integer_literal, quote_with,
    };
    use crate::type_mapping::{BigQueryType, Confidence, TypeMapping};

    struct Plain;

    impl Dialect for Plain {
        fn family(&self) -> SqlFamily {
            SqlFamily::Postgres
        }
        fn quote_ident(&self, ident: &str) -> String {
            quote_with(ident, '"')
        }
        fn literal(&self, value: &ScalarValue) -> Option<String> {
            integer_literal(value)
        }
    }

    /// A source that only shows the requests it would be sent.
    struct Requests {
        offsets: bool,
    }

    #[async_trait]
    impl Source for Requests {
        fn dialect(&self) -> &'static dyn Dialect {
            &Plain
        }
        async fn schemas(&self) -> Result<Vec<String>, SourceError> {
            Ok(vec![])
        }
        async fn tables(&self, _schema: Option<&str>) -> Result<Vec<TableInfo>, SourceError> {
            Ok(vec![])
        }
        async fn describe(&self, _table: &TableRef) -> Result<TableDescription, SourceError> {
            Ok(description())
        }
        async fn scan(
            &self,
            _description: &TableDescription,
            _request: &ScanRequest,
        ) -> Result<SendableRecordBatchStream, SourceError> {
            Err(SourceError::Query {
                code: None,
                message: "plans only".into(),
            })
        }
        fn supports_offset(&self) -> bool {
            self.offsets
        }
        fn scan_query(&self, _description: &TableDescription, request: &ScanRequest) -> String {
            format!(
                "columns {:?} filter {:?} offset {} limit {:?}",
                request.columns, request.filter, request.offset, request.limit
            )
        }
    }

    fn description() -> TableDescription {
        let column = |name: &str, ordinal| ColumnInfo {
            name: name.into(),
            ordinal,
            source_type: "bigint".into(),
            nullable: false,
            default: None,
            primary_key_position: None,
            indexed: false,
            mapping: TypeMapping::new(DataType::Int64, BigQueryType::Int64, Confidence::High),
        };
        TableDescription {
            table: TableRef {
                schema: "s".into(),
                name: "t".into(),
            },
            kind: TableKind::Table,
            columns: vec![column("id", 1), column("v", 2)],
            estimated_rows: None,
        }
    }

    /// The source query of `sql`'s physical plan over table `t`.
    async fn scan_of(offsets: bool, sql: &str) -> String {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_optimizer_rule(Arc::new(PushDownOffset))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let table = SourceTable::new(Arc::new(Requests { offsets }), description());
        ctx.register_table("t", Arc::new(table)).unwrap();
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let text = displayable(plan.as_ref()).indent(true).to_string();
        text.lines()
            .find_map(|line| line.trim().strip_prefix("SourceScanExec: query="))
            .unwrap_or_else(|| panic!("no source scan in {text}"))
            .to_owned()
    }

    #[tokio::test]
    async fn the_offset_of_a_limit_over_a_scan_goes_to_the_source() {
        assert_eq!(
            scan_of(true, "SELECT v FROM t WHERE id > 7 OFFSET 2 LIMIT 3").await,
            "columns [1] filter Some(\"(\\\"id\\\" > 7)\") offset 2 limit Some(3)"
        );
        assert_eq!(
            scan_of(true, "SELECT * FROM t OFFSET 4").await,
            "columns [0, 1] filter None offset 4 limit None"
        );
        // Limits over limits: the outer skips within the inner's rows.
        assert_eq!(
            scan_of(
                true,
                "SELECT * FROM (SELECT * FROM t OFFSET 2 LIMIT 10) OFFSET 3 LIMIT 20"
            )
            .await,
            "columns [0, 1] filter None offset 5 limit Some(7)"
        );
    }

    #[tokio::test]
    async fn an_order_by_a_zero_offset_or_a_source_without_offsets_keep_offset_plus_fetch() {
        let ordered = scan_of(true, "SELECT v FROM t ORDER BY id OFFSET 2 LIMIT 3").await;
        assert!(ordered.ends_with("offset 0 limit None"), "{ordered}");
        assert_eq!(
            scan_of(true, "SELECT v FROM t LIMIT 3").await,
            "columns [1] filter None offset 0 limit Some(3)"
        );
        assert_eq!(
            scan_of(false, "SELECT v FROM t OFFSET 2 LIMIT 3").await,
            "columns [1] filter None offset 0 limit Some(5)"
        );
    }
}
