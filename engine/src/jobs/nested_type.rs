//! The nested `COLUMNS` types, `RECORD(name TYPE, ...)` and `REPEATED
//! TYPE`, as Arrow struct and list types: what a document store's JSON
//! column loads as instead of JSON text (BigQuery RECORD and REPEATED
//! columns, nested Parquet columns in the warehouse).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};

use crate::type_mapping::TYPE_METADATA;

/// The types a RECORD field or REPEATED element may have.
const SCALARS: &str = "STRING, INT64, FLOAT64, BOOL, BYTES, TIMESTAMP, JSON";

/// Whether a `COLUMNS` type text is a nested type.
pub(super) fn is_nested(text: &str) -> bool {
    let upper = text.trim_start().to_ascii_uppercase();
    ["RECORD", "STRUCT", "REPEATED"].iter().any(|w| {
        upper
            .strip_prefix(w)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// The Arrow type of a nested `COLUMNS` type text, or what is wrong with it.
/// REPEATED elements are never NULL (BigQuery arrays hold no NULLs).
pub(super) fn nested_type(text: &str) -> Result<DataType, String> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let field = parse_type(&tokens, &mut at)?;
    match tokens.get(at) {
        None => Ok(field.data_type().clone()),
        Some(t) => Err(format!("unexpected {t:?} in {text}")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '"' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unterminated quoted name in {text}")),
                    }
                }
                out.push(Token::Quoted(name));
            }
            c if c.is_whitespace() => {}
            c => {
                let mut word = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '(' | ')' | ',' | '"') {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// One type at `tokens[*at]`, as an unnamed field (its metadata tags JSON).
fn parse_type(tokens: &[Token], at: &mut usize) -> Result<Field, String> {
    let Some(Token::Word(word)) = tokens.get(*at) else {
        return Err(format!("expected a type, found {:?}", tokens.get(*at)));
    };
    *at += 1;
    let scalar = |data_type: DataType| Ok(Field::new("", data_type, true));
    match word.to_ascii_uppercase().as_str() {
        "REPEATED" => {
            let element = parse_type(tokens, at)?;
            if matches!(element.data_type(), DataType::List(_)) {
                return Err(
                    "REPEATED REPEATED is not a type (BigQuery has no arrays of arrays); use \
                            REPEATED RECORD(name REPEATED type)"
                        .into(),
                );
            }
            let item = element.with_name("item").with_nullable(false);
            scalar(DataType::List(Arc::new(item)))
        }
        "RECORD" | "STRUCT" => {
            if tokens.get(*at) != Some(&Token::Open) {
                return Err("RECORD needs its fields: RECORD(name TYPE, ...)".into());
            }
            *at += 1;
            let mut fields = Vec::new();
            loop {
                let name = match tokens.get(*at) {
                    Some(Token::Word(w)) => w.to_lowercase(),
                    Some(Token::Quoted(q)) => q.clone(),
                    other => return Err(format!("expected a RECORD field name, found {other:?}")),
                };
                *at += 1;
                if fields.iter().any(|f: &Field| f.name() == &name) {
                    return Err(format!("RECORD field \"{name}\" is given twice"));
                }
                fields.push(parse_type(tokens, at)?.with_name(name));
                match tokens.get(*at) {
                    Some(Token::Comma) => *at += 1,
                    Some(Token::Close) => {
                        *at += 1;
                        break;
                    }
                    other => return Err(format!("expected , or ) in RECORD, found {other:?}")),
                }
            }
            scalar(DataType::Struct(Fields::from(fields)))
        }
        "STRING" => scalar(DataType::Utf8),
        "JSON" => {
            Ok(Field::new("", DataType::Utf8, true)
                .with_metadata([(TYPE_METADATA.to_owned(), "JSON".to_owned())].into()))
        }
        "INT64" | "INTEGER" => scalar(DataType::Int64),
        "FLOAT64" | "FLOAT" => scalar(DataType::Float64),
        "BOOL" | "BOOLEAN" => scalar(DataType::Boolean),
        "BYTES" => scalar(DataType::Binary),
        "TIMESTAMP" => scalar(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
        other => Err(format!(
            "{other} cannot be inside RECORD or REPEATED; use {SCALARS}, RECORD(...) or REPEATED type"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_types_as_arrow() {
        assert!(is_nested("REPEATED STRING") && is_nested("record(a INT64)") && !is_nested("RECORDS"));
        assert_eq!(
            nested_type("REPEATED STRING").unwrap(),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
        );
        let DataType::Struct(fields) =
            nested_type("RECORD(Street STRING, \"Zip Code\" INT64, tags REPEATED RECORD(x BOOL))").unwrap()
        else {
            panic!("not a struct")
        };
        let names: Vec<_> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["street", "Zip Code", "tags"]);
        assert!(
            matches!(fields[2].data_type(), DataType::List(item) if matches!(item.data_type(), DataType::Struct(_)))
        );
        let DataType::Struct(fields) = nested_type("RECORD(meta JSON)").unwrap() else {
            panic!("not a struct")
        };
        assert_eq!(
            fields[0].metadata().get(TYPE_METADATA).map(String::as_str),
            Some("JSON")
        );
    }

    #[test]
    fn bad_nested_types_say_why() {
        for (text, says) in [
            ("RECORD", "needs its fields"),
            ("RECORD(a DATE)", "DATE cannot be inside"),
            ("REPEATED REPEATED INT64", "arrays of arrays"),
            ("RECORD(a INT64, a STRING)", "given twice"),
            ("RECORD(a INT64", "expected , or )"),
        ] {
            let error = nested_type(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
