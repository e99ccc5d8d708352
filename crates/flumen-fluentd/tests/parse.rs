//! The parser on real configurations (`tests/data/`: the first seed's `fluent.conf` and
//! examples from Fluentd's documentation, each naming its source on its first line), on
//! errors with their exact positions, on `@include` and on embedded Ruby.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flumen_fluentd::{Config, Element, ErrorKind, Loader, ParseError, Special};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A fixed environment, so no test depends on the machine's.
fn loader() -> Loader {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("FLUENTD_TAG", "web"),
        ("FOO_BAR", "baz"),
        ("SERVERENGINE_WORKER_ID", "3"),
        ("REGION", "eu-west-1"),
    ]);
    Loader::new()
        .env(move |name| vars.get(name).map(|v| (*v).to_owned()))
        .hostname("web-1.example.com")
}

fn parse(text: &str) -> Result<Config, ParseError> {
    loader().parse(text, Path::new("fluent.conf"))
}

fn data(name: &str) -> Config {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    loader()
        .parse(&text, &path)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> (usize, usize, ErrorKind, String) {
    let e = parse(text).expect_err("must not parse");
    let shown = e.to_string();
    (e.line, e.column, e.kind, shown)
}

fn params(element: &Element) -> Vec<(&str, &str)> {
    element
        .params
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect()
}

#[test]
fn every_data_file_parses() {
    let mut count = 0;
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("# ") && text.lines().next().unwrap().contains("http"),
                "{}: the first line names the source",
                path.display()
            );
            let config = loader()
                .parse(&text, &path)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!config.directives().is_empty(), "{}", path.display());
            count += 1;
        }
    }
    assert!(count >= 12, "{count} data files");
}

#[test]
fn seed_aws_aggregator() {
    let config = data("aws-fluentd-aggregator.conf");
    let names: Vec<_> = config
        .directives()
        .iter()
        .map(|e| (e.name.as_str(), e.arg.as_str(), e.line))
        .collect();
    assert_eq!(
        names,
        [
            ("system", "", 2),
            ("source", "", 6),
            ("source", "", 14),
            ("match", "health*", 20),
            ("label", "@mainstream", 24)
        ]
    );
    let [system, forward, http, health, label] = config.directives() else {
        unreachable!()
    };
    assert_eq!(params(system), [("workers", "4")]);
    assert_eq!(
        params(forward),
        [
            ("@type", "forward"),
            ("@id", "input1"),
            ("@label", "@mainstream"),
            ("port", "24224")
        ]
    );
    assert_eq!((forward.params[2].line, forward.params[2].column), (9, 3));
    assert_eq!(http.value("@type"), Some("http"));
    assert_eq!(http.value("port"), Some("8888"));
    assert_eq!(health.value("@type"), Some("null"));

    assert_eq!(
        config
            .directives()
            .iter()
            .filter(|e| e.name == "source")
            .count(),
        2
    );
    let matches: Vec<_> = label.elements_named("match").collect();
    assert_eq!(matches.len(), 2);
    assert_eq!(label.elements.len(), 2);
    for (output, pattern, stream) in [
        (matches[0], "frontend*", "elasticsearch-delivery-stream"),
        (matches[1], "backend*", "s3-delivery-stream"),
    ] {
        assert_eq!(output.arg, pattern);
        assert_eq!(output.value("@type"), Some("kinesis_firehose"));
        assert_eq!(output.value("region"), Some("us-west-2"));
        assert_eq!(output.value("delivery_stream_name"), Some(stream));
        let [buffer] = &output.elements[..] else {
            panic!("one <buffer>")
        };
        assert_eq!(buffer.name, "buffer");
        assert_eq!(
            params(buffer),
            [
                ("flush_interval", "1"),
                ("chunk_limit_size", "1m"),
                ("flush_thread_interval", "0.1"),
                ("flush_thread_burst_interval", "0.01"),
                ("flush_thread_count", "15"),
                ("total_limit_size", "2GB")
            ]
        );
    }
    assert_eq!((matches[1].line, matches[1].column), (39, 3));
    assert!(matches[1].file.ends_with("aws-fluentd-aggregator.conf"));
}

#[test]
fn values_quoted_multiline_json_and_ruby() {
    let config = data("docs-config-file-values.conf");
    let [stdout, sample, mail, map] = config.directives() else {
        panic!("four directives")
    };
    assert_eq!(
        stdout.arg, "app.web",
        "the quoted argument runs its ENV code"
    );
    assert_eq!(sample.value("str_param"), Some("foo\nbar"));
    assert_eq!(sample.value("array_param"), Some(r#"["a","b"]"#));
    assert_eq!(sample.value("hash_param"), Some(r#"{"k":"v","k1":10}"#));
    let array = sample.param("array_param").unwrap();
    assert_eq!((array.line, array.column), (10, 3));
    assert_eq!(sample.value("host_param"), Some("web-1.example.com"));
    assert_eq!(sample.value("env_param"), Some("foo-baz"));
    assert_eq!(sample.value("@id"), Some("out_foo3"));
    let nil = sample.param("some_param").unwrap();
    assert_eq!(
        (nil.value.as_str(), nil.special),
        ("", Some(Special::UseNil))
    );
    let default = sample.param("other_param").unwrap();
    assert_eq!(default.special, Some(Special::UseDefault));
    assert_eq!(sample.value("escaped_param"), Some("foo\nbar"));
    let env = sample.param("env_param").unwrap();
    assert_eq!(env.embedded.len(), 1);
    assert_eq!(env.embedded[0].code, r#"ENV["FOO_BAR"]"#);
    assert_eq!((env.embedded[0].line, env.embedded[0].column), (18, 20));
    assert_eq!(mail.value("subject"), Some("[CRITICAL] foo's alert system"));
    assert_eq!(
        map.value("map"),
        Some(
            r#"[["code." + tag, time, { "code" => record["code"].to_i}], ["time." + tag, time, { "time" => record["time"].to_i}]]"#
        )
    );
    assert_eq!(map.value("multi"), Some("true"));
}

#[test]
fn nesting_and_arguments() {
    let copy = data("out_copy.conf");
    let [first, second] = copy.directives() else {
        panic!()
    };
    let stores: Vec<_> = first.elements_named("store").collect();
    assert_eq!(stores.len(), 2);
    let inner: Vec<_> = stores[0].elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(inner, ["format", "buffer", "inject"]);
    assert_eq!(stores[0].elements[1].arg, "time");
    assert_eq!(
        stores[0].elements[2].value("time_format"),
        Some("%Y%m%dT%H%M%S%z")
    );
    let args: Vec<_> = second.elements.iter().map(|e| e.arg.as_str()).collect();
    assert_eq!(
        args,
        ["ignore_error", "ignore_if_prev_success ignore_error"]
    );

    let s3 = data("out_s3.conf");
    let output = &s3.directives()[0];
    let buffer = output.elements_named("buffer").next().unwrap();
    assert_eq!(buffer.arg, "tag,time");
    assert_eq!(
        buffer.value("timekey"),
        Some("3600"),
        "the comment is not the value"
    );
    assert_eq!(buffer.value("timekey_use_utc"), Some("true"));
    assert_eq!(output.value("path"), Some("logs/"));

    let es = data("out_elasticsearch.conf");
    assert_eq!(es.directives()[0].elements[0].arg, "tag, time");

    let forward = data("out_forward-servers.conf");
    let [first, second] = forward.directives() else {
        panic!()
    };
    let hosts: Vec<_> = first
        .elements_named("server")
        .map(|s| s.value("host").unwrap())
        .collect();
    assert_eq!(hosts, ["192.168.1.3", "192.168.1.4"]);
    assert_eq!(first.value("..."), Some(""), "a key alone on its line");
    assert_eq!(
        first
            .elements_named("secondary")
            .next()
            .unwrap()
            .value("path"),
        Some("/var/log/fluent/forward-failed")
    );
    let standby = second.elements_named("server").nth(1).unwrap();
    assert_eq!(
        standby.arg, "",
        "`<server>  # comment`: the comment is not the argument"
    );
    assert_eq!(standby.value("standby"), Some(""));

    let grep = data("filter_grep.conf");
    let first = &grep.directives()[0];
    let sections: Vec<_> = first
        .elements
        .iter()
        .map(|e| (e.name.as_str(), e.value("pattern").unwrap()))
        .collect();
    assert_eq!(
        sections,
        [
            ("regexp", "/cool/"),
            ("regexp", r"/^web\d+\.example\.com$/"),
            ("exclude", "/uncool/")
        ]
    );
    let second = &grep.directives()[1];
    let or = second.elements_named("or").next().unwrap();
    assert_eq!(or.elements[0].value("pattern"), Some(r"/^5\d\d$/"));

    let tail = data("in_tail-parse.conf");
    let parse = tail.directives()[1].elements_named("parse").next().unwrap();
    assert_eq!(
        parse.value("expression"),
        Some(r"^(?<name>[^ ]*) (?<user>[^ ]*) (?<age>\d*)$")
    );
    assert_eq!(
        tail.directives()[0].value("pos_file"),
        Some("/var/log/td-agent/httpd-access.log.pos")
    );

    let forward_in = data("in_forward-security.conf");
    let source = &forward_in.directives()[0];
    let transport = source.elements_named("transport").next().unwrap();
    assert_eq!(transport.arg, "tls");
    let security = source.elements_named("security").next().unwrap();
    assert_eq!(
        params(security),
        [
            ("self_hostname", "YOUR_SERVER_NAME"),
            ("shared_key", "PASSWORD")
        ]
    );
    assert_eq!((security.line, security.column), (11, 3));

    let relabel = data("out_relabel.conf");
    assert_eq!(relabel.directives()[0].value("@label"), Some("@foo"));
    assert_eq!(relabel.directives()[1].arg, "@foo");

    let rt = data("filter_record_transformer.conf");
    let record = &rt.directives()[0].elements[0];
    assert_eq!(
        params(record),
        [("hostname", "web-1.example.com"), ("tag", "${tag}")]
    );
    assert_eq!(
        rt.directives()[1].elements[0].value("avg"),
        Some(r#"${record["total"] / record["count"]}"#)
    );
    assert_eq!(rt.directives()[1].value("enable_ruby"), Some(""));

    let workers = data("docs-config-file-workers.conf");
    let args: Vec<_> = workers
        .directives()
        .iter()
        .filter(|e| e.name == "worker")
        .map(|e| e.arg.as_str())
        .collect();
    assert_eq!(args, ["0", "0-1"]);
    assert_eq!(
        workers.directives()[1].value("sample"),
        Some(r#"{"message":"Run with all workers."}"#)
    );
    assert_eq!(
        workers.directives()[4].elements[0].value("worker_id"),
        Some("3")
    );

    let routing = data("docs-config-file-routing.conf");
    let label = routing.directives().last().unwrap();
    assert_eq!(
        (label.name.as_str(), label.arg.as_str()),
        ("label", "@SYSTEM")
    );
    assert_eq!(label.elements[0].arg, "var.log.middleware.**");
}

#[test]
fn parse_keeps_includes_as_params() {
    let config = data("docs-config-file-include.conf");
    let root_include = config.root.param("@include").unwrap();
    assert_eq!(root_include.value, "config.d/*.conf");
    assert_eq!((root_include.line, root_include.column), (3, 1));
    let buffer = &config.directives()[0].elements[0];
    assert_eq!(
        buffer.value("@include"),
        Some("/path/to/out_buf_params.conf")
    );
}

// ----- syntax details, as Fluentd reads them -----

#[test]
fn comments_and_unquoted_values() {
    let config = parse(
        "<source>\n  path /a#b # a comment\n  key #not a comment\n  url http://x/?a=1 \t\n  empty\n  tab\tvalue\n</source> # done\n",
    )
    .unwrap();
    let source = &config.directives()[0];
    assert_eq!(
        params(source),
        [
            ("path", "/a#b"),
            ("key", "#not a comment"),
            ("url", "http://x/?a=1"),
            ("empty", ""),
            ("tab", "value")
        ]
    );
}

#[test]
fn double_quoted_strings() {
    let config = parse(concat!(
        "<a>\n",
        "  escapes \"t\\tn\\nq\\\"b\\\\s\\'h\\#{x}\"\n",
        "  continued \"one \\\n  two\"\n",
        "  multi \"first\n second\"\n",
        "  \"quoted key\" v\n",
        "</a>\n"
    ))
    .unwrap();
    let a = &config.directives()[0];
    assert_eq!(a.value("escapes"), Some("t\tn\nq\"b\\s'h#{x}"));
    assert_eq!(a.value("continued"), Some("one   two"));
    assert_eq!(a.value("multi"), Some("first\n second"));
    assert_eq!(a.value("quoted key"), Some("v"));
}

#[test]
fn single_quoted_strings() {
    let config = parse("<a>\n  k 'it\\'s \\\\ \\n #{ENV[\"X\"]}'\n</a>\n").unwrap();
    assert_eq!(
        config.directives()[0].value("k"),
        Some("it's \\ \\n #{ENV[\"X\"]}")
    );
}

#[test]
fn json_values_across_lines() {
    let config = parse(concat!(
        "<a>\n",
        "  list [\n",
        "    \"x#y\", # a comment\n",
        "    \"#{ENV['REGION']}\",\n",
        "    [1, {\"k\": null}]\n",
        "  ]\n",
        "  map {\"b\": 2, \"a\": 1}\n",
        "  after yes\n",
        "</a>\n"
    ))
    .unwrap();
    let a = &config.directives()[0];
    assert_eq!(
        a.value("list"),
        Some(r#"["x#y","eu-west-1",[1,{"k":null}]]"#)
    );
    assert_eq!(a.value("map"), Some(r#"{"b":2,"a":1}"#), "order kept");
    assert_eq!(a.value("after"), Some("yes"));
    assert_eq!(a.param("after").unwrap().line, 8);
}

#[test]
fn reserved_prefix() {
    let (line, column, kind, _) = err("<source>\n  @type forward\n  @foo x\n</source>\n");
    assert_eq!((line, column), (3, 3));
    assert_eq!(
        kind,
        ErrorKind::ReservedPrefix {
            key: "@foo".to_owned()
        }
    );
    // Allowed (with a warning, in Fluentd) in nested sections.
    let config = parse("<match **>\n  <buffer>\n    @foo x\n  </buffer>\n</match>\n").unwrap();
    assert_eq!(config.directives()[0].elements[0].value("@foo"), Some("x"));
}

// ----- errors, with their exact positions -----

#[test]
fn mismatched_close() {
    let text = "<source>\n  @type forward\n</source>\n<match **>\n  @type stdout\n\n  </source>\n";
    let (line, column, kind, shown) = err(text);
    assert_eq!((line, column), (7, 3));
    assert_eq!(
        kind,
        ErrorKind::MismatchedClose {
            found: "source".to_owned(),
            open: "<match **>".to_owned(),
            open_line: 4
        }
    );
    assert_eq!(
        shown,
        "fluent.conf: line 7, column 3: `</source>` closes `<match **>` opened at line 4"
    );
}

#[test]
fn missing_close() {
    let text = "<source>\n  @type forward\n</source>\n\n\n\n\n\n\n<label @mainstream>\n  <match **>\n    @type null\n  </match>\n";
    let (line, column, kind, shown) = err(text);
    assert_eq!((line, column), (10, 1));
    assert_eq!(
        shown,
        "fluent.conf: line 10, column 1: missing `</label>` for `<label @mainstream>` at line 10"
    );
    assert!(matches!(kind, ErrorKind::MissingClose { .. }));
}

#[test]
fn unterminated_strings() {
    let text = "<a>\n  k v\n  msg   \"hello\n  world\n</a>\n";
    let (line, column, kind, shown) = err(text);
    assert_eq!(
        (line, column, kind),
        (3, 9, ErrorKind::UnterminatedString { quote: '"' })
    );
    assert!(shown.contains("unterminated string"), "{shown}");

    let (line, column, kind, _) = err("<a>\n  k 'abc\n</a>\n");
    assert_eq!(
        (line, column, kind),
        (2, 5, ErrorKind::UnterminatedString { quote: '\'' })
    );

    // Fluentd refuses an empty line inside a double-quoted string.
    let (line, column, kind, _) = err("k \"a\n\nb\"\n");
    assert_eq!((line, column, kind), (2, 1, ErrorKind::LineBreakInString));
}

#[test]
fn other_errors() {
    let (line, column, kind, _) = err("<a>\n  k \"bad \\q\"\n</a>\n");
    assert_eq!(
        (line, column, kind),
        (2, 10, ErrorKind::InvalidEscape { ch: 'q' })
    );

    let (line, column, kind, _) = err("<a>\n  k \"quoted\" trailing\n</a>\n");
    assert_eq!((line, column), (2, 13));
    assert!(matches!(kind, ErrorKind::ExpectedLineEnd { .. }));

    let (line, column, kind, _) = err("<match **> extra\n</match>\n");
    assert_eq!((line, column), (1, 11));
    assert!(matches!(kind, ErrorKind::ExpectedLineEnd { .. }));

    let (line, column, kind, _) = err("\n  </match>\n");
    assert_eq!(
        (line, column, kind),
        (
            2,
            3,
            ErrorKind::UnexpectedClose {
                found: "match".to_owned()
            }
        )
    );

    let (line, column, kind, _) = err("<match **\n</match>\n");
    assert_eq!((line, column), (2, 1));
    assert!(matches!(kind, ErrorKind::ExpectedTagEnd { .. }));

    let (line, column, kind, _) = err("< match>\n</match>\n");
    assert_eq!((line, column, kind), (1, 1, ErrorKind::MissingElementName));

    let (line, column, kind, _) = err("<a>\n  list [1, 2,\n  3\n</a>\n");
    assert_eq!(
        (line, column, kind),
        (2, 8, ErrorKind::UnterminatedJson { array: true })
    );

    let (line, column, kind, _) = err("<a>\n  format [%{time}] x\n</a>\n");
    assert_eq!((line, column), (2, 10));
    assert!(matches!(kind, ErrorKind::InvalidJson { .. }));

    // As printed in the docs, this example does not parse in Fluentd either: the comment is
    // inside the string, which ends at `"foo\nbar"`'s first quote.
    let (line, _, kind, _) =
        err("str_param \"foo  # Converts to \"foo\\nbar\". NL is kept in the parameter\nbar\"\n");
    assert_eq!(line, 1);
    assert!(matches!(kind, ErrorKind::ExpectedLineEnd { .. }));

    let deep = "<a>\n".repeat(200);
    let (_, _, kind, _) = err(&deep);
    assert_eq!(kind, ErrorKind::TooDeep);
}

// ----- embedded Ruby -----

#[test]
fn env_embedding() {
    let config = parse(concat!(
        "<a>\n",
        "  set \"#{ENV['REGION']}\"\n",
        "  set2 \"#{ENV[\"REGION\"]}\"\n",
        "  unset \"x#{ENV['NOPE']}y\"\n",
        "  fetched \"#{ENV.fetch('REGION', 'us-east-1')}\"\n",
        "  defaulted \"#{ENV.fetch('NOPE', 'us-east-1')}\"\n",
        "  or \"#{ENV['NOPE'] || 'fallback'}\"\n",
        "  two \"#{ENV['REGION']}/#{ENV['FOO_BAR']}\"\n",
        "</a>\n"
    ))
    .unwrap();
    let a = &config.directives()[0];
    assert_eq!(
        params(a),
        [
            ("set", "eu-west-1"),
            ("set2", "eu-west-1"),
            ("unset", "xy"),
            ("fetched", "eu-west-1"),
            ("defaulted", "us-east-1"),
            ("or", "fallback"),
            ("two", "eu-west-1/baz")
        ]
    );
    assert_eq!(a.params[6].embedded.len(), 2);
    assert_eq!(a.params[6].embedded[1].column, 25);
}

#[test]
fn ruby_errors_are_positioned() {
    let (line, column, kind, shown) = err("<a>\n  k v\n  x \"pre-#{`hostname`.strip}\"\n</a>\n");
    assert_eq!((line, column), (3, 10));
    assert_eq!(
        kind,
        ErrorKind::UnsupportedRuby {
            code: "`hostname`.strip".to_owned()
        }
    );
    assert!(
        shown.starts_with("fluent.conf: line 3, column 10: embedded Ruby code"),
        "{shown}"
    );

    let (line, column, kind, _) = err("k \"#{ENV.fetch('NOPE')}\"\n");
    assert_eq!(
        (line, column, kind),
        (
            1,
            4,
            ErrorKind::MissingEnv {
                name: "NOPE".to_owned()
            }
        )
    );

    let (line, column, kind, _) = err("k \"#{ENV['X'\n");
    assert_eq!((line, column, kind), (1, 4, ErrorKind::UnterminatedRuby));

    // Without a host name, `Socket.gethostname` is an error, not a guess.
    let e = Loader::new()
        .env(|_| None)
        .parse(
            "<record>\n  host \"#{Socket.gethostname}\"\n</record>\n",
            Path::new("f.conf"),
        )
        .unwrap_err();
    assert_eq!((e.line, e.column), (2, 9));
    assert!(matches!(e.kind, ErrorKind::NoHostname { .. }));
}

// ----- @include -----

#[test]
fn include_glob_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("conf.d")).unwrap();
    std::fs::write(
        root.join("fluent.conf"),
        "<system>\n  workers 2\n</system>\n@include conf.d/*.conf\n<match **>\n  @type stdout\n  @include buffer params.conf\n</match>\n",
    )
    .unwrap();
    std::fs::write(
        root.join("conf.d/20-b.conf"),
        "<source>\n  @type b\n</source>\n",
    )
    .unwrap();
    std::fs::write(
        root.join("conf.d/10-a.conf"),
        "\n<source>\n  @type a\n</source>\n",
    )
    .unwrap();
    std::fs::write(
        root.join("conf.d/.hidden.conf"),
        "<source>\n  @type hidden\n</source>\n",
    )
    .unwrap();
    std::fs::write(root.join("conf.d/notes.txt"), "not a config").unwrap();
    std::fs::write(
        root.join("buffer params.conf"),
        "flush_interval 5s\n<buffer tag>\n</buffer>\n",
    )
    .unwrap();

    let config = loader().load(root.join("fluent.conf")).unwrap();
    let summary: Vec<_> = config
        .directives()
        .iter()
        .map(|e| (e.name.as_str(), e.value("@type").unwrap_or(""), e.line))
        .collect();
    assert_eq!(
        summary,
        [
            ("system", "", 1),
            ("source", "a", 2),
            ("source", "b", 1),
            ("match", "stdout", 5)
        ]
    );
    let a = &config.directives()[1];
    assert!(a.file.ends_with("conf.d/10-a.conf"), "{}", a.file.display());
    let output = &config.directives()[3];
    assert_eq!(output.value("flush_interval"), Some("5s"));
    assert!(
        output
            .param("flush_interval")
            .unwrap()
            .file
            .ends_with("buffer params.conf")
    );
    assert_eq!(output.elements[0].arg, "tag");
    assert_eq!(config.files.len(), 4);
}

#[test]
fn include_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let main = root.join("fluent.conf");

    std::fs::write(
        &main,
        "<source>\n  @type a\n</source>\n  @include conf.d/x.conf\n",
    )
    .unwrap();
    let e = loader().load(&main).unwrap_err();
    assert_eq!((e.line, e.column), (4, 3));
    assert_eq!(
        e.kind,
        ErrorKind::IncludeNotFound {
            path: "conf.d/x.conf".to_owned()
        }
    );
    assert!(
        e.to_string()
            .ends_with("@include conf.d/x.conf: file not found"),
        "{e}"
    );

    // A glob that matches nothing includes nothing, as in Fluentd.
    std::fs::write(&main, "@include conf.d/*.conf\n").unwrap();
    assert!(loader().load(&main).unwrap().directives().is_empty());

    std::fs::write(&main, "@include https://example.com/fluent.conf\n").unwrap();
    let e = loader().load(&main).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::IncludeRemote { .. }));
    assert!(
        e.to_string().contains("remote includes are not supported"),
        "{e}"
    );

    std::fs::write(&main, "@include other.conf\n").unwrap();
    std::fs::write(
        root.join("other.conf"),
        "<source>\n</source>\n@include fluent.conf\n",
    )
    .unwrap();
    let e = loader().load(&main).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::IncludeCycle { .. }), "{e}");
    assert!(e.file.ends_with("other.conf"));
    assert_eq!(e.line, 3);

    // An error inside an included file names that file.
    std::fs::write(root.join("other.conf"), "<source>\n  @type x\n</match>\n").unwrap();
    let e = loader().load(&main).unwrap_err();
    assert!(e.file.ends_with("other.conf"));
    assert_eq!((e.line, e.column), (3, 1));

    let e = loader().load(root.join("missing.conf")).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Io { .. }));
}
