//! Feeds arbitrary text to the query language (`flumen_select::Query::parse`): log queries are
//! run on a few events with `process`, metric queries evaluated over them with `MetricEval`.
//!
//! Input layout: the bytes before the first `0x00` are the query (lossy UTF-8); the bytes
//! after it are the lines of extra events (lossy UTF-8, one event per line, as its `message`).
//!
//! Beyond "no panic":
//! - an error's position is within the text and on a character boundary;
//! - a query that parses displays as its source text, which parses again to the same kind of
//!   query, and the log query inside a metric query parses on its own;
//! - `process` agrees with `matches`, and `required_literals` are in every selected line (when
//!   the line comes from `message`);
//! - evaluating gives series sorted by labels with points in time order, inside the steps.

#![no_main]

use flumen_event::record::{Record, Value};
use flumen_select::{MetricEval, MetricQuery, Query, Selector};
use libfuzzer_sys::fuzz_target;

const SECOND: i64 = 1_000_000_000;

fn event(message: &str) -> Record {
    Record::from(vec![
        ("service".to_owned(), Value::from("api")),
        ("status".to_owned(), Value::from("503")),
        ("message".to_owned(), Value::from(message)),
    ])
}

fn fixed_events() -> Vec<Record> {
    [
        r#"{"level":"error","took":"2.5s","size":"2KB","req":{"path":"/x"},"n":3}"#,
        r#"level=warn msg="disk full" took=30ms n=1.5"#,
        r#"10.0.0.1 - - [x] "GET /a HTTP/1.1" 200 512"#,
        "plain text, not json",
        "",
    ]
    .into_iter()
    .map(event)
    .collect()
}

fn check_log(selector: &Selector, events: &[Record]) {
    let literals = selector.required_literals();
    for record in events {
        let processed = selector.process("t", record);
        assert_eq!(processed.is_some(), selector.matches("t", record));
        if processed.is_some() {
            let line = flumen_select::line_of(record);
            for literal in &literals {
                assert!(line.contains(literal), "{literal:?} is required but not in {line:?}");
            }
        }
    }
}

fn check_metric(query: &MetricQuery, events: &[Record]) {
    let (start, end, step) = (10 * SECOND, 70 * SECOND, 20 * SECOND);
    let Ok(eval) = MetricEval::new(query, start, end, step) else {
        return;
    };
    let mut eval = eval.max_series(50);
    for (i, record) in events.iter().enumerate() {
        let stream = [("job", if i % 2 == 0 { "a" } else { "b" })];
        let time = i as i64 * 7 * SECOND;
        if eval.push(time, &stream, "t", record, i * 10).is_err() {
            return;
        }
    }
    let series = eval.finish();
    assert!(series.windows(2).all(|w| w[0].labels <= w[1].labels));
    for s in &series {
        assert!(!s.points.is_empty());
        assert!(s.points.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(s.points.iter().all(|(t, _)| (start..=end).contains(t)));
    }
}

fuzz_target!(|data: &[u8]| {
    let (source, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let text = String::from_utf8_lossy(source);
    let query = match Query::parse(&text) {
        Ok(query) => query,
        Err(error) => {
            assert!(error.position <= text.len());
            assert!(text.is_char_boundary(error.position));
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(query.to_string(), text, "Display is the source text");
    let again = Query::parse(&query.to_string()).expect("parses again from its Display");
    assert_eq!(again.as_str(), query.as_str());
    assert_eq!(
        matches!(again, Query::Metric(_)),
        matches!(query, Query::Metric(_))
    );
    let inner = Selector::parse(query.selector().as_str()).expect("the log query stands alone");
    assert_eq!(inner.stream_matchers().len(), query.selector().stream_matchers().len());

    let mut events = fixed_events();
    if let Some(rest) = rest {
        events.extend(String::from_utf8_lossy(rest).split('\n').take(32).map(event));
    }
    match &query {
        Query::Log(selector) => check_log(selector, &events),
        Query::Metric(metric) => {
            check_log(metric.selector(), &events);
            check_metric(metric, &events);
        }
    }
});
