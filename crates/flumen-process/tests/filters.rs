//! Redaction, sampling and rate limits on realistic events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_process::rate_limit::{RateLimitConfig, RateLimiter};
use flumen_process::redact::{RedactConfig, Redactor};
use flumen_process::sample::{SampleConfig, Sampler};

fn event(fields: &[(&str, Value)]) -> Event {
    Event {
        time: EventTime::new(1_700_000_000, 0),
        record: Record::from(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Vec<_>>(),
        ),
        metadata: None,
    }
}

fn log_event(line: &str) -> Event {
    event(&[
        ("container_id", Value::from("3f2a9c")),
        ("source", Value::from("stdout")),
        ("log", Value::from(line)),
    ])
}

fn redactor(toml_text: &str) -> Redactor {
    let config: RedactConfig = toml::from_str(toml_text).expect("config");
    Redactor::new(&config).expect("compiles")
}

fn redact_log(redactor: &Redactor, line: &str) -> (String, usize) {
    let mut event = log_event(line);
    let count = redactor.apply(&mut event);
    let log = event
        .record
        .get("log")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    (log, count)
}

// ---------------------------------------------------------------------------------------------
// Redaction

#[test]
fn curl_verbose_dump_loses_only_the_bearer_token() {
    let r = redactor("");
    let dump = "\
*   Trying 10.0.3.7:443...
* Connected to api.example.com (10.0.3.7) port 443 (#0)
> GET /v1/orders?limit=50 HTTP/1.1
> Host: api.example.com
> User-Agent: curl/7.88.1
> Accept: */*
> Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c
>
< HTTP/1.1 200 OK
< Content-Type: application/json
< Content-Length: 1432
";
    let (log, count) = redact_log(&r, dump);
    assert_eq!(count, 1);
    assert_eq!(
        log,
        dump.replace(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "[REDACTED]"
        )
    );
    assert!(log.contains("> Authorization: Bearer [REDACTED]\n>\n< HTTP/1.1 200 OK"));

    // An opaque token in lower case, and prose that only mentions a bearer.
    let (log, count) = redact_log(
        &r,
        "retrying with bearer 9f86d081884c7d659a2feaa0c55ad015 after 401",
    );
    assert_eq!(
        (log.as_str(), count),
        ("retrying with bearer [REDACTED] after 401", 1)
    );
    let prose = "the bearer of this message is trusted";
    assert_eq!(redact_log(&r, prose), (prose.to_owned(), 0));
}

#[test]
fn basic_auth_header() {
    let (log, count) = redact_log(
        &redactor(""),
        "> Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    );
    assert_eq!(
        (log.as_str(), count),
        ("> Authorization: Basic [REDACTED]", 1)
    );
}

#[test]
fn database_url_keeps_everything_but_the_password() {
    let r = redactor("");
    let (log, count) = redact_log(
        &r,
        "2026-11-21T13:31:30Z INFO connecting to postgres://orders_app:Xk9#mP2$vQ@db-primary.internal:5432/orders?sslmode=require",
    );
    assert_eq!(count, 1);
    assert_eq!(
        log,
        "2026-11-21T13:31:30Z INFO connecting to postgres://orders_app:[REDACTED]@db-primary.internal:5432/orders?sslmode=require"
    );
    // A user-less Redis URL, and a URL with a port but no credentials.
    let (log, count) = redact_log(
        &r,
        "cache=redis://:hunter2@cache:6379/0 upstream=https://api.example.com:8443/v1",
    );
    assert_eq!(
        (log.as_str(), count),
        (
            "cache=redis://:[REDACTED]@cache:6379/0 upstream=https://api.example.com:8443/v1",
            1
        )
    );
}

#[test]
fn aws_credentials_file() {
    let r = redactor("");
    let file = "\
[default]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
region = eu-west-1
";
    let (log, count) = redact_log(&r, file);
    assert_eq!(count, 2);
    assert_eq!(
        log,
        "\
[default]
aws_access_key_id = [REDACTED]
aws_secret_access_key = [REDACTED]
region = eu-west-1
"
    );
    // The environment and `aws sts` JSON spellings.
    let (log, count) = redact_log(
        &r,
        r#"env AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY {"AccessKeyId": "ASIAY34FZKBOKMUTVV7A", "SecretAccessKey": "9drTJvcXLB89EXAMPLELB8923FB892xMFI", "SessionToken": "IQoJb3JpZ2luX2VjEXAMPLETOKEN"}"#,
    );
    assert_eq!(count, 4);
    assert_eq!(
        log,
        r#"env AWS_SECRET_ACCESS_KEY=[REDACTED] {"AccessKeyId": "[REDACTED]", "SecretAccessKey": "[REDACTED]", "SessionToken": "[REDACTED]"}"#
    );
}

#[test]
fn card_numbers_pass_luhn_order_ids_do_not() {
    let r = redactor("");
    let (log, count) = redact_log(
        &r,
        "payment accepted card=4111 1111 1111 1111 amount=28.50 order=4929123456789012",
    );
    assert_eq!(count, 1);
    assert_eq!(
        log,
        "payment accepted card=[REDACTED] amount=28.50 order=4929123456789012"
    );
    for (line, want) in [
        (
            "card 5105-1051-0510-5100 declined",
            "card [REDACTED] declined",
        ),
        ("amex 378282246310005 ok", "amex [REDACTED] ok"),
        // A card followed by more digits in the same grouping.
        ("pan 4111 1111 1111 1111 2031", "pan [REDACTED] 2031"),
    ] {
        assert_eq!(redact_log(&r, line), (want.to_owned(), 1), "{line}");
    }
    for line in [
        // Luhn-valid but starting with 1: a millisecond timestamp, not a card.
        "ts=1700000000000 done",
        // Mixed separators, too short, too long.
        "ref 4111 1111-1111 1111",
        "id 411111111111",
        "trace 41111111111111111111111",
        "2026-11-21 13:31:30,931 INFO order 7 total 28.50",
    ] {
        assert_eq!(redact_log(&r, line), (line.to_owned(), 0), "{line}");
    }
}

#[test]
fn emails_passwords_jwts_and_private_keys() {
    let r = redactor("");
    for (line, want, n) in [
        (
            "password reset link sent to jane.doe+shop@example.co.uk",
            "password reset link sent to [REDACTED]",
            1,
        ),
        (
            r#"{"user":"jane","password":"correct horse","remember":true}"#,
            r#"{"user":"jane","password":"[REDACTED] horse","remember":true}"#,
            1,
        ),
        (
            "POST /login?username=jane&password=hunter2&next=/home",
            "POST /login?username=jane&password=[REDACTED]&next=/home",
            1,
        ),
        (
            "config loaded: api_key=sk_live_51H8xExample client_secret: 'abcDEF123'",
            "config loaded: api_key=[REDACTED] client_secret: '[REDACTED]'",
            2,
        ),
        (
            "id_token=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJl",
            "id_token=[REDACTED]",
            1,
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1c\n-----END RSA PRIVATE KEY-----\nloaded",
            "[REDACTED]\nloaded",
            1,
        ),
        (
            "key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
            "key: [REDACTED]",
            1,
        ),
    ] {
        assert_eq!(redact_log(&r, line), (want.to_owned(), n), "{line}");
    }
}

#[test]
fn every_string_field_is_searched_recursively_unless_fields_are_named() {
    let mut e = event(&[
        ("log", Value::from("login ok for jane@example.com")),
        ("status", Value::UInt(200)),
        (
            "http",
            Value::Map(vec![(
                "headers".to_owned(),
                Value::Map(vec![
                    (
                        "authorization".to_owned(),
                        Value::from("Bearer 7c4a8d09ca3762af61e5"),
                    ),
                    ("accept".to_owned(), Value::from("*/*")),
                ]),
            )]),
        ),
        (
            "tags",
            Value::Array(vec![
                Value::from("ok"),
                Value::from("card 4111111111111111"),
            ]),
        ),
        // Bytes that are not UTF-8 around a secret.
        (
            "raw",
            Value::Bin(b"\xff\xfeuser=a@example.com\xff".to_vec()),
        ),
    ]);
    let mut only_log = e.clone();
    assert_eq!(redactor("").apply(&mut e), 4);
    assert_eq!(
        e.record.get_path("http.headers.authorization"),
        Some(&Value::from("Bearer [REDACTED]"))
    );
    assert_eq!(
        e.record.get_path("http.headers.accept"),
        Some(&Value::from("*/*"))
    );
    assert_eq!(
        e.record.get("tags"),
        Some(&Value::Array(vec![
            Value::from("ok"),
            Value::from("card [REDACTED]")
        ]))
    );
    assert_eq!(
        e.record.get("raw"),
        Some(&Value::Bin(b"\xff\xfeuser=[REDACTED]\xff".to_vec()))
    );
    assert_eq!(e.record.get("status"), Some(&Value::UInt(200)));

    let r = redactor(r#"fields = ["log", "http.headers"]"#);
    assert_eq!(r.apply(&mut only_log), 2);
    assert_eq!(
        only_log.record.get("log"),
        Some(&Value::from("login ok for [REDACTED]"))
    );
    assert_eq!(
        only_log.record.get("tags"),
        Some(&Value::Array(vec![
            Value::from("ok"),
            Value::from("card 4111111111111111")
        ]))
    );
}

#[test]
fn custom_patterns_and_builtin_selection() {
    let r = redactor(
        r#"
        builtin = ["email"]
        patterns = ['ssn=(?P<secret>\d{3}-\d{2}-\d{4})', 'tok_[0-9a-f]{8}']
        replacement = "***"
        "#,
    );
    let (log, count) = redact_log(
        &r,
        "user jane@example.com ssn=078-05-1120 token tok_9f86d081 password=hunter2",
    );
    // `secret_assignment` is not selected, so the password stays.
    assert_eq!(
        (log.as_str(), count),
        ("user *** ssn=*** token *** password=hunter2", 3)
    );
    let none = redactor(r#"builtin = []"#);
    let line = "password=hunter2 AKIAIOSFODNN7EXAMPLE";
    assert_eq!(redact_log(&none, line), (line.to_owned(), 0));
}

#[test]
fn a_line_without_secrets_is_left_alone() {
    let r = redactor("");
    let line = "2026-11-21 13:31:29,931 INFO order 7 total 28.50 for customer 1042 in 12ms";
    let mut e = log_event(line);
    let before = e.clone();
    assert_eq!(r.apply(&mut e), 0);
    assert_eq!(e, before);
}

#[test]
fn redaction_config_errors_name_the_key() {
    let err = |text: &str| {
        let config: RedactConfig = toml::from_str(text).expect("parses");
        Redactor::new(&config).unwrap_err()
    };
    assert!(err(r#"builtin = ["ssn"]"#).starts_with("builtin: unknown pattern \"ssn\""));
    assert!(err(r#"patterns = ["ok", "(unclosed"]"#).starts_with("patterns[1]: "));
    assert!(toml::from_str::<RedactConfig>("pattern = []").is_err());
}

// ---------------------------------------------------------------------------------------------
// Sampling

fn sampler(toml_text: &str) -> Sampler {
    let config: SampleConfig = toml::from_str(toml_text).expect("config");
    Sampler::new(&config).expect("valid")
}

fn app_event(service: &str, level: &str, i: usize) -> Event {
    let mut fields = vec![
        ("service", Value::from(service)),
        ("log", Value::from(format!("request {i} done"))),
    ];
    if !level.is_empty() {
        fields.push(("level", Value::from(level)));
    }
    event(&fields)
}

#[test]
fn warnings_and_above_are_always_kept() {
    let s = sampler("rate = 0.0");
    for level in ["WARN", "warning", "error", "ERROR", "FATAL", "crit", "3"] {
        for i in 0..50 {
            assert!(s.keep(&app_event("api", level, i)), "{level}");
        }
    }
    for level in ["INFO", "debug", "trace", "6", ""] {
        assert!(!s.keep(&app_event("api", level, 0)), "{level}");
    }
    let s = sampler("rate = 0.0\nkeep_level = \"error\"");
    assert!(!s.keep(&app_event("api", "WARN", 0)));
    assert!(s.keep(&app_event("api", "ERROR", 0)));
}

#[test]
fn each_service_keeps_its_own_proportion() {
    let s = sampler(
        r#"
        rate = 0.1
        by_service = { checkout = 0.5, healthcheck = 0.01, audit = 1.0 }
        "#,
    );
    let services = ["checkout", "healthcheck", "audit", "search", ""];
    let mut kept = [0usize; 5];
    let mut kept_warn = 0;
    for i in 0..1000 {
        for (n, service) in services.iter().enumerate() {
            // Events without a level are sampled like INFO.
            let level = if i % 2 == 0 { "INFO" } else { "" };
            if s.keep(&app_event(service, level, i)) {
                kept[n] += 1;
            }
        }
        if s.keep(&app_event("healthcheck", "WARN", i)) {
            kept_warn += 1;
        }
    }
    assert_eq!(kept, [500, 10, 1000, 100, 100]);
    assert_eq!(kept_warn, 1000);
}

#[test]
fn counters_keep_the_first_and_then_every_nth() {
    let s = sampler("rate = 0.1");
    let kept: Vec<usize> = (0..35)
        .filter(|&i| s.keep(&app_event("api", "INFO", i)))
        .collect();
    assert_eq!(kept, [0, 10, 20, 30]);
    let s = sampler("rate = 0.3");
    let kept: Vec<usize> = (0..12)
        .filter(|&i| s.keep(&app_event("api", "INFO", i)))
        .collect();
    assert_eq!(kept, [0, 3, 6, 10]);
}

#[test]
fn a_key_field_keeps_whole_traces() {
    let s = sampler("rate = 0.2\nkey_field = \"trace_id\"");
    let mut kept_traces = 0;
    for trace in 0..5000 {
        let id = format!("{trace:032x}");
        let decisions: Vec<bool> = (0..4)
            .map(|span| {
                s.keep(&event(&[
                    ("service", Value::from("api")),
                    ("trace_id", Value::from(id.as_str())),
                    ("log", Value::from(format!("span {span}"))),
                ]))
            })
            .collect();
        assert!(decisions.iter().all(|d| *d == decisions[0]), "trace {id}");
        kept_traces += usize::from(decisions[0]);
    }
    // 20% of 5000, within a few standard deviations (σ ≈ 28).
    assert!((900..=1100).contains(&kept_traces), "{kept_traces}");
    // Another sampler with the same seed decides the same; another seed differently.
    let again = sampler("rate = 0.2\nkey_field = \"trace_id\"");
    let other = sampler("rate = 0.2\nkey_field = \"trace_id\"\nseed = 7");
    let decide =
        |s: &Sampler, t: usize| s.keep(&event(&[("trace_id", Value::from(format!("{t:032x}")))]));
    assert!((0..200).all(|t| decide(&s, t) == decide(&again, t)));
    assert!((0..200).any(|t| decide(&s, t) != decide(&other, t)));
}

#[test]
fn sampling_is_exact_across_threads() {
    let s = Arc::new(sampler("rate = 0.1"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                (0..2500)
                    .filter(|&i| s.keep(&app_event("api", "INFO", i)))
                    .count()
            })
        })
        .collect();
    let kept: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(kept, 1000);
}

#[test]
fn sampling_config_errors_name_the_key() {
    let err = |text: &str| {
        let config: SampleConfig = toml::from_str(text).expect("parses");
        Sampler::new(&config).unwrap_err()
    };
    assert!(err("rate = 1.5").starts_with("rate: "));
    assert!(err("by_service = { api = -0.1 }").starts_with("by_service.api: "));
    assert!(toml::from_str::<SampleConfig>("keep_level = \"loud\"").is_err());
    assert!(toml::from_str::<SampleConfig>("ratio = 0.5").is_err());
}

// ---------------------------------------------------------------------------------------------
// Rate limits

fn limiter(toml_text: &str) -> RateLimiter {
    let config: RateLimitConfig = toml::from_str(toml_text).expect("config");
    RateLimiter::new(&config).expect("valid")
}

#[test]
fn a_burst_then_one_event_per_interval() {
    let l = limiter("events = 3\nwindow = \"1s\"");
    let t0 = Instant::now();
    let e = app_event("api", "INFO", 0);
    let ms = |n: u64| t0 + Duration::from_millis(n);
    assert!(l.keep("app", &e, t0));
    assert!(l.keep("app", &e, t0));
    assert!(l.keep("app", &e, t0));
    assert!(!l.keep("app", &e, t0));
    assert!(!l.keep("app", &e, ms(300)));
    // One token is back after window / events.
    assert!(l.keep("app", &e, ms(334)));
    assert!(!l.keep("app", &e, ms(334)));
    // A whole idle window refills the bucket.
    let later = ms(334) + Duration::from_secs(1);
    assert_eq!((0..5).filter(|_| l.keep("app", &e, later)).count(), 3);
}

#[test]
fn a_sustained_flood_keeps_the_rate() {
    let l = limiter("events = 20\nwindow = \"1s\"");
    let t0 = Instant::now();
    let e = app_event("api", "INFO", 0);
    let mut kept = 0;
    // 100 events per second for 10 seconds.
    for i in 0..1000u64 {
        if l.keep("app", &e, t0 + Duration::from_millis(i * 10)) {
            kept += 1;
        }
    }
    // The burst of 20, then 20 per second over the 9.99 s that follow.
    assert_eq!(kept, 20 + 199);
}

#[test]
fn keys_are_the_tag_and_the_key_fields() {
    let l = limiter(
        "events = 1\nwindow = \"1m\"\nkey_fields = [\"service\", \"kubernetes.namespace\"]",
    );
    let t = Instant::now();
    let in_ns = |service: &str, ns: &str| {
        event(&[
            ("service", Value::from(service)),
            (
                "kubernetes",
                Value::Map(vec![("namespace".to_owned(), Value::from(ns))]),
            ),
        ])
    };
    assert!(l.keep("app", &in_ns("api", "prod"), t));
    assert!(!l.keep("app", &in_ns("api", "prod"), t));
    assert!(l.keep("app", &in_ns("api", "staging"), t));
    assert!(l.keep("app", &in_ns("web", "prod"), t));
    assert!(l.keep("other.tag", &in_ns("api", "prod"), t));
    // A missing field is a key of its own.
    assert!(l.keep("app", &event(&[("service", Value::from("api"))]), t));
    assert!(!l.keep("app", &event(&[("service", Value::from("api"))]), t));
    assert_eq!(l.keys(), 5);
}

#[test]
fn keys_beyond_max_keys_are_evicted() {
    let l = limiter("events = 2\nwindow = \"1s\"\nmax_keys = 100");
    let t0 = Instant::now();
    for i in 0..100 {
        assert!(l.keep("app", &app_event(&format!("svc-{i}"), "INFO", 0), t0));
    }
    assert_eq!(l.keys(), 100);
    // A new key while all are busy evicts the least recently seen tenth.
    let t1 = t0 + Duration::from_millis(100);
    assert!(l.keep("app", &app_event("svc-0", "INFO", 0), t1));
    assert!(l.keep("app", &app_event("new", "INFO", 0), t1));
    assert!(l.keys() <= 100);
    // svc-0 was seen last, so it kept its (now empty) bucket.
    assert!(!l.keep("app", &app_event("svc-0", "INFO", 0), t1));
    // After a window every bucket is full again: the idle ones make room without eviction.
    let t2 = t1 + Duration::from_secs(2);
    for i in 0..300 {
        assert!(l.keep("app", &app_event(&format!("later-{i}"), "INFO", 0), t2));
        assert!(l.keys() <= 100);
    }
}

#[test]
fn limits_hold_across_threads() {
    let l = Arc::new(limiter("events = 100\nwindow = \"1h\""));
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                let e = app_event("api", "INFO", 0);
                (0..1000).filter(|_| l.keep("app", &e, t)).count()
            })
        })
        .collect();
    let kept: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(kept, 100);
}

#[test]
fn rate_limit_config_errors_name_the_key() {
    let err = |text: &str| {
        let config: RateLimitConfig = toml::from_str(text).expect("parses");
        RateLimiter::new(&config).unwrap_err()
    };
    assert!(err("events = 0").starts_with("events: "));
    assert!(err("events = 5\nwindow = \"0s\"").starts_with("window: "));
    assert!(err("events = 5\nmax_keys = 0").starts_with("max_keys: "));
    assert!(toml::from_str::<RateLimitConfig>("window = \"1s\"").is_err());
    assert!(toml::from_str::<RateLimitConfig>("events = 5\nthreshold = 5").is_err());
}
