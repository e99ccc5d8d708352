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

#[path = "../shared/http_input.rs"]
mod http_input;

const NOW: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

fuzz_target!(|data: &[u8]| {
    let Some(input) = http_input::split(data) else {
        return;
    };
    let request = HttpRequest {
        content_type: input.content_type,
        query: input.query.as_deref(),
        body: input.body,
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
