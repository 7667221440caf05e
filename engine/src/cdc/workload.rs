//! A random change workload for the tests of change destinations: the
//! table `(id bigint NOT NULL, name text, big text)`, and its changes as a
//! source's log carries them (inserts, updates that leave `big` unchanged,
//! deletes, key changes, truncates), mirrored in a model of the rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::Rng;
use rand::rngs::StdRng;

use super::{ChangeOp, ChangeValue};

/// `name` and `big` of a row.
pub(crate) type Row = (Option<String>, Option<String>);

/// The table's columns.
pub(crate) fn columns() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("big", DataType::Utf8, true),
    ]))
}

pub(crate) fn text(value: &str) -> ChangeValue {
    ChangeValue::Text(value.into())
}

/// Where a test collects change rows, each at the next position.
pub(crate) trait ChangeLog {
    fn push(&mut self, op: ChangeOp, id: Option<i64>, name: ChangeValue, big: ChangeValue);
}

/// Pushes one random change of the model's table, keeping `deleted`
/// (the deleted keys' last rows, until inserted again or truncated);
/// how many change rows it took.
pub(crate) fn random_change(
    rng: &mut StdRng,
    model: &mut BTreeMap<i64, Row>,
    deleted: &mut BTreeMap<i64, Row>,
    changes: &mut impl ChangeLog,
) -> u64 {
    let free = |rng: &mut StdRng, model: &BTreeMap<i64, Row>| loop {
        let id = rng.gen_range(0..1000);
        if !model.contains_key(&id) {
            return id;
        }
    };
    let existing = (!model.is_empty()).then(|| *model.keys().nth(rng.gen_range(0..model.len())).unwrap());
    let value = |rng: &mut StdRng, what: &str| format!("{what} {}", rng.gen_range(0..1000));
    match (rng.gen_range(0..100), existing) {
        (0..3, _) => {
            changes.push(ChangeOp::Truncate, None, ChangeValue::Null, ChangeValue::Null);
            model.clear();
            deleted.clear();
            1
        }
        (3..40, _) | (_, None) => {
            let id = free(rng, model);
            let name = rng.gen_bool(0.8).then(|| value(rng, "name"));
            let big = value(rng, "big");
            let name_value = name.clone().map_or(ChangeValue::Null, ChangeValue::Text);
            changes.push(ChangeOp::Insert, Some(id), name_value, text(&big));
            model.insert(id, (name, Some(big)));
            deleted.remove(&id);
            1
        }
        (40..70, Some(id)) => {
            let name = value(rng, "name");
            let big = if rng.gen_bool(0.5) {
                ChangeValue::Unchanged
            } else {
                let big = value(rng, "big");
                model.get_mut(&id).unwrap().1 = Some(big.clone());
                ChangeValue::Text(big)
            };
            changes.push(ChangeOp::Update, Some(id), text(&name), big);
            model.get_mut(&id).unwrap().0 = Some(name);
            1
        }
        (70..85, Some(id)) => {
            changes.push(ChangeOp::Delete, Some(id), ChangeValue::Null, ChangeValue::Null);
            deleted.insert(id, model.remove(&id).unwrap());
            1
        }
        (_, Some(id)) => {
            let new = free(rng, model);
            let old = model.remove(&id).unwrap();
            let big = old.1.clone();
            deleted.insert(id, old);
            changes.push(ChangeOp::Delete, Some(id), ChangeValue::Null, ChangeValue::Null);
            let name = value(rng, "name");
            changes.push(ChangeOp::Insert, Some(new), text(&name), ChangeValue::Unchanged);
            model.insert(new, (Some(name), big));
            deleted.remove(&new);
            2
        }
    }
}
