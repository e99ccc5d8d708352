//! Snapshot tests on logs that real programs wrote (`tests/data/`, see its README): every line
//! of each file goes through the matching parser the way the pipeline would feed it (a record
//! with the line, newline included, in `log`; bytes that are not UTF-8 as `bin`), and the
//! resulting events are snapshotted, one per line, after a summary of the parse errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::{Format, ParseConfig, Parser};

/// What the events start with; a time still equal to it was not set by the parser.
const ARRIVAL: EventTime = EventTime { secs: 7, nanos: 0 };

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// The file's lines as the `log` values a sender would deliver.
fn lines(relative: &str) -> Vec<Value> {
    let path = data_dir().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        out.push(match std::str::from_utf8(line) {
            Ok(text) => Value::from(text),
            Err(_) => Value::Bin(line.to_vec()),
        });
    }
    out
}

fn event(line: Value) -> Event {
    Event {
        time: ARRIVAL,
        record: Record::from(vec![("log".to_owned(), line)]),
        metadata: None,
    }
}

/// Runs every line through `parser`; renders the error summary and one line per event:
/// the event time (`-` when the parser did not set it; the year as `YYYY` when `mask_year`,
/// for year-less syslog times whose year depends on today's date) and the record as JSON.
fn run(parser: &Parser, file: &str, mask_year: bool) -> String {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut body = String::new();
    let all = lines(file);
    for line in &all {
        let mut e = event(line.clone());
        if let Err(reason) = parser.apply(&mut e) {
            // Group reasons without their positions.
            let key = reason
                .split(" at column ")
                .next()
                .unwrap_or(&reason)
                .to_owned();
            *errors.entry(key).or_default() += 1;
        }
        let time = if e.time == ARRIVAL {
            "-".to_owned()
        } else if mask_year {
            format!("YYYY{}", &e.time.to_string()[4..])
        } else {
            e.time.to_string()
        };
        body.push_str(&format!("{time} {}\n", e.record.to_json()));
    }
    let mut out = format!(
        "file: {file}\nformat: {}\nlines: {}\nparse errors: {}\n",
        parser.format(),
        all.len(),
        errors.values().sum::<usize>()
    );
    for (reason, n) in &errors {
        out.push_str(&format!("  {n} × {reason}\n"));
    }
    out.push_str("---\n");
    out.push_str(&body);
    out
}

fn parser(format: Format) -> Parser {
    Parser::new(&ParseConfig::new(format)).unwrap()
}

#[test]
fn nginx_access_log() {
    insta::assert_snapshot!(run(
        &parser(Format::NginxCombined),
        "nginx/access.log",
        false
    ));
}

#[test]
fn nginx_access_log_is_also_apache_combined() {
    // nginx's `combined` is Apache's: the two parsers agree on every line.
    let nginx = parser(Format::NginxCombined);
    let apache = parser(Format::ApacheCombined);
    for line in lines("nginx/access.log") {
        let (mut a, mut b) = (event(line.clone()), event(line));
        assert_eq!(nginx.apply(&mut a), apache.apply(&mut b));
        assert_eq!(a, b);
    }
}

#[test]
fn nginx_common_log() {
    insta::assert_snapshot!(run(
        &parser(Format::ApacheCommon),
        "nginx/common.log",
        false
    ));
}

#[test]
fn nginx_error_log() {
    insta::assert_snapshot!(run(&parser(Format::NginxError), "nginx/error.log", false));
}

/// Fluent Bit's `apache` regex (what the Vector/Fluent Bit comparison parses) against the
/// hand-written `apache_common` on the same real lines: where the regex matches, both give the
/// same fields and time; the snapshot lists the lines where they differ.
#[test]
fn fluent_bit_regex_agrees_with_apache_common() {
    let config = ParseConfig {
        pattern: Some(
            r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$"#
                .to_owned(),
        ),
        types: BTreeMap::from([("code".into(), "int".into()), ("size".into(), "int".into())]),
        ..ParseConfig::new(Format::Regex)
    };
    let regex = Parser::new(&config).unwrap();
    let common = parser(Format::ApacheCommon);
    let mut report = String::new();
    for line in lines("nginx/common.log") {
        let (mut a, mut b) = (event(line.clone()), event(line.clone()));
        let ra = regex.apply(&mut a);
        let rb = common.apply(&mut b);
        // The hand-written parser keeps the protocol; Fluent Bit's regex drops it.
        b.record.remove("protocol");
        if ra.is_ok() && rb.is_ok() && a == b {
            continue;
        }
        report.push_str(&format!(
            "{}  regex: {}\n  apache_common: {}\n",
            line.to_text(),
            ra.map_or_else(|e| e, |()| a.record.to_json()),
            rb.map_or_else(|e| e, |()| b.record.to_json()),
        ));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn syslog_files() {
    let p = parser(Format::Syslog);
    for file in [
        "logger-udp-rfc5424.log",
        "logger-udp-rfc3164.log",
        "logger-unix-rfc5424.log",
        "logger-unix-rfc3164.log",
        "rsyslog-forward-rfc5424.log",
        "rsyslog-forward-traditional.log",
        "rsyslog-file-format.log",
        "rsyslog-traditional-file.log",
    ] {
        let bsd_time = file.contains("3164") || file.contains("traditional");
        let name = file.trim_end_matches(".log").replace('-', "_");
        insta::assert_snapshot!(name, run(&p, &format!("syslog/{file}"), bsd_time));
    }
}

#[test]
fn auto_on_syslog_and_python_logging() {
    // `auto` takes syslog lines with PRI as syslog and Python's asctime lines as tle; the
    // traceback lines in between are plain text.
    let p = parser(Format::Auto);
    insta::assert_snapshot!(
        "auto_python_logging",
        run(&p, "multiline/python-logging.log", false)
    );
    insta::assert_snapshot!(
        "auto_rsyslog_forward_rfc5424",
        run(&p, "syslog/rsyslog-forward-rfc5424.log", false)
    );
}

#[test]
fn tle_on_python_logging() {
    // Without joining, traceback lines are not tle lines: each is kept and marked.
    insta::assert_snapshot!(run(
        &parser(Format::Tle),
        "multiline/python-logging.log",
        false
    ));
}
