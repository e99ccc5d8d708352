//! What the store reads out of a record without decoding it: the values of its stream labels
//! and indexed fields, and its line.
//!
//! Records are msgpack maps as the sender sent them; decoding one into a
//! [`Record`](flumen_event::record::Record) costs far more than walking its top-level keys, and
//! the store does this for every event it keeps. Only top-level fields are read: the `enrich`
//! filter copies the nested names senders use (`kubernetes.labels.app`, `service.name`) into
//! top-level canonical fields, which is what labels and indexes are about.

use std::borrow::Cow;

use flumen_event::msgpack::{Reader, Value};

/// The text of a scalar msgpack value as a user sees it (as `Value::to_text` renders it):
/// strings as they are, numbers in decimal, booleans as `true`/`false`, nil as empty. Maps,
/// arrays, binaries and extensions have no label text (`None`).
pub(crate) fn scalar_text<'a>(value: Value<'a>) -> Option<Cow<'a, str>> {
    Some(match value {
        Value::Str(bytes) => String::from_utf8_lossy(bytes),
        Value::UInt(n) => Cow::Owned(n.to_string()),
        Value::Int(n) => Cow::Owned(n.to_string()),
        Value::F32(f) => Cow::Owned(f.to_string()),
        Value::F64(f) => Cow::Owned(f.to_string()),
        Value::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Value::Nil => Cow::Borrowed(""),
        Value::Bin(_) | Value::Array(_) | Value::Map(_) | Value::Ext(..) => return None,
    })
}

/// Calls `found(index, text)` for each top-level field of `record` whose name is
/// `names[index]` and whose value is a scalar, in the record's order. A malformed record
/// yields what was read before the fault.
pub(crate) fn scan_fields<'a>(
    record: &'a [u8],
    names: &[String],
    mut found: impl FnMut(usize, Cow<'a, str>),
) {
    let mut reader = Reader::new(record);
    let Ok(Value::Map(len)) = reader.read() else {
        return;
    };
    for _ in 0..len {
        let Ok(Value::Str(key)) = reader.read() else {
            return;
        };
        let wanted = names.iter().position(|name| name.as_bytes() == key);
        let Some(index) = wanted else {
            if reader.skip_value().is_err() {
                return;
            }
            continue;
        };
        // The whole value, then its header: a scalar's header is the scalar.
        let Ok(raw) = reader.skip_value() else {
            return;
        };
        if let Ok(value) = Reader::new(raw).read()
            && let Some(text) = scalar_text(value)
        {
            found(index, text);
        }
    }
}
