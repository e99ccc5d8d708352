//! The multiline step on stack traces printed by real interpreters (`tests/data/multiline/`),
//! fed line by line as Docker's fluentd log driver sends them: one event per line with
//! `log` = the line and a newline, two containers' streams interleaved on one connection.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_process::Numbered;
use flumen_process::multiline::{Multiline, MultilineConfig};

const TAG: &str = "docker.shop";

/// The last line of the file, in an expected group.
const LAST: usize = usize::MAX;

fn data(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/multiline")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::to_owned).collect()
}

fn docker_event(container: &str, source: &str, line: &str, secs: u64) -> Event {
    Event {
        time: EventTime::new(secs, 0),
        record: Record::from(vec![
            ("container_id".to_owned(), Value::from(container)),
            (
                "container_name".to_owned(),
                Value::from(format!("/{container}")),
            ),
            ("source".to_owned(), Value::from(source)),
            ("log".to_owned(), Value::from(format!("{line}\n"))),
        ]),
        metadata: None,
    }
}

fn config(toml_text: &str) -> Arc<Multiline> {
    let config: MultilineConfig = toml::from_str(toml_text).expect("config");
    Arc::new(Multiline::new(&config).expect("compiles"))
}

fn log_of(event: &Event) -> &str {
    event
        .record
        .get("log")
        .and_then(Value::as_str)
        .expect("log")
}

fn container_of(event: &Event) -> &str {
    event
        .record
        .get("container_id")
        .and_then(Value::as_str)
        .expect("container_id")
}

/// What a stream of `lines` must come out as: `groups` are the line ranges joined into one
/// event, every other line comes out alone and unchanged. Returns `(first line, log)` pairs.
fn expected(lines: &[String], groups: &[RangeInclusive<usize>]) -> Vec<(usize, String)> {
    // `LAST` stands for the file's last line (the goroutine dumps vary in length).
    let groups: Vec<RangeInclusive<usize>> = groups
        .iter()
        .map(|g| *g.start()..=(*g.end()).min(lines.len() - 1))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match groups.iter().find(|g| *g.start() == i) {
            Some(g) => {
                out.push((i, lines[g.clone()].join("\n")));
                i = g.end() + 1;
            }
            None => {
                assert!(
                    !groups.iter().any(|g| g.contains(&i)),
                    "overlapping groups in the expectation"
                );
                out.push((i, format!("{}\n", lines[i])));
                i += 1;
            }
        }
    }
    out
}

/// Feeds `lines` as container `a` and, three lines behind, as container `b`, interleaved,
/// plus an ordinary stdout line of container `a` every fifth event; then releases what is
/// held through the timeout. Checks each stream's output against `groups`.
fn check(config_toml: &str, file: &str, groups: &[RangeInclusive<usize>]) {
    let lines = data(file);
    let multiline = config(config_toml);
    let mut joiner = multiline.joiner();
    let t0 = Instant::now();
    let mut out: Vec<Numbered> = Vec::new();
    // seq → (stream, line index)
    let mut sent: Vec<(&str, usize)> = Vec::new();
    let mut stdout_lines = 0;
    let lag = 3;
    let mut at = t0;
    for step in 0..lines.len() + lag {
        let mut feed = |stream: &'static str, event: Event, index: usize| {
            let seq = sent.len() as u64;
            sent.push((stream, index));
            joiner.push(TAG, (seq, event), at, &mut out);
            at += Duration::from_millis(1);
        };
        if step < lines.len() {
            feed("a", docker_event("a", "stderr", &lines[step], 100), step);
        }
        if step >= lag {
            let i = step - lag;
            feed("b", docker_event("b", "stderr", &lines[i], 200), i);
        }
        if step % 5 == 0 {
            let line = format!("2026-11-21 13:31:30,{step:03} INFO GET /healthz 200");
            feed(
                "a-stdout",
                docker_event("a", "stdout", &line, 300),
                stdout_lines,
            );
            stdout_lines += 1;
        }
    }
    // Whatever is still held comes out through the timeout, not before.
    let mut late = Vec::new();
    if let Some(deadline) = joiner.next_deadline() {
        joiner.flush_due(deadline - Duration::from_nanos(1), &mut late);
        assert!(late.is_empty(), "released before the timeout");
        joiner.flush_due(at + Duration::from_secs(1), &mut late);
    }
    assert!(joiner.next_deadline().is_none());
    assert!(!joiner.holds(0..u64::MAX), "nothing is held");
    for (tag, event) in late {
        assert_eq!(tag, TAG);
        out.push(event);
    }
    let want = expected(&lines, groups);
    for stream in ["a", "b"] {
        let got: Vec<(usize, String)> = out
            .iter()
            .filter(|(seq, _)| sent[*seq as usize].0 == stream)
            .map(|(seq, event)| {
                assert_eq!(container_of(event), stream);
                (sent[*seq as usize].1, log_of(event).to_owned())
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{file} stream {stream}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{file} stream {stream}");
        }
    }
    let stdout: Vec<_> = out
        .iter()
        .filter(|(seq, _)| sent[*seq as usize].0 == "a-stdout")
        .map(|(_, e)| log_of(e).to_owned())
        .collect();
    assert_eq!(stdout.len(), stdout_lines);
    assert!(
        stdout
            .iter()
            .all(|l| l.ends_with(" INFO GET /healthz 200\n"))
    );
    // Every input came out exactly once (as the first line of an event or inside one).
    let covered: usize = out
        .iter()
        .map(|(_, e)| log_of(e).trim_end_matches('\n').split('\n').count())
        .sum();
    assert_eq!(covered, sent.len());
}

const JAVA: &str = r#"mode = "java""#;
const PYTHON: &str = r#"mode = "python""#;
const GO: &str = r#"mode = "go""#;
const RUBY: &str = r#"mode = "ruby""#;

#[test]
fn java_util_logging_with_causes() {
    // JUL's two-line records stay apart; the blank line between the traces is its own event.
    check(JAVA, "java-exception.log", &[4..=17, 19..=LAST]);
}

#[test]
fn java_suppressed_and_messageless_exceptions() {
    check(JAVA, "java-suppressed.stderr", &[1..=8, 10..=15, 16..=25]);
}

#[test]
fn python_chained_by_cause() {
    check(PYTHON, "python-chained.log", &[0..=LAST]);
}

#[test]
fn python_chained_during_handling() {
    check(PYTHON, "python-during-handling.log", &[0..=LAST]);
}

#[test]
fn python_logging_exception_is_log_line_plus_traceback() {
    check(PYTHON, "python-logging.log", &[4..=8, 11..=15]);
}

#[test]
fn python_bare_exception_and_exception_group() {
    check(PYTHON, "python-exception-group.stderr", &[1..=7, 9..=LAST]);
}

#[test]
fn go_panic() {
    check(GO, "go-panic.log", &[0..=LAST]);
}

#[test]
fn go_panic_with_all_goroutines() {
    check(GO, "go-goroutine-panic.log", &[0..=LAST]);
}

#[test]
fn go_http_server_recovered_panic() {
    check(GO, "go-http-panic.stderr", &[1..=16]);
}

#[test]
fn go_repanic_with_signal() {
    check(GO, "go-repanic.stderr", &[1..=LAST]);
}

#[test]
fn go_runtime_fatal_error() {
    check(GO, "go-deadlock.stderr", &[1..=LAST]);
}

#[test]
fn ruby_backtraces() {
    check(RUBY, "ruby-handwritten.log", &[1..=8, 10..=14, 15..=18]);
}

#[test]
fn custom_start_pattern_joins_logging_exception_to_its_log_line() {
    // Every `YYYY-MM-DD ` line starts an event; the traceback joins the ERROR line before it.
    check(
        r#"
        mode = "custom"
        start_pattern = '^\d{4}-\d{2}-\d{2} '
        "#,
        "python-logging.log",
        &[3..=8, 10..=15],
    );
}

#[test]
fn a_trace_at_the_end_waits_for_the_timeout() {
    let lines = data("java-exception.log");
    let multiline = config("mode = \"java\"\nflush_timeout = \"2s\"");
    let mut joiner = multiline.joiner();
    let t0 = Instant::now();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(19) {
        let at = t0 + Duration::from_millis(i as u64);
        joiner.push(
            TAG,
            (i as u64, docker_event("a", "stderr", line, 1)),
            at,
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert!(
        joiner.holds(19..20) && !joiner.holds(0..19),
        "19 is the oldest held"
    );
    let deadline = t0 + Duration::from_millis(19) + Duration::from_secs(2);
    assert_eq!(joiner.next_deadline(), Some(deadline));
    let mut late = Vec::new();
    joiner.flush_due(deadline - Duration::from_millis(1), &mut late);
    assert!(late.is_empty());
    joiner.flush_due(deadline, &mut late);
    assert_eq!(late.len(), 1);
    let (tag, (seq, event)) = &late[0];
    assert_eq!((tag.as_str(), *seq), (TAG, 19));
    assert_eq!(log_of(event), lines[19..].join("\n"));
    assert!(log_of(event).starts_with("Exception in thread \"main\" "));
    assert_eq!(event.time, EventTime::new(1, 0));
    assert!(!joiner.holds(0..u64::MAX), "nothing is held");
}
