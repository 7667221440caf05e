//! Which type changes are widenings: every value of the old type is a value
//! of the new one, so a column can change type without touching its rows.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// Whether every `old` value is exactly a `new` value: larger integers,
/// floats and decimals (no fewer integer digits or decimal places), large
/// strings and binaries, finer timestamps, and a timestamp without zone
/// becoming one in a zone (read as UTC).
pub fn widens(old: &DataType, new: &DataType) -> bool {
    use DataType::*;
    if old == new {
        return true;
    }
    match (old, new) {
        (Float16, Float32 | Float64) | (Float32, Float64) => true,
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        (Decimal128(p1, s1) | Decimal256(p1, s1), Decimal128(p2, s2) | Decimal256(p2, s2)) => {
            s2 >= s1 && i16::from(*p2) - i16::from(*s2) >= i16::from(*p1) - i16::from(*s1)
        }
        (Timestamp(u1, z1), Timestamp(u2, z2)) => unit_rank(*u2) >= unit_rank(*u1) && (z1 == z2 || z1.is_none()),
        _ => match (integer(old), integer(new)) {
            (Some((signed1, bits1)), Some((signed2, bits2))) => {
                (signed1 == signed2 && bits2 > bits1) || (!signed1 && signed2 && bits2 > bits1)
            }
            _ => false,
        },
    }
}

/// Signedness and width of an integer type.
fn integer(data_type: &DataType) -> Option<(bool, u8)> {
    use DataType::*;
    Some(match data_type {
        Int8 => (true, 8),
        Int16 => (true, 16),
        Int32 => (true, 32),
        Int64 => (true, 64),
        UInt8 => (false, 8),
        UInt16 => (false, 16),
        UInt32 => (false, 32),
        UInt64 => (false, 64),
        _ => return None,
    })
}

fn unit_rank(unit: TimeUnit) -> u8 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widenings_keep_every_value_and_narrowings_are_refused() {
        let utc = || Some("UTC".into());
        for (old, new) in [
            (DataType::Int32, DataType::Int64),
            (DataType::UInt32, DataType::Int64),
            (DataType::Float32, DataType::Float64),
            (DataType::Decimal128(10, 2), DataType::Decimal128(12, 2)),
            (DataType::Decimal128(10, 2), DataType::Decimal128(12, 4)),
            (DataType::Decimal128(30, 2), DataType::Decimal256(40, 2)),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Timestamp(TimeUnit::Microsecond, utc()),
            ),
        ] {
            assert!(widens(&old, &new), "{old} -> {new}");
            assert!(!widens(&new, &old), "{new} -> {old}");
        }
        for (old, new) in [
            (DataType::Int64, DataType::Float64),
            (DataType::UInt64, DataType::Int64),
            (DataType::Decimal128(10, 2), DataType::Decimal128(10, 4)),
            (DataType::Utf8, DataType::Int64),
            (DataType::Date32, DataType::Timestamp(TimeUnit::Microsecond, None)),
        ] {
            assert!(!widens(&old, &new), "{old} -> {new}");
        }
    }
}
