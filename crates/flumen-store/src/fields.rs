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
pub fn scalar_text<'a>(value: Value<'a>) -> Option<Cow<'a, str>> {
    Some(match value {
        // Most values are ASCII: checked a word at a time, where the lossy conversion walks
        // its chunks.
        Value::Str(bytes) if bytes.is_ascii() => {
            Cow::Borrowed(std::str::from_utf8(bytes).expect("ASCII is UTF-8"))
        }
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

/// Calls `found(index, value)` for each top-level field of `record` whose name is
/// `names[index]`, with the value's msgpack header (a scalar's header is the scalar).
pub fn scan_raw_fields<'a>(
    record: &'a [u8],
    names: &[String],
    mut found: impl FnMut(usize, Value<'a>),
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
        let Ok(raw) = reader.skip_value() else {
            return;
        };
        if let Some(index) = wanted
            && let Ok(value) = Reader::new(raw).read()
        {
            found(index, value);
        }
    }
}

/// The fields that hold an event's line, in order of preference (as `flumen_select::line_of`).
pub(crate) const LINE_FIELDS: [&str; 3] = ["message", "log", "msg"];

/// The bytes of the record's line when it is a string field (`message`, then `log`, then
/// `msg`, as `flumen_select::line_of` chooses): what a line filter searches, read without
/// decoding the record. `None` when the line is something else (a number, the record as
/// JSON) or the record is malformed: then only the decoded record can tell.
pub(crate) fn line_bytes(record: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader::new(record);
    let Ok(Value::Map(len)) = reader.read() else {
        return None;
    };
    let mut best: Option<(usize, Value<'_>)> = None;
    for _ in 0..len {
        let Ok(Value::Str(key)) = reader.read() else {
            return None;
        };
        let raw = reader.skip_value().ok()?;
        if let Some(rank) = LINE_FIELDS.iter().position(|f| f.as_bytes() == key)
            && best.as_ref().is_none_or(|(r, _)| rank < *r)
        {
            best = Some((rank, Reader::new(raw).read().ok()?));
        }
    }
    match best {
        Some((_, Value::Str(line))) => Some(line),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use flumen_event::record::{Record, Value as RecordValue};

    use super::*;

    fn encoded(fields: Vec<(&str, RecordValue)>) -> Vec<u8> {
        let record = Record::from(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Vec<_>>(),
        );
        let mut out = Vec::new();
        record.write_msgpack(&mut out);
        out
    }

    #[test]
    fn the_line_is_the_preferred_string_field_as_line_of_chooses() {
        let record = encoded(vec![
            ("msg", RecordValue::from("third")),
            ("log", RecordValue::from("second")),
            ("message", RecordValue::from("first")),
        ]);
        assert_eq!(line_bytes(&record), Some(&b"first"[..]));
        let record = encoded(vec![
            ("msg", RecordValue::from("m")),
            ("log", RecordValue::from("l")),
        ]);
        assert_eq!(line_bytes(&record), Some(&b"l"[..]));
        // A number as the line, or no line field: the decoded record decides.
        assert_eq!(
            line_bytes(&encoded(vec![("message", RecordValue::UInt(5))])),
            None
        );
        assert_eq!(
            line_bytes(&encoded(vec![("x", RecordValue::from("y"))])),
            None
        );
    }

    #[test]
    fn labels_are_read_from_top_level_scalars() {
        let record = encoded(vec![
            ("service", RecordValue::from("api")),
            (
                "nested",
                RecordValue::Map(vec![("service".to_owned(), RecordValue::from("no"))]),
            ),
            ("status", RecordValue::UInt(503)),
        ]);
        let names = [
            "service".to_owned(),
            "status".to_owned(),
            "nested".to_owned(),
        ];
        let mut found = Vec::new();
        scan_raw_fields(&record, &names, |i, value| {
            if let Some(text) = scalar_text(value) {
                found.push((i, text.into_owned()));
            }
        });
        assert_eq!(found, vec![(0, "api".to_owned()), (1, "503".to_owned())]);
    }
}
