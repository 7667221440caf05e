//! `CREATE TABLE` in the `public` schema: the column types, defaults,
//! NOT NULL, PRIMARY KEY and UNIQUE constraints a bookkeeping table needs.

use datafusion::sql::sqlparser::ast::{
    CharacterLength, ColumnOption, CreateTable, DataType, Expr, IndexColumn, TableConstraint, TimezoneInfo,
};
use sluice_catalog::{PublicColumn, PublicKey, PublicTable, PublicType};

use super::PublicTableError;

/// The table `CREATE TABLE` describes, without rows.
pub fn table(name: &str, create: &CreateTable) -> Result<PublicTable, PublicTableError> {
    let mut columns = Vec::new();
    let mut keys = Vec::new();
    for def in &create.columns {
        let column_name = def.name.value.clone();
        if columns.iter().any(|c: &PublicColumn| c.name == column_name) {
            return Err(PublicTableError::DuplicateColumn(column_name));
        }
        let (data_type, max_length, serial) = column_type(&def.data_type, &column_name)?;
        let mut column = PublicColumn {
            name: column_name.clone(),
            data_type,
            max_length,
            not_null: serial,
            default: None,
            serial,
        };
        for option in &def.options {
            match &option.option {
                ColumnOption::Null => {}
                ColumnOption::NotNull => column.not_null = true,
                ColumnOption::Default(expr) => column.default = Some(expr.to_string()),
                ColumnOption::PrimaryKey(pk) => {
                    column.not_null = true;
                    keys.push(key(
                        name,
                        pk.name.as_ref().map(|n| n.value.clone()),
                        vec![column_name.clone()],
                        true,
                    ));
                }
                ColumnOption::Unique(unique) => keys.push(key(
                    name,
                    unique.name.as_ref().map(|n| n.value.clone()),
                    vec![column_name.clone()],
                    false,
                )),
                other => return Err(unsupported(format!("the column option {other}"))),
            }
        }
        columns.push(column);
    }
    for constraint in &create.constraints {
        let (constraint_name, key_columns, primary) = match constraint {
            TableConstraint::PrimaryKey(pk) => (&pk.name, &pk.columns, true),
            TableConstraint::Unique(unique) => (&unique.name, &unique.columns, false),
            other => return Err(unsupported(format!("the constraint {other}"))),
        };
        let key_columns = key_columns
            .iter()
            .map(|c| index_column(c, &columns))
            .collect::<Result<Vec<_>, _>>()?;
        if primary {
            for column in columns.iter_mut().filter(|c| key_columns.contains(&c.name)) {
                column.not_null = true;
            }
        }
        keys.push(key(
            name,
            constraint_name.as_ref().map(|n| n.value.clone()),
            key_columns,
            primary,
        ));
    }
    if keys.iter().filter(|k| k.primary).count() > 1 {
        return Err(PublicTableError::InvalidDefinition(format!(
            "multiple primary keys for table \"{name}\" are not allowed"
        )));
    }
    if columns.is_empty() {
        return Err(PublicTableError::InvalidDefinition(format!(
            "table \"{name}\" needs at least one column"
        )));
    }
    Ok(PublicTable {
        name: name.to_owned(),
        columns,
        keys,
        rows: Vec::new(),
        last_serial: 0,
    })
}

/// A key named as PostgreSQL names it when the definition does not.
fn key(table: &str, name: Option<String>, columns: Vec<String>, primary: bool) -> PublicKey {
    let name = name.unwrap_or_else(|| match primary {
        true => format!("{table}_pkey"),
        false => format!("{table}_{}_key", columns.join("_")),
    });
    PublicKey { name, columns, primary }
}

fn index_column(column: &IndexColumn, columns: &[PublicColumn]) -> Result<String, PublicTableError> {
    let Expr::Identifier(ident) = &column.column.expr else {
        return Err(unsupported(format!("the key expression {}", column.column.expr)));
    };
    columns
        .iter()
        .find(|c| c.name == ident.value)
        .map(|c| c.name.clone())
        .ok_or_else(|| PublicTableError::UndefinedColumn(ident.value.clone()))
}

/// A column's type, its `varchar(n)` length and whether it is a serial.
fn column_type(data_type: &DataType, column: &str) -> Result<(PublicType, Option<u32>, bool), PublicTableError> {
    let length = |length: &Option<CharacterLength>| match length {
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length).ok(),
        _ => None,
    };
    Ok(match data_type {
        DataType::Text | DataType::String(None) => (PublicType::Text, None, false),
        DataType::Varchar(n) | DataType::CharacterVarying(n) => (PublicType::Text, length(n), false),
        DataType::SmallInt(_) | DataType::Int2(_) | DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => {
            (PublicType::Int4, None, false)
        }
        DataType::BigInt(_) | DataType::Int8(_) => (PublicType::Int8, None, false),
        DataType::Float8 | DataType::DoublePrecision | DataType::Double(_) => (PublicType::Float8, None, false),
        DataType::Bool | DataType::Boolean => (PublicType::Bool, None, false),
        DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            (PublicType::Timestamp, None, false)
        }
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => (PublicType::Timestamptz, None, false),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_ascii_lowercase().as_str() {
                "serial" | "serial4" | "smallserial" | "serial2" => (PublicType::Int4, None, true),
                "bigserial" | "serial8" => (PublicType::Int8, None, true),
                _ => return Err(unsupported_type(data_type, column)),
            }
        }
        _ => return Err(unsupported_type(data_type, column)),
    })
}

fn unsupported_type(data_type: &DataType, column: &str) -> PublicTableError {
    unsupported(format!(
        "the type {data_type} of column \"{column}\" (public tables support text, varchar(n), integer, bigint, serial, bigserial, double precision, boolean, timestamp and timestamptz)"
    ))
}

fn unsupported(what: String) -> PublicTableError {
    PublicTableError::Unsupported(what)
}
