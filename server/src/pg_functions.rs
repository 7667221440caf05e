//! PostgreSQL functions that clients' metadata queries call and DataFusion
//! or datafusion-pg-catalog lack (or answer unlike PostgreSQL): the
//! session's identity and settings (`version()`, `session_user`,
//! `current_setting`, `set_config`) per session, and catalog helpers
//! (`pg_get_serial_sequence`, `pg_get_indexdef`, `json_build_object`, ...)
//! for every session.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int16Builder, ListBuilder, StringArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::session_settings::{SessionSettings, version_text};

type Body = dyn Fn(&[ArrayRef], usize, &ConfigOptions) -> Result<ArrayRef> + Send + Sync;

/// A scalar function over whole argument arrays.
struct PgFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Arc<Body>,
}

impl fmt::Debug for PgFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgFunction").field("name", &self.name).finish()
    }
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for PgFunction {}

impl Hash for PgFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array((self.body)(&arrays, rows, &args.config_options)?))
    }
}

pub(crate) fn function(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: impl Fn(&[ArrayRef], usize) -> Result<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name,
        signature,
        returns,
        body: Arc::new(move |args, rows, _| body(args, rows)),
    })
}

/// The same text on every row.
fn constant(name: &'static str, value: impl Fn() -> String + Send + Sync + 'static) -> ScalarUDF {
    function(
        name,
        Signature::nullary(Volatility::Stable),
        DataType::Utf8,
        move |_, rows| Ok(Arc::new(StringArray::from(vec![value(); rows])) as ArrayRef),
    )
}

/// Text arguments as strings (after casting, so any argument type works).
fn texts(array: &ArrayRef) -> Result<StringArray> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(cast.as_string::<i32>().clone())
}

/// Registers the functions that answer for one session.
pub fn register_session_functions(ctx: &SessionContext, settings: &SessionSettings) {
    ctx.register_udf(constant("version", version_text));
    // The schema unqualified names resolve in (the first existing one of
    // search_path), as the session's DataFusion options hold it.
    ctx.register_udf(ScalarUDF::new_from_impl(PgFunction {
        name: "current_schema",
        signature: Signature::nullary(Volatility::Stable),
        returns: DataType::Utf8,
        body: Arc::new(|_, rows, config| {
            Ok(Arc::new(StringArray::from(vec![config.catalog.default_schema.clone(); rows])) as ArrayRef)
        }),
    }));
    for name in ["session_user", "current_user", "current_role", "user"] {
        let settings = settings.clone();
        ctx.register_udf(constant(name, move || settings.user()));
    }
    let reader = settings.clone();
    ctx.register_udf(function(
        "current_setting",
        Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Volatile),
        DataType::Utf8,
        move |args, rows| {
            let names = texts(&args[0])?;
            let missing_ok = match args.get(1) {
                Some(a) => Some(datafusion::arrow::compute::cast(a, &DataType::Boolean)?),
                None => None,
            };
            let mut values = Vec::with_capacity(rows);
            for row in 0..rows {
                if names.is_null(row) {
                    values.push(None);
                    continue;
                }
                match reader.get(names.value(row)) {
                    Ok((_, value)) => values.push(Some(value)),
                    Err(e) => {
                        let ok = missing_ok
                            .as_ref()
                            .is_some_and(|m| m.as_boolean().is_valid(row) && m.as_boolean().value(row));
                        if !ok {
                            return exec_err!("{e}");
                        }
                        values.push(None);
                    }
                }
            }
            Ok(Arc::new(StringArray::from(values)) as ArrayRef)
        },
    ));
    let writer = settings.clone();
    ctx.register_udf(function(
        "set_config",
        Signature::any(3, Volatility::Volatile),
        DataType::Utf8,
        move |args, rows| {
            let (names, values) = (texts(&args[0])?, texts(&args[1])?);
            let mut set = Vec::with_capacity(rows);
            for row in 0..rows {
                if names.is_null(row) {
                    return exec_err!("NULL value not allowed for the name of set_config");
                }
                let value = (!values.is_null(row)).then(|| values.value(row));
                match writer.set(names.value(row), value) {
                    Ok(stored) => set.push(Some(stored)),
                    Err(e) => return exec_err!("{e}"),
                }
            }
            Ok(Arc::new(StringArray::from(set)) as ArrayRef)
        },
    ));
}

/// Registers the catalog helpers every session shares.
pub fn register_catalog_functions(ctx: &SessionContext) {
    // Sluice tables have no serial columns, no expression indexes, no
    // comments; its functions are DataFusion's, without pg_proc entries.
    for (name, arities) in [
        ("pg_get_serial_sequence", &[2][..]),
        ("pg_get_indexdef", &[1, 3][..]),
        ("obj_description", &[1, 2][..]),
        ("col_description", &[2][..]),
        ("shobj_description", &[2][..]),
        ("pg_get_function_result", &[1][..]),
        ("pg_get_function_arguments", &[1][..]),
        ("pg_get_function_identity_arguments", &[1][..]),
    ] {
        let signature = Signature::one_of(
            arities.iter().map(|n| TypeSignature::Any(*n)).collect(),
            Volatility::Stable,
        );
        ctx.register_udf(function(name, signature, DataType::Utf8, |_, rows| {
            Ok(new_null_array(&DataType::Utf8, rows))
        }));
    }
    for name in [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
    ] {
        ctx.register_udf(function(
            name,
            Signature::any(1, Volatility::Stable),
            DataType::Boolean,
            |_, rows| Ok(Arc::new(BooleanArray::from(vec![true; rows])) as ArrayRef),
        ));
    }
    ctx.register_udf(function(
        "json_build_object",
        Signature::variadic_any(Volatility::Immutable),
        DataType::Utf8,
        json_build_object,
    ));
    ctx.register_udf(function(
        INT2VECTOR_ITEMS,
        Signature::any(1, Volatility::Immutable),
        DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true))),
        int2vector_items,
    ));
}

/// The items of an `int2vector`/`oidvector` column as an array; the pg
/// catalog keeps these as space-separated text (`"1 2"`).
pub const INT2VECTOR_ITEMS: &str = "sluice_int2vector_items";

fn int2vector_items(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let values = texts(&args[0])?;
    let mut builder = ListBuilder::new(Int16Builder::new());
    for row in 0..rows {
        if values.is_null(row) {
            builder.append_null();
            continue;
        }
        for item in values.value(row).split_whitespace() {
            match item.parse::<i16>() {
                Ok(n) => builder.values().append_value(n),
                Err(_) => builder.values().append_null(),
            }
        }
        builder.append(true);
    }
    Ok(Arc::new(builder.finish()))
}

/// `json_build_object(k1, v1, ...)` as JSON text.
fn json_build_object(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    if !args.len().is_multiple_of(2) {
        return exec_err!("argument list must have even number of elements");
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut object = serde_json::Map::new();
        for pair in args.chunks(2) {
            let key = texts(&pair[0])?;
            if key.is_null(row) {
                return exec_err!("null value not allowed for object key");
            }
            let value = &pair[1];
            let json = if value.is_null(row) {
                serde_json::Value::Null
            } else if let Some(b) = value.as_boolean_opt() {
                serde_json::Value::Bool(b.value(row))
            } else if value.data_type().is_numeric() {
                let text = texts(value)?.value(row).to_owned();
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
            } else {
                serde_json::Value::String(texts(value)?.value(row).to_owned())
            };
            object.insert(key.value(row).to_owned(), json);
        }
        out.push(serde_json::Value::Object(object).to_string());
    }
    Ok(Arc::new(StringArray::from(out)))
}
