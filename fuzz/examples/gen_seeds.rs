//! Writes the seed inputs of the fuzz targets to `fuzz/corpus_seeds/<target>/`.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//! ```
//!
//! The seeds are committed; re-running this rewrites them byte for byte (nothing here depends
//! on the clock or on randomness). Each seed is checked to be accepted by the decoder, so that
//! the fuzzer starts from inputs that reach deep into it.
//!
//! The `parse_line` and `joiners` seeds are lines of the real logs in `tests/data/` (read-only
//! here), laid out as `shared/parse_input.rs` and `shared/joiner_ops.rs` describe.

use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "../shared/http_input.rs"]
mod http_input;
#[path = "../shared/joiner_ops.rs"]
mod joiner_ops;
#[path = "../shared/parse_input.rs"]
mod parse_input;

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
    parse_line_seeds(&root.join("parse_line"));
    selector_seeds(&root.join("selector"));
    joiners_seeds(&root.join("joiners"));
    record_decode_seeds(&root.join("record_decode"));
    fluentd_config_seeds(&root.join("fluentd_config"));
}

fn save(dir: &Path, name: &str, bytes: &[u8]) {
    let check = match dir.file_name().and_then(|n| n.to_str()) {
        Some("forward_decode") => check_forward(bytes),
        Some("http_body") => check_http(bytes),
        Some("parse_line") => check_parse_line(bytes),
        Some("selector") => check_selector(bytes),
        Some("joiners") => check_joiners(bytes),
        Some("record_decode") => check_record(bytes),
        Some("fluentd_config") => check_fluentd_config(bytes),
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

/// `tests/data/<path>`, split into lines (without their `\n`).
fn data_lines(path: &str) -> Vec<Vec<u8>> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(path);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    lines
}

/// Applies the parser the seed selects; every seed must parse, except that a line that is not
/// UTF-8 is marked as such (and only as such).
fn check_parse_line(data: &[u8]) -> String {
    use flumen_event::record::{Event, Record, Value};
    let (index, line) = parse_input::split(data).expect("non-empty seed");
    let config = parse_input::parser_config(index);
    let parser = flumen_parse::Parser::new(&config).expect("valid config");
    let mut event = Event {
        time: T0,
        record: Record::from(vec![("log".to_owned(), line.clone())]),
        metadata: None,
    };
    let result = parser.apply(&mut event);
    match (&line, &result) {
        (Value::Str(_), Ok(())) => {}
        (Value::Bin(_), Err(reason)) if reason == flumen_parse::NOT_UTF8 => {}
        _ => panic!("seed {line:?} with {config:?}: {result:?}"),
    }
    let fields = match &config.target {
        Some(target) => match event.record.get(target) {
            Some(Value::Map(pairs)) => pairs.len(),
            _ => 0,
        },
        None => event.record.len(),
    };
    format!(
        "{}{}{}: {fields} fields{}",
        config.format,
        if config.keep_original {
            ", keep_original"
        } else {
            ""
        },
        if config.target.is_some() {
            ", target"
        } else {
            ""
        },
        if result.is_err() {
            ", marked not UTF-8"
        } else {
            ""
        }
    )
}

fn parse_line_seeds(dir: &Path) {
    use flumen_parse::Format;
    let seed = |name: &str, format: Format, keep: bool, target: bool, line: &[u8]| {
        let mut out = vec![parse_input::selector_byte(format, keep, target)];
        out.extend_from_slice(line);
        save(dir, name, &out);
    };
    let access = data_lines("nginx/access.log");
    let common = data_lines("nginx/common.log");
    let error = data_lines("nginx/error.log");
    let find = |lines: &[Vec<u8>], needle: &[u8]| -> Vec<u8> {
        lines
            .iter()
            .find(|l| l.windows(needle.len()).any(|w| w == needle))
            .unwrap_or_else(|| panic!("no line with {:?}", String::from_utf8_lossy(needle)))
            .clone()
    };

    seed(
        "nginx_combined-1",
        Format::NginxCombined,
        false,
        false,
        &access[0],
    );
    seed(
        "nginx_combined-2",
        Format::NginxCombined,
        true,
        true,
        &access[1],
    );
    seed(
        "nginx_combined-garbage",
        Format::NginxCombined,
        false,
        false,
        &find(&access, b"\"GARBAGE\""),
    );
    seed(
        "nginx_combined-tls",
        Format::NginxCombined,
        false,
        false,
        &find(&access, b"\\x16\\x03"),
    );
    seed(
        "apache_combined",
        Format::ApacheCombined,
        false,
        false,
        &access[2],
    );
    seed(
        "apache_common",
        Format::ApacheCommon,
        false,
        false,
        &common[0],
    );
    seed(
        "apache_common-target",
        Format::ApacheCommon,
        false,
        true,
        &common[1],
    );
    seed("regex-combined", Format::Regex, false, false, &access[0]);
    seed("regex-common", Format::Regex, true, false, &common[2]);
    seed("nginx_error-1", Format::NginxError, false, false, &error[0]);
    seed(
        "nginx_error-request",
        Format::NginxError,
        false,
        false,
        &find(&error, b"request: \"GET"),
    );
    seed(
        "nginx_error-not-utf8",
        Format::NginxError,
        false,
        false,
        &find(&error, b"GET /\xff"),
    );

    for file in [
        "logger-udp-rfc3164",
        "logger-udp-rfc5424",
        "logger-unix-rfc3164",
        "logger-unix-rfc5424",
        "rsyslog-file-format",
        "rsyslog-forward-rfc5424",
        "rsyslog-forward-traditional",
        "rsyslog-traditional-file",
    ] {
        let lines = data_lines(&format!("syslog/{file}.log"));
        seed(
            &format!("syslog-{file}-first"),
            Format::Syslog,
            false,
            false,
            &lines[0],
        );
        let last = lines.last().expect("non-empty file");
        seed(
            &format!("syslog-{file}-last"),
            Format::Syslog,
            false,
            false,
            last,
        );
    }
    let rfc5424 = data_lines("syslog/logger-udp-rfc5424.log");
    seed("auto-syslog", Format::Auto, false, false, &rfc5424[1]);

    let python = data_lines("multiline/python-logging.log");
    seed("tle-python", Format::Tle, false, false, &python[0]);
    seed("auto-tle", Format::Auto, true, false, &python[3]);
    seed(
        "auto-plain",
        Format::Auto,
        false,
        false,
        b"Traceback (most recent call last):",
    );
    seed(
        "tle-env_logger",
        Format::Tle,
        false,
        false,
        b"[2024-01-01T10:00:00Z INFO my_crate::server] listening on 0.0.0.0:8080",
    );
    seed(
        "tle-go",
        Format::Tle,
        false,
        false,
        b"2024/01/01 10:00:00.250 connection reset by peer",
    );

    seed(
        "json",
        Format::Json,
        false,
        false,
        br#"{"time":"2024-01-01T10:00:00.123Z","level":"warn","msg":"slow \"query\"","ms":1234,"neg":-3,"f":0.5,"ctx":{"user":"a\u00e9","ids":[1,2,null,true]}}"#,
    );
    seed(
        "json-epoch-target",
        Format::Json,
        true,
        true,
        br#"{"ts":1704103200.5,"severity":30,"log":"inner"}"#,
    );
    seed(
        "auto-json",
        Format::Auto,
        false,
        false,
        br#"{"timestamp":"1704103200123","message":"hi"}"#,
    );
    seed(
        "logfmt",
        Format::Logfmt,
        false,
        false,
        br#"time=2024-01-01T10:00:00Z level=info msg="say \"hi\"\n\u00e9" path=/x?a=b status=200 debug"#,
    );
    seed("plain", Format::Plain, false, false, b"just a line\r\n");
    seed(
        "plain-not-utf8",
        Format::Plain,
        false,
        false,
        b"bytes \xff\xfe here",
    );
}

fn check_selector(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = std::str::from_utf8(&data[..end]).expect("UTF-8 seed");
    let selector = flumen_select::Selector::parse(text).expect("seed must parse");
    format!(
        "{} stream matchers, {} bytes of record",
        selector.stream_matchers().len(),
        data.len().saturating_sub(end + 1)
    )
}

fn selector_seeds(dir: &Path) {
    let record = "docker.api\nservice=api\nlevel=ERROR\nstatus=503\nlatency_ms=1500\n\
                  kubernetes.labels.app=web\nmessage=upstream timeout after 30s for user=42";
    let seed = |name: &str, selector: &str, with_record: bool| {
        let mut out = selector.as_bytes().to_vec();
        if with_record {
            out.push(0);
            out.extend_from_slice(record.as_bytes());
        }
        save(dir, name, &out);
    };
    seed("match_all", "{}", true);
    seed(
        "doc_example",
        r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500"#,
        true,
    );
    seed(
        "label_or",
        r#"{service="api"} | status >= 500 or (level = "WARN" and latency_ms > 1000)"#,
        true,
    );
    seed(
        "tag_backticks",
        r#"{tag=~"docker\\..*", kubernetes.labels.app!=""} |~ `\d{2}s` !~ `(?i)health`"#,
        true,
    );
    seed(
        "escapes_numbers",
        "{a=\"x\\\"y\\\\z\\n\\t\"}\n\t| n == -3, f < 2.5e3 | b != \"500\" | c !~ \"x+\"",
        false,
    );
}

/// Runs a seed's pushes through a multiline joiner of its setup; every seed must decode into
/// operations, and each multiline seed must join something.
fn check_joiners(data: &[u8]) -> String {
    use flumen_event::record::{Event, Record, Value};
    use flumen_process::multiline::{Multiline, MultilineConfig, MultilineMode};
    use joiner_ops::Op;
    use std::sync::Arc;
    let (setup, ops) = joiner_ops::decode(data).expect("non-empty seed");
    let mut config = MultilineConfig::new(setup.mode);
    if setup.mode == MultilineMode::Custom {
        config.start_pattern = Some(joiner_ops::CUSTOM_START.to_owned());
    }
    config.separator = setup.separator().to_owned();
    config.max_lines = setup.max_lines;
    if setup.small_bytes {
        config.max_bytes = bytesize::ByteSize::b(joiner_ops::SMALL_MAX_BYTES);
    }
    let mut joiner = Arc::new(Multiline::new(&config).expect("valid")).joiner();
    let now = std::time::Instant::now();
    let (mut pushes, mut pieces) = (0u64, 0);
    let mut out = Vec::new();
    for op in &ops {
        if let Op::Push { stream, text, .. } = op {
            let record = Record::from(vec![
                ("container_id".to_owned(), Value::from(stream.container())),
                (
                    "log".to_owned(),
                    Value::from(std::str::from_utf8(text).expect("UTF-8")),
                ),
            ]);
            let event = Event {
                time: T0,
                record,
                metadata: None,
            };
            joiner.push(stream.tag(), (pushes, event), now, &mut out);
            pushes += 1;
            pieces += usize::from(stream.partial());
        }
    }
    let mut rest = Vec::new();
    joiner.flush_all(&mut rest);
    let events = out.len() + rest.len();
    assert!(pushes > 0, "a seed pushes lines");
    if pieces == 0 {
        assert!(events < pushes as usize, "a multiline seed joins lines");
    }
    format!(
        "{:?}{}, {} ops, {pushes} lines ({pieces} partial pieces), {events} multiline events",
        setup.mode,
        if setup.docker { ", docker" } else { "" },
        ops.len()
    )
}

fn joiners_seeds(dir: &Path) {
    use joiner_ops::{DOCKER, Stream, encode_advance, encode_push};
    // Byte 0: mode index | DOCKER | max_lines index << 4 | SMALL_BYTES (see joiner_ops.rs).
    let mode_of = |file: &str| -> u8 {
        ["java", "python", "go", "ruby"]
            .iter()
            .position(|m| file.starts_with(m))
            .expect("a mode's file") as u8
    };
    let text_lines = |file: &str| -> Vec<String> {
        data_lines(&format!("multiline/{file}"))
            .into_iter()
            .map(|l| String::from_utf8(l).expect("UTF-8 test data"))
            .collect()
    };
    let plain = Stream(0);
    for file in [
        "java-exception.log",
        "java-suppressed.stderr",
        "python-logging.log",
        "python-chained.log",
        "python-during-handling.log",
        "python-exception-group.stderr",
        "go-panic.log",
        "go-goroutine-panic.log",
        "go-http-panic.stderr",
        "go-repanic.stderr",
        "go-deadlock.stderr",
        "ruby-handwritten.log",
    ] {
        let mut out = vec![mode_of(file)];
        for line in text_lines(file) {
            encode_push(&mut out, plain, 0, "", &line);
        }
        save(dir, file.split('.').next().expect("a name"), &out);
    }

    // Custom mode on Python logging (a log line and its traceback become one event).
    let mut out = vec![4];
    for line in text_lines("python-logging.log") {
        encode_push(&mut out, plain, 0, "", &line);
    }
    save(dir, "custom-python-logging", &out);

    // Docker mode: two containers' traces interleaved, `\n` and `\r\n` endings, a pause past
    // the flush timeout in the middle.
    let java = text_lines("java-exception.log");
    let go = text_lines("go-panic.log");
    let mut out = vec![DOCKER];
    for (i, line) in java.iter().enumerate().take(12) {
        encode_push(
            &mut out,
            Stream(0),
            0,
            if i % 2 == 0 { "\n" } else { "\r\n" },
            line,
        );
        if let Some(line) = go.get(i) {
            encode_push(&mut out, Stream(1), 0, "\n", line);
        }
        if i == 6 {
            encode_advance(&mut out, 50, true);
        }
    }
    save(dir, "docker-interleaved", &out);

    // Limits: max_lines = 2, and small max_bytes.
    let mut out = vec![0x20];
    for line in &java {
        encode_push(&mut out, plain, 0, "", line);
    }
    save(dir, "java-max_lines-2", &out);
    let mut out = vec![joiner_ops::SMALL_BYTES | 1];
    for line in text_lines("python-chained.log") {
        encode_push(&mut out, plain, 0, "", &line);
    }
    save(dir, "python-small-max_bytes", &out);

    // Docker partial pieces: a long access-log line in three pieces arriving 2, 1, 3 while a
    // second id and a whole line of another tag interleave; a line whose last piece never
    // comes (released at the timeout); a piece sent twice.
    let access = data_lines("nginx/access.log");
    let long = String::from_utf8(
        access
            .iter()
            .max_by_key(|l| l.len())
            .expect("non-empty file")
            .clone(),
    )
    .expect("UTF-8");
    let cut = |from: usize, to: usize| -> &str {
        let (mut a, mut b) = (from.min(long.len()), to.min(long.len()));
        while !long.is_char_boundary(a) {
            a -= 1;
        }
        while !long.is_char_boundary(b) {
            b -= 1;
        }
        &long[a..b]
    };
    let piece = |id: u8, last: bool| Stream(0x04 | id << 3 | u8::from(last) << 4);
    let mut out = vec![DOCKER];
    encode_push(&mut out, piece(0, false), 2, "", cut(100, 200));
    encode_push(&mut out, piece(1, false), 1, "", cut(0, 50));
    encode_push(&mut out, piece(0, false), 1, "", cut(0, 100));
    encode_push(
        &mut out,
        Stream(0x02),
        0,
        "\n",
        "a whole line of another tag",
    );
    encode_push(&mut out, piece(0, true), 3, "\n", cut(200, 300));
    encode_push(&mut out, piece(1, false), 2, "", cut(50, 120));
    encode_advance(&mut out, 210, true);
    encode_push(&mut out, piece(1, true), 1, "\n", "short");
    encode_push(&mut out, piece(1, true), 1, "\n", "short again");
    save(dir, "partial-pieces", &out);
}

fn check_record(data: &[u8]) -> String {
    let record = flumen_event::record::Record::decode(data).expect("seed must decode");
    format!("{} fields", record.len())
}

fn record_decode_seeds(dir: &Path) {
    save(dir, "docker", &docker_record(0));
    save(dir, "rich", &rich_record());
    // Signed markers holding non-negative numbers, a float32, an EventTime and an empty map.
    let mut out = vec![0x85];
    str_(&mut out, "i8");
    out.extend_from_slice(&[0xd0, 0x05]);
    str_(&mut out, "i64");
    out.extend_from_slice(&[0xd3, 0, 0, 0, 0, 0, 0, 0x01, 0]);
    str_(&mut out, "f32");
    out.extend_from_slice(&[0xca, 0x3f, 0xc0, 0, 0]);
    str_(&mut out, "time");
    T0.write_msgpack(&mut out);
    str_(&mut out, "empty");
    out.push(0x80);
    save(dir, "signed_time", &out);
}

/// The Fluentd configurations of `crates/flumen-fluentd/tests/data/` (the first seed's
/// `fluent.conf` and examples from Fluentd's documentation), as they are.
fn fluentd_config_seeds(dir: &Path) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/flumen-fluentd/tests/data");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&data)
        .expect("read flumen-fluentd test data")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).expect("read seed");
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("file name");
        save(dir, name, &bytes);
    }
}

/// Parses as the fuzz target does (with its environment and host name); every seed must parse.
fn check_fluentd_config(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).expect("seed is UTF-8");
    let loader = flumen_fluentd::Loader::new()
        .env(|name| (name == "SERVERENGINE_WORKER_ID").then(|| "0".to_owned()))
        .hostname("fuzz-host");
    let config = loader
        .parse(text, Path::new("seed.conf"))
        .unwrap_or_else(|e| panic!("seed must parse: {e}"));
    format!("{} directives", config.directives().len())
}
