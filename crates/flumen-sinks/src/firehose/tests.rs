use flumen_event::{BatchBuilder, EventTime, TenantId};

use super::*;
use crate::scripted::numbered;
use crate::testing::server;

/// A delivery of one batch tagged `t`, one event per message: `{"m": message}` at the second
/// of its position.
fn delivery(messages: &[&str]) -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut entries = Vec::new();
    for (n, message) in messages.iter().enumerate() {
        let mut record = Vec::new();
        rmp::encode::write_map_len(&mut record, 1).unwrap();
        rmp::encode::write_str(&mut record, "m").unwrap();
        rmp::encode::write_str(&mut record, message).unwrap();
        flumen_event::entry::write_entry(&mut entries, EventTime::new(n as u64, 0), &record);
    }
    let count = messages.len() as u32;
    let batch = builder.encode("t", b"", count, &entries).unwrap();
    let mut delivery = Delivery::default();
    delivery.push(0, batch.into(), count);
    delivery
}

fn config(extra: &str) -> FirehoseConfig {
    toml::from_str(&format!(
        "delivery_stream = \"logs\"\nauth = {{ access_key_id = \"AKID\", secret_access_key = \"s\" }}\n{extra}"
    ))
    .unwrap()
}

fn check_error(extra: &str) -> String {
    config(extra).check().unwrap_err()
}

fn sink(extra: &str) -> FirehoseSink {
    FirehoseSink::from_spec(&config(extra).check().unwrap()).unwrap()
}

/// The events' times (their numbers) in each part an outcome names, with whether it is
/// retryable.
fn failed(outcome: &Outcome, delivery: &Delivery) -> Vec<(Vec<u64>, bool)> {
    outcome
        .undelivered(delivery)
        .iter()
        .map(|(part, error)| {
            let numbers = part.events().map(|(_, e)| e.time.secs).collect();
            (numbers, error.retryable)
        })
        .collect()
}

/// The data of each record of a call's body, decoded.
fn data_of(body: &[u8]) -> (String, Vec<Vec<u8>>) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    let records = json["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| BASE64.decode(r["Data"].as_str().unwrap()).unwrap())
        .collect();
    (json["DeliveryStreamName"].as_str().unwrap().into(), records)
}

#[test]
fn each_event_is_a_json_line_base64_in_the_body() {
    let events = delivery(&["a", "b \"quoted\""]);
    let made = records(&config(""), &events);
    let calls = calls("logs", &made.records);
    assert_eq!(calls.len(), 1);
    let (stream, data) = data_of(&calls[0].body);
    assert_eq!(stream, "logs");
    assert_eq!(
        data,
        [
            b"{\"tag\":\"t\",\"time\":\"1970-01-01T00:00:00.000000000Z\",\"record\":{\"m\":\"a\"}}\n"
                .to_vec(),
            b"{\"tag\":\"t\",\"time\":\"1970-01-01T00:00:01.000000000Z\",\"record\":{\"m\":\"b \\\"quoted\\\"\"}}\n"
                .to_vec(),
        ]
    );
    assert!(
        calls[0]
            .body
            .starts_with(b"{\"DeliveryStreamName\":\"logs\",\"Records\":[{\"Data\":\"")
    );
}

#[test]
fn the_record_alone_with_or_without_its_time_and_newline() {
    let events = delivery(&["a"]);
    let data = |extra: &str| records(&config(extra), &events).records[0].data.clone();
    assert_eq!(data("format = \"record\""), b"{\"m\":\"a\"}\n");
    assert_eq!(
        data("format = \"record\"\ntime_key = \"@timestamp\"\nappend_newline = false"),
        b"{\"m\":\"a\",\"@timestamp\":\"1970-01-01T00:00:00.000000000Z\"}"
    );
}

#[test]
fn aggregation_packs_consecutive_events_up_to_the_record_limit() {
    let big = "x".repeat(600_000);
    let events = delivery(&["a", "b", &big, &big, "c"]);
    let made = records(&config("format = \"record\"\naggregate = true"), &events);
    let positions: Vec<&[usize]> = made
        .records
        .iter()
        .map(|r| r.positions.as_slice())
        .collect();
    // The second 600 KB event would pass 1,000 KiB: it starts the next record.
    assert_eq!(positions, [&[0, 1, 2][..], &[3, 4]]);
    assert!(
        made.records
            .iter()
            .all(|r| r.data.len() <= MAX_RECORD_BYTES)
    );
    assert!(
        made.records[0]
            .data
            .starts_with(b"{\"m\":\"a\"}\n{\"m\":\"b\"}\n{\"m\":\"xxx")
    );
    assert!(made.records[1].data.ends_with(b"{\"m\":\"c\"}\n"));
    let plain = records(&config("format = \"record\""), &events);
    assert_eq!(plain.records.len(), 5);
}

#[test]
fn calls_hold_at_most_500_records_and_4_mb() {
    let events = numbered(3, 400);
    let made = records(&config(""), &events);
    let split: Vec<Range<usize>> = calls("logs", &made.records)
        .into_iter()
        .map(|c| c.records)
        .collect();
    assert_eq!(split, [0..500, 500..1000, 1000..1200]);

    // Ten events of 600 KB: base64 makes each 800 KB, so four fit in 4 MB, not five.
    let big = "y".repeat(600_000);
    let events = delivery(&[big.as_str(); 10]);
    let made = records(&config(""), &events);
    let calls = calls("logs", &made.records);
    let split: Vec<Range<usize>> = calls.iter().map(|c| c.records.clone()).collect();
    assert_eq!(split, [0..4, 4..8, 8..10]);
    for call in &calls {
        assert!(call.body.len() <= MAX_CALL_BYTES, "{}", call.body.len());
        assert_eq!(data_of(&call.body).1.len(), call.records.len());
    }
    assert!(calls[0].body.len() > 3_000_000, "calls are filled");
}

#[test]
fn an_event_larger_than_a_record_is_refused_for_good_and_never_sent() {
    let huge = "z".repeat(MAX_RECORD_BYTES);
    let events = delivery(&["a", &huge, "b"]);
    let made = records(&config(""), &events);
    assert_eq!(made.records.len(), 2);
    assert_eq!(made.too_large.len(), 1);
    let outcome = made.refusals();
    let parts = outcome.undelivered(&events);
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0.events, 1);
    assert!(!parts[0].1.retryable);
    assert!(
        parts[0]
            .1
            .message
            .starts_with("the event is larger than a Firehose record may be: 1024070 bytes"),
        "{}",
        parts[0].1.message
    );
}

#[test]
fn record_failures_are_retried_alone() {
    let sink = sink("");
    let body = br#"{"FailedPutCount":2,"Encrypted":false,"RequestResponses":[
        {"RecordId":"1"},
        {"ErrorCode":"ServiceUnavailableException","ErrorMessage":"Slow down."},
        {"RecordId":"3"},
        {"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#;
    match sink.read_answer(StatusCode::OK, None, body, 4) {
        Answer::RecordsFailed(failed, error) => {
            assert_eq!(failed, [1, 3]);
            assert!(error.retryable);
            assert_eq!(
                error.message,
                "Firehose PutRecordBatch to stream \"logs\" at https://firehose.us-east-1.amazonaws.com: \
                 2 of 4 records not taken: ServiceUnavailableException: Slow down."
            );
        }
        other => panic!("{other:?}"),
    }
    let all_taken = br#"{"FailedPutCount":0,"RequestResponses":[{"RecordId":"1"}]}"#;
    assert!(matches!(
        sink.read_answer(StatusCode::OK, None, all_taken, 1),
        Answer::Taken
    ));
    let miscounted = br#"{"FailedPutCount":1,"RequestResponses":[{"RecordId":"1"}]}"#;
    assert!(matches!(
        sink.read_answer(StatusCode::OK, None, miscounted, 2),
        Answer::Refused(DeliveryError {
            retryable: true,
            ..
        })
    ));
    assert!(matches!(
        sink.read_answer(StatusCode::OK, None, b"<html>", 2),
        Answer::Refused(DeliveryError {
            retryable: true,
            ..
        })
    ));
}

#[test]
fn whole_call_errors_are_retried_unless_they_refuse_the_data() {
    let sink = sink("region = \"eu-west-1\"");
    let refused = |status: u16, error_type: Option<&str>, body: &str| match sink.read_answer(
        StatusCode::from_u16(status).unwrap(),
        error_type,
        body.as_bytes(),
        3,
    ) {
        Answer::Refused(error) => error,
        other => panic!("{other:?}"),
    };
    let missing = refused(
        400,
        None,
        r#"{"__type":"com.amazonaws.firehose#ResourceNotFoundException","message":"Firehose logs not found."}"#,
    );
    assert!(missing.retryable, "an operator creates the stream");
    assert_eq!(
        missing.message,
        "Firehose PutRecordBatch to stream \"logs\" at https://firehose.eu-west-1.amazonaws.com: \
         HTTP 400 ResourceNotFoundException: Firehose logs not found. (does the delivery stream \
         exist in region \"eu-west-1\" of this account? set region)"
    );
    let invalid = refused(
        400,
        None,
        r#"{"__type":"InvalidArgumentException","message":"Record size exceeds"}"#,
    );
    assert!(!invalid.retryable, "the data itself is refused");
    for (status, error_type, body) in [
        (400, None, r#"{"__type":"ServiceUnavailableException"}"#),
        (
            400,
            None,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        ),
        (
            400,
            None,
            r#"{"__type":"InvalidKMSResourceException","message":"k"}"#,
        ),
        (500, None, ""),
        (503, None, "Service Unavailable"),
        (
            403,
            Some("UnrecognizedClientException:http://internal.amazon.com/coral/"),
            r#"{"Message":"The security token included in the request is invalid."}"#,
        ),
    ] {
        let error = refused(status, error_type, body);
        assert!(error.retryable, "{status} {body}");
    }
    let credentials = refused(
        403,
        Some("UnrecognizedClientException:http://internal.amazon.com/coral/"),
        r#"{"Message":"The security token included in the request is invalid."}"#,
    );
    assert!(
        credentials.message.ends_with(
            "HTTP 403 UnrecognizedClientException: The security token included in the request \
             is invalid. (check the credentials: auth, or the AWS chain)"
        ),
        "{}",
        credentials.message
    );
    assert!(!refused(413, None, "").retryable);
    assert!(
        !credentials.message.contains("AKID"),
        "no credentials in messages"
    );
}

#[tokio::test]
async fn a_delivery_is_signed_calls_and_the_answers_make_its_outcome() {
    // 500 responses, the second an error.
    let mut responses = vec![r#"{"RecordId":"a"}"#; 500];
    responses[1] = r#"{"ErrorCode":"ServiceUnavailableException","ErrorMessage":"Slow down."}"#;
    let partly = format!(
        r#"{{"FailedPutCount":1,"Encrypted":false,"RequestResponses":[{}]}}"#,
        responses.join(",")
    );
    const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
    let (url, server) = server(vec![
        (
            200,
            "content-type: application/x-amz-json-1.1\r\n",
            partly.leak() as &str,
        ),
        (400, "", THROTTLED),
    ])
    .await;
    let mut sink = sink(&format!("endpoint = \"{url}\"\nformat = \"record\""));
    // 1,000 events: two calls of 500.
    let events = numbered(1, 1000);
    let first = sink.deliver(&events).await;
    // The second record of the first call failed; the second call was throttled whole.
    let said = failed(&first, &events);
    assert_eq!(said.len(), 2);
    assert_eq!(said[0], (vec![1], true));
    assert_eq!(said[1].0, (500..1000).collect::<Vec<u64>>());
    assert!(said[1].1);

    let seen = server.await.unwrap();
    let (head, body) = &seen[0];
    assert!(head.starts_with("post / http/1.1"), "{head}");
    assert!(head.contains("x-amz-target: firehose_20150804.putrecordbatch"));
    assert!(head.contains("content-type: application/x-amz-json-1.1"));
    assert!(
        head.contains("authorization: aws4-hmac-sha256 credential=akid/")
            && head.contains("/us-east-1/firehose/aws4_request"),
        "{head}"
    );
    let (stream, data) = data_of(body);
    assert_eq!((stream.as_str(), data.len()), ("logs", 500));
    assert_eq!(data[0], b"{}\n");
}

#[tokio::test]
async fn after_a_call_fails_whole_the_later_calls_wait_with_it() {
    let (url, server) = server(vec![(503, "", "")]).await;
    let mut sink = sink(&format!("endpoint = \"{url}\""));
    let events = numbered(1, 1200);
    let outcome = sink.deliver(&events).await;
    let said = failed(&outcome, &events);
    assert_eq!(said, [((0..1200).collect::<Vec<u64>>(), true)]);
    assert_eq!(server.await.unwrap().len(), 1, "one call, not three");
}

#[test]
fn settings_are_checked_with_the_key_named() {
    for name in ["a b", "", &"x".repeat(65)] {
        let bad: FirehoseConfig = toml::from_str(&format!("delivery_stream = {name:?}")).unwrap();
        assert!(bad.check().unwrap_err().starts_with(&format!(
            "delivery_stream: {name:?} is not a delivery stream name"
        )));
    }
    assert_eq!(
        check_error("endpoint = \"ftp://x\""),
        "endpoint: the scheme must be http or https, not \"ftp\""
    );
    assert_eq!(
        check_error("time_key = \"ts\""),
        "time_key: only with format = \"record\" (an event holds its time)"
    );
    assert!(check_error("aggregate = true\nappend_newline = false").starts_with("aggregate: "));
    let keys_apart: FirehoseConfig =
        toml::from_str("delivery_stream = \"logs\"\nauth = { access_key_id = \"A\" }").unwrap();
    assert_eq!(
        keys_apart.check().unwrap_err(),
        "auth: access_key_id and secret_access_key go together"
    );
    assert!(toml::from_str::<FirehoseConfig>("delivery_stream = \"l\"\nnope = 1").is_err());
}

#[test]
fn the_endpoint_is_the_regions_unless_set() {
    let url = |extra: &str| config(extra).check().unwrap().url.to_string();
    assert_eq!(
        url("region = \"eu-west-1\""),
        "https://firehose.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        url("region = \"cn-north-1\""),
        "https://firehose.cn-north-1.amazonaws.com.cn/"
    );
    assert_eq!(
        url("endpoint = \"http://127.0.0.1:4566\""),
        "http://127.0.0.1:4566/"
    );
}
