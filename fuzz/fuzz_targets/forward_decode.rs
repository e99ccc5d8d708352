//! Feeds arbitrary bytes to the Forward decoder the way a connection does: decode the frame at
//! the start of the buffer, advance by the bytes it used, stop when it needs more bytes or
//! refuses the stream. Every frame's entries are walked and rendered as JSON lines.
//!
//! Beyond "no panic", it checks what callers rely on:
//! - `used` is at least 1 and at most the buffer's length;
//! - a `FrameDecoder` fed the bytes in pieces, as a connection reads them, (the piece size
//!   taken from the first byte) finds the same frames as `decode_frame` over the whole buffer,
//!   and refuses the stream exactly when it does: resuming a scan never changes its outcome
//!   (the reason may differ: pieces can pass the size limit before an invalid byte is seen);
//! - a frame cut one byte short is "need more bytes", never an error;
//! - a frame's entries are valid, there are `count` of them, and each renders as JSON;
//! - `Reader::skip_value` (which sizes items from their markers) consumes exactly the bytes that
//!   a reference walk with `Reader::read` consumes: over each entry's record and metadata (read
//!   from the record's start to the end of the entry stream, so that stopping early and running
//!   past the record both show), and over the raw input, where the two must also fail alike.

#![no_main]

use flumen_codec::forward::{Decoded, FrameDecoder, Limits, decode_frame};
use flumen_event::EntryIter;
use flumen_event::json::write_event_line;
use flumen_event::msgpack::{MsgpackError, Reader, Value};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_size: 1 << 20,
};

/// Bytes of the one value at the start of `bytes`, by `Reader::skip_value`.
fn skip_len(bytes: &[u8]) -> Result<usize, MsgpackError> {
    let mut r = Reader::new(bytes);
    let skipped = r.skip_value()?;
    assert_eq!(
        skipped.len(),
        r.position(),
        "skip_value's slice vs position"
    );
    assert_eq!(
        skipped.as_ptr(),
        bytes.as_ptr(),
        "skip_value's slice starts at the value"
    );
    Ok(r.position())
}

/// Bytes of the one value at the start of `bytes`, by the reference walk: `Reader::read` every
/// header and scalar, counting the items that arrays and maps announce.
fn reference_len(bytes: &[u8]) -> Result<usize, MsgpackError> {
    let mut r = Reader::new(bytes);
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        match r.read()? {
            Value::Array(n) => pending += u64::from(n),
            Value::Map(n) => pending += 2 * u64::from(n),
            _ => {}
        }
    }
    Ok(r.position())
}

/// `skip_value` and the reference walk agree on the value at the start of `bytes`.
fn check_skip(bytes: &[u8]) -> Result<usize, MsgpackError> {
    let skipped = skip_len(bytes);
    let walked = reference_len(bytes);
    assert_eq!(skipped, walked, "skip_value vs read walk");
    skipped
}

/// Where `part` (a sub-slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let offset = (part.as_ptr() as usize) - (whole.as_ptr() as usize);
    assert!(offset + part.len() <= whole.len(), "sub-slice out of range");
    offset
}

/// Every frame `decode_frame` finds in `data`, front to back, and how the walk ended.
fn whole_buffer_frames(data: &[u8]) -> (Vec<Decoded<'_>>, Result<(), ()>) {
    let mut frames = Vec::new();
    let mut buf = data;
    loop {
        match decode_frame(buf, &LIMITS) {
            Ok(Some((decoded, used))) => {
                frames.push(decoded);
                buf = &buf[used..];
            }
            Ok(None) => return (frames, Ok(())),
            Err(_) => return (frames, Err(())),
        }
    }
}

/// The same walk with one `FrameDecoder`, `data` arriving `piece` bytes at a time.
fn piecewise_frames(data: &[u8], piece: usize) -> (Vec<Decoded<'_>>, Result<(), ()>) {
    let mut decoder = FrameDecoder::new(LIMITS);
    let mut frames = Vec::new();
    let (mut start, mut received) = (0, 0);
    loop {
        match decoder.decode(&data[start..received]) {
            Ok(Some((decoded, used))) => {
                frames.push(decoded);
                start += used;
            }
            Ok(None) if received == data.len() => return (frames, Ok(())),
            Ok(None) => received = (received + piece).min(data.len()),
            Err(_) => return (frames, Err(())),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let piece = usize::from(data.first().copied().unwrap_or(1)).max(1);
    assert_eq!(
        piecewise_frames(data, piece),
        whole_buffer_frames(data),
        "pieces of {piece} bytes"
    );

    // Arbitrary bytes, errors included: both walks stop at the same byte for the same reason.
    let _ = check_skip(data);

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
            let entries: &[u8] = &frame.entries;
            let mut count = 0u32;
            for entry in EntryIter::new(entries) {
                let entry = entry.expect("decode_frame returns validated entries");
                for map in entry.metadata.into_iter().chain([entry.record]) {
                    let from = &entries[offset_in(entries, map)..];
                    assert_eq!(check_skip(from), Ok(map.len()), "validated map's length");
                }
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
