use std::io::Write;

use flumen_event::EntryIter;
use flumen_event::record::Event;

use super::*;

const NOW: EventTime = EventTime {
    secs: 100,
    nanos: 0,
};

const LIMITS: Limits = Limits {
    max_decoded: 1 << 20,
    max_events: 16 << 20,
};

fn json(body: &str) -> Result<Vec<Stream>, LokiError> {
    decode_push(
        &PushBody {
            content_type: Some("application/json"),
            content_encoding: None,
            body: body.as_bytes(),
        },
        &LIMITS,
        NOW,
    )
}

fn protobuf(request: &PushRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

fn decode_protobuf_body(body: &[u8]) -> Result<Vec<Stream>, LokiError> {
    decode_push(
        &PushBody {
            content_type: Some("application/x-protobuf"),
            content_encoding: None,
            body,
        },
        &LIMITS,
        NOW,
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every event of `groups`, with its tag, as (tag, time, record JSON).
fn events(groups: &[TagEvents]) -> Vec<(String, EventTime, String)> {
    groups
        .iter()
        .flat_map(|group| {
            EntryIter::new(&group.events.entries).map(|entry| {
                let event = Event::decode(&entry.unwrap()).unwrap();
                (group.tag.clone(), event.time, event.record.to_json())
            })
        })
        .collect()
}

/// The events of `streams` under the tag `loki`, without canonical fields.
fn plain_events(streams: &[Stream]) -> Vec<(String, EventTime, String)> {
    events(&push_events(streams, &LIMITS, |_| "loki".to_owned(), |_| {}).unwrap())
}

#[test]
fn json_streams_with_values_and_structured_metadata() {
    let streams = json(
        r#"{"streams":[{"stream":{"job":"api","level":"info"},"values":[
            ["1700000000123456789","first"],
            ["1700000001000000000","second",{"trace_id":"abc","user":"7"}]]}]}"#,
    )
    .unwrap();
    assert_eq!(
        streams,
        [Stream {
            labels: pairs(&[("job", "api"), ("level", "info")]),
            entries: vec![
                LogEntry {
                    time: EventTime::new(1_700_000_000, 123_456_789),
                    line: "first".into(),
                    metadata: vec![],
                },
                LogEntry {
                    time: EventTime::new(1_700_000_001, 0),
                    line: "second".into(),
                    metadata: pairs(&[("trace_id", "abc"), ("user", "7")]),
                },
            ],
        }]
    );
    assert_eq!(
        plain_events(&streams),
        [
            (
                "loki".to_owned(),
                EventTime::new(1_700_000_000, 123_456_789),
                r#"{"job":"api","level":"info","message":"first"}"#.to_owned()
            ),
            (
                "loki".to_owned(),
                EventTime::new(1_700_000_001, 0),
                r#"{"job":"api","level":"info","trace_id":"abc","user":"7","message":"second"}"#
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn the_legacy_json_form_with_label_strings_and_rfc3339_times() {
    let streams = json(
        r#"{"streams":[{"labels":"{application=\"shop\", logger=\"root\", severity=\"warning\"}",
            "entries":[{"ts":"2023-11-14T22:13:20.123456Z","line":"careful"}]}]}"#,
    )
    .unwrap();
    assert_eq!(
        streams[0].labels,
        pairs(&[
            ("application", "shop"),
            ("logger", "root"),
            ("severity", "warning")
        ])
    );
    assert_eq!(
        streams[0].entries[0].time,
        EventTime::new(1_700_000_000, 123_456_000)
    );
}

#[test]
fn gzip_json_is_decompressed() {
    let body = gzip(br#"{"streams":[{"stream":{"a":"b"},"values":[["5","x"]]}]}"#);
    let streams = decode_push(
        &PushBody {
            content_type: Some("application/json; charset=utf-8"),
            content_encoding: Some("gzip"),
            body: &body,
        },
        &LIMITS,
        NOW,
    )
    .unwrap();
    assert_eq!(streams[0].entries[0].time, EventTime::new(0, 5));
}

#[test]
fn protobuf_with_snappy_as_promtail_sends_it() {
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="api", path="/a \"quoted\" \\ path", service_name="shop"}"#.into(),
            entries: vec![
                EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 42,
                    }),
                    line: b"hello".to_vec(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "trace_id".into(),
                        value: "t1".into(),
                    }],
                },
                EntryAdapter {
                    timestamp: None,
                    line: b"no time \xff".to_vec(),
                    structured_metadata: vec![],
                },
            ],
        }],
    };
    let streams = decode_protobuf_body(&protobuf(&request)).unwrap();
    assert_eq!(
        streams[0].labels,
        pairs(&[
            ("job", "api"),
            ("path", r#"/a "quoted" \ path"#),
            ("service_name", "shop")
        ])
    );
    assert_eq!(
        streams[0].entries,
        [
            LogEntry {
                time: EventTime::new(1_700_000_000, 42),
                line: "hello".into(),
                metadata: pairs(&[("trace_id", "t1")]),
            },
            LogEntry {
                time: NOW,
                line: "no time \u{fffd}".into(),
                metadata: vec![],
            },
        ]
    );
}

#[test]
fn canonical_fields_and_tags_come_from_the_callers() {
    let streams = json(
        r#"{"streams":[
            {"stream":{"job":"api","service_name":"shop"},"values":[["1","a"]]},
            {"stream":{"service_name":"cart"},"values":[["2","b",{"level":"warn"}]]},
            {"stream":{"job":"api"},"values":[["3","c"]]}]}"#,
    )
    .unwrap();
    let groups = push_events(
        &streams,
        &LIMITS,
        |labels| match labels.get("job").and_then(Value::as_str) {
            Some(job) => format!("loki.{job}"),
            None => "loki".to_owned(),
        },
        |record| {
            if let Some(level) = record.remove("level") {
                record.insert("level", level.to_text().to_uppercase());
            }
        },
    )
    .unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| (g.tag.as_str(), g.events.count))
            .collect::<Vec<_>>(),
        [("loki.api", 2), ("loki", 1)],
        "streams of one tag share its batches, in the order tags first appear"
    );
    let all = events(&groups);
    assert_eq!(
        all[2].2, r#"{"service_name":"cart","level":"WARN","message":"b"}"#,
        "metadata goes through the canonical fields too"
    );
}

#[test]
fn reserved_label_names_go_into_attributes() {
    let streams = json(
        r#"{"streams":[{"stream":{"message":"label"},"values":[["1","line",{"attributes":"m"}]]}]}"#,
    )
    .unwrap();
    assert_eq!(
        plain_events(&streams)[0].2,
        r#"{"attributes":{"message":"label","attributes":"m"},"message":"line"}"#
    );
}

#[test]
fn malformed_bodies_are_refused_with_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("not json", "not a Loki JSON push"),
        (
            r#"{"streams":[{"stream":{"a":"b"},"values":[["soon","x"]]}]}"#,
            "is not a number of Unix nanoseconds",
        ),
        (
            r#"{"streams":[{"stream":{"a":"b"},"values":[[-5,"x"]]}]}"#,
            "before 1970",
        ),
        (
            r#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#,
            "invalid length 1",
        ),
        (
            r#"{"streams":[{"stream":{"a":{"b":1}},"values":[]}]}"#,
            "streams[0]: stream: a: a label's value must be a string",
        ),
        (
            r#"{"streams":[{"labels":"job=x","entries":[]}]}"#,
            "streams[0]: labels \"job=x\"",
        ),
        (
            r#"{"streams":[{"labels":"{}","entries":[{"ts":"yesterday","line":"x"}]}]}"#,
            "entries[0]: ts \"yesterday\"",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["99999999999000000000","x"]]}]}"#,
            "not a number",
        ),
        (
            r#"{"streams":[{"stream":{},"values":[["9999999999000000000","x"]]}]}"#,
            "past the year 2106",
        ),
    ];
    for (body, expected) in cases {
        let error = json(body).unwrap_err().to_string();
        assert!(error.contains(expected), "{body}: {error}");
    }

    let not_snappy = decode_protobuf_body(b"\x05hello").unwrap_err();
    assert!(not_snappy.to_string().contains("snappy"), "{not_snappy}");
    let not_protobuf = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff")
        .unwrap();
    let error = decode_protobuf_body(&not_protobuf).unwrap_err().to_string();
    assert!(error.contains("logproto.PushRequest"), "{error}");

    let bad_labels = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{job="api"#.into(),
            entries: vec![],
        }],
    };
    let error = decode_protobuf_body(&protobuf(&bad_labels))
        .unwrap_err()
        .to_string();
    assert!(error.contains("streams[0]: labels"), "{error}");

    let error = decode_push(
        &PushBody {
            content_type: Some("text/plain"),
            ..PushBody::default()
        },
        &LIMITS,
        NOW,
    )
    .unwrap_err();
    assert!(error.is_unsupported(), "{error}");
    let error = decode_push(
        &PushBody {
            content_encoding: Some("br"),
            ..PushBody::default()
        },
        &LIMITS,
        NOW,
    )
    .unwrap_err();
    assert!(error.is_unsupported(), "{error}");
}

#[test]
fn label_strings() {
    assert_eq!(parse_labels("{}").unwrap(), []);
    assert_eq!(
        parse_labels(r#" { a = "1" ,b="x\ny", } "#).unwrap(),
        pairs(&[("a", "1"), ("b", "x\ny")])
    );
    for bad in [
        r#"{a="1" b="2"}"#,
        r#"{1a="x"}"#,
        r#"{a=1}"#,
        r#"a="1""#,
        r#"{a="1}"#,
    ] {
        assert!(parse_labels(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_snappy_body_is_refused_by_its_stated_size_before_it_is_decompressed() {
    // A block that says it holds 1 GiB: refused on its header alone, nothing allocated.
    let body = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61];
    let error = decode_protobuf_body(&body).unwrap_err();
    assert!(error.is_too_large(), "{error}");
    // A real one over max_decoded.
    let body = snap::raw::Encoder::new()
        .compress_vec(&vec![b'a'; 2 << 20])
        .unwrap();
    let error = decode_protobuf_body(&body).unwrap_err();
    assert!(error.is_too_large(), "{error}");
}

#[test]
fn a_gzip_body_past_max_decoded_is_refused() {
    let line = "x".repeat(100);
    let values: Vec<String> = (0..20_000)
        .map(|n| format!(r#"["{n}","{line}"]"#))
        .collect();
    let body = format!(
        r#"{{"streams":[{{"stream":{{}},"values":[{}]}}]}}"#,
        values.join(",")
    );
    let compressed = gzip(body.as_bytes());
    let push = PushBody {
        content_type: None,
        content_encoding: Some("gzip"),
        body: &compressed,
    };
    let error = decode_push(&push, &LIMITS, NOW).unwrap_err();
    assert!(error.is_too_large(), "{error}");
    let roomy = Limits::for_body_size(64 << 20);
    assert_eq!(
        decode_push(&push, &roomy, NOW).unwrap()[0].entries.len(),
        20_000
    );
}

#[test]
fn events_past_max_events_are_refused() {
    let labels: Vec<String> = (0..50)
        .map(|n| format!(r#""label_{n}":"value {n}""#))
        .collect();
    let values: Vec<String> = (0..1000).map(|n| format!(r#"["{n}","x"]"#)).collect();
    let body = format!(
        r#"{{"streams":[{{"stream":{{{}}},"values":[{}]}}]}}"#,
        labels.join(","),
        values.join(",")
    );
    let streams = json(&body).unwrap();
    let limits = Limits {
        max_decoded: 1 << 20,
        max_events: 256 << 10,
    };
    let error = push_events(&streams, &limits, |_| "loki".to_owned(), |_| {}).unwrap_err();
    assert!(error.is_too_large(), "{error}");
}

#[test]
fn large_requests_come_in_bounded_batches() {
    let values: Vec<String> = (0..10_000)
        .map(|n| format!(r#"["{n}","line {n}"]"#))
        .collect();
    let body = format!(
        r#"{{"streams":[{{"stream":{{"job":"x"}},"values":[{}]}}]}}"#,
        values.join(",")
    );
    let groups = push_events(
        &json(&body).unwrap(),
        &LIMITS,
        |_| "loki".to_owned(),
        |_| {},
    )
    .unwrap();
    let counts: Vec<u32> = groups[0].events.batches().map(|(count, _)| count).collect();
    assert_eq!(counts, [4096, 4096, 1808]);
}
