//! Column-by-column comparison of a table's schema with a load's, worded
//! for error messages.

use datafusion::arrow::datatypes::{Field, Schema};

use crate::type_mapping::widens;

/// How `load` differs from `table`, one entry per difference; empty when
/// they match. Nullability counts only when `nullability` is set.
pub(super) fn schema_differences(table: &Schema, load: &Schema, nullability: bool) -> Vec<String> {
    let describe = |field: &Field| {
        let null = if field.is_nullable() { "" } else { " NOT NULL" };
        format!("{}{null}", field.data_type())
    };
    let mut differences = Vec::new();
    for field in table.fields() {
        match load.field_with_name(field.name()) {
            Err(_) => differences.push(format!(
                "column \"{}\" ({}) is missing from the load",
                field.name(),
                describe(field)
            )),
            Ok(other)
                if other.data_type() != field.data_type()
                    || (nullability && other.is_nullable() != field.is_nullable()) =>
            {
                differences.push(format!(
                    "column \"{}\" is {} in the table but {} in the load",
                    field.name(),
                    describe(field),
                    describe(other)
                ))
            }
            Ok(_) => {}
        }
    }
    for field in load.fields() {
        if table.field_with_name(field.name()).is_err() {
            differences.push(format!(
                "column \"{}\" ({}) is not in the table",
                field.name(),
                describe(field)
            ));
        }
    }
    if differences.is_empty() && names(table) != names(load) {
        differences.push(format!(
            "the columns are in a different order: ({}) in the table, ({}) in the load",
            names(table).join(", "),
            names(load).join(", ")
        ));
    }
    differences
}

fn names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

/// Why `table` cannot become `evolved` by appending NULLABLE columns,
/// relaxing columns to NULLABLE and widening types, one entry per column;
/// empty when it can.
pub(super) fn evolution_refusals(table: &Schema, evolved: &Schema) -> Vec<String> {
    let mut refusals = Vec::new();
    for (i, field) in table.fields().iter().enumerate() {
        match evolved.fields().get(i) {
            Some(new) if new.name() == field.name() => {
                if !widens(field.data_type(), new.data_type()) {
                    refusals.push(format!(
                        "column \"{}\" is {} in the table and cannot become {}",
                        field.name(),
                        field.data_type(),
                        new.data_type()
                    ));
                } else if field.is_nullable() && !new.is_nullable() {
                    refusals.push(format!(
                        "column \"{}\" is NULLABLE in the table and cannot become NOT NULL",
                        field.name()
                    ));
                }
            }
            _ => refusals.push(format!(
                "column \"{}\" of the table would be removed or moved",
                field.name()
            )),
        }
    }
    for new in evolved.fields().iter().skip(table.fields().len()) {
        if !new.is_nullable() {
            refusals.push(format!("column \"{}\" would be added as NOT NULL", new.name()));
        }
    }
    refusals
}
