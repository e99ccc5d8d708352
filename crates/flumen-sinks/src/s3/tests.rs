use std::io::Read;

use flumen_event::{BatchBuilder, EventTime, TenantId};

use super::*;
use crate::testing::record;

/// A batch at log position `seq` of tag `tag`, one event per `(seconds, service)`.
fn push_batch(delivery: &mut Delivery, seq: u64, tag: &str, events: &[(u64, &str)]) {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut entries = Vec::new();
    for (secs, service) in events {
        flumen_event::entry::write_entry(
            &mut entries,
            EventTime::new(*secs, 0),
            &record(&[("service", service)]),
        );
    }
    let count = events.len() as u32;
    let batch = builder.encode(tag, b"", count, &entries).unwrap();
    delivery.push(seq, batch.into(), count);
}

fn spec(extra: &str) -> S3Spec {
    let config: S3Config = toml::from_str(&format!("bucket = \"logs\"\n{extra}")).unwrap();
    config.check().unwrap()
}

fn check_error(extra: &str) -> String {
    let config: S3Config = toml::from_str(&format!("bucket = \"logs\"\n{extra}")).unwrap();
    config.check().unwrap_err()
}

fn lines(object: &Object, compression: S3Compression) -> Vec<serde_json::Value> {
    let mut text = String::new();
    match compression {
        S3Compression::Gzip => {
            flate2::read::GzDecoder::new(&object.body[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        S3Compression::Zstd => {
            text = String::from_utf8(zstd::decode_all(&object.body[..]).unwrap()).unwrap();
        }
        S3Compression::None => text = String::from_utf8(object.body.to_vec()).unwrap(),
    }
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

// 2026-12-04T16:59:59Z and the second after it.
const BEFORE_HOUR: u64 = 1_796_403_599;
const AFTER_HOUR: u64 = 1_796_403_600;

#[test]
fn a_delivery_is_one_object_per_prefix_named_after_its_first_event() {
    let mut delivery = Delivery::default();
    push_batch(
        &mut delivery,
        40,
        "app.web",
        &[(BEFORE_HOUR, "a"), (AFTER_HOUR, "b")],
    );
    push_batch(&mut delivery, 41, "app.db", &[(AFTER_HOUR, "c")]);
    push_batch(
        &mut delivery,
        42,
        "app.web",
        &[(AFTER_HOUR, "d"), (BEFORE_HOUR, "e")],
    );
    let spec = spec("key_prefix = \"logs/{{tag}}/dt=%Y-%m-%d/hour=%H/\"");
    let objects = objects(&spec, "n1-s3-", &delivery);
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "logs/app.web/dt=2026-12-04/hour=16/n1-s3-00000000000000000040.ndjson.gz",
            "logs/app.web/dt=2026-12-04/hour=17/n1-s3-00000000000000000040.ndjson.gz",
            "logs/app.db/dt=2026-12-04/hour=17/n1-s3-00000000000000000041.ndjson.gz",
        ]
    );
    let positions: Vec<&[usize]> = objects.iter().map(|o| o.positions.as_slice()).collect();
    assert_eq!(positions, [&[0, 4][..], &[1, 3], &[2]]);
    let services: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            lines(o, S3Compression::Gzip)
                .iter()
                .map(|l| l["record"]["service"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(services, [vec!["a", "e"], vec!["b", "d"], vec!["c"]]);
    let first = &lines(&objects[0], S3Compression::Gzip)[0];
    assert_eq!(first["tag"], "app.web");
    assert_eq!(first["time"], "2026-12-04T16:59:59.000000000Z");
}

#[test]
fn the_same_events_make_the_same_keys_so_a_re_upload_replaces() {
    let mut delivery = Delivery::default();
    push_batch(&mut delivery, 7, "t", &[(BEFORE_HOUR, "a")]);
    push_batch(&mut delivery, 8, "t", &[(BEFORE_HOUR, "b")]);
    let spec = spec("");
    let once = objects(&spec, "n-o-", &delivery);
    let again = objects(&spec, "n-o-", &delivery);
    assert_eq!(once[0].key, again[0].key);
    assert_eq!(
        once[0].key,
        "t/dt=2026-12-04/hour=16/n-o-00000000000000000007.ndjson.gz"
    );
    // What the driver retries after a part failed: the same first event, the same key.
    let retried = delivery.select(|position| position == 0);
    assert_eq!(objects(&spec, "n-o-", &retried)[0].key, once[0].key);
}

#[test]
fn objects_are_compressed_as_configured_and_prefixes_read_fields() {
    let mut delivery = Delivery::default();
    push_batch(
        &mut delivery,
        0,
        "t",
        &[(AFTER_HOUR, "api"), (AFTER_HOUR, "")],
    );
    for (compression, extra) in [
        (
            S3Compression::Gzip,
            "compression = \"gzip\"\ncompression_level = 1",
        ),
        (S3Compression::Zstd, "compression = \"zstd\""),
        (S3Compression::None, "compression = \"none\""),
    ] {
        let spec = spec(&format!(
            "key_prefix = \"{{{{service|'none'}}}}/\"\n{extra}"
        ));
        let objects = objects(&spec, "n-o-", &delivery);
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let ext = compression.extension();
        assert_eq!(
            keys,
            [
                format!("api/n-o-00000000000000000000{ext}"),
                format!("none/n-o-00000000000000000000{ext}")
            ]
        );
        assert_eq!(
            lines(&objects[0], compression)[0]["record"]["service"],
            "api"
        );
    }
}

#[test]
fn settings_are_checked_with_the_key_named() {
    let bad_bucket: S3Config = toml::from_str("bucket = \"Logs_1\"").unwrap();
    assert!(
        bad_bucket
            .check()
            .unwrap_err()
            .starts_with("bucket: \"Logs_1\" is not a bucket name")
    );
    assert_eq!(
        check_error("key_prefix = \"/logs/\""),
        "key_prefix: an S3 key does not start with '/'"
    );
    assert_eq!(
        check_error("key_prefix = \"%Q/\""),
        "key_prefix: invalid strftime specifier in \"%Q/\""
    );
    assert_eq!(
        check_error("part_size = \"1MiB\""),
        "part_size: S3 takes parts of 5 MiB to 5 GiB"
    );
    assert_eq!(
        check_error("compression = \"zstd\"\ncompression_level = 22"),
        "compression_level: zstd's levels are 1 to 19"
    );
    assert_eq!(
        check_error("endpoint = \"ftp://x\""),
        "endpoint: the scheme must be http or https, not \"ftp\""
    );
    assert_eq!(
        check_error("auth = { access_key_id = \"A\" }"),
        "auth: access_key_id and secret_access_key go together"
    );
    assert_eq!(
        check_error("storage_class = \"cold\""),
        "storage_class: \"cold\" is not a storage class (STANDARD_IA, GLACIER_IR, …)"
    );
}

#[test]
fn objects_batch_larger_by_default_and_take_what_is_set() {
    let defaults: S3Config = toml::from_str("bucket = \"logs\"").unwrap();
    assert_eq!(defaults.batch.max_bytes, bytesize::ByteSize::mib(32));
    assert_eq!(defaults.batch.timeout, std::time::Duration::from_secs(300));
    let set: S3Config = toml::from_str("bucket = \"logs\"\nbatch = { timeout = \"10s\" }").unwrap();
    assert_eq!(set.batch.timeout, std::time::Duration::from_secs(10));
    assert_eq!(
        set.batch.max_events, 1_000_000,
        "the rest stay the object defaults"
    );
    assert!(toml::from_str::<S3Config>("bucket = \"logs\"\nbatch = { nope = 1 }").is_err());
}

#[test]
fn the_bucket_is_addressed_by_host_or_by_path() {
    let base = |extra: &str| S3Sink::from_spec("s3", &spec(extra), "n").unwrap().base;
    assert_eq!(
        base("region = \"eu-west-1\""),
        "https://logs.s3.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        base("region = \"eu-west-1\"\nforce_path_style = true"),
        "https://s3.eu-west-1.amazonaws.com/logs/"
    );
    assert_eq!(
        base("endpoint = \"http://127.0.0.1:9000\""),
        "http://127.0.0.1:9000/logs/"
    );
    assert_eq!(
        base("endpoint = \"http://minio.local:9000\"\nforce_path_style = false"),
        "http://logs.minio.local:9000/"
    );
}

#[test]
fn a_prefix_with_fractions_of_a_second_is_rendered_for_each_event() {
    let mut delivery = Delivery::default();
    push_batch(
        &mut delivery,
        0,
        "t",
        &[(AFTER_HOUR, "a"), (AFTER_HOUR, "b")],
    );
    assert!(spec("").prefix_per_second);
    let fractions = spec("key_prefix = \"%H%M%S%.3f/\"");
    assert!(!fractions.prefix_per_second);
    assert!(!spec("key_prefix = \"%6f/\"").prefix_per_second);
    assert!(spec("key_prefix = \"100%%/\"").prefix_per_second);
    let keys: Vec<String> = objects(&fractions, "n-", &delivery)
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["170000.000/n-00000000000000000000.ndjson.gz"]);
}

#[test]
fn keys_are_encoded_as_s3_signs_them() {
    let key = "a b/c=d/ü+~.-_";
    assert_eq!(
        utf8_percent_encode(key, KEY_SAFE).to_string(),
        "a%20b/c%3Dd/%C3%BC%2B~.-_"
    );
    assert_eq!(utf8_percent_encode("x/y", QUERY_SAFE).to_string(), "x%2Fy");
}

#[test]
fn s3_error_answers_are_read_and_only_refusals_of_the_data_are_permanent() {
    let sink = S3Sink::from_spec("s3", &spec("endpoint = \"http://127.0.0.1:9000\""), "n").unwrap();
    let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
                <Message>Access Denied &amp; more</Message></Error>";
    let failure = sink.refusal(StatusCode::FORBIDDEN, "PUT", body, "AccessDenied");
    assert_eq!(
        failure.error.message,
        "S3 PUT to http://127.0.0.1:9000/logs: HTTP 403 AccessDenied: Access Denied & more"
    );
    assert!(
        failure.error.retryable,
        "an operator's fix lets the same events through"
    );
    let too_long = sink.refusal(StatusCode::BAD_REQUEST, "PUT", "", "KeyTooLongError");
    assert!(!too_long.error.retryable);
    assert_eq!(
        xml_element("<a><UploadId>x&lt;1</UploadId></a>", "UploadId").as_deref(),
        Some("x<1")
    );
    assert_eq!(xml_element("<a/>", "UploadId"), None);
    assert_eq!(xml_escape("\"e&t\""), "&quot;e&amp;t&quot;");
}
