//! Feeds arbitrary bytes to `flumen_event::record::Record::decode`.
//!
//! Beyond "no panic": a record that decodes is written back with `Record::write_msgpack`, and
//! that encoding decodes to the same record (see `shared/values.rs` for "the same": a
//! non-negative `Int` equals the `UInt` of the same number, floats compare bit for bit) and
//! re-encodes to the same bytes. The decoded form is thus a fixed point: whatever decoding
//! normalises (strings that are not UTF-8 to `Bin`, non-string keys to text, nesting past
//! `MAX_DEPTH` to `Null`) is normalised once, and nothing more is lost on the way back.
//! The text renderings (`to_json`, `Value::to_text`) of the decoded record must not panic.

#![no_main]

use flumen_event::record::Record;
use libfuzzer_sys::fuzz_target;

#[path = "../shared/values.rs"]
mod values;

use values::{reencode, same_record};

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(data) else {
        return;
    };
    let again = reencode(&record);
    assert!(
        same_record(&record, &again),
        "the decoded record changed through msgpack\nfirst: {record:?}\nagain: {again:?}"
    );
    let (mut bytes, mut bytes_again) = (Vec::new(), Vec::new());
    record.write_msgpack(&mut bytes);
    again.write_msgpack(&mut bytes_again);
    assert_eq!(bytes, bytes_again, "re-encoding is stable");

    let _ = record.to_json();
    for (_, value) in record.fields() {
        let _ = value.to_text();
    }
});
