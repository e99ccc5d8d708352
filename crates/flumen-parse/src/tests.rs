use std::time::{Duration, Instant};

use flumen_event::EventTime;

use super::*;

const BEFORE: EventTime = EventTime { secs: 1, nanos: 0 };

fn event_with(name: &str, value: Value) -> Event {
    Event {
        time: BEFORE,
        record: Record::from(vec![
            ("container_name".to_owned(), Value::from("/web")),
            (name.to_owned(), value),
            ("source".to_owned(), Value::from("stdout")),
        ]),
        metadata: None,
    }
}

fn event(line: &str) -> Event {
    event_with("log", Value::from(line))
}

fn parser(format: Format) -> Parser {
    Parser::new(&ParseConfig::new(format)).unwrap()
}

fn config(toml_text: &str) -> ParseConfig {
    toml::from_str(toml_text).unwrap()
}

fn names(e: &Event) -> Vec<&str> {
    e.record.fields().iter().map(|(k, _)| k.as_str()).collect()
}

fn text(e: &Event, name: &str) -> Option<String> {
    e.record.get(name).map(|v| v.to_text().into_owned())
}

const APACHE: &str =
    r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
const FLUENT_BIT_APACHE: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$"#;

#[test]
fn parser_is_shareable() {
    fn assert_send_sync<T: Send + Sync + std::fmt::Debug>() {}
    assert_send_sync::<Parser>();
    assert_send_sync::<TimeParser>();
}

#[test]
fn config_from_toml() {
    let c = config(
        r#"
        format = "nginx_combined"
        field = "log"
        time_formats = ["clf", "%d/%b/%Y:%H:%M:%S"]
        timezone = "+02:00"
        keep_original = true
        keep_time_field = true
        target = "http"
        level_field = "lvl"
        types = { size = "int", ratio = "float" }
        "#,
    );
    assert_eq!(c.format, Format::NginxCombined);
    assert_eq!(c.types.len(), 2);
    assert!(Parser::new(&c).is_ok());
    let c = config("format = \"auto\"");
    assert_eq!(c.field, None);
    assert!(c.time_formats.is_empty());
    assert!(!c.keep_original);
    let err = toml::from_str::<ParseConfig>("format = \"json\"\nfeild = \"log\"").unwrap_err();
    assert!(err.to_string().contains("unknown field `feild`"), "{err}");
    let err = toml::from_str::<ParseConfig>("format = \"xml\"").unwrap_err();
    assert!(err.to_string().contains("unknown variant `xml`"), "{err}");
    for name in [
        "json",
        "logfmt",
        "syslog",
        "apache_common",
        "apache_combined",
        "nginx_combined",
        "nginx_error",
        "tle",
        "plain",
        "auto",
    ] {
        let c = config(&format!("format = \"{name}\""));
        assert_eq!(c.format.name(), name);
        assert!(Parser::new(&c).is_ok(), "{name}");
    }
}

#[test]
fn bad_configs_say_which_setting() {
    let err = |toml_text: &str| Parser::new(&config(toml_text)).unwrap_err();
    assert_eq!(
        err("format = \"regex\""),
        "pattern: required by the regex format"
    );
    assert!(
        err("format = \"regex\"\npattern = \"(unclosed\"")
            .starts_with("pattern: regex parse error")
    );
    assert!(err("format = \"regex\"\npattern = \"(a+)+\"").contains("no named group"));
    assert!(err("format = \"json\"\npattern = \"(?<a>.)\"").contains("only the regex format"));
    assert!(
        err("format = \"json\"\ntime_formats = [\"rfc3999\"]")
            .starts_with("time_formats: unknown format")
    );
    assert!(err("format = \"plain\"\ntime_formats = [\"rfc3999\"]").starts_with("time_formats"));
    assert!(err("format = \"plain\"\ntimezone = \"CET\"").starts_with("timezone"));
    assert!(
        err("format = \"json\"\ntypes = { a = \"integer64\" }")
            .starts_with("types.a: unknown type")
    );
    assert_eq!(
        err("format = \"json\"\nfield = \"\""),
        "field: must not be empty"
    );
}

#[test]
fn json_lines_merge_with_time_and_level() {
    let p = parser(Format::Json);
    let mut e = event(
        "{\"level\":30,\"time\":1704103200123,\"pid\":7,\"hostname\":\"api-1\",\"msg\":\"request completed\",\"req\":{\"method\":\"GET\"}}\n",
    );
    p.apply(&mut e).unwrap();
    assert_eq!(e.time, EventTime::new(1_704_103_200, 123_000_000));
    assert_eq!(
        names(&e),
        [
            "container_name",
            "source",
            "level",
            "pid",
            "hostname",
            "msg",
            "req"
        ]
    );
    assert_eq!(text(&e, "level").unwrap(), "INFO");
    assert_eq!(e.record.get_path("req.method"), Some(&Value::from("GET")));

    // A repeated key: the last value wins, in the first position.
    let mut e = event(r#"{"a":1,"b":2,"a":3}"#);
    p.apply(&mut e).unwrap();
    assert_eq!(names(&e), ["container_name", "source", "a", "b"]);
    assert_eq!(e.record.get("a"), Some(&Value::UInt(3)));
}

#[test]
fn json_that_is_not_an_object_is_kept_and_marked() {
    let p = parser(Format::Json);
    for (line, reason) in [
        ("[1,2,3]\n", "JSON line is an array, not an object"),
        (
            r#"{"level":"info","msg":"trunc"#,
            "invalid JSON at column 28: EOF while parsing a string",
        ),
        ("", "invalid JSON: the line is empty"),
        ("42", "JSON line is a number, not an object"),
        (
            "{\"a\":1}}",
            "invalid JSON at column 8: trailing characters",
        ),
    ] {
        let mut e = event(line);
        let before = e.record.clone();
        assert_eq!(p.apply(&mut e).unwrap_err(), reason);
        assert_eq!(text(&e, PARSE_ERROR_FIELD).unwrap(), reason);
        // The line is untouched (newline included), nothing else changed.
        assert_eq!(e.record.get("log"), before.get("log"));
        assert_eq!(e.record.len(), before.len() + 1);
        assert_eq!(e.time, BEFORE);
    }
}

#[test]
fn a_time_nobody_configured_keeps_the_event_and_marks_it() {
    let p = parser(Format::Json);
    let mut e = event(r#"{"time":"yesterday at noon","msg":"hi"}"#);
    let err = p.apply(&mut e).unwrap_err();
    assert_eq!(
        err,
        "time \"yesterday at noon\" matches none of rfc3339, epoch, epoch_ms, epoch_us, epoch_ns"
    );
    assert_eq!(text(&e, PARSE_ERROR_FIELD).unwrap(), err);
    // The parse itself worked: fields are merged, the time field is kept, the time unchanged.
    assert_eq!(text(&e, "msg").unwrap(), "hi");
    assert_eq!(text(&e, "time").unwrap(), "yesterday at noon");
    assert_eq!(e.time, BEFORE);

    // Configured formats are used, and named in the reason.
    let p = Parser::new(&config(
        "format = \"logfmt\"\ntime_field = \"at\"\ntime_formats = [\"%d.%m.%Y %H:%M\"]\ntimezone = \"+01:00\"",
    ))
    .unwrap();
    let mut e = event(r#"at="21.11.2026 14:31" msg=ok"#);
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2026-11-21T13:31:00.000000000Z");
    assert_eq!(e.record.get("at"), None);
    let mut e = event("at=2026-11-21 msg=ok");
    assert_eq!(
        p.apply(&mut e).unwrap_err(),
        "time \"2026-11-21\" matches none of %d.%m.%Y %H:%M"
    );

    // A long time value is cut in the reason.
    let mut e = event(&format!("{{\"time\":\"{}\"}}", "x".repeat(1000)));
    let err = parser(Format::Json).apply(&mut e).unwrap_err();
    assert!(err.len() < 200, "{err}");
}

#[test]
fn logfmt_with_types() {
    let p = Parser::new(&config(
        "format = \"logfmt\"\ntypes = { status = \"int\", bytes = \"int\", cached = \"bool\", ratio = \"float\" }",
    ))
    .unwrap();
    let mut e = event(
        r#"at=info method=GET path="/" host=myapp.herokuapp.com request_id=8601b555-6a76-4c1d-a8ad-8a0b6e0d1a2f fwd="204.204.204.204" dyno=web.1 connect=0ms service=18ms status=200 bytes=13 protocol=https cached ratio=0.25"#,
    );
    p.apply(&mut e).unwrap();
    assert_eq!(e.record.get("status"), Some(&Value::Int(200)));
    assert_eq!(e.record.get("bytes"), Some(&Value::Int(13)));
    assert_eq!(e.record.get("cached"), Some(&Value::Bool(true)));
    assert_eq!(e.record.get("ratio"), Some(&Value::Float(0.25)));
    assert_eq!(e.record.get("log"), None);

    let mut e = event("status=abc");
    assert_eq!(
        p.apply(&mut e).unwrap_err(),
        "types: status \"abc\" is not an int"
    );
    assert_eq!(text(&e, "status").unwrap(), "abc");

    let mut e = event("hello world");
    assert_eq!(p.apply(&mut e).unwrap_err(), "logfmt: no key=value pair");
    assert_eq!(text(&e, "log").unwrap(), "hello world");
}

#[test]
fn regex_with_fluent_bits_apache_pattern() {
    let c = ParseConfig {
        pattern: Some(FLUENT_BIT_APACHE.to_owned()),
        types: BTreeMap::from([("code".into(), "int".into()), ("size".into(), "int".into())]),
        ..ParseConfig::new(Format::Regex)
    };
    let p = Parser::new(&c).unwrap();
    let mut e = event(&format!("{APACHE}\n"));
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2000-10-10T20:55:36.000000000Z");
    assert_eq!(
        names(&e),
        [
            "container_name",
            "source",
            "host",
            "user",
            "method",
            "path",
            "code",
            "size"
        ]
    );
    assert_eq!(e.record.get("code"), Some(&Value::Int(200)));
    let mut e = event("not an access log");
    assert_eq!(p.apply(&mut e).unwrap_err(), "no match for regex");
}

#[test]
fn regex_cannot_backtrack_catastrophically() {
    let c = ParseConfig {
        pattern: Some("^(?<a>(a+)+)$".to_owned()),
        ..ParseConfig::new(Format::Regex)
    };
    let p = Parser::new(&c).unwrap();
    let line = format!("{}b", "a".repeat(100_000));
    let start = Instant::now();
    let mut e = event(&line);
    assert_eq!(p.apply(&mut e).unwrap_err(), "no match for regex");
    // A backtracking engine would take longer than the universe's age; the regex crate is
    // linear. (Generous bound for debug builds.)
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let mut e = event(&"a".repeat(100_000));
    p.apply(&mut e).unwrap();
    assert_eq!(e.record.get("a").unwrap().to_text().len(), 100_000);
}

#[test]
fn syslog_lines() {
    let p = parser(Format::Syslog);
    let mut e = event(
        "<131>1 2026-11-21T13:31:23.005077+00:00 vm myapp 15621 - [timeQuality tzKnown=\"1\" isSynced=\"0\"] payment failed",
    );
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2026-11-21T13:31:23.005077000Z");
    assert_eq!(
        names(&e),
        [
            "container_name",
            "source",
            "facility",
            "severity",
            "level",
            "hostname",
            "app_name",
            "proc_id",
            "structured_data",
            "message"
        ]
    );
    assert_eq!(text(&e, "level").unwrap(), "ERROR");
    assert_eq!(text(&e, "facility").unwrap(), "local0");
    assert_eq!(
        e.record.get_path("structured_data.timeQuality.tzKnown"),
        Some(&Value::from("1"))
    );

    let mut e = event("<999>1 2026-11-21T13:31:23Z vm myapp - - - x");
    assert_eq!(
        p.apply(&mut e).unwrap_err(),
        "syslog: invalid PRI <999>: above 191"
    );
    assert_eq!(
        text(&e, "log").unwrap(),
        "<999>1 2026-11-21T13:31:23Z vm myapp - - - x"
    );

    // The source field is `message` and the parser writes `message`: it is replaced in place.
    let mut e = event_with(
        "message",
        Value::from("<13>Nov 21 13:31:24 vm myapp: started"),
    );
    p.apply(&mut e).unwrap();
    assert_eq!(names(&e)[..3], ["container_name", "message", "source"]);
    assert_eq!(text(&e, "message").unwrap(), "started");
}

#[test]
fn access_logs_and_nginx_errors() {
    let p = parser(Format::ApacheCommon);
    let mut e = event(APACHE);
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2000-10-10T20:55:36.000000000Z");
    assert_eq!(e.record.get("size"), Some(&Value::Int(2326)));
    let mut e = event("garbage");
    assert_eq!(
        p.apply(&mut e).unwrap_err(),
        "no match for apache_common: expected a space after the client address at column 1"
    );

    let p = parser(Format::NginxError);
    let mut e = event(
        "2026/11/21 13:31:17 [error] 14705#14705: *3 access forbidden by rule, client: 127.0.0.1, server: localhost, request: \"GET /private/ HTTP/1.1\", host: \"127.0.0.1:33137\"",
    );
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2026-11-21T13:31:17.000000000Z");
    assert_eq!(text(&e, "level").unwrap(), "ERROR");
    assert_eq!(text(&e, "severity").unwrap(), "error");
    assert_eq!(text(&e, "message").unwrap(), "access forbidden by rule");
}

#[test]
fn tle_lines() {
    let p = parser(Format::Tle);
    let mut e = event("2024-01-01 10:00:00,123 WARN disk almost full\r\n");
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2024-01-01T10:00:00.123000000Z");
    assert_eq!(text(&e, "level").unwrap(), "WARN");
    assert_eq!(text(&e, "message").unwrap(), "disk almost full");
    let mut e = event("[2024-01-01 10:00:00] warning: x");
    p.apply(&mut e).unwrap();
    assert_eq!(text(&e, "level").unwrap(), "WARN");
    let mut e = event("  File \"x.py\", line 3, in <module>");
    assert_eq!(
        p.apply(&mut e).unwrap_err(),
        "tle: no timestamp at the start of the line"
    );
}

#[test]
fn auto_picks_by_shape() {
    let p = parser(Format::Auto);
    let mut e = event(r#"{"msg":"hi","time":"2024-01-01T10:00:00Z","severity":"warning"}"#);
    p.apply(&mut e).unwrap();
    assert_eq!(e.time.to_string(), "2024-01-01T10:00:00.000000000Z");
    assert_eq!(text(&e, "level").unwrap(), "WARN");

    let mut e = event("<13>Nov 21 13:31:24 vm myapp: started");
    p.apply(&mut e).unwrap();
    assert_eq!(text(&e, "app_name").unwrap(), "myapp");
    assert_ne!(e.time, BEFORE);

    let mut e = event("2024-01-01T10:00:00Z ERROR boom");
    p.apply(&mut e).unwrap();
    assert_eq!(text(&e, "level").unwrap(), "ERROR");
    assert_eq!(e.time.to_string(), "2024-01-01T10:00:00.000000000Z");

    for line in [
        "just words",
        "",
        "2024-01-01 not a time",
        "<html>",
        "    {\"a\": 1}[\"b\"]",
    ] {
        let mut e = event(line);
        p.apply(&mut e).unwrap();
        assert_eq!(text(&e, "message").unwrap(), line);
        assert_eq!(e.record.get("log"), None);
        assert_eq!(e.time, BEFORE);
    }

    // Looks like syslog or JSON but is not: kept and marked.
    let mut e = event("<999>1 - - - - - -");
    assert!(
        p.apply(&mut e)
            .unwrap_err()
            .starts_with("syslog: invalid PRI <999>")
    );
    let mut e = event("{not json}");
    assert!(
        p.apply(&mut e)
            .unwrap_err()
            .starts_with("invalid JSON at column 2")
    );
    assert_eq!(text(&e, "log").unwrap(), "{not json}");
}

#[test]
fn invalid_utf8_is_parsed_lossily_and_marked() {
    let mut line = APACHE.as_bytes().to_vec();
    line.extend_from_slice(b" \"-\" \"bad \xff\xfe agent\"\n");
    let p = parser(Format::ApacheCombined);
    let mut e = event_with("log", Value::Bin(line.clone()));
    assert_eq!(p.apply(&mut e).unwrap_err(), NOT_UTF8);
    assert_eq!(text(&e, PARSE_ERROR_FIELD).unwrap(), NOT_UTF8);
    assert_eq!(text(&e, "agent").unwrap(), "bad \u{fffd}\u{fffd} agent");
    assert_eq!(e.record.get("code"), Some(&Value::Int(200)));
    assert_eq!(e.record.get("log"), None);

    // When the parse fails too, both reasons are given and the bytes are kept as they were.
    let p = parser(Format::Json);
    let mut e = event_with("log", Value::Bin(line.clone()));
    let err = p.apply(&mut e).unwrap_err();
    assert_eq!(
        err,
        "line is not UTF-8; replaced; JSON line is a number, not an object"
    );
    assert_eq!(e.record.get("log"), Some(&Value::Bin(line)));
}

#[test]
fn empty_lines() {
    for format in [
        Format::Json,
        Format::Logfmt,
        Format::Syslog,
        Format::ApacheCommon,
        Format::ApacheCombined,
        Format::NginxCombined,
        Format::NginxError,
        Format::Tle,
    ] {
        for line in ["", "\n", "\r\n"] {
            let mut e = event(line);
            assert!(parser(format).apply(&mut e).is_err(), "{format} {line:?}");
            assert_eq!(text(&e, "log").unwrap(), line);
        }
    }
    let mut e = event("\n");
    parser(Format::Plain).apply(&mut e).unwrap();
    assert_eq!(text(&e, "message").unwrap(), "");
}

#[test]
fn source_field_choices() {
    // Default: log, then message, then msg.
    let mut e = event_with("msg", Value::from("{\"a\":1}"));
    parser(Format::Json).apply(&mut e).unwrap();
    assert_eq!(e.record.get("a"), Some(&Value::UInt(1)));
    assert_eq!(e.record.get("msg"), None);

    // An event without the field passes untouched (another sender's shape).
    let mut e = event_with("other", Value::from("x"));
    let before = e.clone();
    parser(Format::Plain).apply(&mut e).unwrap();
    let p = Parser::new(&config("format = \"plain\"\nfield = \"raw\"")).unwrap();
    p.apply(&mut e).unwrap();
    assert_eq!(e, before);

    let mut e = event_with("log", Value::Map(vec![("a".into(), Value::UInt(1))]));
    assert_eq!(
        parser(Format::Plain).apply(&mut e).unwrap_err(),
        "field \"log\" holds a map, not a line"
    );
    assert!(matches!(e.record.get("log"), Some(Value::Map(_))));
}

#[test]
fn keep_original_target_and_keep_time_field() {
    let p = Parser::new(&config(
        "format = \"json\"\nkeep_original = true\nkeep_time_field = true\ntarget = \"app\"",
    ))
    .unwrap();
    let line = r#"{"time":"2024-01-01T10:00:00Z","lvl":"e","msg":"x"}"#;
    let mut e = event(line);
    p.apply(&mut e).unwrap();
    assert_eq!(
        names(&e),
        ["container_name", "log", "source", "app", "level"]
    );
    assert_eq!(text(&e, "log").unwrap(), line);
    assert_eq!(
        e.record.get_path("app.time"),
        Some(&Value::from("2024-01-01T10:00:00Z"))
    );
    assert_eq!(text(&e, "level").unwrap(), "ERROR");
    assert_eq!(e.time.to_string(), "2024-01-01T10:00:00.000000000Z");

    // An unknown level stays as it was; level_field picks the field.
    let p = Parser::new(&config("format = \"logfmt\"\nlevel_field = \"sev\"")).unwrap();
    let mut e = event("sev=loud level=whatever x=1");
    p.apply(&mut e).unwrap();
    assert_eq!(text(&e, "level").unwrap(), "whatever");
    let mut e = event("sev=4 x=1");
    p.apply(&mut e).unwrap();
    assert_eq!(text(&e, "level").unwrap(), "WARN");
    let mut e = event_with("log", Value::from("{\"sev\":4}"));
    Parser::new(&config("format = \"json\"\nlevel_field = \"sev\""))
        .unwrap()
        .apply(&mut e)
        .unwrap();
    assert_eq!(text(&e, "level").unwrap(), "WARN");

    // time_field = "" turns time reading off.
    let p = Parser::new(&config("format = \"json\"\ntime_field = \"\"")).unwrap();
    let mut e = event(r#"{"time":"2024-01-01T10:00:00Z"}"#);
    p.apply(&mut e).unwrap();
    assert_eq!(e.time, BEFORE);
    assert!(e.record.get("time").is_some());
}

/// Every format on a 10 MB line: linear time, no blow-up; the event survives either way.
#[test]
fn ten_megabyte_lines() {
    const MB10: usize = 10 * 1024 * 1024;
    let big = "a".repeat(MB10);
    let regex = ParseConfig {
        pattern: Some(FLUENT_BIT_APACHE.to_owned()),
        ..ParseConfig::new(Format::Regex)
    };
    let logfmt_line = "k=v ".repeat(MB10 / 4);
    let cases: Vec<(ParseConfig, String, bool)> = vec![
        (
            ParseConfig::new(Format::Json),
            format!("{{\"msg\":\"{big}\"}}"),
            true,
        ),
        (
            ParseConfig::new(Format::Json),
            format!("{{\"msg\":\"{big}"),
            false,
        ),
        (
            ParseConfig::new(Format::Logfmt),
            format!("msg=\"{big}\""),
            true,
        ),
        (ParseConfig::new(Format::Logfmt), logfmt_line, true),
        (ParseConfig::new(Format::Plain), big.clone(), true),
        (ParseConfig::new(Format::Auto), big.clone(), true),
        (
            ParseConfig::new(Format::Tle),
            format!("2024-01-01 10:00:00 INFO {big}"),
            true,
        ),
        (
            ParseConfig::new(Format::Syslog),
            format!("<13>1 - - - - - - {big}"),
            true,
        ),
        (
            ParseConfig::new(Format::Syslog),
            format!("<13>Nov 21 13:31:24 vm {big}"),
            true,
        ),
        (
            ParseConfig::new(Format::ApacheCombined),
            format!(r#"::1 - - [10/Oct/2000:13:55:36 -0700] "GET /{big} HTTP/1.1" 414 0 "-" "-""#),
            true,
        ),
        (ParseConfig::new(Format::ApacheCommon), big.clone(), false),
        (
            ParseConfig::new(Format::NginxError),
            format!("2026/11/21 13:31:17 [error] 1#1: {big}"),
            true,
        ),
        (
            regex,
            format!(r#"::1 - - [10/Oct/2000:13:55:36 -0700] "GET /{big} HTTP/1.1" 414 0"#),
            true,
        ),
    ];
    for (config, line, ok) in cases {
        let p = Parser::new(&config).unwrap();
        let mut e = event(&line);
        drop(line);
        let start = Instant::now();
        let result = p.apply(&mut e);
        let took = start.elapsed();
        assert_eq!(result.is_ok(), ok, "{:?}: {result:?}", config.format);
        // Generous: unoptimised test builds (the regex crate's PikeVM takes seconds there, a
        // hundred milliseconds in release) on a shared 2-core machine.
        let limit = Duration::from_secs(if cfg!(debug_assertions) { 60 } else { 5 });
        assert!(took < limit, "{:?} took {took:?}", config.format);
        eprintln!("{:?}: {took:?}", config.format);
    }
}

proptest::proptest! {
    /// No line makes a parser panic, and a failed parse leaves the line where it was.
    #[test]
    fn any_line_is_kept_or_parsed(
        line in proptest::string::string_regex(
            "(<[0-9]{1,4}>)?(1 )?[-0-9T:./ Z\\[\\]\"{}=a-zA-Z\\\\,+<>]{0,80}\n?"
        ).unwrap(),
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
    ) {
        let regex = ParseConfig {
            pattern: Some(r#"^(?<a>\S+) (?<b>[^"]*)"(?<c>.*)$"#.to_owned()),
            ..ParseConfig::new(Format::Regex)
        };
        let parsers: Vec<Parser> = [
            Format::Json, Format::Logfmt, Format::Syslog, Format::ApacheCommon,
            Format::ApacheCombined, Format::NginxCombined, Format::NginxError, Format::Tle,
            Format::Plain, Format::Auto,
        ]
        .into_iter()
        .map(parser)
        .chain([Parser::new(&regex).unwrap()])
        .collect();
        for value in [Value::from(line.as_str()), Value::Bin(bytes.clone())] {
            for p in &parsers {
                let mut e = event_with("log", value.clone());
                if p.apply(&mut e).is_err() {
                    proptest::prop_assert!(e.record.get(PARSE_ERROR_FIELD).is_some());
                    let kept = e.record.get("log") == Some(&value);
                    let parsed = e.record.len() > 3;
                    proptest::prop_assert!(kept || parsed, "{:?} lost {:?}", p.format(), value);
                }
            }
        }
    }
}
