//! Writes the seed inputs of both fuzz targets to `fuzz/corpus_seeds/<target>/`.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! The seeds are committed; re-running this rewrites them byte for byte (nothing here depends
//! on the clock or on randomness). Each seed is checked to be accepted by the decoder, so that
//! the fuzzer starts from inputs that reach deep into it.

use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "../shared/http_input.rs"]
mod http_input;

use flumen_codec::forward::{
    Compression, Decoded, Limits, decode_frame, encode_packed_forward, write_message,
};
use flumen_codec::http::{HttpRequest, decode_request};
use flumen_event::EventTime;
use flumen_event::entry::write_entry;

const T0: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123_456_789,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus_seeds");
    forward_seeds(&root.join("forward_decode"));
    http_seeds(&root.join("http_body"));
}

fn save(dir: &Path, name: &str, bytes: &[u8]) {
    let check = match dir.file_name().and_then(|n| n.to_str()) {
        Some("forward_decode") => check_forward(bytes),
        Some("http_body") => check_http(bytes),
        other => panic!("unknown target {other:?}"),
    };
    std::fs::create_dir_all(dir).expect("create seed dir");
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).expect("write seed");
    println!("{:>6} bytes  {}  ({check})", bytes.len(), path.display());
}

/// Decodes frames as the fuzz target does; every seed must decode without an error.
fn check_forward(mut buf: &[u8]) -> String {
    let limits = Limits {
        max_frame_size: 1 << 20,
    };
    let (mut frames, mut events) = (0, 0);
    while let Some((decoded, used)) = decode_frame(buf, &limits).expect("seed must decode") {
        frames += 1;
        if let Decoded::Frame(frame) = decoded {
            events += frame.count;
        }
        buf = &buf[used..];
    }
    format!(
        "{frames} frames, {events} events, {} bytes left over",
        buf.len()
    )
}

/// Splits the input as the fuzz target does; every seed must decode.
fn check_http(data: &[u8]) -> String {
    let input = http_input::split(data).expect("non-empty seed");
    let request = HttpRequest {
        content_type: input.content_type,
        query: input.query.as_deref(),
        body: input.body,
    };
    let events = decode_request(&request, T0).expect("seed must decode");
    format!("{} events", events.count)
}

fn str_(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("Vec write");
}

/// A record like the Docker fluentd logging driver's.
fn docker_record(i: usize) -> Vec<u8> {
    let mut rec = Vec::new();
    rmp::encode::write_map_len(&mut rec, 4).expect("Vec write");
    str_(&mut rec, "container_id");
    str_(&mut rec, &format!("{i:064x}"));
    str_(&mut rec, "container_name");
    str_(&mut rec, "/web-1");
    str_(&mut rec, "source");
    str_(&mut rec, ["stdout", "stderr"][i % 2]);
    str_(&mut rec, "log");
    str_(
        &mut rec,
        &format!("10.0.0.{i} - - \"GET /api/v1/items/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8.5.0\""),
    );
    rec
}

/// A record with every msgpack type the JSON renderer handles.
fn rich_record() -> Vec<u8> {
    use rmp::encode as enc;
    let mut rec = Vec::new();
    enc::write_map_len(&mut rec, 10).expect("Vec write");
    str_(&mut rec, "nested");
    enc::write_array_len(&mut rec, 3).expect("Vec write");
    enc::write_nil(&mut rec).expect("Vec write");
    enc::write_bool(&mut rec, true).expect("Vec write");
    enc::write_map_len(&mut rec, 1).expect("Vec write");
    str_(&mut rec, "k");
    enc::write_sint(&mut rec, -70_000).expect("Vec write");
    str_(&mut rec, "f64");
    enc::write_f64(&mut rec, 1.5).expect("Vec write");
    str_(&mut rec, "nan");
    enc::write_f32(&mut rec, f32::NAN).expect("Vec write");
    str_(&mut rec, "bin");
    enc::write_bin(&mut rec, &[0xff, b'a', 0x00]).expect("Vec write");
    str_(&mut rec, "big");
    enc::write_u64(&mut rec, u64::MAX).expect("Vec write");
    str_(&mut rec, "time");
    T0.write_msgpack(&mut rec);
    str_(&mut rec, "ext");
    enc::write_ext_meta(&mut rec, 5, 3).expect("Vec write");
    rec.extend_from_slice(b"hello");
    // Non-string keys.
    enc::write_uint(&mut rec, 7).expect("Vec write");
    str_(&mut rec, "int key");
    enc::write_array_len(&mut rec, 1).expect("Vec write");
    enc::write_bool(&mut rec, false).expect("Vec write");
    str_(&mut rec, "array key");
    str_(&mut rec, "esc\"aped\n\u{1}é");
    enc::write_str_len(&mut rec, 2).expect("Vec write");
    rec.extend_from_slice(&[0xc3, 0x28]); // invalid UTF-8 in a str
    rec
}

fn entries(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        write_entry(
            &mut out,
            EventTime::new(T0.secs + i as u64, T0.nanos),
            &docker_record(i),
        );
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("Vec write");
    gz.finish().expect("Vec write")
}

fn forward_seeds(dir: &Path) {
    save(dir, "heartbeat", &[0xc0]);

    let mut out = Vec::new();
    write_message(&mut out, "docker.web", T0, &docker_record(0), None);
    save(dir, "message", &out);

    let mut out = Vec::new();
    write_message(
        &mut out,
        "docker.web",
        T0,
        &docker_record(1),
        Some("Y2h1bmstMQ=="),
    );
    save(dir, "message_chunk", &out);

    // [tag, int time, record] and [tag, float time, record, nil]
    let mut out = vec![0x93];
    str_(&mut out, "app.int");
    rmp::encode::write_uint(&mut out, 1_700_000_000).expect("Vec write");
    out.extend_from_slice(&rich_record());
    out.push(0x94);
    str_(&mut out, "app.float");
    rmp::encode::write_f64(&mut out, 1_700_000_000.25).expect("Vec write");
    out.extend_from_slice(&rich_record());
    out.push(0xc0);
    save(dir, "message_rich", &out);

    // Forward: [tag, [[time, record], ...], {"chunk": id, "size": 3, "compressed": "text", "x": [1]}]
    let mut out = vec![0x93];
    str_(&mut out, "docker.web");
    out.push(0x93);
    out.extend_from_slice(&entries(3));
    rmp::encode::write_map_len(&mut out, 4).expect("Vec write");
    str_(&mut out, "chunk");
    str_(&mut out, "Y2h1bmstMg==");
    str_(&mut out, "size");
    rmp::encode::write_uint(&mut out, 3).expect("Vec write");
    str_(&mut out, "compressed");
    str_(&mut out, "text");
    str_(&mut out, "x");
    out.extend_from_slice(&[0x91, 0x01]);
    save(dir, "forward", &out);

    let mut out = Vec::new();
    encode_packed_forward(
        &mut out,
        "docker.web",
        &entries(3),
        3,
        None,
        Compression::None,
    );
    save(dir, "packed", &out);

    let mut out = Vec::new();
    encode_packed_forward(
        &mut out,
        "docker.web",
        &entries(4),
        4,
        Some("Y2h1bmstMw=="),
        Compression::Gzip,
    );
    save(dir, "packed_gzip", &out);

    // PackedForward as a str (as some senders do), with v1.5 [[time, metadata], record] entries.
    let mut packed = Vec::new();
    packed.extend_from_slice(&[0x92, 0x92]);
    T0.write_msgpack(&mut packed);
    rmp::encode::write_map_len(&mut packed, 1).expect("Vec write");
    str_(&mut packed, "trace_id");
    str_(&mut packed, "abc");
    packed.extend_from_slice(&rich_record());
    packed.extend_from_slice(&[0x92, 0x05, 0x80]); // [5, {}]
    let mut out = vec![0x92];
    str_(&mut out, "fluent.v15");
    rmp::encode::write_str_len(&mut out, packed.len() as u32).expect("Vec write");
    out.extend_from_slice(&packed);
    save(dir, "packed_str_v15", &out);

    // Two gzip members in one bin.
    let part = entries(2);
    let mut members = gzip(&part);
    members.extend_from_slice(&gzip(&part));
    let mut out = vec![0x93];
    str_(&mut out, "docker.web");
    rmp::encode::write_bin(&mut out, &members).expect("Vec write");
    rmp::encode::write_map_len(&mut out, 1).expect("Vec write");
    str_(&mut out, "compressed");
    str_(&mut out, "gzip");
    save(dir, "packed_gzip_multimember", &out);

    // A connection's worth: heartbeat, message, packed, then a frame cut short.
    let mut out = vec![0xc0];
    write_message(&mut out, "a", T0, &docker_record(2), None);
    encode_packed_forward(&mut out, "b", &entries(2), 2, Some("c"), Compression::None);
    let mut tail = Vec::new();
    write_message(&mut tail, "c", T0, &docker_record(3), None);
    out.extend_from_slice(&tail[..tail.len() / 2]);
    save(dir, "stream", &out);
}

fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn http_seeds(dir: &Path) {
    // Byte 0: content type index (low 4 bits) | 0x10 when a query precedes the first '\n'.
    let seed = |selector: u8, query: Option<&str>, body: &[u8]| {
        let mut out = vec![selector | if query.is_some() { 0x10 } else { 0 }];
        if let Some(q) = query {
            out.extend_from_slice(q.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(body);
        out
    };
    let json_rec = br#"{"container_name":"/web-1","source":"stdout","log":"GET / 200","time":1700000000.5,"n":[1,-2,3.5e3,null,true,{"k":"v"}]}"#;
    save(dir, "json_object", &seed(1, None, json_rec));
    save(
        dir,
        "json_array",
        &seed(2, None, br#"[{"a":"1","time":1700000000},{"b":"\u00e9\ud83d\ude00"},{"c":18446744073709551615}]"#),
    );
    save(dir, "json_plus", &seed(4, None, br#"{"x":1}"#));
    save(
        dir,
        "ndjson",
        &seed(5, None, b"{\"n\":1}\n\n  \n{\"n\":2,\"time\":42}\r\n"),
    );
    let mut map = Vec::new();
    rmp::encode::write_map_len(&mut map, 2).expect("Vec write");
    str_(&mut map, "log");
    str_(&mut map, "hello");
    str_(&mut map, "level");
    rmp::encode::write_uint(&mut map, 3).expect("Vec write");
    save(dir, "msgpack_map", &seed(9, None, &map));
    let mut array = vec![0x92];
    array.extend_from_slice(&map);
    array.extend_from_slice(&rich_record());
    save(dir, "msgpack_array", &seed(10, None, &array));
    save(
        dir,
        "form_json",
        &seed(
            12,
            None,
            b"json=%7B%22action%22%3A%22login%22%2C%22user%22%3A2%7D&time=1700000000.75",
        ),
    );
    save(
        dir,
        "form_msgpack",
        &seed(13, None, format!("msgpack={}", percent(&map)).as_bytes()),
    );
    save(
        dir,
        "query_json",
        &seed(0, Some("json=%7B%22log%22%3A+%22health+check%22%7D"), b""),
    );
    save(
        dir,
        "query_time_json_body",
        &seed(1, Some("time=42.25"), br#"{"a":1}"#),
    );
    save(
        dir,
        "query_msgpack",
        &seed(0, Some(&format!("msgpack={}", percent(&map))), b""),
    );
}
