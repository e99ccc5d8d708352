//! Feeds arbitrary lines to the parse step (`flumen_parse::Parser::apply`), in every format,
//! and the same text to the syslog parser and the time parsers directly.
//!
//! Input layout (`shared/parse_input.rs`): byte 0 picks the format (`byte0 & 0x0f`, modulo 11;
//! `regex` is Fluent Bit's `apache` pattern), `keep_original` (`0x10`) and
//! `target = "parsed"` (`0x20`); the rest is the line, put in the event's `log` field as a
//! `Str` when it is UTF-8 and as a `Bin` otherwise.
//!
//! Beyond "no panic", it checks the crate's "nothing is dropped" contract:
//! - on `Err(reason)`, the record has `parse_error` = `reason`, and either the record is the
//!   original one plus `parse_error` (the line did not parse: `log` and everything else kept as
//!   they were, event time unchanged), or the line did parse and the only failures are the
//!   documented post-parse ones — `line is not UTF-8; replaced` and/or a time field matching no
//!   format (then the event time is unchanged); with `keep_original` and a `target`, `log` is
//!   then still the original value;
//! - a line that is not UTF-8 is never `Ok`;
//! - on `Ok` with `keep_original` and a `target`, `log` is the original value;
//! - either way, the record survives `write_msgpack` + `Record::decode` (see
//!   `shared/values.rs` for what "the same" means).
//!
//! On the text of the line (lossy UTF-8): `syslog::parse_line` returns parts that are slices
//! of the line (or empty), a facility ≤ 23 and a severity ≤ 7, and its fields and time do not panic;
//! `TimeParser::parse` with `rfc3339`, `epoch`, `clf` and `%Y-%m-%d %H:%M:%S` (alone and as one
//! list, which must give the first alone-result) returns times an `EventTime` can carry on the
//! wire (seconds ≤ u32::MAX, nanoseconds < 10⁹), and `parse_value` of the text agrees.

#![no_main]

use std::sync::OnceLock;

use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::{NOT_UTF8, PARSE_ERROR_FIELD, Parser, TimeParser, syslog};
use libfuzzer_sys::fuzz_target;

#[path = "../shared/parse_input.rs"]
mod parse_input;
#[path = "../shared/values.rs"]
mod values;

use parse_input::{PARSERS, parser_config};
use values::{reencode, same_record};

const T0: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

/// The time formats tried one by one, then as one list.
const TIME_FORMATS: [&str; 4] = ["rfc3339", "epoch", "clf", "%Y-%m-%d %H:%M:%S"];

struct Parsers {
    steps: Vec<Parser>,
    times: Vec<TimeParser>,
    all_times: TimeParser,
    /// `clf` and the strftime pattern with a zone for zone-less times.
    zoned: TimeParser,
}

fn parsers() -> &'static Parsers {
    static PARSERS_CELL: OnceLock<Parsers> = OnceLock::new();
    PARSERS_CELL.get_or_init(|| {
        let steps = (0..PARSERS)
            .map(|i| {
                let config = parser_config(i);
                Parser::new(&config).unwrap_or_else(|e| panic!("{config:?}: {e}"))
            })
            .collect();
        let names: Vec<String> = TIME_FORMATS.iter().map(|s| (*s).to_owned()).collect();
        let times = names
            .iter()
            .map(|n| TimeParser::new(std::slice::from_ref(n), None).expect("valid format"))
            .collect();
        let all_times = TimeParser::new(&names, None).expect("valid formats");
        let zoned = TimeParser::new(&names, Some("-05:30")).expect("valid formats and zone");
        Parsers {
            steps,
            times,
            all_times,
            zoned,
        }
    })
}

/// The record of an event whose line is `line`.
fn record_of(line: Value) -> Record {
    Record::from(vec![
        ("container_id".to_owned(), Value::from("c0ffee")),
        ("log".to_owned(), line),
        ("source".to_owned(), Value::from("stdout")),
    ])
}

/// `record` without its `parse_error` field.
fn without_parse_error(record: &Record) -> Record {
    let mut record = record.clone();
    record.remove(PARSE_ERROR_FIELD);
    record
}

/// A reason made only of the failures that follow a successful parse: `NOT_UTF8`, a time that
/// matches no format, or both (in that order, joined with `"; "`). Returns whether it names a
/// time failure, or `None` when the reason is something else.
fn post_parse_reason(reason: &str) -> Option<bool> {
    let rest = match reason.strip_prefix(NOT_UTF8) {
        Some("") => return Some(false),
        Some(rest) => rest.strip_prefix("; ")?,
        None => reason,
    };
    rest.starts_with("time ").then_some(true)
}

fn check_time(t: EventTime, what: &str, text: &str) {
    assert!(
        t.secs <= u64::from(u32::MAX) && t.nanos < 1_000_000_000,
        "{what} read {text:?} as {}.{:09}, which an EventTime cannot carry",
        t.secs,
        t.nanos
    );
}

fn check_syslog(line: &str) {
    let Ok(message) = syslog::parse_line(line) else {
        return;
    };
    let range = line.as_bytes().as_ptr_range();
    // An empty part may be a literal `""`: it holds nothing, wherever it points.
    let inside = |part: &str| {
        let p = part.as_bytes().as_ptr_range();
        part.is_empty() || (range.start <= p.start && p.end <= range.end)
    };
    for part in [
        message.timestamp,
        message.hostname,
        message.app_name,
        message.proc_id,
        message.msg_id,
        Some(message.message),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            inside(part),
            "syslog part {part:?} is not a slice of the line"
        );
    }
    for element in &message.structured_data {
        assert!(inside(element.id), "SD-ID {:?} is not a slice", element.id);
    }
    if let Some(f) = message.facility {
        assert!(f <= 23, "facility {f}");
    }
    if let Some(s) = message.severity {
        assert!(s <= 7, "severity {s}");
    }
    assert_eq!(
        message.facility.is_some(),
        line.starts_with('<'),
        "a PRI is read exactly when the line starts with '<'"
    );
    if let Some(t) = message.time(0) {
        check_time(t, "syslog time", message.timestamp.unwrap_or(""));
    }
    let _ = message.level();
    let fields = message.into_fields();
    assert!(
        fields.iter().any(|(k, _)| k == "message"),
        "syslog fields always have a message"
    );
}

fn check_times(p: &Parsers, text: &str) {
    let alone: Vec<Option<EventTime>> = p.times.iter().map(|t| t.parse(text)).collect();
    for (t, name) in alone.iter().zip(TIME_FORMATS) {
        if let Some(t) = t {
            check_time(*t, name, text);
        }
    }
    let first = alone.iter().find_map(|t| *t);
    assert_eq!(
        p.all_times.parse(text),
        first,
        "a list of formats gives the first format's result"
    );
    assert_eq!(
        p.all_times.parse_value(&Value::from(text)),
        first,
        "parse_value of a string is parse"
    );
    if let Some(t) = p.zoned.parse(text) {
        check_time(t, "formats with a timezone", text);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((index, line)) = parse_input::split(data) else {
        return;
    };
    let p = parsers();
    let parser = &p.steps[index];
    let config = parser_config(index);
    let with_target = config.target.is_some();
    let not_utf8 = matches!(line, Value::Bin(_));

    let original = Event {
        time: T0,
        record: record_of(line.clone()),
        metadata: None,
    };
    let mut event = original.clone();
    let result = parser.apply(&mut event);
    assert_eq!(event.metadata, original.metadata, "metadata is not touched");

    match &result {
        Err(reason) => {
            assert_eq!(
                event.record.get(PARSE_ERROR_FIELD),
                Some(&Value::from(reason.as_str())),
                "parse_error holds the reason returned"
            );
            let unparsed = without_parse_error(&event.record) == original.record;
            if unparsed {
                assert_eq!(event.time, T0, "a line that did not parse sets no time");
            } else {
                // The line parsed; only the documented post-parse failures may remain.
                let time_failed = post_parse_reason(reason).unwrap_or_else(|| {
                    panic!(
                        "the record changed, yet the reason {reason:?} is not a post-parse \
                         failure: a line that does not parse must stay as it was\n\
                         before: {:?}\nafter: {:?}",
                        original.record, event.record
                    )
                });
                if time_failed {
                    assert_eq!(event.time, T0, "a time that matches no format is not used");
                }
                if config.keep_original && with_target {
                    assert_eq!(
                        event.record.get("log"),
                        Some(&line),
                        "keep_original keeps the line"
                    );
                }
            }
        }
        Ok(()) => {
            assert!(!not_utf8, "a line that is not UTF-8 is always marked");
            if config.keep_original && with_target {
                assert_eq!(
                    event.record.get("log"),
                    Some(&line),
                    "keep_original keeps the line"
                );
            }
        }
    }

    let again = reencode(&event.record);
    assert!(
        same_record(&event.record, &again),
        "the record changed through msgpack\nbefore: {:?}\nafter: {:?}",
        event.record,
        again
    );

    let text = String::from_utf8_lossy(&data[1..]);
    check_syslog(&text);
    check_times(p, &text);
});
