//! Column-by-column comparison of a table's schema with a load's, worded
//! for error messages.

use datafusion::arrow::datatypes::{Field, Schema};

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
