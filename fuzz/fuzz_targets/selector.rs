//! Feeds arbitrary text to the selector language (`flumen_select::Selector::parse`) and matches
//! what parses against records.
//!
//! Input layout: the bytes before the first `0x00` are the selector (lossy UTF-8); the bytes
//! after it describe a second record (lossy UTF-8): its first line is the event's tag, every
//! further line `name=value` is a field (a value reading as an integer, a float, `true`,
//! `false` or `null` becomes that; anything else a string; a name with dots becomes nested
//! maps; a line without `=` is a field of that name holding `true`). Without a `0x00` the whole
//! input is the selector and only the fixed record is used.
//!
//! Beyond "no panic":
//! - an error's position is within the text;
//! - a selector that parses displays as its source text, that text parses again, and the
//!   second selector displays the same, has the same stream matchers and matches the same
//!   events (round trip);
//! - on the fixed record and on the record from the input: `matches` is false whenever one of
//!   the stream matchers fails on its field's text (`Matcher::matches_text`, a missing field
//!   being `""` and `tag` falling back to the event's tag), `{}` (`is_match_all`) matches
//!   everything, and `line_of` does not panic.

#![no_main]

use std::borrow::Cow;

use flumen_event::record::{Record, Value};
use flumen_select::{Selector, line_of};
use libfuzzer_sys::fuzz_target;

/// The fixed record: the crate documentation's example plus nested and typed fields.
fn fixed_record() -> Record {
    Record::from(vec![
        ("service".to_owned(), Value::from("api")),
        ("level".to_owned(), Value::from("ERROR")),
        ("status".to_owned(), Value::from("503")),
        (
            "message".to_owned(),
            Value::from("upstream timeout after 30s for user=42"),
        ),
        ("latency_ms".to_owned(), Value::UInt(1234)),
        ("delta".to_owned(), Value::Int(-3)),
        ("ratio".to_owned(), Value::Float(0.25)),
        ("ok".to_owned(), Value::Bool(false)),
        ("none".to_owned(), Value::Null),
        ("raw".to_owned(), Value::Bin(b"a\xffb".to_vec())),
        (
            "kubernetes".to_owned(),
            Value::Map(vec![
                (
                    "labels".to_owned(),
                    Value::Map(vec![("app".to_owned(), Value::from("web"))]),
                ),
                ("namespace".to_owned(), Value::from("prod")),
            ]),
        ),
        ("kubernetes.labels.app".to_owned(), Value::from("literal")),
        (
            "tags".to_owned(),
            Value::Array(vec![Value::from("a"), Value::UInt(1)]),
        ),
    ])
}

fn typed(text: &str) -> Value {
    if let Ok(n) = text.parse::<u64>() {
        Value::UInt(n)
    } else if let Ok(n) = text.parse::<i64>() {
        Value::Int(n)
    } else if let Ok(f) = text.parse::<f64>() {
        Value::Float(f)
    } else {
        match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => Value::from(text),
        }
    }
}

/// Sets `path` (split at dots) in `pairs`, creating (or replacing non-map values by) maps on
/// the way.
fn set_path(pairs: &mut Vec<(String, Value)>, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let index = match pairs.iter().position(|(k, _)| k == first) {
        Some(i) => i,
        None => {
            pairs.push(((*first).to_owned(), Value::Null));
            pairs.len() - 1
        }
    };
    let slot = &mut pairs[index].1;
    if rest.is_empty() {
        *slot = value;
        return;
    }
    if !matches!(slot, Value::Map(_)) {
        *slot = Value::Map(Vec::new());
    }
    if let Value::Map(inner) = slot {
        set_path(inner, rest, value);
    }
}

/// The tag and record described by `text` (see the module documentation).
fn record_from(text: &str) -> (String, Record) {
    let mut lines = text.split('\n');
    let tag = lines.next().unwrap_or("").to_owned();
    let mut pairs = Vec::new();
    for line in lines.take(64) {
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, typed(value)),
            None => (line, Value::Bool(true)),
        };
        let path: Vec<&str> = name.split('.').take(8).collect();
        set_path(&mut pairs, &path, value);
    }
    (tag, Record::from(pairs))
}

/// The text a matcher on `name` tests (as the crate documents it).
fn field_text<'r>(name: &str, tag: &'r str, record: &'r Record) -> Cow<'r, str> {
    let value = if name == "tag" {
        record.get(name)
    } else {
        record.get_path(name)
    };
    match value {
        Some(value) => value.to_text(),
        None if name == "tag" => Cow::Borrowed(tag),
        None => Cow::Borrowed(""),
    }
}

fn check_matches(selector: &Selector, again: &Selector, tag: &str, record: &Record) {
    let _ = line_of(record);
    let matched = selector.matches(tag, record);
    assert_eq!(
        matched,
        again.matches(tag, record),
        "the re-parsed selector matches differently on {tag:?} {record:?}"
    );
    if selector.is_match_all() {
        assert!(matched, "{{}} matches every event");
    }
    if matched {
        for matcher in selector.stream_matchers() {
            let text = field_text(matcher.name(), tag, record);
            assert!(
                matcher.matches_text(&text),
                "matches() is true, yet the stream matcher {} {} {:?} fails on {text:?}",
                matcher.name(),
                matcher.op(),
                matcher.value()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(source);
    let selector = match Selector::parse(&text) {
        Ok(selector) => selector,
        Err(error) => {
            assert!(
                error.position <= text.len(),
                "error position {} past the text's {} bytes",
                error.position,
                text.len()
            );
            let _ = error.to_string();
            return;
        }
    };

    let shown = selector.to_string();
    assert_eq!(shown, text, "Display is the source text");
    assert_eq!(selector.as_str(), text);
    let again = Selector::parse(&shown)
        .unwrap_or_else(|e| panic!("{shown:?} parsed once but not from its Display: {e}"));
    assert_eq!(
        again.to_string(),
        shown,
        "Display of the re-parsed selector"
    );
    let matchers = |s: &Selector| -> Vec<(String, String, String)> {
        s.stream_matchers()
            .iter()
            .map(|m| {
                (
                    m.name().to_owned(),
                    m.op().to_string(),
                    m.value().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(matchers(&selector), matchers(&again), "stream matchers");
    assert_eq!(selector.is_match_all(), again.is_match_all());

    check_matches(&selector, &again, "docker.api", &fixed_record());
    check_matches(&selector, &again, "", &Record::new());
    if let Some(rest) = rest {
        let (tag, record) = record_from(&String::from_utf8_lossy(rest));
        check_matches(&selector, &again, &tag, &record);
    }
});
