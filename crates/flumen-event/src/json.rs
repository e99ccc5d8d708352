//! Rendering events as JSON, for text outputs (stdout, files, webhooks).
//!
//! The record is transcoded straight from msgpack to JSON text without building a value tree.
//! Strings that are not UTF-8 and binary values become strings with U+FFFD replacements; map keys
//! that are scalars are rendered as their JSON text, and map or array keys as `"{map}"` or
//! `"[array]"`; floats that JSON cannot hold (NaN,
//! infinities) become `null`; an EventTime extension becomes its RFC 3339 text; other extensions
//! become `{"ext": type, "data": [bytes]}`. Nesting past [`MAX_DEPTH`] becomes `null`.

use std::io::Write;

use crate::msgpack::{MsgpackError, Reader, Value};
use crate::{Entry, EventTime};

/// How deep nested arrays and maps are rendered.
pub const MAX_DEPTH: usize = 128;

/// Appends one JSON line `{"tag":…,"time":…,"record":{…}}` and a newline.
pub fn write_event_line(
    out: &mut Vec<u8>,
    tag: &str,
    entry: &Entry<'_>,
) -> Result<(), MsgpackError> {
    write_event(out, tag, entry, None)?;
    out.push(b'\n');
    Ok(())
}

/// Appends one event as a JSON object `{"tag":…,"time":…,"record":{…}}`, with a
/// `"message":…` key after the time when one is given (a rendered alert text, say).
pub fn write_event(
    out: &mut Vec<u8>,
    tag: &str,
    entry: &Entry<'_>,
    message: Option<&str>,
) -> Result<(), MsgpackError> {
    out.extend_from_slice(b"{\"tag\":");
    write_json_str(out, tag.as_bytes());
    write!(out, ",\"time\":\"{}\"", entry.time).expect("Vec write");
    if let Some(message) = message {
        out.extend_from_slice(b",\"message\":");
        write_json_str(out, message.as_bytes());
    }
    out.extend_from_slice(b",\"record\":");
    write_value(out, &mut Reader::new(entry.record), 0)?;
    out.push(b'}');
    Ok(())
}

/// Appends one msgpack value, read from `r`, as JSON.
pub fn write_value(
    out: &mut Vec<u8>,
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<(), MsgpackError> {
    if depth >= MAX_DEPTH {
        r.skip_value()?;
        out.extend_from_slice(b"null");
        return Ok(());
    }
    match r.read()? {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::UInt(n) => write!(out, "{n}").expect("Vec write"),
        Value::Int(n) => write!(out, "{n}").expect("Vec write"),
        Value::F32(f) => write_float(out, f64::from(f)),
        Value::F64(f) => write_float(out, f),
        Value::Str(s) | Value::Bin(s) => write_json_str(out, s),
        Value::Array(n) => {
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, r, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Map(n) => {
            out.push(b'{');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                write_key(out, r, depth)?;
                out.push(b':');
                write_value(out, r, depth + 1)?;
            }
            out.push(b'}');
        }
        Value::Ext(0, d) if d.len() == 8 => {
            let secs = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            let nanos = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            write!(out, "\"{}\"", EventTime::new(u64::from(secs), nanos)).expect("Vec write");
        }
        Value::Ext(ty, d) => {
            write!(out, "{{\"ext\":{ty},\"data\":").expect("Vec write");
            serde_json::to_writer(&mut *out, d).expect("Vec write");
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_key(out: &mut Vec<u8>, r: &mut Reader<'_>, depth: usize) -> Result<(), MsgpackError> {
    let mut probe = r.clone();
    match probe.read()? {
        Value::Str(s) | Value::Bin(s) => {
            *r = probe;
            write_json_str(out, s);
        }
        // A map or array as a key has no faithful JSON form; rendering it as quoted JSON text
        // would double its escapes at every level of nesting.
        Value::Map(_) => {
            r.skip_value()?;
            out.extend_from_slice(b"\"{map}\"");
        }
        Value::Array(_) => {
            r.skip_value()?;
            out.extend_from_slice(b"\"[array]\"");
        }
        // Scalars: their JSON text, quoted.
        _ => {
            let mut text = Vec::new();
            write_value(&mut text, r, depth + 1)?;
            write_json_str(out, &text);
        }
    }
    Ok(())
}

fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        serde_json::to_writer(&mut *out, &f).expect("Vec write");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends bytes as a JSON string, replacing invalid UTF-8 with U+FFFD.
pub fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    // Checking first is much faster than the lossy conversion's walk when it is valid, as
    // nearly every string is.
    let text = match std::str::from_utf8(s) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(s),
    };
    serde_json::to_writer(&mut *out, &*text).expect("Vec write");
}

/// Appends `{"name":"value",…}` from string pairs, in their order (labels, metadata).
pub fn write_string_map<'a>(
    out: &mut Vec<u8>,
    pairs: impl IntoIterator<Item = &'a (String, String)>,
) {
    out.push(b'{');
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, name.as_bytes());
        out.push(b':');
        write_json_str(out, value.as_bytes());
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryIter;

    #[test]
    fn string_pairs_are_a_json_object_in_their_order() {
        let pairs = [
            ("b".to_owned(), "x\"y".to_owned()),
            ("a".to_owned(), String::new()),
        ];
        let mut out = Vec::new();
        write_string_map(&mut out, &pairs);
        assert_eq!(out, br#"{"b":"x\"y","a":""}"#);
        out.clear();
        write_string_map(&mut out, &[]);
        assert_eq!(out, b"{}");
    }

    #[test]
    fn renders_a_docker_driver_record() {
        let mut rec = Vec::new();
        rmp::encode::write_map_len(&mut rec, 5).unwrap();
        rmp::encode::write_str(&mut rec, "log").unwrap();
        rmp::encode::write_str(&mut rec, "GET / \"200\"\n").unwrap();
        rmp::encode::write_str(&mut rec, "n").unwrap();
        rmp::encode::write_sint(&mut rec, -3).unwrap();
        rmp::encode::write_str(&mut rec, "f").unwrap();
        rmp::encode::write_f64(&mut rec, 1.5).unwrap();
        rmp::encode::write_str(&mut rec, "b").unwrap();
        rmp::encode::write_bin(&mut rec, &[0xff, b'a']).unwrap();
        rmp::encode::write_uint(&mut rec, 7).unwrap();
        rmp::encode::write_array_len(&mut rec, 2).unwrap();
        rmp::encode::write_nil(&mut rec).unwrap();
        rmp::encode::write_bool(&mut rec, true).unwrap();
        let mut stream = Vec::new();
        crate::entry::write_entry(&mut stream, EventTime::new(1_700_000_000, 123), &rec);
        let entry = EntryIter::new(&stream).next().unwrap().unwrap();
        let mut out = Vec::new();
        write_event_line(&mut out, "docker.web", &entry).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "{\"tag\":\"docker.web\",\"time\":\"2023-11-14T22:13:20.000000123Z\",\"record\":\
             {\"log\":\"GET / \\\"200\\\"\\n\",\"n\":-3,\"f\":1.5,\"b\":\"\u{fffd}a\",\"7\":[null,true]}}\n"
        );
    }

    #[test]
    fn map_keys_nested_in_map_keys_stay_small() {
        // {{{...{"a": nil}: nil...}: nil}: nil}, 41 levels: a fuzzer-found exponential blow-up.
        let mut rec = vec![0x81; 41];
        rec.extend_from_slice(&[0xa1, b'a']);
        rec.extend(std::iter::repeat_n(0xc0, 41));
        let mut stream = Vec::new();
        crate::entry::write_entry(&mut stream, EventTime::new(1, 0), &rec);
        let entry = EntryIter::new(&stream).next().unwrap().unwrap();
        let mut out = Vec::new();
        write_event_line(&mut out, "t", &entry).unwrap();
        assert!(
            out.ends_with(b"\"record\":{\"{map}\":null}}\n"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}
