//! The document of one event: the record as JSON, with the fields this output adds (the time,
//! the tag) before its own, and the optional mapping to the Elastic Common Schema.

use flumen_event::json::{write_json_str, write_value};
use flumen_event::msgpack::{MsgpackError, Reader, Value as Raw};
use flumen_event::record::{Record, Value};

/// Appends the document: `{` then each of `added` (name, string value) the record has no
/// top-level field of that name for — the record's own field wins, so that a document never
/// holds a name twice, which Elasticsearch refuses — then the record's fields, `}`.
/// `record` is a msgpack map; `scratch` is reused between calls.
pub(super) fn write_document(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    record: &[u8],
    added: &[(&str, &str)],
) -> Result<(), MsgpackError> {
    scratch.clear();
    write_value(scratch, &mut Reader::new(record), 0)?;
    if scratch.first() != Some(&b'{') {
        return Err(MsgpackError::Invalid("a record must be a map"));
    }
    let present = top_level_names(record, added)?;
    out.push(b'{');
    let mut first = true;
    for ((name, value), present) in added.iter().zip(present) {
        if present {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(out, name.as_bytes());
        out.push(b':');
        write_json_str(out, value.as_bytes());
    }
    // `scratch` is `{…}`: its fields follow the added ones.
    if !first && scratch.len() > 2 {
        out.push(b',');
    }
    out.extend_from_slice(&scratch[1..]);
    Ok(())
}

/// For each of `added`, whether the msgpack map `record` has a top-level field of its name
/// (at most a few names, so a walk over the keys, values skipped).
fn top_level_names(record: &[u8], added: &[(&str, &str)]) -> Result<Vec<bool>, MsgpackError> {
    let mut present = vec![false; added.len()];
    if added.is_empty() {
        return Ok(present);
    }
    let mut reader = Reader::new(record);
    let Raw::Map(count) = reader.read()? else {
        return Err(MsgpackError::Invalid("a record must be a map"));
    };
    for _ in 0..count {
        if let Raw::Str(key) = reader.read()? {
            for (slot, (name, _)) in present.iter_mut().zip(added) {
                *slot |= key == name.as_bytes();
            }
        }
        reader.skip_value()?;
    }
    Ok(present)
}

/// The ECS fields a plain field moves to (`level` → `log.level`): the first of a target's
/// sources present takes it; the others stay where they are.
const ECS_MOVES: &[(&str, (&str, &str))] = &[
    ("level", ("log", "level")),
    ("severity", ("log", "level")),
    ("service", ("service", "name")),
    ("host", ("host", "name")),
    ("hostname", ("host", "name")),
    ("trace_id", ("trace", "id")),
    ("span_id", ("span", "id")),
];

/// Maps `record` to the Elastic Common Schema, in place:
///
/// - `message`: a record without one takes its `log` (Docker's) or `msg`; a `log` left over
///   (not an object) becomes `event.original`, since ECS's `log` is an object;
/// - `level`/`severity` → `log.level`, `service` → `service.name`, `host`/`hostname` →
///   `host.name`, `trace_id` → `trace.id`, `span_id` → `span.id`;
/// - the tag → `event.dataset`.
///
/// Only values that are not objects move, and never over a value already there: a record
/// already in ECS keeps its fields.
pub(super) fn map_to_ecs(record: &mut Record, tag: &str) {
    if record.get("message").is_none() {
        for source in ["log", "msg"] {
            if record.get(source).is_some_and(is_plain) {
                record.rename(source, "message");
                break;
            }
        }
    }
    if record.get("log").is_some_and(is_plain) {
        let original = record.remove("log").expect("present");
        nest(record, "event", "original", original);
    }
    for (source, (object, field)) in ECS_MOVES {
        if !record.get(source).is_some_and(is_plain) || nested_has(record, object, field) {
            continue;
        }
        // Taken out first: `service` and `host` become objects of the same name.
        let value = record.remove(source).expect("present");
        if let Some(value) = nest(record, object, field, value) {
            record.insert(*source, value);
        }
    }
    if !nested_has(record, "event", "dataset") {
        nest(record, "event", "dataset", Value::from(tag));
    }
}

/// True for a value that is not an object.
fn is_plain(value: &Value) -> bool {
    !matches!(value, Value::Map(_))
}

/// True when `record.object.field` is there.
fn nested_has(record: &Record, object: &str, field: &str) -> bool {
    match record.get(object) {
        Some(Value::Map(fields)) => fields.iter().any(|(name, _)| name == field),
        _ => false,
    }
}

/// Sets `record.object.field` to `value`, making the object when there is none; gives the
/// value back when `object` is there and not an object.
fn nest(record: &mut Record, object: &str, field: &str, value: Value) -> Option<Value> {
    match record.get_mut(object) {
        Some(Value::Map(fields)) => {
            fields.push((field.to_owned(), value));
            None
        }
        Some(_) => Some(value),
        None => {
            record.insert(object, Value::Map(vec![(field.to_owned(), value)]));
            None
        }
    }
}
