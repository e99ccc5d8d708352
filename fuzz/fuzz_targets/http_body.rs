//! Feeds arbitrary requests to the `in_http` body decoder.
//!
//! Input layout: byte 0 selects the request's shape, the rest is split at the first `\n`.
//! - `byte0 & 0x0f` picks the `Content-Type` from [`CONTENT_TYPES`];
//! - `byte0 & 0x10` set: the bytes before the first `\n` are the query string (lossy UTF-8) and
//!   the bytes after it are the body; clear: no query, everything after byte 0 is the body.
//!
//! Beyond "no panic", a decoded request's entries must be valid, `count` of them, and each must
//! render as a JSON line.

#![no_main]

use flumen_codec::http::{HttpRequest, decode_request};
use flumen_event::json::write_event_line;
use flumen_event::{EntryIter, EventTime};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 16] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/json"),
    Some("application/vnd.api+json"),
    Some("application/x-ndjson"),
    Some("application/ndjson"),
    Some("application/jsonl"),
    Some("application/x-jsonlines"),
    Some("application/msgpack"),
    Some("application/x-msgpack"),
    Some("application/vnd.msgpack"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/X-WWW-Form-Urlencoded ; charset=UTF-8"),
    Some("text/plain"),
    Some(""),
];

const NOW: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector & 0x0f)];
    let (query, body) = if selector & 0x10 != 0 {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(String::from_utf8_lossy(&rest[..i])), &rest[i + 1..]),
            None => (Some(String::from_utf8_lossy(rest)), &b""[..]),
        }
    } else {
        (None, rest)
    };
    let request = HttpRequest {
        content_type,
        query: query.as_deref(),
        body,
    };
    let Ok(events) = decode_request(&request, NOW) else {
        return;
    };
    let mut count = 0u32;
    let mut line = Vec::new();
    for entry in EntryIter::new(&events.entries) {
        let entry = entry.expect("decode_request returns valid entries");
        line.clear();
        write_event_line(&mut line, "http.fuzz", &entry).expect("a decoded record renders as JSON");
        count += 1;
    }
    assert_eq!(count, events.count, "entry count");
});
