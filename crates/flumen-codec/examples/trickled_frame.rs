//! How long the Forward decoder takes over one large Forward-mode frame that arrives in small
//! pieces, decoding after every piece as a connection does after every read: the cost of a
//! slow sender's big frame.
//!
//! ```sh
//! cargo run --release -p flumen-codec --example trickled_frame -- 16 4096
//! cargo run --release -p flumen-codec --example trickled_frame -- 16 4096 rescan
//! ```
//!
//! Arguments: the frame's size in MiB (16), the piece size in bytes (4096), and `rescan` to
//! decode as connections did before they kept a [`FrameDecoder`]: the one-shot
//! [`decode_frame`] on the whole buffer after every piece. Results are recorded in
//! `docs/benchmarks.md`.

use std::time::Instant;

use flumen_codec::forward::{Decoded, FrameDecoder, Limits, decode_frame};

/// `[tag, [[time, {"n": i}], ...], {"chunk": ...}]` of about `size` bytes.
fn forward_frame(size: usize) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count = 0u32;
    while entries.len() + 64 < size {
        rmp::encode::write_array_len(&mut entries, 2).unwrap();
        rmp::encode::write_uint(&mut entries, 1_763_723_821).unwrap();
        rmp::encode::write_map_len(&mut entries, 1).unwrap();
        rmp::encode::write_str(&mut entries, "n").unwrap();
        rmp::encode::write_uint(&mut entries, u64::from(count)).unwrap();
        count += 1;
    }
    let mut frame = Vec::with_capacity(entries.len() + 64);
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, "trickle").unwrap();
    rmp::encode::write_array_len(&mut frame, count).unwrap();
    frame.extend_from_slice(&entries);
    rmp::encode::write_map_len(&mut frame, 1).unwrap();
    rmp::encode::write_str(&mut frame, "chunk").unwrap();
    rmp::encode::write_str(&mut frame, "c1").unwrap();
    frame
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(16, |a| a.parse().expect("size in MiB"));
    let piece: usize = args.next().map_or(4096, |a| a.parse().expect("piece size"));
    let rescan = args.next().as_deref() == Some("rescan");
    let frame = forward_frame(mib * 1024 * 1024);
    let limits = Limits {
        max_frame_size: frame.len(),
    };
    let mut decoder = FrameDecoder::new(limits);
    let started = Instant::now();
    let mut received = 0;
    let count = loop {
        received = (received + piece).min(frame.len());
        let decoded = if rescan {
            decode_frame(&frame[..received], &limits)
        } else {
            decoder.decode(&frame[..received])
        };
        match decoded.expect("a valid frame") {
            Some((Decoded::Frame(decoded), used)) => {
                assert_eq!(used, frame.len());
                break decoded.count;
            }
            Some((Decoded::Heartbeat, _)) => unreachable!("no heartbeat sent"),
            None => assert!(received < frame.len(), "a whole frame decodes"),
        }
    };
    let took = started.elapsed();
    println!(
        "{} bytes ({count} entries) in {piece}-byte pieces ({} decode calls): {:.3} s",
        frame.len(),
        frame.len().div_ceil(piece),
        took.as_secs_f64()
    );
}
