//! Feeds arbitrary bytes to the Forward decoder the way a connection does: decode the frame at
//! the start of the buffer, advance by the bytes it used, stop when it needs more bytes or
//! refuses the stream. Every frame's entries are walked and rendered as JSON lines.
//!
//! Beyond "no panic", it checks what callers rely on:
//! - `used` is at least 1 and at most the buffer's length;
//! - a frame cut one byte short is "need more bytes", never an error;
//! - a frame's entries are valid, there are `count` of them, and each renders as JSON.

#![no_main]

use flumen_codec::forward::{Decoded, Limits, decode_frame};
use flumen_event::EntryIter;
use flumen_event::json::write_event_line;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let mut line = Vec::new();
    while let Ok(Some((decoded, used))) = decode_frame(buf, &LIMITS) {
        assert!(
            used > 0 && used <= buf.len(),
            "used {used} of {}",
            buf.len()
        );
        assert!(
            matches!(decode_frame(&buf[..used - 1], &LIMITS), Ok(None)),
            "a frame cut one byte short must ask for more bytes"
        );
        if let Decoded::Frame(frame) = decoded {
            let mut count = 0u32;
            for entry in EntryIter::new(&frame.entries) {
                let entry = entry.expect("decode_frame returns validated entries");
                line.clear();
                write_event_line(&mut line, frame.tag, &entry)
                    .expect("a validated record renders as JSON");
                count += 1;
            }
            assert_eq!(count, frame.count, "entry count");
        }
        buf = &buf[used..];
    }
});
