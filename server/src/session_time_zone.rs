//! `timestamptz` results in the session's `TimeZone`, as PostgreSQL renders
//! them: the final result's zoned timestamp columns are converted to the
//! session zone (the same instants; only the zone they are shown in
//! changes). The session zone is DataFusion's `execution.time_zone`, which
//! `SET TimeZone` keeps in step, so `now()` and `'...'::timestamptz` use it
//! too.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::optimizer::AnalyzerRule;

/// Converts the final result's `timestamptz` columns to the session zone.
#[derive(Debug, Default)]
pub struct SessionTimeZone;

fn in_other_zone(data_type: &DataType, zone: &str) -> bool {
    matches!(data_type, DataType::Timestamp(_, Some(tz)) if tz.as_ref() != zone)
}

impl AnalyzerRule for SessionTimeZone {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(zone) = config.execution.time_zone.clone() else {
            return Ok(plan);
        };
        let returns_rows = !matches!(
            plan,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
                | LogicalPlan::Statement(_)
        );
        let schema = plan.schema().clone();
        if !returns_rows || !schema.fields().iter().any(|f| in_other_zone(f.data_type(), &zone)) {
            return Ok(plan);
        }
        let columns: Vec<Expr> = schema
            .iter()
            .map(|(qualifier, field)| {
                let column = Expr::Column(Column::from((qualifier, field)));
                match field.data_type() {
                    DataType::Timestamp(unit, Some(_)) if in_other_zone(field.data_type(), &zone) => {
                        cast(column, DataType::Timestamp(*unit, Some(Arc::from(zone.as_str())))).alias(field.name())
                    }
                    _ => column,
                }
            })
            .collect();
        LogicalPlanBuilder::from(plan).project(columns)?.build()
    }

    fn name(&self) -> &str {
        "session_time_zone"
    }
}
