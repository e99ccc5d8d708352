use std::time::Duration;

use flumen_codec::loki::{Limits, PushBody, decode_push, parse_labels};
use flumen_event::{BatchBuilder, EventTime, TenantId};

use super::*;
use crate::stand_in::server;

/// A msgpack map of string fields.
fn record(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, fields.len() as u32).unwrap();
    for (k, v) in fields {
        rmp::encode::write_str(&mut out, k).unwrap();
        rmp::encode::write_str(&mut out, v).unwrap();
    }
    out
}

/// An event: seconds, nanoseconds, string fields.
type TestEvent<'a> = (u64, u32, Vec<(&'a str, &'a str)>);

/// An entry as decoded: seconds, nanoseconds, line, structured metadata.
type DecodedEntry = (i64, i32, String, Vec<(String, String)>);

/// One batch of tag `tag` with `events`.
fn delivery(tag: &str, events: &[TestEvent<'_>]) -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut entries = Vec::new();
    for (secs, nanos, fields) in events {
        flumen_event::entry::write_entry(
            &mut entries,
            EventTime::new(*secs, *nanos),
            &record(fields),
        );
    }
    let count = events.len() as u32;
    let batch = builder.encode(tag, b"", count, &entries).unwrap();
    let mut delivery = Delivery::default();
    delivery.push(0, batch.into(), count);
    delivery
}

fn config(extra: &str) -> LokiConfig {
    toml::from_str(&format!("url = \"http://127.0.0.1:1\"\n{extra}")).unwrap()
}

fn sink(extra: &str) -> LokiSink {
    LokiSink::from_spec("loki", &config(extra).check().unwrap()).unwrap()
}

fn unsnap(body: &[u8]) -> PushRequest {
    let plain = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    PushRequest::decode(plain.as_slice()).unwrap()
}

#[test]
fn label_strings_are_sorted_escaped_and_read_back() {
    let labels = vec![
        ("app".to_owned(), "shop".to_owned()),
        ("path".to_owned(), "C:\\logs \"x\"\nnext\tcol".to_owned()),
    ];
    let text = label_string(&labels);
    assert_eq!(text, r#"{app="shop", path="C:\\logs \"x\"\nnext\tcol"}"#);
    assert_eq!(parse_labels(&text).unwrap(), labels);
    assert_eq!(label_string(&[]), "{}");

    // Labels come out sorted by name whatever order the configuration names them in.
    let sink = sink("labels = { zone = \"eu\", app = \"{{service}}\", mid = \"{{tag}}\" }");
    let (streams, _) = sink.plan(&delivery("web", &[(1, 0, vec![("service", "api")])]));
    assert_eq!(
        streams[0].label_string(),
        r#"{app="api", mid="web", zone="eu"}"#
    );
}

#[test]
fn a_push_is_protobuf_that_decodes_back_into_the_same_streams() {
    let sink = sink(
        "labels = { service = \"{{service}}\", job = \"{{tag}}\" }\nstructured_metadata = [\"trace_id\"]\n",
    );
    let delivery = delivery(
        "app",
        &[
            (
                20,
                5,
                vec![
                    ("service", "api"),
                    ("trace_id", "t2"),
                    ("message", "second"),
                ],
            ),
            (
                10,
                7,
                vec![("service", "api"), ("trace_id", "t1"), ("message", "first")],
            ),
            (15, 0, vec![("service", "web"), ("message", "other")]),
            (
                20,
                5,
                vec![("service", "api"), ("message", "same time, after")],
            ),
        ],
    );
    let (streams, dropped) = sink.plan(&delivery);
    assert!(dropped.is_empty());
    let request = unsnap(&encode_protobuf(&streams));
    assert_eq!(request.streams.len(), 2);
    let api = &request.streams[0];
    assert_eq!(api.labels, r#"{job="app", service="api"}"#);
    // Sorted by time, stably; metadata out of the line.
    let lines: Vec<DecodedEntry> = api
        .entries
        .iter()
        .map(|e| {
            let t = e.timestamp.unwrap();
            (
                t.seconds,
                t.nanos,
                String::from_utf8(e.line.clone()).unwrap(),
                e.structured_metadata
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                10,
                7,
                r#"{"service":"api","message":"first"}"#.to_owned(),
                vec![("trace_id".to_owned(), "t1".to_owned())]
            ),
            (
                20,
                5,
                r#"{"service":"api","message":"second"}"#.to_owned(),
                vec![("trace_id".to_owned(), "t2".to_owned())]
            ),
            (
                20,
                5,
                r#"{"service":"api","message":"same time, after"}"#.to_owned(),
                vec![]
            ),
        ]
    );
    assert_eq!(request.streams[1].labels, r#"{job="app", service="web"}"#);
    // Positions name the delivery's events, for the outcome.
    let positions: Vec<usize> = streams[0].entries.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 0, 3]);

    // flumen's own Loki input reads both encodings into the same streams.
    let limits = Limits::for_body_size(1 << 20);
    let now = EventTime::new(0, 0);
    let protobuf = decode_push(
        &PushBody {
            content_type: Some("application/x-protobuf"),
            content_encoding: None,
            body: &encode_protobuf(&streams),
        },
        &limits,
        now,
    )
    .unwrap();
    let json = decode_push(
        &PushBody {
            content_type: Some("application/json"),
            content_encoding: Some("gzip"),
            body: &gzip(&encode_json(&streams)),
        },
        &limits,
        now,
    )
    .unwrap();
    assert_eq!(protobuf, json);
    assert_eq!(protobuf[0].entries[0].time, EventTime::new(10, 7));
    assert_eq!(
        protobuf[0].entries[0].metadata,
        [("trace_id".to_owned(), "t1".to_owned())]
    );
}

#[test]
fn lines_come_from_a_field_the_record_or_key_value_pairs() {
    let events = delivery(
        "app",
        &[
            (1, 0, vec![("log", "plain line"), ("level", "info")]),
            (
                2,
                0,
                vec![("level", "warn"), ("msg", "two words"), ("empty", "")],
            ),
        ],
    );
    let lines = |extra: &str| -> Vec<String> {
        let (streams, _) = sink(extra).plan(&events);
        streams
            .into_iter()
            .flat_map(|s| s.entries)
            .map(|e| e.line)
            .collect()
    };
    assert_eq!(
        lines(""),
        [
            r#"{"log":"plain line","level":"info"}"#,
            r#"{"level":"warn","msg":"two words","empty":""}"#
        ]
    );
    assert_eq!(
        lines("line_field = [\"message\", \"log\"]"),
        [
            "plain line",
            r#"{"level":"warn","msg":"two words","empty":""}"#
        ]
    );
    assert_eq!(
        lines("line_format = \"key_value\""),
        [
            r#"log="plain line" level=info"#,
            r#"level=warn msg="two words" empty="""#
        ]
    );
    assert_eq!(
        lines("labels = [\"level\"]\nremove_label_fields = true\ndrop_single_key = true"),
        ["plain line", r#"{"msg":"two words","empty":""}"#]
    );
}

#[test]
fn streams_without_labels_get_one_and_missing_fields_are_left_out() {
    let sink = sink(
        "labels = { app = \"{{service}}\" }\nstructured_metadata = { trace = \"{{trace_id}}\" }",
    );
    let (streams, _) = sink.plan(&delivery("t", &[(1, 0, vec![("x", "y")])]));
    assert_eq!(streams[0].label_string(), r#"{agent="flumen"}"#);
    assert!(streams[0].entries[0].metadata.is_empty());
}

#[test]
fn out_of_order_entries_are_accepted_rewritten_or_dropped() {
    let first = delivery("t", &[(10, 0, vec![]), (20, 0, vec![])]);
    let late = delivery("t", &[(15, 0, vec![]), (25, 0, vec![])]);
    for (action, times, dropped) in [
        ("accept", vec![15, 25], vec![]),
        ("rewrite_timestamp", vec![20, 25], vec![]),
        ("drop", vec![25], vec![0]),
    ] {
        let mut sink = sink(&format!("out_of_order_action = \"{action}\""));
        let (streams, _) = sink.plan(&first);
        sink.remember(&streams);
        let (streams, gone) = sink.plan(&late);
        let secs: Vec<u64> = streams[0].entries.iter().map(|e| e.time.secs).collect();
        assert_eq!((secs, gone), (times, dropped), "{action}");
    }
}

#[test]
fn the_configuration_is_checked_and_high_cardinality_labels_warned_about() {
    let spec = config("").check().unwrap();
    assert_eq!(spec.url.as_str(), "http://127.0.0.1:1/loki/api/v1/push");
    let spec = LokiConfig {
        url: "https://logs.example.com/loki/api/v1/push".into(),
        ..config("")
    }
    .check()
    .unwrap();
    assert_eq!(spec.url.path(), "/loki/api/v1/push");
    assert_eq!(
        spec.headers["content-type"], "application/x-protobuf",
        "snappy protobuf by default"
    );
    let spec = config("tenant_id = \"team-a\"\nbearer_token = \"s3cret\"\ncompression = \"gzip\"")
        .check()
        .unwrap();
    assert_eq!(spec.headers["x-scope-orgid"], "team-a");
    assert_eq!(spec.headers["authorization"], "Bearer s3cret");
    assert_eq!(spec.headers["content-encoding"], "gzip");
    let spec = config("auth = { user = \"u\", password = \"p\" }")
        .check()
        .unwrap();
    assert_eq!(spec.headers["authorization"], "Basic dTpw");
    assert!(
        !format!("{spec:?}").contains("dTpw"),
        "credentials are not printed"
    );

    let warned =
        config("labels = [\"service\", \"request_id\", \"kubernetes.pod.uid\", \"deployment_id\"]")
            .check()
            .unwrap()
            .warnings;
    assert_eq!(warned.len(), 3, "{warned:?}");
    assert!(warned[0].starts_with("labels.deployment_id reads the field \"deployment_id\""));
    assert!(warned.iter().any(|w| w.contains("kubernetes_pod_uid")));
    assert!(
        config("labels = { job = \"shop\", env = \"{{environment}}\" }")
            .check()
            .unwrap()
            .warnings
            .is_empty()
    );
    assert!(is_high_cardinality("userId") && is_high_cardinality("trace_id"));
    assert!(!is_high_cardinality("service") && !is_high_cardinality("level"));

    let error = |extra: &str| config(extra).check().unwrap_err();
    assert!(
        error("labels = { \"1bad\" = \"x\" }").starts_with("labels: \"1bad\" is not a valid name")
    );
    assert!(error("labels = { a = \"{{b\" }").starts_with("labels.a: unclosed"));
    assert_eq!(
        error("structured_metadata = { a = \"\" }"),
        "structured_metadata.a: empty"
    );
    assert!(
        error("auth = { user = \"u\", password = \"p\" }\nbearer_token = \"t\"")
            .starts_with("auth and bearer_token")
    );
    assert!(
        LokiConfig {
            url: "ftp://x".into(),
            ..config("")
        }
        .check()
        .unwrap_err()
        .starts_with("url: the scheme")
    );
    assert!(
        LokiConfig {
            url: "".into(),
            ..config("")
        }
        .check()
        .unwrap_err()
        .starts_with("url: required")
    );
}

#[tokio::test]
async fn answers_make_outcomes_a_400_for_good_a_429_after_its_wait() {
    const REFUSED: &str = "entry with timestamp 1970-01-01 00:00:01 +0000 UTC ignored, reason: 'entry out of order' for stream: {agent=\"flumen\"},\ntotal ignored: 1 out of 1";
    let (url, server) = server(vec![
        (204, "", ""),
        (429, "retry-after: 3\r\n", "Ingestion rate limit exceeded"),
        (400, "", REFUSED),
        (503, "", ""),
    ])
    .await;
    let config = LokiConfig {
        url,
        tenant_id: Some("team-a".into()),
        ..config("")
    };
    let mut sink = LokiSink::from_spec("loki", &config.check().unwrap()).unwrap();
    let events = delivery("t", &[(1, 0, vec![("m", "x")])]);

    assert!(sink.deliver(&events).await.is_delivered());
    let throttled = sink.deliver(&events).await;
    assert_eq!(throttled.wait(), Some(Duration::from_secs(3)));
    let parts = throttled.undelivered(&events);
    assert!(parts[0].1.retryable && parts[0].1.message.contains("HTTP 429"));
    let refused = sink.deliver(&events).await;
    let (part, error) = &refused.undelivered(&events)[0];
    assert_eq!(part.events, 1);
    assert!(!error.retryable);
    assert!(
        error.message.contains("'entry out of order'"),
        "{}",
        error.message
    );
    let unavailable = sink.deliver(&events).await;
    assert!(unavailable.undelivered(&events)[0].1.retryable);
    assert_eq!(unavailable.wait(), None);

    let seen = server.await.unwrap();
    let (head, body) = &seen[0];
    assert!(
        head.starts_with("post /loki/api/v1/push http/1.1"),
        "{head}"
    );
    assert!(head.contains("x-scope-orgid: team-a"));
    assert!(head.contains("content-type: application/x-protobuf"));
    assert_eq!(unsnap(body).streams[0].entries.len(), 1);
}
