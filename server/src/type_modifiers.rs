//! PostgreSQL's type modifiers and sizes for Arrow-typed columns: what
//! `pg_attribute.atttypmod` and RowDescription carry, so clients see
//! `numeric(12,2)` rather than `numeric`, and fixed-width types with their
//! byte size.

use datafusion::arrow::datatypes::{DataType, Schema};
use pgwire::api::Type;
use pgwire::api::results::FieldInfo;

/// PostgreSQL's `atttypmod` for `data_type`, when it has one:
/// `((precision << 16) | scale) + 4` for numerics.
pub fn typmod(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) if *scale >= 0 => {
            Some(((i32::from(*precision) << 16) | i32::from(*scale)) + 4)
        }
        _ => None,
    }
}

/// `typlen` of a PostgreSQL type: its size in bytes, -1 when variable.
pub fn type_size(ty: &Type) -> i16 {
    match *ty {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::TIMETZ => 12,
        Type::INTERVAL | Type::UUID => 16,
        _ => -1,
    }
}

/// RowDescription fields with their type sizes, and the type modifiers of
/// `schema`'s columns when the result's Arrow schema is known.
pub fn describe(fields: Vec<FieldInfo>, schema: Option<&Schema>) -> Vec<FieldInfo> {
    fields
        .into_iter()
        .enumerate()
        .map(|(i, field)| {
            let size = type_size(field.datatype());
            let modifier = schema
                .and_then(|s| s.fields().get(i))
                .and_then(|f| typmod(f.data_type()));
            let field = field.with_type_size(size);
            match modifier {
                Some(modifier) if *field.datatype() == Type::NUMERIC => field.with_type_modifier(modifier),
                _ => field,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_carry_precision_and_scale() {
        assert_eq!(typmod(&DataType::Decimal128(12, 2)), Some(786_438));
        assert_eq!(typmod(&DataType::Int64), None);
        assert_eq!(type_size(&Type::INT8), 8);
        assert_eq!(type_size(&Type::TIMESTAMPTZ), 8);
        assert_eq!(type_size(&Type::TEXT), -1);
    }
}
