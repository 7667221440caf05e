//! Query results with decimals wider than the wire encoder handles.
//!
//! The Arrow-to-Postgres encoder (arrow-pg) writes NUMERIC values through
//! `rust_decimal`, which holds 28 digits. Wider decimals (NUMERIC(38, 9)
//! loads, BIGNUMERIC, PostgreSQL numerics up to 76 digits) would fail to
//! encode. This analyzer rule casts such result columns to their exact text,
//! so clients receive every digit.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::optimizer::AnalyzerRule;

/// Digits `rust_decimal` (and so the wire encoder) holds.
const ENCODABLE_DIGITS: u8 = 28;

fn too_wide(data_type: &DataType) -> bool {
    match data_type {
        DataType::Decimal128(precision, _) => *precision > ENCODABLE_DIGITS,
        DataType::Decimal256(..) => true,
        _ => false,
    }
}

/// Casts the final result's wide decimal columns to exact text.
#[derive(Debug, Default)]
pub struct WideDecimalsAsText;

impl AnalyzerRule for WideDecimalsAsText {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let returns_rows = !matches!(
            plan,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Explain(_)
                | LogicalPlan::Analyze(_)
        );
        let schema = plan.schema().clone();
        if !returns_rows || !schema.fields().iter().any(|f| too_wide(f.data_type())) {
            return Ok(plan);
        }
        let columns: Vec<Expr> = schema
            .iter()
            .map(|(qualifier, field)| {
                let column = Expr::Column(Column::from((qualifier, field)));
                if too_wide(field.data_type()) {
                    cast(column, DataType::Utf8).alias(field.name())
                } else {
                    column
                }
            })
            .collect();
        LogicalPlanBuilder::from(plan).project(columns)?.build()
    }

    fn name(&self) -> &str {
        "wide_decimals_as_text"
    }
}
