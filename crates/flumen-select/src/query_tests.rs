//! Tests of the pipeline stages, metric queries and their evaluation, with the parser's
//! snapshots.

use std::collections::BTreeMap;

use flumen_event::record::{Record, Value};
use proptest::prelude::*;

use crate::metric::{Grouping, MetricExpr, VectorAgg};
use crate::pipeline::{LabelFormat, LineParser, PathStep};
use crate::tests::{api_error, canonical, canonical_expr, quote, rec};
use crate::{EvalError, MetricEval, MetricQuery, ParseError, Query, Selector, Series, Stage};

// ---------------------------------------------------------------------------------------------
// Canonical rendering: one spelling per meaning, to snapshot what parsed.

pub(crate) fn render_stage(stage: &Stage) -> String {
    match stage {
        Stage::Line(_) | Stage::Label(_) => unreachable!("rendered by tests::canonical"),
        Stage::Parser(LineParser::JsonAll) => " | json".to_owned(),
        Stage::Parser(LineParser::JsonPaths(paths)) => {
            let items: Vec<String> = paths
                .iter()
                .map(|(name, path)| format!("{name}={}", quote(&render_path(&path.0))))
                .collect();
            format!(" | json {}", items.join(", "))
        }
        Stage::Parser(LineParser::Logfmt) => " | logfmt".to_owned(),
        Stage::Parser(LineParser::Regexp(regex)) => format!(" | regexp {}", quote(regex.as_str())),
        Stage::Parser(LineParser::Pattern(pattern)) => {
            format!(" | pattern {}", quote(&pattern.source))
        }
        Stage::LineFormat(template) => format!(" | line_format {}", quote(&template.source)),
        Stage::LabelFormat(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|item| match item {
                    LabelFormat::Rename { to, from } => format!("{to}={from}"),
                    LabelFormat::Template { to, template } => {
                        format!("{to}={}", quote(&template.source))
                    }
                })
                .collect();
            format!(" | label_format {}", items.join(", "))
        }
    }
}

fn render_path(steps: &[PathStep]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            PathStep::Key(key) if out.is_empty() => out.push_str(key),
            PathStep::Key(key) => out.push_str(&format!(".{key}")),
            PathStep::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn render_grouping(grouping: &Option<Grouping>) -> String {
    match grouping {
        None => String::new(),
        Some(g) => format!(
            " {} ({})",
            if g.without { "without" } else { "by" },
            g.labels.join(", ")
        ),
    }
}

fn render_metric(expr: &MetricExpr) -> String {
    match expr {
        MetricExpr::Range(range) => {
            let param = range.quantile.map(|q| format!("{q}, ")).unwrap_or_default();
            let unwrap = range
                .unwrap
                .as_ref()
                .map(|u| {
                    let filters: String = u
                        .filters
                        .iter()
                        .map(|f| format!(" | {}", canonical_expr(f)))
                        .collect();
                    format!(" | unwrap {}{filters}", u.written)
                })
                .unwrap_or_default();
            format!(
                "{}({param}{}{unwrap} [{}]){}",
                range.func.name(),
                canonical(&range.selector),
                range.range,
                render_grouping(&range.grouping)
            )
        }
        MetricExpr::Vector(VectorAgg {
            op,
            grouping,
            k,
            inner,
        }) => {
            let k = k.map(|k| format!("{k}, ")).unwrap_or_default();
            let grouping = match grouping {
                Some(_) => format!("{} ", render_grouping(grouping)),
                None => String::new(),
            };
            format!("{}{grouping}({k}{})", op.name(), render_metric(inner))
        }
    }
}

fn render_query(query: &Query) -> String {
    match query {
        Query::Log(selector) => canonical(selector),
        Query::Metric(metric) => render_metric(&metric.expr),
    }
}

fn query(text: &str) -> Query {
    Query::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn metric(text: &str) -> MetricQuery {
    MetricQuery::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn query_err(text: &str) -> ParseError {
    match Query::parse(text) {
        Ok(q) => panic!("{text:?} should not parse, got {}", render_query(&q)),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Parser snapshots

const VALID: &[&str] = &[
    // Log queries from Loki's documentation, and flumen's own.
    r#"{container="query-frontend",namespace="loki-dev"} |= "metrics.go" | logfmt | duration > 10s and throughput_mb < 500"#,
    r#"{job="mysql"} |= "error" != "timeout""#,
    r#"{name=~"mysql.+"} |~ `error=\w+`"#,
    r#"{job="varlogs"} | json first_server="servers[0]", ua="request.headers[\"User-Agent\"]""#,
    r#"{job="varlogs"} | json server_list="servers", headers="request.headers""#,
    r#"{job="loki-ops/query-frontend"} | logfmt | line_format "{{.msg}}" |= "query""#,
    r#"{job="nginx"} | pattern `<ip> - - <_> "<method> <uri> <_>" <status> <size> <_> "<agent>" <_>`"#,
    r#"{job="app"} | regexp "(?P<method>\\w+) (?P<path>[\\w|/]+) \\((?P<status>\\d+?)\\) (?P<duration>.*)""#,
    r#"{cluster="ops-tools1", name="querier"} | logfmt | level="error" or duration > 1m30s"#,
    r#"{app="foo"} | json | size > 20MiB and size <= 1GB"#,
    r#"{app="foo"} | json | __error__="""#,
    r#"{app="foo"} | json | __error__!="JSONParserErr" | line_format `{{.status | ToUpper}} {{ .path }}`"#,
    r#"{app="foo"} | logfmt | label_format dst=src, msg2="{{ default `-` .msg }}""#,
    r#"{app="foo"} | json level, user="user.id" | level="error""#,
    r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500"#,
    r#"{} | json = "not a stage" | logfmt=1"#,
    r#"{} | latency > 250ms | latency <= 1.5h | bytes >= 10kB | n > 2e3"#,
    r#"{} | line_format "{{__line__}}" | line_format "{{ .a | lower | default \"x\" }}""#,
    // Metric queries.
    r#"count_over_time({job="mysql"}[5m])"#,
    r#"rate({job="mysql"} |= "error" != "timeout" [1m])"#,
    r#"sum by (host) (rate({job="mysql"} |= "error" != "timeout" | json | duration > 10s [1m]))"#,
    r#"topk(10,sum(rate({region="us-east1"}[5m])) by (name))"#,
    r#"sum(count_over_time({job="mysql"}[5m])) by (level)"#,
    r#"avg(rate(({job="nginx"} |= "GET")[10s])) by (region)"#,
    r#"bytes_over_time({app="a"}[1h])"#,
    r#"bytes_rate({app="a"} |= "x" [30s])"#,
    r#"quantile_over_time(0.99, {cluster="ops-tools1",container="ingress-nginx"} | json | __error__ = "" | unwrap request_time [1m]) by (path)"#,
    r#"sum by (org_id) (sum_over_time({cluster="ops-tools1",container="loki-dev"} |= "metrics.go" | logfmt | unwrap bytes_processed [1m]))"#,
    r#"avg_over_time({app="a"} | logfmt | unwrap duration(latency) | __error__="" [5m])"#,
    r#"max_over_time({app="a"} | json | unwrap bytes(size) [5m]) without (instance)"#,
    r#"min_over_time({app="a"} | unwrap duration_seconds(took) [5m])"#,
    r#"rate({app="a"} | logfmt | unwrap n [2m])"#,
    r#"topk(3, sum by (service) (rate({}[1m])))"#,
    r#"bottomk(2, count_over_time({app="a"}[5m]))"#,
    r#"count without (pod) (count_over_time({app="a"}[5m]))"#,
    r#"max by () (count_over_time({app="a"}[5m]))"#,
    r#"min(avg by (a, b) (count_over_time({app="a"}[5m])))"#,
    r#"count_over_time({app="a"}[5m] |= "x" | json)"#,
    r#"( sum ( count_over_time ( {app="a"} [ 1h30m ] ) ) )"#,
    r#"sum
  by (level)
  (count_over_time({app="a"} | logfmt [10m]))"#,
];

const INVALID: &[&str] = &[
    r#"count_over_time({a="b"})"#,
    r#"sum by (a ("#,
    r#"sum by (a) (count_over_time({a="b"}[5m])"#,
    r#"foo({a="b"}[5m])"#,
    r#"count_over_time({a="b"}[5x])"#,
    r#"count_over_time({a="b"}[])"#,
    r#"count_over_time({a="b"}[5m)"#,
    r#"count_over_time([5m])"#,
    r#"sum_over_time({a="b"}[5m])"#,
    r#"count_over_time({a="b"} | unwrap x [5m])"#,
    r#"topk(0, count_over_time({a="b"}[5m]))"#,
    r#"topk(count_over_time({a="b"}[5m]))"#,
    r#"quantile_over_time({a="b"} | unwrap x [5m])"#,
    r#"rate({a="b"} | unwrap seconds(x) [5m])"#,
    r#"rate({a="b"}[5m]) extra"#,
    r#"{a="b"} | unwrap x"#,
    r#"{a="b"} | line_format "{{ .a"#,
    r#"{a="b"} | line_format "{{ nope .a }}""#,
    r#"{a="b"} | regexp "no groups""#,
    r#"{a="b"} | pattern "<a><b>""#,
    r#"{a="b"} | json x="a..b""#,
    r#"{a="b"} | latency > 5 parsecs"#,
    r#"{a="b"} | label_format a"#,
    r#"sum(rate({a="b"}[5m]) by"#,
];

#[test]
fn parser_snapshot_valid() {
    let mut out = String::new();
    for text in VALID {
        let parsed = query(text);
        assert_eq!(parsed.as_str(), *text);
        assert_eq!(parsed.to_string(), *text);
        let rendered = render_query(&parsed);
        // The canonical spelling parses to itself.
        assert_eq!(render_query(&query(&rendered)), rendered, "{text:?}");
        out.push_str(&format!("{text}\n  => {rendered}\n"));
        if let Query::Metric(m) = &parsed {
            // The log query inside stands on its own.
            assert_eq!(sel(m.selector().as_str()).as_str(), m.selector().as_str());
            out.push_str(&format!(
                "  selector {} range {}s\n",
                m.selector().as_str(),
                m.range_ns() as f64 / 1e9
            ));
        }
    }
    insta::assert_snapshot!("valid_queries", out);
}

#[test]
fn parser_snapshot_errors() {
    let mut out = String::new();
    for text in INVALID {
        let e = query_err(text);
        assert!(e.position <= text.len(), "{text:?}: {e:?}");
        out.push_str(&format!(
            "{text}\n{}^\n  {e}\n",
            " ".repeat(text[..e.position].chars().count())
        ));
    }
    insta::assert_snapshot!("error_messages", out);
}

#[test]
fn metric_errors_point_at_the_problem() {
    let at = |text: &str| query_err(text).position;
    assert_eq!(at(r#"count_over_time({a="b"})"#), 23);
    assert!(
        query_err(r#"count_over_time({a="b"})"#)
            .message
            .contains("expected a range like `[5m]`")
    );
    assert_eq!(at(r#"sum by (a ("#), 10);
    assert_eq!(at(r#"foo({a="b"}[5m])"#), 0);
    assert_eq!(at(r#"sum(foo({a="b"}[5m]))"#), 4);
}

// ---------------------------------------------------------------------------------------------
// Pipelines

fn line(text: &str) -> Record {
    rec(vec![
        ("message", Value::from(text)),
        ("service", Value::from("api")),
    ])
}

fn labels_of(selector: &str, record: &Record) -> Option<(String, Vec<(String, String)>)> {
    sel(selector)
        .process("t", record)
        .map(|p| (p.line.into_owned(), p.labels))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn parsers_feed_later_stages() {
    let json =
        line(r#"{"level":"error","status":503,"took":"2.5s","size":"2KB","req":{"path":"/x"}}"#);
    assert!(
        sel(r#"{} | json | level="error" | status >= 500 | req_path="/x""#).matches("t", &json)
    );
    assert!(!sel(r#"{} | json | took > 2s | took < 2500ms"#).matches("t", &json));
    assert!(sel(r#"{} | json | took > 2s and took <= 2500ms"#).matches("t", &json));
    assert!(sel(r#"{} | json | size > 1KB and size < 2KiB"#).matches("t", &json));
    assert!(!sel(r#"{} | json | level="warn""#).matches("t", &json));
    // Extracted labels win over record fields, which stay visible.
    let shadow = line(r#"{"service":"inner"}"#);
    assert!(sel(r#"{} | json | service="inner""#).matches("t", &shadow));
    assert!(sel(r#"{service="api"} | json | service="inner""#).matches("t", &shadow));
    // Line filters after a parser still search the line.
    assert!(sel(r#"{} | json | level="error" |= "503""#).matches("t", &json));
    // A failed parser sets __error__, which `__error__=""` drops.
    let text = line("plain text");
    assert!(sel(r#"{} | json"#).matches("t", &text));
    assert!(!sel(r#"{} | json | __error__="""#).matches("t", &text));
    assert!(sel(r#"{} | json | __error__="""#).matches("t", &json));
    assert!(sel(r#"{} | json | __error__="JSONParserErr""#).matches("t", &text));
}

#[test]
fn process_returns_line_and_labels() {
    let r = line("level=warn msg=\"disk full\" took=30ms");
    assert_eq!(
        labels_of(
            r#"{} | logfmt | line_format "{{.level | ToUpper}}: {{.msg}} ({{.service}})""#,
            &r
        ),
        Some((
            "WARN: disk full (api)".to_owned(),
            pairs(&[("level", "warn"), ("msg", "disk full"), ("took", "30ms")])
        ))
    );
    // After line_format, line filters see the new line.
    assert!(sel(r#"{} | logfmt | line_format "{{.msg}}" |= "disk" != "level""#).matches("t", &r));
    assert!(!sel(r#"{} | logfmt | line_format "{{.msg}}" |= "level""#).matches("t", &r));
    assert_eq!(
        labels_of(
            r#"{} | logfmt | label_format lvl=level, both="{{.level}}/{{.took}}""#,
            &r
        )
        .map(|(_, labels)| labels),
        Some(pairs(&[
            ("msg", "disk full"),
            ("took", "30ms"),
            ("lvl", "warn"),
            ("both", "warn/30ms")
        ]))
    );
    assert_eq!(
        labels_of(r#"{} | regexp "took=(?P<took>\\d+)ms""#, &r).map(|(_, l)| l),
        Some(pairs(&[("took", "30")]))
    );
    assert_eq!(labels_of(r#"{service="web"} | logfmt"#, &r), None);
    assert_eq!(
        labels_of(r#"{} |= "disk""#, &r),
        Some((
            r#"level=warn msg="disk full" took=30ms"#.to_owned(),
            Vec::new()
        ))
    );
}

#[test]
fn required_literals_stop_at_line_format() {
    let s = sel(
        r#"{a="b"} |= "x" != "y" |= "" | json |= "z" |~ "re" | line_format "{{.a}}" |= "after""#,
    );
    assert_eq!(s.required_literals(), ["x", "z"]);
    assert!(sel("{}").required_literals().is_empty());
    let m = metric(r#"sum(count_over_time({a="b"} |= "boom" [5m]))"#);
    assert_eq!(m.selector().required_literals(), ["boom"]);
}

#[test]
fn plain_selectors_keep_their_meaning() {
    let r = api_error();
    // A plain number compared with a duration is seconds: 30012 s is over 8 h.
    assert!(sel(r#"{service="api"} | latency_ms > 8h"#).matches("t", &r));
    assert!(!sel(r#"{service="api"} | latency_ms > 9h"#).matches("t", &r));
    assert!(sel(r#"{service="api"} | latency_ms < 31KB"#).matches("t", &r));
}

// ---------------------------------------------------------------------------------------------
// Evaluation

const S: i64 = 1_000_000_000;

/// An event to push: time, stream labels, record.
type Pushed<'a> = (i64, &'a [(&'a str, &'a str)], Record);

fn event(fields: &[(&str, &str)]) -> Record {
    rec(fields.iter().map(|(k, v)| (*k, Value::from(*v))).collect())
}

fn run(query: &str, start: i64, end: i64, step: i64, events: &[Pushed<'_>]) -> Vec<Series> {
    let mut eval = MetricEval::new(&metric(query), start, end, step).expect("valid range");
    for (time, stream, record) in events {
        eval.push(*time, stream, "t", record, 10).expect("push");
    }
    eval.finish()
}

fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        points: points.to_vec(),
    }
}

#[test]
fn count_over_time_and_rate_windows() {
    let a: &[(&str, &str)] = &[("app", "a")];
    let b: &[(&str, &str)] = &[("app", "b")];
    let e = event(&[("message", "x")]);
    // Steps at 60, 120, 180 s with 60 s windows (t-60, t].
    let events = [
        (S, a, e.clone()),
        (60 * S, a, e.clone()),  // in (0, 60]
        (61 * S, a, e.clone()),  // in (60, 120]
        (120 * S, b, e.clone()), // in (60, 120]
        (200 * S, a, e.clone()), // after the last step
        (-5 * S, a, e.clone()),  // before the first window
    ];
    // Pushed out of order on purpose.
    let mut shuffled = events.clone();
    shuffled.reverse();
    let counts = run(
        r#"count_over_time({}[1m])"#,
        60 * S,
        180 * S,
        60 * S,
        &shuffled,
    );
    assert_eq!(
        counts,
        [
            series(a, &[(60 * S, 2.0), (120 * S, 1.0)]),
            series(b, &[(120 * S, 1.0)])
        ]
    );
    let rates = run(r#"rate({}[1m])"#, 60 * S, 180 * S, 60 * S, &events);
    assert_eq!(
        rates[0].points,
        [(60 * S, 2.0 / 60.0), (120 * S, 1.0 / 60.0)]
    );
    // Overlapping windows: a 2m range at 1m steps counts each event twice.
    let sliding = run(
        r#"count_over_time({}[2m])"#,
        60 * S,
        180 * S,
        60 * S,
        &events,
    );
    // (-60, 60] holds -5, 1 and 60; (0, 120] 1, 60 and 61; (60, 180] 61.
    assert_eq!(
        sliding[0].points,
        [(60 * S, 3.0), (120 * S, 3.0), (180 * S, 1.0)]
    );
    let bytes = run(
        r#"bytes_over_time({app="x"}[1m])"#,
        60 * S,
        60 * S,
        0,
        &[(30 * S, a, event(&[("app", "x")]))],
    );
    assert_eq!(bytes, [series(a, &[(60 * S, 10.0)])]);
}

#[test]
fn sum_by_and_topk() {
    let stream = |svc: &'static str, pod: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("service", svc), ("pod", pod)]
    };
    let api1 = stream("api", "1");
    let api2 = stream("api", "2");
    let web1 = stream("web", "1");
    let db1 = stream("db", "1");
    let e = event(&[("message", "x")]);
    let mut events: Vec<Pushed<'_>> = Vec::new();
    for (s, n) in [(&api1, 3), (&api2, 2), (&web1, 4), (&db1, 1)] {
        for i in 0..n {
            events.push((i * S, s.as_slice(), e.clone()));
        }
    }
    let summed = run(
        r#"sum by (service) (count_over_time({}[1m]))"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(
        summed,
        [
            series(&[("service", "api")], &[(59 * S, 5.0)]),
            series(&[("service", "db")], &[(59 * S, 1.0)]),
            series(&[("service", "web")], &[(59 * S, 4.0)])
        ]
    );
    let total = run(r#"sum(rate({}[1m]))"#, 59 * S, 59 * S, 0, &events);
    assert_eq!(total, [series(&[], &[(59 * S, 10.0 / 60.0)])]);
    let without = run(
        r#"max without (pod) (count_over_time({}[1m]))"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(without[0], series(&[("service", "api")], &[(59 * S, 3.0)]));
    let avg = run(
        r#"avg by (service) (count_over_time({}[1m]))"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(avg[0], series(&[("service", "api")], &[(59 * S, 2.5)]));
    let count = run(
        r#"count(count_over_time({}[1m]))"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(count, [series(&[], &[(59 * S, 4.0)])]);
    let top = run(
        r#"topk(2, sum by (service) (count_over_time({}[1m])))"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(
        top,
        [
            series(&[("service", "api")], &[(59 * S, 5.0)]),
            series(&[("service", "web")], &[(59 * S, 4.0)])
        ]
    );
    let bottom = run(
        r#"bottomk(1, count_over_time({}[1m])) by (service)"#,
        59 * S,
        59 * S,
        0,
        &events,
    );
    assert_eq!(
        bottom,
        [
            series(&[("pod", "1"), ("service", "db")], &[(59 * S, 1.0)]),
            series(&[("pod", "1"), ("service", "web")], &[(59 * S, 4.0)]),
            series(&[("pod", "2"), ("service", "api")], &[(59 * S, 2.0)]),
        ]
    );
}

#[test]
fn unwrap_aggregations() {
    let stream: &[(&str, &str)] = &[("app", "a")];
    let values = [1.0, 2.0, 3.0, 4.0, 10.0];
    // One field per line, so that unwrapping it leaves one series.
    let events = |field: &str, unit: &str| -> Vec<Pushed<'_>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let line = format!("{field}={v}{unit}");
                (i as i64 * S, stream, event(&[("message", line.as_str())]))
            })
            .collect()
    };
    let (plain, durations, sizes) = (
        events("n", ""),
        events("latency", "ms"),
        events("size", "KB"),
    );
    let at = |q: &str, events: &[Pushed<'_>]| {
        let result = run(q, 30 * S, 30 * S, 0, events);
        assert_eq!(result.len(), 1, "{q}: {result:?}");
        result[0].points[0].1
    };
    assert_eq!(
        at(r#"sum_over_time({} | logfmt | unwrap n [1m])"#, &plain),
        20.0
    );
    assert_eq!(
        at(r#"avg_over_time({} | logfmt | unwrap n [1m])"#, &plain),
        4.0
    );
    assert_eq!(
        at(r#"min_over_time({} | logfmt | unwrap n [1m])"#, &plain),
        1.0
    );
    assert_eq!(
        at(r#"max_over_time({} | logfmt | unwrap n [1m])"#, &plain),
        10.0
    );
    assert_eq!(
        at(r#"rate({} | logfmt | unwrap n [1m])"#, &plain),
        20.0 / 60.0
    );
    assert_eq!(
        at(
            r#"max_over_time({} | logfmt | unwrap duration(latency) [1m])"#,
            &durations
        ),
        0.01
    );
    assert_eq!(
        at(
            r#"sum_over_time({} | logfmt | unwrap bytes(size) [1m])"#,
            &sizes
        ),
        20_000.0
    );
    // Sorted 1 2 3 4 10: rank 0.5·4 = 2 → 3; rank 0.9·4 = 3.6 → 4 + 0.6·6 = 7.6.
    assert_eq!(
        at(
            r#"quantile_over_time(0.5, {} | logfmt | unwrap n [1m])"#,
            &plain
        ),
        3.0
    );
    let p90 = at(
        r#"quantile_over_time(0.9, {} | logfmt | unwrap n [1m])"#,
        &plain,
    );
    assert!((p90 - 7.6).abs() < 1e-9, "{p90}");
    // The unwrapped label is not a series label; the others are.
    let line = event(&[("message", "n=1 latency=2ms size=3")]);
    let labelled = run(
        r#"sum_over_time({} | logfmt | unwrap n [1m])"#,
        30 * S,
        30 * S,
        0,
        &[(0, stream, line)],
    );
    assert_eq!(
        labelled[0].labels.keys().collect::<Vec<_>>(),
        ["app", "latency", "size"]
    );
}

#[test]
fn pipeline_errors_fail_metric_queries_unless_dropped() {
    let stream: &[(&str, &str)] = &[("app", "a")];
    let bad = event(&[("message", "not json")]);
    let good = event(&[("message", r#"{"level":"info","app":"inner"}"#)]);
    let query = metric(r#"count_over_time({} | json [1m])"#);
    let mut eval = MetricEval::new(&query, 60 * S, 60 * S, 0).unwrap();
    eval.push(S, stream, "t", &good, 1).unwrap();
    assert!(matches!(
        eval.push(S, stream, "t", &bad, 1),
        Err(EvalError::Pipeline { error, .. }) if error == "JSONParserErr"
    ));
    let series = eval.finish();
    // An extracted label named like a stream label is renamed, as in Loki.
    assert_eq!(
        series[0].labels,
        [("app", "a"), ("app_extracted", "inner"), ("level", "info")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    );
    let dropped = run(
        r#"count_over_time({} | json | __error__="" [1m])"#,
        60 * S,
        60 * S,
        0,
        &[(S, stream, bad.clone())],
    );
    assert!(dropped.is_empty());
    let unwrap_err = run(
        r#"sum_over_time({} | unwrap missing | __error__="" [1m])"#,
        60 * S,
        60 * S,
        0,
        &[(S, stream, bad)],
    );
    assert!(unwrap_err.is_empty());
}

#[test]
fn limits() {
    let q = metric(r#"count_over_time({}[1m])"#);
    assert!(matches!(
        MetricEval::new(&q, 0, 11_000 * S, S),
        Err(EvalError::TooManySteps { .. })
    ));
    assert!(MetricEval::new(&q, 0, 10_999 * S, S).is_ok());
    assert!(matches!(
        MetricEval::new(&q, 10, 0, S),
        Err(EvalError::InvalidRange(_))
    ));
    assert!(matches!(
        MetricEval::new(&q, 0, 10, 0),
        Err(EvalError::InvalidRange(_))
    ));
    let mut eval = MetricEval::new(&q, 0, 60 * S, S).unwrap().max_series(2);
    let e = event(&[]);
    eval.push(0, &[("a", "1")], "t", &e, 1).unwrap();
    eval.push(0, &[("a", "2")], "t", &e, 1).unwrap();
    eval.push(0, &[("a", "1")], "t", &e, 1).unwrap();
    assert_eq!(
        eval.push(0, &[("a", "3")], "t", &e, 1),
        Err(EvalError::TooManySeries { limit: 2 })
    );
    // A sum above an additive function keys by its grouping, so fewer series are kept.
    let summed = metric(r#"sum(count_over_time({}[1m]))"#);
    let mut eval = MetricEval::new(&summed, 0, 0, 0).unwrap().max_series(1);
    for i in 0..10 {
        eval.push(0, &[("a", &i.to_string())], "t", &e, 1).unwrap();
    }
    assert_eq!(eval.finish(), [series(&[], &[(0, 10.0)])]);
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn queries_round_trip_and_never_panic(text in "[a-z_(){}\\[\\]\"`=!~|<>,.0-9 ]{0,60}") {
        match Query::parse(&text) {
            Ok(q) => {
                prop_assert_eq!(q.as_str(), text.as_str());
                let again = Query::parse(&q.to_string()).unwrap();
                prop_assert_eq!(again.as_str(), text.as_str());
            }
            Err(e) => prop_assert!(e.position <= text.len()),
        }
    }

    #[test]
    fn valid_queries_survive_edits(index in 0..VALID.len(), cut in any::<prop::sample::Index>()) {
        let text = VALID[index];
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let prefix = &text[..boundaries[cut.index(boundaries.len())]];
        if let Err(e) = Query::parse(prefix) {
            prop_assert!(e.position <= prefix.len());
        }
    }
}

/// `push_stream` gives what `push` gives, for queries that count streams.
#[test]
fn counting_a_stream_without_its_records_is_counting_its_events() {
    let second = 1_000_000_000i64;
    let streams: [&[(&str, &str)]; 2] = [
        &[("service", "api"), ("level", "error")],
        &[("service", "web"), ("level", "info")],
    ];
    for text in [
        "count_over_time({}[1m])",
        "sum by (level) (rate({}[30s]))",
        "sum(bytes_over_time({}[2m]))",
        "topk(1, bytes_rate({}[1m]))",
    ] {
        let query = metric(text);
        let mut by_record = MetricEval::new(&query, 0, 600 * second, 60 * second).unwrap();
        let mut by_stream = MetricEval::new(&query, 0, 600 * second, 60 * second).unwrap();
        assert!(by_stream.counts_streams(), "{text}");
        for (s, labels) in streams.iter().enumerate() {
            let events: Vec<(i64, usize)> = (0..300)
                .map(|i| ((i * 7 + s as i64 * 3) % 650 * second, 10 + i as usize % 40))
                .collect();
            for &(time, bytes) in &events {
                let record = rec(vec![
                    ("service", Value::from(labels[0].1)),
                    ("level", Value::from(labels[1].1)),
                ]);
                by_record.push(time, labels, "t", &record, bytes).unwrap();
            }
            by_stream.push_stream(labels, events).unwrap();
        }
        assert_eq!(by_record.finish(), by_stream.finish(), "{text}");
    }
    for text in [
        r#"count_over_time({} |= "x" [1m])"#,
        "sum_over_time({} | unwrap n [1m])",
        "count_over_time({} | json [1m])",
    ] {
        let eval = MetricEval::new(&metric(text), 0, 60 * second, second).unwrap();
        assert!(!eval.counts_streams(), "{text}");
    }
}
