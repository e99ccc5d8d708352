use std::io::Read;
use std::time::Duration;

use super::*;
use crate::testing::{TestEvent, delivery, server};

/// 2023-11-14T22:13:20Z.
const T: u64 = 1_700_000_000;
/// A day later.
const DAY: u64 = 86_400;

fn config(extra: &str) -> ElasticsearchConfig {
    toml::from_str(&format!("url = \"http://127.0.0.1:1\"\n{extra}")).unwrap()
}

fn sink(extra: &str) -> ElasticsearchSink {
    ElasticsearchSink::from_spec("es", &config(extra).check().unwrap()).unwrap()
}

/// The body of the one request `extra`'s sink makes of `events` (tag `app.web`).
fn body(extra: &str, events: &[TestEvent<'_>]) -> String {
    let plan = sink(extra).plan(&delivery("app.web", events));
    assert!(plan.refused.is_empty(), "{:?}", plan.refused);
    assert_eq!(plan.requests.len(), 1);
    String::from_utf8(plan.requests[0].body.clone()).unwrap()
}

#[test]
fn each_event_is_an_action_line_and_a_document_line() {
    let got = body(
        "",
        &[
            (T, 5, vec![("message", "first"), ("level", "info")]),
            (T + DAY, 0, vec![("message", "a \"quoted\"\nline")]),
            (T, 0, vec![]),
        ],
    );
    assert_eq!(
        got,
        concat!(
            "{\"index\":{\"_index\":\"flumen-2023.11.14\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000005Z\",\"message\":\"first\",\"level\":\"info\"}\n",
            "{\"index\":{\"_index\":\"flumen-2023.11.15\"}}\n",
            "{\"@timestamp\":\"2023-11-15T22:13:20.000000000Z\",\"message\":\"a \\\"quoted\\\"\\nline\"}\n",
            "{\"index\":{\"_index\":\"flumen-2023.11.14\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\"}\n",
        )
    );
    // Every line is JSON; the body ends with a newline.
    assert!(got.ends_with('\n'));
    for line in got.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn the_index_reads_fields_and_the_time_the_id_a_field_and_the_records_own_fields_win() {
    let got = body(
        "index = \"logs-{{service|'other'}}-%Y.%m.%d-%H\"\nmode = \"create\"\nid_field = \"request.id\"\ntag_field = \"tag\"",
        &[
            (
                T,
                0,
                vec![("service", "Checkout"), ("request.id", "r-1"), ("n", "1")],
            ),
            (
                T,
                0,
                vec![("@timestamp", "2020-01-01T00:00:00Z"), ("tag", "mine")],
            ),
            (T, 0, vec![("service", "100%Y")]),
        ],
    );
    assert_eq!(
        got,
        concat!(
            // Lowercased; the `_id` from the field; the tag added.
            "{\"create\":{\"_index\":\"logs-checkout-2023.11.14-22\",\"_id\":\"r-1\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"tag\":\"app.web\",\"service\":\"Checkout\",\"request.id\":\"r-1\",\"n\":\"1\"}\n",
            // No service: the template's alternative; no id: Elasticsearch makes one up; the
            // record's own @timestamp and tag are kept, not written twice.
            "{\"create\":{\"_index\":\"logs-other-2023.11.14-22\"}}\n",
            "{\"@timestamp\":\"2020-01-01T00:00:00Z\",\"tag\":\"mine\"}\n",
            // A % in a field's value is not a strftime specifier.
            "{\"create\":{\"_index\":\"logs-100%y-2023.11.14-22\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"tag\":\"app.web\",\"service\":\"100%Y\"}\n",
        )
    );
    // `timestamp_field = ""` adds no time; a nested id field is read by its path.
    let got = body(
        "timestamp_field = \"\"\nid_field = \"tag\"",
        &[(T, 0, vec![("tag", "record-tag"), ("m", "x")])],
    );
    assert_eq!(
        got,
        "{\"index\":{\"_index\":\"flumen-2023.11.14\",\"_id\":\"record-tag\"}}\n{\"tag\":\"record-tag\",\"m\":\"x\"}\n",
        "id_field = \"tag\" is the record's field, not the event's tag"
    );
}

#[test]
fn events_without_an_index_elasticsearch_takes_are_refused_with_the_reason() {
    let sink = sink("index = \"logs-{{service}}-%Y\"");
    let plan = sink.plan(&delivery(
        "t",
        &[
            (T, 0, vec![("service", "api")]),
            (T, 0, vec![("other", "x")]),
            (T, 0, vec![("service", "a b")]),
            (T, 0, vec![("service", "x,y*")]),
            (T, 0, vec![("service", "web")]),
        ],
    ));
    assert_eq!(plan.requests[0].positions().collect::<Vec<_>>(), [0, 4]);
    let reasons: Vec<(usize, &str)> = plan
        .refused
        .iter()
        .map(|(position, reason)| (*position, reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                1,
                "index: the event has no value for {{service}} (give it an alternative: {{service|\"none\"}})"
            ),
            (
                2,
                "index: index name \"logs-a b-2023\" contains ' ', which Elasticsearch refuses"
            ),
            (
                3,
                "index: index name \"logs-x,y*-2023\" contains ',', which Elasticsearch refuses"
            ),
        ]
    );
    assert_eq!(
        names::refused_name("_hidden").as_deref(),
        Some("index name \"_hidden\" starts with \"_\"")
    );
    assert!(names::refused_name(&"a".repeat(256)).is_some());
    assert!(names::refused_name("logs-app.web-2023.11.14").is_none());
}

#[test]
fn ecs_moves_common_fields_and_the_tag() {
    let got = body(
        "ecs = true",
        &[
            (
                T,
                0,
                vec![
                    ("log", "GET / 200"),
                    ("level", "info"),
                    ("service", "api"),
                    ("host", "web-1"),
                    ("trace_id", "abc"),
                    ("user", "u1"),
                ],
            ),
            (
                T,
                0,
                vec![
                    ("message", "kept"),
                    ("log", "raw"),
                    ("severity", "warn"),
                    ("level", "error"),
                ],
            ),
        ],
    );
    assert_eq!(
        got,
        concat!(
            "{\"index\":{\"_index\":\"flumen-2023.11.14\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"message\":\"GET / 200\",\"user\":\"u1\",\"log\":{\"level\":\"info\"},\"service\":{\"name\":\"api\"},\"host\":{\"name\":\"web-1\"},\"trace\":{\"id\":\"abc\"},\"event\":{\"dataset\":\"app.web\"}}\n",
            "{\"index\":{\"_index\":\"flumen-2023.11.14\"}}\n",
            // `log` beside a message is the original; the first level wins, the other stays.
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"message\":\"kept\",\"severity\":\"warn\",\"event\":{\"original\":\"raw\",\"dataset\":\"app.web\"},\"log\":{\"level\":\"error\"}}\n",
        )
    );
}

#[test]
fn a_data_stream_is_created_into_with_its_fields_set() {
    let got = body(
        "mode = \"data_stream\"\ndata_stream = { dataset = \"{{service|'generic'}}\", namespace = \"prod\" }\nid_field = \"id\"",
        &[
            (
                T,
                0,
                vec![
                    ("service", "Shop.API"),
                    ("id", "7"),
                    ("data_stream", "wrong"),
                ],
            ),
            (T, 0, vec![]),
        ],
    );
    assert_eq!(
        got,
        concat!(
            "{\"create\":{\"_index\":\"logs-shop.api-prod\",\"_id\":\"7\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"service\":\"Shop.API\",\"id\":\"7\",\"data_stream\":{\"type\":\"logs\",\"dataset\":\"shop.api\",\"namespace\":\"prod\"}}\n",
            "{\"create\":{\"_index\":\"logs-generic-prod\"}}\n",
            "{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"data_stream\":{\"type\":\"logs\",\"dataset\":\"generic\",\"namespace\":\"prod\"}}\n",
        )
    );
    let default = body("mode = \"data_stream\"", &[(T, 0, vec![])]);
    assert!(default.starts_with("{\"create\":{\"_index\":\"logs-generic-default\"}}\n"));
}

#[test]
fn a_delivery_larger_than_max_request_bytes_is_several_requests() {
    let events: Vec<TestEvent<'_>> = (0..10).map(|n| (T + n, 0, vec![("m", "x")])).collect();
    let one = body("", &events[..1]).len();
    let plan = sink("max_request_bytes = 250").plan(&delivery("t", &events));
    assert_eq!(one, 97);
    let sizes: Vec<usize> = plan
        .requests
        .iter()
        .map(|r| r.positions().count())
        .collect();
    assert_eq!(sizes, [2, 2, 2, 2, 2]);
    let all: Vec<usize> = plan.requests.iter().flat_map(|r| r.positions()).collect();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    // A document larger than the limit goes alone rather than not at all.
    let plan = sink("max_request_bytes = 10").plan(&delivery("t", &events[..3]));
    assert_eq!(plan.requests.len(), 3);
    // Halves split at a document's end.
    let [first, second] = sink("").plan(&delivery("t", &events[..3])).requests[0].halves();
    assert_eq!(first.positions().collect::<Vec<_>>(), [0]);
    assert_eq!(second.positions().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(first.body.len() + second.body.len(), 3 * one);
    assert!(second.body.starts_with(b"{\"index\"") && second.body.ends_with(b"}\n"));
    assert_eq!(second.ends, [one, 2 * one]);
}

#[test]
fn the_configuration_is_checked_with_errors_that_start_with_the_key() {
    let spec = config("").check().unwrap();
    assert_eq!(spec.url.as_str(), "http://127.0.0.1:1/_bulk");
    assert_eq!(spec.headers["content-type"], "application/x-ndjson");
    assert!(spec.headers.get("authorization").is_none());
    let spec = ElasticsearchConfig {
        url: "https://es.example.com/proxy/_bulk/".into(),
        ..config("pipeline = \"geo ip\"\ncompression = \"gzip\"")
    }
    .check()
    .unwrap();
    assert_eq!(
        spec.url.as_str(),
        "https://es.example.com/proxy/_bulk?pipeline=geo+ip"
    );
    assert_eq!(spec.headers["content-encoding"], "gzip");
    let spec = config("auth = { user = \"elastic\", password = \"changeme\" }")
        .check()
        .unwrap();
    assert_eq!(
        spec.headers["authorization"],
        "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
    );
    // An API key as `id:key` is encoded; an encoded one is sent as it is.
    let encoded = config("api_key = \"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw\"")
        .check()
        .unwrap();
    assert_eq!(
        encoded.headers["authorization"],
        "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
    );
    let as_is =
        config("api_key = \"VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\"")
            .check()
            .unwrap();
    assert_eq!(
        as_is.headers["authorization"],
        encoded.headers["authorization"]
    );
    let printed = format!(
        "{as_is:?}{:?}",
        config("auth = { user = \"u\", password = \"hunter2\" }")
    );
    assert!(
        !printed.contains("VnVh") && !printed.contains("hunter2"),
        "{printed}"
    );

    let error = |extra: &str| config(extra).check().unwrap_err();
    let cases = [
        (
            "auth = { user = \"u\", password = \"p\" }\napi_key = \"a:b\"",
            "auth and api_key: set one of them, not both",
        ),
        ("api_key = \" \"", "api_key: empty"),
        ("index = \"\"", "index: empty"),
        (
            "index = \"logs-%Q\"",
            "index: invalid strftime specifier in \"logs-%Q\"",
        ),
        (
            "index = \"logs-{{service\"",
            "index: unclosed '{{' in \"logs-{{service\"",
        ),
        (
            "mode = \"data_stream\"\nindex = \"x\"",
            "index: not with mode = \"data_stream\" (the data stream is named by data_stream = { type, dataset, namespace })",
        ),
        (
            "data_stream = { dataset = \"x\" }",
            "data_stream: only with mode = \"data_stream\"",
        ),
        (
            "mode = \"data_stream\"\ndata_stream = { namespace = \"\" }",
            "data_stream.namespace: empty",
        ),
        (
            "mode = \"data_stream\"\ntimestamp_field = \"ts\"",
            "timestamp_field: a data stream needs its documents' time in \"@timestamp\"",
        ),
        ("id_field = \"\"", "id_field: empty"),
        (
            "id_field = \"{{id}}\"",
            "id_field: \"{{id}}\" is not a field name (write the field itself, such as \"request_id\")",
        ),
        ("tag_field = \" \"", "tag_field: empty"),
        ("pipeline = \"\"", "pipeline: empty (leave it out for none)"),
        ("timeout = \"0s\"", "timeout: must be more than 0"),
        (
            "max_request_bytes = 0",
            "max_request_bytes: must be more than 0",
        ),
        (
            "headers = { \"bad header\" = \"x\" }",
            "headers: \"bad header\" is not a valid header name",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(error(extra), want, "{extra}");
    }
    for (url, want) in [
        ("", "url: required"),
        ("ftp://es:9200", "url: the scheme must be http or https"),
    ] {
        let error = ElasticsearchConfig {
            url: url.into(),
            ..config("")
        }
        .check()
        .unwrap_err();
        assert!(error.starts_with(want), "{error}");
    }
    assert!(
        toml::from_str::<ElasticsearchConfig>("url = \"http://h\"\nmode = \"upsert\"")
            .unwrap_err()
            .to_string()
            .contains("unknown variant `upsert`")
    );
}

fn sent(ids: &[bool]) -> Vec<SentDocument> {
    ids.iter()
        .enumerate()
        .map(|(position, &has_id)| SentDocument { position, has_id })
        .collect()
}

/// What an outcome says of a delivery of `n` events: for each failure, the positions (by
/// their times in seconds) and whether it is retryable and its message.
fn said(outcome: &Outcome, n: u64) -> Vec<(Vec<u64>, bool, String)> {
    let events: Vec<TestEvent<'_>> = (0..n).map(|s| (s, 0, vec![])).collect();
    let delivery = delivery("t", &events);
    outcome
        .undelivered(&delivery)
        .into_iter()
        .map(|(part, error)| {
            let seconds = part.events().map(|(_, e)| e.time.secs).collect();
            (seconds, error.retryable, error.message.clone())
        })
        .collect()
}

const ENDPOINT: &str = "http://es:9200/…";

#[test]
fn a_bulk_answer_is_judged_item_by_item() {
    let answer = r#"{"took":30,"errors":true,"items":[
        {"create":{"_index":"logs","_id":"a","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"status":201,"_seq_no":0,"_primary_term":1}},
        {"create":{"_index":"logs","_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long] in document with id 'b'. Preview of field's value: 'x'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}}}},
        {"create":{"_index":"logs","_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
        {"create":{"_index":"logs","_id":"d","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d]: version conflict, document already exists (current version [1])"}}},
        {"create":{"_index":"logs","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"}}},
        {"create":{"_index":"logs","_id":"f","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
        {"create":{"_index":"logs","_id":"g","status":404,"error":"IndexNotFoundException[no such index]"}},
        {"create":{"_index":"logs","_id":"h","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long] in document with id 'b'. Preview of field's value: 'x'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"x\""}}}}
    ]}"#;
    let documents = sent(&[true, true, true, true, false, true, true, true]);
    let outcome = judge(
        Outcome::delivered(),
        answer.as_bytes(),
        &documents,
        true,
        ENDPOINT,
    );
    let mapping = "mapper_parsing_exception: failed to parse field [n] of type [long] in document with id 'b'. Preview of field's value: 'x' (caused by illegal_argument_exception: For input string: \"x\")";
    assert_eq!(
        said(&outcome, 8),
        [
            (vec![6], false, "IndexNotFoundException[no such index]".to_owned()),
            (vec![1, 7], false, mapping.to_owned()),
            (
                vec![4],
                false,
                "version_conflict_engine_exception: [x]: version conflict".to_owned()
            ),
            (
                vec![2, 5],
                true,
                "http://es:9200/… did not take 2 of 8 documents for now and they are sent again (the first: 429 es_rejected_execution_exception: rejected execution of coordinating operation)".to_owned()
            ),
        ],
        "201 and a 409 to a create with an _id are delivered"
    );
    assert_eq!(outcome.wait(), None);

    // With `index`, a 409 is a conflict like any other.
    let conflict = r#"{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"r"}}}]}"#;
    let outcome = judge(
        Outcome::delivered(),
        conflict.as_bytes(),
        &sent(&[true]),
        false,
        ENDPOINT,
    );
    assert!(!said(&outcome, 1)[0].1, "a 409 to an index is refused");
}

#[test]
fn an_answer_without_errors_delivers_everything_and_one_that_does_not_add_up_retries_all() {
    let ok = r#"{"took":3,"errors":false,"items":[{"index":{"_index":"a","_id":"1","status":201,"result":"created"}},{"index":{"_index":"a","_id":"2","status":200,"result":"updated"}}]}"#;
    let outcome = judge(
        Outcome::delivered(),
        ok.as_bytes(),
        &sent(&[false, false]),
        false,
        ENDPOINT,
    );
    assert!(outcome.is_delivered());

    for (answer, message) in [
        (
            r#"{"errors":false,"items":[{"index":{"status":201}}]}"#,
            "the bulk answer from http://es:9200/… has 1 items for 2 documents; they are sent again",
        ),
        (
            "<html>proxy error</html>",
            "cannot read the bulk answer from http://es:9200/… (expected value at line 1 column 1); its documents are sent again",
        ),
        (
            r#"{"errors":false,"items":[{"index":{"status":201}},{}]}"#,
            "cannot read the bulk answer from http://es:9200/… (an item without an action at line 1 column 52); its documents are sent again",
        ),
        (
            r#"{"took":1,"errors":false,"items":[{"index":{"status":201}},{"index":{"stat"#,
            "cannot read the bulk answer from http://es:9200/… (EOF while parsing a string at line 1 column 74); its documents are sent again",
        ),
        (
            "",
            "cannot read the bulk answer from http://es:9200/… (EOF while parsing a value at line 1 column 0); its documents are sent again",
        ),
    ] {
        let outcome = judge(
            Outcome::delivered(),
            answer.as_bytes(),
            &sent(&[false, false]),
            false,
            ENDPOINT,
        );
        assert_eq!(
            said(&outcome, 2),
            [(vec![0, 1], true, message.to_owned())],
            "{answer}"
        );
    }
}

fn gunzip(body: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn requests_carry_the_headers_and_answers_become_outcomes() {
    let mixed = r#"{"took":1,"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}}]}"#;
    let (url, server) = server(vec![
        (200, "", mixed),
        (429, "retry-after: 3\r\n", r#"{"error":"too many requests","status":429}"#),
        (401, "", r#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#),
        (503, "", ""),
    ])
    .await;
    let config = ElasticsearchConfig {
        url,
        ..config(
            "compression = \"gzip\"\napi_key = \"id:key\"\nheaders = { x-opaque-id = \"flumen\" }",
        )
    };
    let mut sink = ElasticsearchSink::from_spec("es", &config.check().unwrap()).unwrap();
    let events = delivery(
        "t",
        &[
            (T, 0, vec![("m", "1")]),
            (T, 0, vec![("m", "2")]),
            (T, 0, vec![("m", "3")]),
        ],
    );

    let outcome = sink.deliver(&events).await;
    let parts = outcome.undelivered(&events);
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].0.events, parts[0].1.retryable), (1, false));
    assert_eq!(parts[0].1.message, "mapper_parsing_exception: bad");
    assert_eq!((parts[1].0.events, parts[1].1.retryable), (1, true));

    let throttled = sink.deliver(&events).await;
    assert_eq!(throttled.wait(), Some(Duration::from_secs(3)));
    let parts = throttled.undelivered(&events);
    assert!(parts[0].1.retryable && parts[0].1.message.starts_with("HTTP 429"));
    assert_eq!(parts[0].0.events, 3);

    let unauthorised = sink.deliver(&events).await;
    let (part, error) = &unauthorised.undelivered(&events)[0];
    assert_eq!(part.events, 3);
    assert!(!error.retryable && error.message.contains("missing authentication credentials"));

    let unavailable = sink.deliver(&events).await;
    assert!(unavailable.undelivered(&events)[0].1.retryable);

    let seen = server.await.unwrap();
    let (head, body) = &seen[0];
    assert!(head.starts_with("post /_bulk http/1.1"), "{head}");
    assert!(head.contains("content-type: application/x-ndjson"));
    assert!(head.contains("content-encoding: gzip"));
    assert!(head.contains("authorization: apikey awq6a2v5"), "{head}");
    assert!(head.contains("x-opaque-id: flumen"));
    let body = gunzip(body);
    assert_eq!(body.lines().count(), 6);
    assert!(body.ends_with("{\"@timestamp\":\"2023-11-14T22:13:20.000000000Z\",\"m\":\"3\"}\n"));
}

#[tokio::test]
async fn a_request_too_large_is_split_and_a_document_too_large_alone_refused() {
    let two = r#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}}]}"#;
    let (url, server) = server(vec![(413, "", ""), (413, "", ""), (200, "", two)]).await;
    let mut sink = ElasticsearchSink::from_spec(
        "es",
        &ElasticsearchConfig { url, ..config("") }.check().unwrap(),
    )
    .unwrap();
    let events = delivery("t", &vec![(T, 0, vec![("m", "x")]); 3]);
    // All three: 413; then the first half, one document: 413 again, refused; the second
    // half, two documents: taken.
    let outcome = sink.deliver(&events).await;
    let parts = outcome.undelivered(&events);
    let seen = server.await.unwrap();
    assert_eq!(
        seen.iter().map(|(_, body)| body.len()).collect::<Vec<_>>(),
        [3 * 97, 97, 2 * 97]
    );
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].0.events, parts[0].1.retryable), (1, false));
    assert!(
        parts[0].1.message.starts_with("HTTP 413"),
        "{}",
        parts[0].1.message
    );
}

#[test]
fn the_examples_of_the_configuration_reference_hold() {
    // docs/configuration.md, `type = "elasticsearch"`: the event at 2025-11-21T12:00:00Z.
    let event = (
        1_763_726_400,
        0,
        vec![
            ("service", "Checkout"),
            ("request_id", "r-1"),
            ("message", "order placed"),
        ],
    );
    let first = sink(
        "index = \"logs-{{service|'other'}}-%Y.%m.%d\"\nid_field = \"request_id\"\ntag_field = \"tag\"\ncompression = \"gzip\"",
    );
    let second = sink(
        "mode = \"data_stream\"\ndata_stream = { dataset = \"{{service|'generic'}}\", namespace = \"prod\" }\necs = true",
    );
    let body = |sink: &ElasticsearchSink| {
        let plan = sink.plan(&delivery("app.shop", std::slice::from_ref(&event)));
        String::from_utf8(plan.requests[0].body.clone()).unwrap()
    };
    assert_eq!(
        body(&first),
        concat!(
            "{\"index\":{\"_index\":\"logs-checkout-2025.11.21\",\"_id\":\"r-1\"}}\n",
            "{\"@timestamp\":\"2025-11-21T12:00:00.000000000Z\",\"tag\":\"app.shop\",\"service\":\"Checkout\",\"request_id\":\"r-1\",\"message\":\"order placed\"}\n",
        )
    );
    assert_eq!(
        body(&second),
        concat!(
            "{\"create\":{\"_index\":\"logs-checkout-prod\"}}\n",
            "{\"@timestamp\":\"2025-11-21T12:00:00.000000000Z\",\"request_id\":\"r-1\",\"message\":\"order placed\",\"service\":{\"name\":\"Checkout\"},\"event\":{\"dataset\":\"app.shop\"},\"data_stream\":{\"type\":\"logs\",\"dataset\":\"checkout\",\"namespace\":\"prod\"}}\n",
        )
    );
}
