//! Comparing decoded records, shared by the `parse_line` and `record_decode` targets.
//!
//! `Record`'s `PartialEq` is stricter than "the same record" in two ways that re-encoding
//! cannot keep, by design of `flumen_event::record`:
//! - `Value::Int(n)` with `n >= 0` (parsers write `code`, `size`, `pid` this way; msgpack's
//!   signed markers `d0`–`d3` decode this way) is written as a msgpack positive integer, which
//!   decodes as `Value::UInt(n)`: the same number, another variant;
//! - `Value::Float(NaN)` is not equal to itself.
//!
//! [`same_record`] treats those as equal (a non-negative `Int` equals the `UInt` of the same
//! number; floats are compared bit for bit, so NaN equals the same NaN and `0.0` differs from
//! `-0.0`). Everything else must be equal as `PartialEq` says: names, order, strings, bytes,
//! times, extension values.

use flumen_event::record::{Record, Value};

/// True when `a` and `b` hold the same values (see the module documentation).
pub fn same_record(a: &Record, b: &Record) -> bool {
    same_pairs(a.fields(), b.fields())
}

fn same_pairs(a: &[(String, Value)], b: &[(String, Value)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

/// True when `a` and `b` are the same value (see the module documentation).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(n), Value::UInt(u)) | (Value::UInt(u), Value::Int(n)) => {
            u64::try_from(*n).is_ok_and(|n| n == *u)
        }
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Map(x), Value::Map(y)) => same_pairs(x, y),
        _ => a == b,
    }
}

/// `record` written as msgpack and decoded again.
pub fn reencode(record: &Record) -> Record {
    let mut bytes = Vec::new();
    record.write_msgpack(&mut bytes);
    Record::decode(&bytes).expect("a record's own encoding decodes")
}
