//! Feeds arbitrary push bodies to the Loki decoder, and what decodes to the events mapping.
//!
//! Input layout: `byte0 & 0x03` picks how the rest becomes the body:
//! - 0: a JSON body as it is;
//! - 1: a protobuf body, snappy-compressed here so that the input reaches the protobuf decoder;
//! - 2: a protobuf body whose snappy block is the input itself (the snappy decoder's limits);
//! - 3: a JSON body, gzip-compressed here (`Content-Encoding: gzip`).
//!
//! Beyond "no panic": every time fits an `EventTime` on the wire, the events are valid entries,
//! as many as the decoded entries, in batches that hold them all, and each renders as JSON.

#![no_main]

use std::io::Write;

use flumen_codec::loki::{Limits, PushBody, decode_push, push_events};
use flumen_event::json::write_event_line;
use flumen_event::{EntryIter, EventTime};
use libfuzzer_sys::fuzz_target;

const NOW: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (content_type, content_encoding, body) = match selector & 0x03 {
        0 => ("application/json", None, rest.to_vec()),
        1 => (
            "application/x-protobuf",
            None,
            snap::raw::Encoder::new()
                .compress_vec(rest)
                .expect("snappy compresses anything"),
        ),
        2 => ("application/x-protobuf", None, rest.to_vec()),
        _ => {
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gzip.write_all(rest).expect("in memory");
            (
                "application/json",
                Some("gzip"),
                gzip.finish().expect("in memory"),
            )
        }
    };
    let limits = Limits::for_body_size(1 << 20);
    let push = PushBody {
        content_type: Some(content_type),
        content_encoding,
        body: &body,
    };
    let Ok(streams) = decode_push(&push, &limits, NOW) else {
        return;
    };
    let mut expected = 0u32;
    for stream in &streams {
        for entry in &stream.entries {
            assert!(entry.time.secs <= u64::from(u32::MAX), "a time past 2106");
            assert!(
                entry.time.nanos < 1_000_000_000,
                "nanoseconds past a second"
            );
            expected += 1;
        }
    }
    let Ok(groups) = push_events(&streams, &limits, |_| "loki".to_owned(), |_| {}) else {
        return;
    };
    let mut count = 0u32;
    let mut line = Vec::new();
    for group in &groups {
        let batched: u32 = group.events.batches().map(|(n, _)| n).sum();
        assert_eq!(batched, group.events.count, "the batches hold every event");
        for entry in EntryIter::new(&group.events.entries) {
            let entry = entry.expect("push_events writes valid entries");
            line.clear();
            write_event_line(&mut line, &group.tag, &entry).expect("an event renders as JSON");
            count += 1;
        }
    }
    assert_eq!(count, expected, "one event per entry");
});
