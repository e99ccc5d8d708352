//! Records as values: what processing steps (parsers, enrichment, filters, selectors) work on.
//!
//! The hot path keeps records as msgpack bytes; a step that reads or changes fields decodes a
//! record into a [`Record`] — an ordered list of `(name, value)` pairs, the order the sender
//! used — and encodes it back when it is done. Decoding is lossless for what log senders send,
//! with two documented exceptions: a msgpack string that is not UTF-8 becomes [`Value::Bin`]
//! (its bytes kept), and a map key that is not a string becomes its text (`1` → `"1"`). Nesting
//! past [`crate::json::MAX_DEPTH`] becomes `Null`, as in JSON rendering.

use std::borrow::Cow;

use crate::EventTime;
use crate::json::MAX_DEPTH;
use crate::msgpack::{MsgpackError, Reader, Value as Raw, write_str};

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (msgpack negative integers, and parsed numbers).
    Int(i64),
    /// A non-negative integer (msgpack encodes every non-negative integer this way).
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Bytes: msgpack `bin`, or a msgpack string that was not UTF-8.
    Bin(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map with string keys, in the sender's order.
    Map(Vec<(String, Value)>),
    /// An event time (the Fluentd EventTime extension).
    Time(EventTime),
    /// Another msgpack extension: type and data.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text, the way a user reading the log would see it: strings as they are,
    /// bytes with U+FFFD for what is not UTF-8, numbers and booleans in decimal, null as
    /// `""`, arrays and maps as JSON.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Self::Str(s) => Cow::Borrowed(s),
            Self::Bin(b) => String::from_utf8_lossy(b),
            Self::Null => Cow::Borrowed(""),
            Self::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Self::Int(n) => Cow::Owned(n.to_string()),
            Self::UInt(n) => Cow::Owned(n.to_string()),
            Self::Float(f) => Cow::Owned(f.to_string()),
            Self::Time(t) => Cow::Owned(t.to_string()),
            Self::Array(_) | Self::Map(_) | Self::Ext(..) => {
                let mut out = Vec::new();
                self.write_msgpack(&mut out);
                let mut json = Vec::new();
                // Our own encoding always reads back.
                let _ = crate::json::write_value(&mut json, &mut Reader::new(&out), 0);
                Cow::Owned(String::from_utf8_lossy(&json).into_owned())
            }
        }
    }

    /// The value as a number, when it is one or is a string holding one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(n) => Some(*n as f64),
            Self::UInt(n) => Some(*n as f64),
            Self::Float(f) => Some(*f),
            Self::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Reads one value; nesting past `depth_left` levels is skipped and read as `Null`.
    fn read(r: &mut Reader<'_>, depth_left: usize) -> Result<Self, MsgpackError> {
        if depth_left == 0 {
            r.skip_value()?;
            return Ok(Self::Null);
        }
        Ok(match r.read()? {
            Raw::Nil => Self::Null,
            Raw::Bool(b) => Self::Bool(b),
            Raw::UInt(n) => Self::UInt(n),
            Raw::Int(n) => Self::Int(n),
            Raw::F32(f) => Self::Float(f64::from(f)),
            Raw::F64(f) => Self::Float(f),
            Raw::Str(s) => match std::str::from_utf8(s) {
                Ok(s) => Self::Str(s.to_owned()),
                Err(_) => Self::Bin(s.to_vec()),
            },
            Raw::Bin(b) => Self::Bin(b.to_vec()),
            Raw::Array(n) => {
                let mut items = Vec::with_capacity((n as usize).min(r.rest().len()));
                for _ in 0..n {
                    items.push(Self::read(r, depth_left - 1)?);
                }
                Self::Array(items)
            }
            Raw::Map(n) => Self::Map(read_pairs(r, n, depth_left - 1)?),
            // An EventTime; one with nanoseconds past a second is not one and is kept as the
            // extension it is, so that it re-encodes to the same bytes.
            Raw::Ext(0, data)
                if data.len() == 8
                    && u32::from_be_bytes(data[4..].try_into().expect("4 bytes"))
                        < 1_000_000_000 =>
            {
                let secs = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                let nanos = u32::from_be_bytes(data[4..].try_into().expect("4 bytes"));
                Self::Time(EventTime::new(u64::from(secs), nanos))
            }
            Raw::Ext(kind, data) => Self::Ext(kind, data.to_vec()),
        })
    }

    /// Appends the value as msgpack.
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        use rmp::encode;
        // Writing to a Vec cannot fail.
        match self {
            Self::Null => encode::write_nil(out).expect("Vec write"),
            Self::Bool(b) => encode::write_bool(out, *b).expect("Vec write"),
            Self::Int(n) => {
                encode::write_sint(out, *n).expect("Vec write");
            }
            Self::UInt(n) => {
                encode::write_uint(out, *n).expect("Vec write");
            }
            Self::Float(f) => encode::write_f64(out, *f).expect("Vec write"),
            Self::Str(s) => write_str(out, s.as_bytes()),
            Self::Bin(b) => encode::write_bin(out, b).expect("Vec write"),
            Self::Array(items) => {
                encode::write_array_len(out, items.len() as u32).expect("Vec write");
                for item in items {
                    item.write_msgpack(out);
                }
            }
            Self::Map(pairs) => write_pairs(out, pairs),
            Self::Time(t) => t.write_msgpack(out),
            Self::Ext(kind, data) => {
                encode::write_ext_meta(out, data.len() as u32, *kind).expect("Vec write");
                out.extend_from_slice(data);
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

fn read_pairs(
    r: &mut Reader<'_>,
    n: u32,
    depth_left: usize,
) -> Result<Vec<(String, Value)>, MsgpackError> {
    let mut pairs = Vec::with_capacity((n as usize).min(r.rest().len() / 2));
    for _ in 0..n {
        let key = read_key(r)?;
        let value = Value::read(r, depth_left)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// A map key as text: strings as they are, scalars as their text, arrays and maps as
/// `"[array]"` and `"{map}"` (as in JSON rendering).
fn read_key(r: &mut Reader<'_>) -> Result<String, MsgpackError> {
    let mut probe = r.clone();
    Ok(match probe.read()? {
        Raw::Str(s) | Raw::Bin(s) => {
            *r = probe;
            String::from_utf8_lossy(s).into_owned()
        }
        Raw::Array(_) => {
            r.skip_value()?;
            "[array]".to_owned()
        }
        Raw::Map(_) => {
            r.skip_value()?;
            "{map}".to_owned()
        }
        _ => Value::read(r, 1)?.to_text().into_owned(),
    })
}

fn write_pairs(out: &mut Vec<u8>, pairs: &[(String, Value)]) {
    rmp::encode::write_map_len(out, pairs.len() as u32).expect("Vec write");
    for (key, value) in pairs {
        write_str(out, key.as_bytes());
        value.write_msgpack(out);
    }
}

/// The value at `path` in a map's pairs (see [`Record::get_path`]).
fn path_in<'a>(pairs: &'a [(String, Value)], path: &str) -> Option<&'a Value> {
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if let Some(value) = field(path) {
        return Some(value);
    }
    path.match_indices('.')
        .find_map(|(dot, _)| match field(&path[..dot])? {
            Value::Map(inner) => path_in(inner, &path[dot + 1..]),
            _ => None,
        })
}

/// A record: the top-level map of an event, fields in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    fields: Vec<(String, Value)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes an encoded msgpack map.
    pub fn decode(map: &[u8]) -> Result<Self, MsgpackError> {
        let mut r = Reader::new(map);
        match r.read()? {
            Raw::Map(n) => Ok(Self {
                fields: read_pairs(&mut r, n, MAX_DEPTH - 1)?,
            }),
            _ => Err(MsgpackError::Invalid("a record must be a map")),
        }
    }

    /// Appends the record as a msgpack map.
    pub fn write_msgpack(&self, out: &mut Vec<u8>) {
        write_pairs(out, &self.fields);
    }

    /// The fields, in order.
    pub fn fields(&self) -> &[(String, Value)] {
        &self.fields
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of the top-level field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The value of the top-level field `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.fields
            .iter_mut()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The value at a dotted path (`kubernetes.labels.app`). Keys may hold dots themselves
    /// (Kubernetes labels such as `app.kubernetes.io/name`): at each level the whole rest of
    /// the path is tried as a key first, then the path is split at each dot in turn.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        path_in(&self.fields, path)
    }

    /// Sets `name` to `value`, replacing the field in place or appending it.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.get_mut(&name) {
            Some(slot) => *slot = value,
            None => self.fields.push((name, value)),
        }
    }

    /// Sets `name` to `value` only when the record has no such field.
    pub fn insert_if_absent(&mut self, name: &str, value: impl Into<Value>) {
        if self.get(name).is_none() {
            self.fields.push((name.to_owned(), value.into()));
        }
    }

    /// Removes the field `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let index = self.fields.iter().position(|(k, _)| k == name)?;
        Some(self.fields.remove(index).1)
    }

    /// Renames `from` to `to` in place (replacing any existing `to`). Returns false when there
    /// is no `from`.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        if from == to {
            return self.get(from).is_some();
        }
        let Some(index) = self.fields.iter().position(|(k, _)| k == from) else {
            return false;
        };
        self.remove(to);
        let index = index.min(self.fields.len() - 1);
        // `remove(to)` may have shifted `from` one place left.
        let index = if self.fields[index].0 == from {
            index
        } else {
            index - 1
        };
        self.fields[index].0 = to.to_owned();
        true
    }

    /// Keeps only the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.fields.retain_mut(|(k, v)| keep(k, v));
    }

    /// Iterates over the fields, to change values in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.fields.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// The record as one JSON object, for display and text search.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_msgpack(&mut out);
        let mut json = Vec::new();
        let _ = crate::json::write_value(&mut json, &mut Reader::new(&out), 0);
        String::from_utf8(json).unwrap_or_default()
    }
}

impl From<Vec<(String, Value)>> for Record {
    fn from(fields: Vec<(String, Value)>) -> Self {
        Self { fields }
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// An event being processed: its time, its record, and the v1.5 metadata it arrived with.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the event happened.
    pub time: EventTime,
    /// Its fields.
    pub record: Record,
    /// The Forward v1.5 metadata map, kept as it arrived.
    pub metadata: Option<Vec<u8>>,
}

impl Event {
    /// Decodes one entry of a batch or chunk.
    pub fn decode(entry: &crate::Entry<'_>) -> Result<Self, MsgpackError> {
        Ok(Self {
            time: entry.time,
            record: Record::decode(entry.record)?,
            metadata: entry.metadata.map(<[u8]>::to_vec),
        })
    }

    /// Appends the event as an entry (`[time, record]`, or `[[time, metadata], record]`).
    pub fn write_entry(&self, out: &mut Vec<u8>) {
        out.push(0x92);
        match &self.metadata {
            Some(metadata) => {
                out.push(0x92);
                self.time.write_msgpack(out);
                out.extend_from_slice(metadata);
            }
            None => self.time.write_msgpack(out),
        }
        self.record.write_msgpack(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryIter;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_map_len(&mut out, 5).unwrap();
        rmp::encode::write_str(&mut out, "log").unwrap();
        rmp::encode::write_str(&mut out, "hello").unwrap();
        rmp::encode::write_str(&mut out, "n").unwrap();
        rmp::encode::write_sint(&mut out, -3).unwrap();
        rmp::encode::write_str(&mut out, "k8s").unwrap();
        rmp::encode::write_map_len(&mut out, 1).unwrap();
        rmp::encode::write_str(&mut out, "pod").unwrap();
        rmp::encode::write_str(&mut out, "api-1").unwrap();
        rmp::encode::write_str(&mut out, "raw").unwrap();
        rmp::encode::write_str_len(&mut out, 2).unwrap();
        out.extend_from_slice(&[0xff, 0xfe]);
        rmp::encode::write_uint(&mut out, 7).unwrap();
        rmp::encode::write_bool(&mut out, true).unwrap();
        out
    }

    #[test]
    fn decodes_and_reencodes_a_record() {
        let bytes = sample();
        let record = Record::decode(&bytes).unwrap();
        assert_eq!(record.get("log"), Some(&Value::from("hello")));
        assert_eq!(record.get("n"), Some(&Value::Int(-3)));
        assert_eq!(record.get_path("k8s.pod"), Some(&Value::from("api-1")));
        assert_eq!(record.get("raw"), Some(&Value::Bin(vec![0xff, 0xfe])));
        assert_eq!(record.get("7"), Some(&Value::Bool(true)));
        let mut again = Vec::new();
        record.write_msgpack(&mut again);
        assert_eq!(Record::decode(&again).unwrap(), record);
    }

    #[test]
    fn paths_walk_maps_whose_keys_hold_dots() {
        let labels = Value::Map(vec![
            ("app.kubernetes.io/name".into(), Value::from("checkout")),
            ("app".into(), Value::from("legacy")),
        ]);
        let record = Record::from(vec![(
            "kubernetes".to_owned(),
            Value::Map(vec![("labels".into(), labels)]),
        )]);
        assert_eq!(
            record.get_path("kubernetes.labels.app.kubernetes.io/name"),
            Some(&Value::from("checkout"))
        );
        assert_eq!(
            record.get_path("kubernetes.labels.app"),
            Some(&Value::from("legacy"))
        );
        assert_eq!(record.get_path("kubernetes.labels.nope"), None);
        assert_eq!(record.get_path("kubernetes.labels.app.x"), None);
    }

    #[test]
    fn edits_keep_field_order() {
        let mut record = Record::decode(&sample()).unwrap();
        record.insert("log", "changed");
        record.insert("new", 1i64);
        assert!(record.rename("n", "count"));
        assert!(!record.rename("missing", "x"));
        assert_eq!(record.remove("raw"), Some(Value::Bin(vec![0xff, 0xfe])));
        let names: Vec<_> = record.fields().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["log", "count", "k8s", "7", "new"]);
        // Renaming onto an existing field replaces it.
        assert!(record.rename("new", "log"));
        let names: Vec<_> = record.fields().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["count", "k8s", "7", "log"]);
        assert_eq!(record.get("log"), Some(&Value::Int(1)));
    }

    #[test]
    fn events_round_trip_through_entries() {
        let mut stream = Vec::new();
        let event = Event {
            time: EventTime::new(1_700_000_000, 5),
            record: Record::decode(&sample()).unwrap(),
            metadata: Some(vec![0x80]),
        };
        event.write_entry(&mut stream);
        let plain = Event {
            metadata: None,
            ..event.clone()
        };
        plain.write_entry(&mut stream);
        let decoded: Vec<_> = EntryIter::new(&stream)
            .map(|e| Event::decode(&e.unwrap()).unwrap())
            .collect();
        assert_eq!(decoded, [event, plain]);
    }

    #[test]
    fn strings_of_every_header_size_round_trip() {
        for len in [0, 31, 32, 255, 256, 65535, 65536] {
            let record = Record::from(vec![(
                "s".repeat(len.min(300)),
                Value::Str("x".repeat(len)),
            )]);
            let mut out = Vec::new();
            record.write_msgpack(&mut out);
            let mut reference = Vec::new();
            rmp::encode::write_map_len(&mut reference, 1).unwrap();
            rmp::encode::write_str(&mut reference, &"s".repeat(len.min(300))).unwrap();
            rmp::encode::write_str(&mut reference, &"x".repeat(len)).unwrap();
            assert_eq!(out, reference, "{len}");
        }
    }

    #[test]
    fn an_event_time_with_too_many_nanoseconds_stays_an_extension() {
        // {"": EventTime(0xffffffff s, 1e9 ns)}: found by the record_decode fuzz target.
        let bytes = [
            0x81, 0xa0, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0x3b, 0x9a, 0xca, 0x00,
        ];
        let record = Record::decode(&bytes).unwrap();
        assert!(matches!(record.get(""), Some(Value::Ext(0, _))));
        let mut again = Vec::new();
        record.write_msgpack(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn hostile_nesting_is_cut_not_overflowed() {
        let mut bytes = vec![0x81, 0xa1, b'x'];
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        let record = Record::decode(&bytes).unwrap();
        assert!(matches!(record.get("x"), Some(Value::Array(_))));
    }

    #[test]
    fn to_text_renders_what_users_read() {
        assert_eq!(Value::Int(-2).to_text(), "-2");
        assert_eq!(Value::Bin(b"a\xffb".to_vec()).to_text(), "a\u{fffd}b");
        assert_eq!(
            Value::Map(vec![("a".into(), Value::Int(1))]).to_text(),
            "{\"a\":1}"
        );
    }
}
