use super::*;
use flumen_event::EntryIter;

fn record(msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, 1).unwrap();
    rmp::encode::write_str(&mut out, "log").unwrap();
    rmp::encode::write_str(&mut out, msg).unwrap();
    out
}

fn entries(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        write_entry(
            &mut out,
            EventTime::new(1_700_000_000 + i as u64, i as u32),
            &record(&format!("line {i}")),
        );
    }
    out
}

fn decode(buf: &[u8]) -> (ForwardFrame<'_>, usize) {
    match decode_frame(buf, &Limits::default()).unwrap().unwrap() {
        (Decoded::Frame(f), used) => (f, used),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn message_mode_with_ack() {
    let mut buf = Vec::new();
    write_message(
        &mut buf,
        "app",
        EventTime::new(5, 6),
        &record("hi"),
        Some("c1"),
    );
    let (frame, used) = decode(&buf);
    assert_eq!(used, buf.len());
    assert_eq!(frame.mode, Mode::Message);
    assert_eq!(frame.tag, "app");
    assert_eq!(frame.count, 1);
    assert_eq!(frame.chunk, Some(&b"c1"[..]));
    let e = EntryIter::new(&frame.entries).next().unwrap().unwrap();
    assert_eq!(e.time, EventTime::new(5, 6));
    assert_eq!(e.record, record("hi").as_slice());
}

#[test]
fn forward_mode_borrows_entries() {
    let body = entries(3);
    let mut buf = vec![0x92];
    rmp::encode::write_str(&mut buf, "fw").unwrap();
    rmp::encode::write_array_len(&mut buf, 3).unwrap();
    buf.extend_from_slice(&body);
    let (frame, _) = decode(&buf);
    assert_eq!(frame.mode, Mode::Forward);
    assert_eq!(frame.count, 3);
    assert!(matches!(frame.entries, Cow::Borrowed(_)));
    assert_eq!(&*frame.entries, body.as_slice());
}

#[test]
fn packed_forward_as_bin_and_as_str() {
    let body = entries(4);
    let mut as_bin = Vec::new();
    encode_packed_forward(&mut as_bin, "pk", &body, 4, Some("id"), Compression::None);
    let (frame, _) = decode(&as_bin);
    assert_eq!(
        (frame.mode, frame.count, frame.chunk),
        (Mode::PackedForward, 4, Some(&b"id"[..]))
    );

    let mut as_str = vec![0x92];
    rmp::encode::write_str(&mut as_str, "pk").unwrap();
    rmp::encode::write_str_len(&mut as_str, body.len() as u32).unwrap();
    as_str.extend_from_slice(&body);
    let (frame, _) = decode(&as_str);
    assert_eq!(frame.count, 4);
    assert_eq!(&*frame.entries, body.as_slice());
}

#[test]
fn compressed_packed_forward_with_several_gzip_members() {
    use std::io::Write;
    let body = entries(6);
    let mut packed = Vec::new();
    for half in [&body[..body.len() / 2], &body[body.len() / 2..]] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(half).unwrap();
        packed.extend_from_slice(&gz.finish().unwrap());
    }
    // The split may fall inside an entry: members are joined before entries are read.
    let mut buf = vec![0x93];
    rmp::encode::write_str(&mut buf, "gz").unwrap();
    rmp::encode::write_bin(&mut buf, &packed).unwrap();
    rmp::encode::write_map_len(&mut buf, 1).unwrap();
    rmp::encode::write_str(&mut buf, "compressed").unwrap();
    rmp::encode::write_str(&mut buf, "gzip").unwrap();
    let (frame, _) = decode(&buf);
    assert_eq!(frame.mode, Mode::CompressedPackedForward);
    assert_eq!(frame.count, 6);
    assert_eq!(&*frame.entries, body.as_slice());
}

#[test]
fn compressed_text_and_unknown_options_are_plain() {
    let body = entries(1);
    let mut buf = vec![0x93];
    rmp::encode::write_str(&mut buf, "t").unwrap();
    rmp::encode::write_bin(&mut buf, &body).unwrap();
    rmp::encode::write_map_len(&mut buf, 3).unwrap();
    rmp::encode::write_str(&mut buf, "compressed").unwrap();
    rmp::encode::write_str(&mut buf, "text").unwrap();
    rmp::encode::write_str(&mut buf, "size").unwrap();
    rmp::encode::write_uint(&mut buf, 99).unwrap();
    rmp::encode::write_str(&mut buf, "fluent_signal").unwrap();
    rmp::encode::write_array_len(&mut buf, 0).unwrap();
    let (frame, _) = decode(&buf);
    assert_eq!((frame.mode, frame.count), (Mode::PackedForward, 1));
}

#[test]
fn heartbeat_and_incomplete() {
    assert_eq!(
        decode_frame(&[0xc0], &Limits::default()).unwrap(),
        Some((Decoded::Heartbeat, 1))
    );
    let mut buf = Vec::new();
    encode_packed_forward(&mut buf, "pk", &entries(2), 2, None, Compression::None);
    for cut in 0..buf.len() {
        assert_eq!(
            decode_frame(&buf[..cut], &Limits::default()).unwrap(),
            None,
            "cut {cut}"
        );
    }
}

#[test]
fn two_frames_in_one_buffer() {
    let mut buf = Vec::new();
    write_message(&mut buf, "a", EventTime::new(1, 0), &record("1"), None);
    let first = buf.len();
    write_message(&mut buf, "b", EventTime::new(2, 0), &record("2"), None);
    let (frame, used) = decode(&buf);
    assert_eq!((frame.tag, used), ("a", first));
    let (frame, _) = decode(&buf[used..]);
    assert_eq!(frame.tag, "b");
}

#[test]
fn oversized_frames_are_refused_before_they_complete() {
    let limits = Limits {
        max_frame_size: 1024,
    };
    let mut buf = Vec::new();
    encode_packed_forward(&mut buf, "big", &entries(100), 100, None, Compression::None);
    let err = decode_frame(&buf[..2000], &limits).unwrap_err();
    assert!(matches!(err, ForwardError::FrameTooLarge { .. }), "{err}");
    assert!(matches!(
        decode_frame(&buf, &limits).unwrap_err(),
        ForwardError::FrameTooLarge { .. }
    ));
}

#[test]
fn gzip_bomb_is_refused() {
    use std::io::Write;
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).unwrap();
    let bomb = gz.finish().unwrap();
    let mut buf = vec![0x93];
    rmp::encode::write_str(&mut buf, "bomb").unwrap();
    rmp::encode::write_bin(&mut buf, &bomb).unwrap();
    rmp::encode::write_map_len(&mut buf, 1).unwrap();
    rmp::encode::write_str(&mut buf, "compressed").unwrap();
    rmp::encode::write_str(&mut buf, "gzip").unwrap();
    let limits = Limits {
        max_frame_size: 1024 * 1024,
    };
    assert_eq!(
        decode_frame(&buf, &limits).unwrap_err(),
        ForwardError::InflatedTooLarge { limit: 1024 * 1024 }
    );
}

#[test]
fn malformed_frames_say_why() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x01], "a frame must be an array"),
        (&[0x91, 0xa1, b't'], "2 to 4 elements"),
        (&[0x92, 0x01, 0x90], "the tag must be a string"),
        (&[0x93, 0xa1, b't', 0x01, 0x01], "expected a map"),
        (
            &[0x92, 0xa1, b't', 0xc4, 0x02, 0x92, 0x01],
            "truncated entry",
        ),
        (&[0xc1], "reserved msgpack marker"),
    ];
    for (bytes, expected) in cases {
        let err = decode_frame(bytes, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{bytes:x?}: {err}");
    }
}

#[test]
fn ack_round_trip() {
    let mut buf = Vec::new();
    encode_ack(b"Y2h1bmstMQ==", &mut buf);
    assert_eq!(
        decode_ack(&buf).unwrap(),
        Some((&b"Y2h1bmstMQ=="[..], buf.len()))
    );
    assert_eq!(decode_ack(&buf[..3]).unwrap(), None);
}

/// A Forward-mode frame `[tag, [entries...], {"chunk": id}]` of `n` entries.
fn forward_mode_frame(tag: &str, n: usize, chunk: &str) -> Vec<u8> {
    let mut buf = vec![0x93];
    rmp::encode::write_str(&mut buf, tag).unwrap();
    rmp::encode::write_array_len(&mut buf, n as u32).unwrap();
    buf.extend_from_slice(&entries(n));
    rmp::encode::write_map_len(&mut buf, 1).unwrap();
    rmp::encode::write_str(&mut buf, "chunk").unwrap();
    rmp::encode::write_str(&mut buf, chunk).unwrap();
    buf
}

#[test]
fn frames_that_arrive_in_pieces_decode_as_when_whole() {
    let mut stream = forward_mode_frame("fw", 20, "c1");
    stream.push(0xc0);
    write_message(
        &mut stream,
        "msg",
        EventTime::new(7, 8),
        &record("hi"),
        Some("c2"),
    );
    encode_packed_forward(
        &mut stream,
        "pk",
        &entries(5),
        5,
        Some("c3"),
        Compression::Gzip,
    );
    let mut whole = Vec::new();
    let mut rest = &stream[..];
    while let Some((decoded, used)) = decode_frame(rest, &Limits::default()).unwrap() {
        whole.push(decoded);
        rest = &rest[used..];
    }
    assert_eq!(whole.len(), 4);
    for piece in 1..=9 {
        // As a connection does: read a piece, decode every whole frame, advance past it.
        let mut decoder = FrameDecoder::new(Limits::default());
        let (mut start, mut received, mut seen) = (0, 0, Vec::new());
        while received < stream.len() {
            received = (received + piece).min(stream.len());
            while let Some((decoded, used)) = decoder.decode(&stream[start..received]).unwrap() {
                seen.push(decoded);
                start += used;
            }
        }
        assert_eq!(seen, whole, "pieces of {piece} bytes");
    }
}

#[test]
fn a_partial_frame_is_not_scanned_again_from_the_start() {
    let frame = forward_mode_frame("fw", 1000, "c1");
    let half = frame.len() / 2;
    let mut decoder = FrameDecoder::new(Limits::default());
    assert_eq!(decoder.decode(&frame[..half]).unwrap(), None);
    // Bytes already scanned (all but the last, partial entry) are not looked at again: were
    // they, this buffer would read as a one-byte value (a zero) and be refused as a frame.
    let mut blanked = frame.clone();
    blanked[..half - 1000].fill(0);
    assert_eq!(decoder.decode(&blanked[..frame.len() - 1]).unwrap(), None);
    let (decoded, used) = decoder.decode(&frame).unwrap().unwrap();
    assert_eq!(used, frame.len());
    assert!(matches!(decoded, Decoded::Frame(f) if f.count == 1000));
}
