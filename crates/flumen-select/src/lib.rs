//! The query language of flumen, shaped like [Grafana Loki LogQL]: one way to say which events
//! you mean (a *selector*, or log query), shared by content routing, search and live tailing,
//! and *metric queries* that turn the selected events into series of numbers
//! ([`Query`], [`MetricQuery`], evaluated by [`MetricEval`]).
//!
//! A selector is a *stream selector* in braces, then zero or more *stages* that every event
//! must also pass, left to right. Besides filters, stages can parse the line into labels
//! (`| json`, `| logfmt`, `| regexp`, `| pattern`) and rewrite it (`| line_format`).
//!
//! ```text
//! {service="api", level=~"ERROR|FATAL"} |= "timeout" != "healthcheck" |~ "user=[0-9]+" | status >= 500
//! └──────────── stream selector ──────┘ └──────────── line filters ─────────────────┘ └ label filter ┘
//! ```
//!
//! This event matches it (its tag is not looked at):
//!
//! ```json
//! {"service": "api", "level": "ERROR", "status": "503",
//!  "message": "upstream timeout after 30s for user=42"}
//! ```
//!
//! [Grafana Loki LogQL]: https://grafana.com/docs/loki/latest/query/log_queries/
//!
//! # Stream selector
//!
//! `{ matcher, matcher, ... }`: every matcher must hold. `{}` matches every event. The stream
//! selector is required, even when only line filters follow: `{} |= "timeout"`.
//!
//! A matcher is `name op value`:
//!
//! | op   | holds when the field's text …                                      |
//! |------|--------------------------------------------------------------------|
//! | `=`  | equals `value`                                                     |
//! | `!=` | does not equal `value`                                             |
//! | `=~` | matches the regular expression `value`, **anchored at both ends**  |
//! | `!~` | does not match the regular expression `value` (anchored)           |
//!
//! Regular expressions in matchers are fully anchored, as in Prometheus and Loki:
//! `level=~"ERROR|FATAL"` means `^(?:ERROR|FATAL)$`, so it does not match `"NOT AN ERROR"`;
//! write `level=~".*ERROR.*"` to look inside a value. The syntax is that of the [`regex`] crate
//! (RE2-like: linear time, no backreferences or look-around); `(?i)` makes a regex
//! case-insensitive and `(?s)` lets `.` match a newline.
//!
//! # Names
//!
//! A name is `[A-Za-z_][A-Za-z0-9_.]*`. Dots walk nested maps: `kubernetes.labels.app` is the
//! field `app` of the map `labels` of the map `kubernetes` (a top-level field literally named
//! `kubernetes.labels.app` wins; see `Record::get_path`).
//!
//! The name `tag` is special: it is the record's own `tag` field when it has one, and otherwise
//! the event's tag (the Fluentd tag it was sent with), so `{tag=~"docker\\..*"}` selects by tag.
//!
//! # Field values
//!
//! A field's text is what a user reading the log sees (`Value::to_text`): strings as they are,
//! numbers and booleans in decimal, `null` as the empty string, arrays and maps as JSON.
//!
//! **A missing field is the empty string** for `=`, `!=`, `=~` and `!~`, as in Loki:
//! `{foo=""}` matches events *without* `foo` (or with an empty one), and `{foo!=""}` requires a
//! non-empty `foo`.
//!
//! # Values
//!
//! Strings are written in double quotes, with the escapes `\"`, `\\`, `\n` and `\t` (any other
//! backslash is an error), or in backticks, taken as they are (no escapes; they cannot contain a
//! backtick). Backticks are the easy way to write regular expressions:
//! `` |~ `\d{3} ms` `` rather than `|~ "\\d{3} ms"`.
//!
//! Numbers (label filters only) are `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`: `500`, `1.5`,
//! `-3`, `2e3`. A number followed by a unit is a duration or a byte size (see below).
//!
//! # Line filters
//!
//! | stage        | keeps events whose line …                                   |
//! |--------------|-------------------------------------------------------------|
//! | `\|= "text"` | contains `text` (`\|= ""` keeps everything)               |
//! | `!= "text"`  | does not contain `text` (`!= ""` drops everything)          |
//! | `\|~ "re"`   | has a match for `re` anywhere (**not** anchored)            |
//! | `!~ "re"`    | has no match for `re`                                       |
//!
//! The *line* of an event is the text of its first present field among `message`, `log` and
//! `msg` (in that order of preference), and otherwise the whole record as JSON; see
//! [`line_of`]. Matching is case-sensitive: use `|~ "(?i)timeout"` to ignore case.
//!
//! # Label filters
//!
//! `| name op value` compares one field. The operators are those of matchers plus numeric
//! comparisons:
//!
//! | op                     | value             | compares                                |
//! |------------------------|-------------------|-----------------------------------------|
//! | `=`, `!=`              | a string          | text, as in matchers                    |
//! | `=~`, `!~`             | a string (regex)  | text, anchored, as in matchers          |
//! | `=` (or `==`), `!=`    | a number          | numerically                             |
//! | `>`, `>=`, `<`, `<=`   | a number          | numerically                             |
//!
//! A numeric comparison reads the field as a number: integers and floats as they are, and a
//! string holding a number (`"503"`, `" 1.5 "`) as that number. Integers are compared exactly;
//! anything involving a fraction is compared as a 64-bit float. **A field that is missing or not
//! a number makes a numeric comparison false** — `!=` included: `| status != 500` drops events
//! that have no `status`. Write `| status != "500"` to compare text instead.
//!
//! Label filters combine with `and` (or `,`) and `or`; `and` binds tighter than `or`, and
//! parentheses group:
//!
//! ```text
//! {service="api"} | status >= 500 or (level = "WARN" and latency_ms > 1000)
//! ```
//!
//! Several `|` stages are simply all required: `| a = "x" | b > 1` is `| a = "x" and b > 1`.
//!
//! ## Durations and byte sizes
//!
//! `| took > 1m30s` compares durations: the value is written like Go's `time.ParseDuration`
//! (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, combined as in `1h30m` or `2.5s`; also `d`, `w`,
//! `y`), and the field holds a duration in the same syntax (`"2.5s"`) or a plain number, taken
//! as seconds. `| size >= 10KB` compares byte sizes: units as in go-humanize, case-insensitive
//! (`B`, `kB`/`KB` = 1000, `KiB` = 1024, `MB`, `MiB`, `GB`, `GiB`, ... up to `E`), and the
//! field holds a size like `"1.5 MB"` or a plain number of bytes. A value is a duration when it
//! reads as one, so `5m` is five minutes, not five megabytes. As with numbers, a missing field
//! or one that does not read makes the comparison false (Loki keeps such events and sets
//! `__error__`).
//!
//! # Parsers
//!
//! A parser reads the current line and adds *labels* that later stages see:
//!
//! | stage                       | labels                                                       |
//! |-----------------------------|--------------------------------------------------------------|
//! | `\| json`                   | every scalar of the line's JSON object; nested keys joined with `_` (`{"a":{"b":1}}` gives `a_b="1"`); arrays and nulls skipped |
//! | `\| json x="a.b[0]", y`     | only these: a path of keys (`.k` or `["k"]`) and indexes (`[0]`); `y` alone is `y="y"`; objects and arrays as JSON; a missing path is `""` |
//! | `\| logfmt`                 | every `key=value` (values may be quoted with `\"` escapes; a bare key is `""`) |
//! | `\| regexp "re"`            | the named groups `(?P<name>…)` of the first match (none when it does not match) |
//! | `\| pattern "<ip> - <_>"`   | Loki's pattern: literal text and `<name>` captures (`<_>` skips) |
//!
//! Keys become label names with every character outside `[A-Za-z0-9_]` replaced by `_` (and a
//! leading digit prefixed by `_`). A `json` line that is not a JSON object sets
//! `__error__="JSONParserErr"`, malformed logfmt `__error__="LogfmtParserErr"`, as in Loki;
//! `| __error__=""` drops such events. A `pattern` leading literal must start the line; each
//! capture runs to the next occurrence of the text after it; a missing text ends the match
//! with the rest of the line in the current capture.
//!
//! A name in a later stage is looked up in the extracted labels first, then in the record
//! (dotted paths as above), then `tag` falls back to the event's tag.
//!
//! # Formatting
//!
//! `| line_format "template"` replaces the line; line filters after it search the new line.
//! `| label_format new=old, other="template"` sets labels: `new=old` copies `old` (and removes
//! the extracted label `old`), a template is rendered; every item sees the labels as they were
//! before the stage. Templates are a small subset of Go's `text/template`: text with actions
//! `{{.name}}` or `{{ .name }}` (a label or field, `""` when missing), `{{ __line__ }}`, string
//! literals, and the functions `ToUpper`, `ToLower`, `TrimSpace` (also `upper`, `lower`,
//! `trim`) and `default "fallback" .name`, called as `{{ ToUpper .name }}` or piped:
//! `{{ .name | ToLower | default "-" }}`. Anything else is an error with its position.
//!
//! `unpack`, `decolorize`, `drop` and `keep` stages are not supported.
//!
//! # Metric queries
//!
//! A *range aggregation* applies a function to the events of a log query in a sliding window
//! (`[5m]`, a duration as above):
//!
//! | function                               | value per window                                 |
//! |----------------------------------------|--------------------------------------------------|
//! | `count_over_time({...}[5m])`           | number of events                                 |
//! | `rate({...}[5m])`                      | events per second (count ÷ range seconds)        |
//! | `bytes_over_time`, `bytes_rate`        | bytes of the events (as the caller gives them), and per second |
//! | `rate({...} \| unwrap x [5m])`         | sum of the unwrapped values per second           |
//! | `sum_over_time`, `avg_over_time`, `min_over_time`, `max_over_time` | of the unwrapped values (`\| unwrap` required) |
//! | `quantile_over_time(0.99, ...)`        | φ-quantile of the unwrapped values, interpolated as in Prometheus |
//!
//! `| unwrap name` ends the log query's pipeline and reads the sample value from a label or
//! field: a number, or `duration(name)` (also `duration_seconds`) and `bytes(name)` with the
//! units above. A value that does not read sets `__error__="SampleExtractionErr"`; label
//! filters may follow (`| unwrap took | __error__=""`). The range may also come right after
//! the stream selector (`{...}[5m] | json`), or after a parenthesized log query. A range
//! aggregation may be followed by `by (...)`/`without (...)`, which then keys its series.
//!
//! A *vector aggregation* combines series at each step: `sum`, `avg`, `min`, `max`, `count`,
//! and `topk(k, ...)`/`bottomk(k, ...)` (the k highest/lowest series keep their labels, ties to
//! the labels that sort first), with `by (a, b)` or `without (a, b)` written before or after the
//! parenthesized expression; they nest: `topk(3, sum by (service) (rate({}[1m])))`.
//!
//! Without an aggregation, a series is keyed by the event's stream labels (given by the caller)
//! plus the extracted labels (one named like a stream label is renamed `name_extracted`), minus
//! the unwrapped label and empty values. An event whose labels still hold `__error__` fails the
//! evaluation ([`EvalError::Pipeline`]), as in Loki: add `| __error__=""` to drop them.
//! Binary operators, `offset`, `label_replace`, `first/last_over_time`, `stddev_over_time` and
//! `absent_over_time` are not supported.
//!
//! [`MetricEval`] takes events pushed in any order and returns the series at the steps
//! `start, start + step, ..., end`; the value at step `t` covers the events in `(t - range, t]`,
//! and a step without events has no point. Memory is one 16-byte accumulator per series and
//! step, whatever the number of events ([`MetricEval::max_series`] bounds the series, at most
//! [`MAX_STEPS`] steps), except for `quantile_over_time`, which keeps every value of each
//! window. Below a `sum`, functions that add up (`count_over_time`, `rate`, `bytes_*`,
//! `sum_over_time`) key their series by the sum's grouping directly.
//!
//! ```
//! use flumen_event::record::{Record, Value};
//! use flumen_select::{MetricEval, Query};
//!
//! const SECOND: i64 = 1_000_000_000;
//! let Query::Metric(query) =
//!     Query::parse(r#"sum by (level) (count_over_time({} | logfmt [1m]))"#)?
//! else {
//!     unreachable!("a metric query")
//! };
//! let mut eval = MetricEval::new(&query, 60 * SECOND, 120 * SECOND, 60 * SECOND)?;
//! for (time, line) in [(10, "level=error"), (70, "level=error"), (80, "level=info")] {
//!     let record = Record::from(vec![("message".to_owned(), Value::from(line))]);
//!     eval.push(time * SECOND, &[("job", "api")], "tag", &record, line.len())?;
//! }
//! let series = eval.finish();
//! assert_eq!(series[0].labels["level"], "error");
//! assert_eq!(series[0].points, [(60 * SECOND, 1.0), (120 * SECOND, 1.0)]);
//! assert_eq!(series[1].points, [(120 * SECOND, 1.0)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Grammar
//!
//! Whitespace (spaces, tabs, newlines) may appear between any two tokens.
//!
//! ```text
//! query        = selector | metric
//! selector     = stream { stage }
//! stream       = "{" [ matcher { "," matcher } ] "}"
//! matcher      = name ( "=" | "!=" | "=~" | "!~" ) string
//! stage        = ( "|=" | "!=" | "|~" | "!~" ) string
//!              | "|" "json" [ json_expr { "," json_expr } ] | "|" "logfmt"
//!              | "|" ( "regexp" | "pattern" | "line_format" ) string
//!              | "|" "label_format" name "=" ( name | string ) { "," name "=" ( name | string ) }
//!              | "|" or_expr
//! json_expr    = name [ "=" string ]
//! or_expr      = and_expr { "or" and_expr }
//! and_expr     = primary { ( "and" | "," ) primary }
//! primary      = "(" or_expr ")" | label_filter
//! label_filter = name ( "=" | "==" | "!=" ) ( string | number )
//!              | name ( "=~" | "!~" ) string
//!              | name ( ">" | ">=" | "<" | "<=" ) number
//! name         = [A-Za-z_] [A-Za-z0-9_.]*
//! string       = '"' { char | '\"' | '\\' | '\n' | '\t' } '"'  |  '`' { char except '`' } '`'
//! number       = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]
//!              | [ "-" ] duration | bytes
//!
//! metric       = "(" metric ")" | range_agg | vector_agg
//! range_agg    = range_fn "(" [ number "," ] log_range ")" [ grouping ]
//! log_range    = stream [ range ] { stage } [ unwrap ] [ range ]     (exactly one range)
//!              | "(" stream { stage } [ unwrap ] ")" range
//! unwrap       = "|" "unwrap" ( name | ( "duration" | "duration_seconds" | "bytes" ) "(" name ")" )
//!                { "|" or_expr }
//! range        = "[" duration "]"
//! vector_agg   = vector_op [ grouping ] "(" [ digits "," ] metric ")" [ grouping ]
//! grouping     = ( "by" | "without" ) "(" [ name { "," name } ] ")"
//! ```
//!
//! A `|` followed by a stage keyword and no operator starts that stage (`| json = "x"` is a
//! label filter on the field `json`). Parentheses nest at most 32 deep.
//!
//! # Errors
//!
//! [`Selector::parse`] reports the first problem with the byte offset where it is
//! ([`ParseError::position`]) and shows it as a 1-based column:
//!
//! ```
//! use flumen_select::Selector;
//!
//! let error = Selector::parse(r#"{service="api""#).unwrap_err();
//! assert_eq!(error.to_string(), "at column 15: expected `,` or `}`");
//! ```
//!
//! # Evaluation
//!
//! A selector made only of matchers and filters holds when every part of it holds, so the order
//! in which the parts are checked does not change the result; [`Selector::matches`] checks the
//! cheap ones first: equality matchers, then regex matchers, then label filters, then line
//! filters (substring before regex), without allocating. The line is computed at most once per
//! event, and only when there is a line filter. With a parser or formatting stage, the stages
//! run in source order ([`Selector::process`], which also gives the final line and labels).
//!
//! A store can skip events early with [`Selector::stream_matchers`] and
//! [`Selector::required_literals`] (the `|= "text"` texts that the original line must contain).
//!
//! ```
//! use flumen_event::record::{Record, Value};
//! use flumen_select::Selector;
//!
//! let selector: Selector =
//!     r#"{service="api", level=~"ERROR|FATAL"} |= "timeout" | status >= 500"#.parse()?;
//! let record = Record::from(vec![
//!     ("service".to_owned(), Value::from("api")),
//!     ("level".to_owned(), Value::from("ERROR")),
//!     ("status".to_owned(), Value::from("503")),
//!     ("message".to_owned(), Value::from("upstream timeout")),
//! ]);
//! assert!(selector.matches("docker.api", &record));
//! # Ok::<(), flumen_select::ParseError>(())
//! ```

#![deny(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use flumen_event::record::{Record, Value};

mod engine;
mod eval;
mod metric;
mod parse;
mod parse_metric;
mod pipeline;
#[cfg(test)]
mod query_tests;
mod template;
#[cfg(test)]
mod tests;
mod units;

pub use engine::{DEFAULT_MAX_SERIES, EvalError, MAX_STEPS, MetricEval, Series};
use eval::{Fields, LabelExpr, LineFilter, LineOp};
pub use eval::{MatchOp, Matcher};
pub use metric::{MetricQuery, Query};
use pipeline::{LabelFormat, Labels, LineParser};
use template::Template;

/// A parsed selector, ready to match events.
///
/// Parse once (it compiles regular expressions) and share: it is cheap to clone and is
/// `Send + Sync`. [`Display`](fmt::Display) and [`Selector::as_str`] give back the source text
/// exactly as it was parsed.
#[derive(Clone, Debug)]
pub struct Selector {
    source: String,
    matchers: Vec<Matcher>,
    stages: Vec<Stage>,
    has_line_filter: bool,
    /// A parser or formatting stage: stages must then run in order (see [`Selector::process`]).
    has_pipeline: bool,
}

/// One stage after the stream selector, in source order.
#[derive(Clone, Debug)]
pub(crate) enum Stage {
    /// `|= != |~ !~`.
    Line(LineFilter),
    /// `| ...`.
    Label(LabelExpr),
    /// `| json`, `| logfmt`, `| regexp "..."`, `| pattern "..."`.
    Parser(LineParser),
    /// `| line_format "..."`.
    LineFormat(Template),
    /// `| label_format a=b, c="..."`.
    LabelFormat(Vec<LabelFormat>),
}

/// An event after a selector's pipeline: its line and the labels its stages extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processed<'r> {
    /// The line: [`line_of`] the record, or what the last `line_format` made of it.
    pub line: Cow<'r, str>,
    /// The labels set by parsers and `label_format`, in the order first set (`__error__`
    /// included when a parser failed).
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Parses a selector; see the [crate documentation](crate) for the language.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let (matchers, stages) = parse::parse(text)?;
        Ok(Self::from_parts(text.to_owned(), matchers, stages))
    }

    pub(crate) fn from_parts(source: String, matchers: Vec<Matcher>, stages: Vec<Stage>) -> Self {
        let has_line_filter = stages.iter().any(|s| matches!(s, Stage::Line(_)));
        let has_pipeline = stages
            .iter()
            .any(|s| !matches!(s, Stage::Line(_) | Stage::Label(_)));
        Self {
            source,
            matchers,
            stages,
            has_line_filter,
            has_pipeline,
        }
    }

    /// `{}`: the selector that matches every event.
    pub fn match_all() -> Self {
        Self {
            source: "{}".to_owned(),
            matchers: Vec::new(),
            stages: Vec::new(),
            has_line_filter: false,
            has_pipeline: false,
        }
    }

    /// True when the selector has no matchers and no stages (`{}`), so it matches every event
    /// without looking at it. (A selector that happens to match everything, like
    /// `{a=~".*"}`, is not recognised.)
    pub fn is_match_all(&self) -> bool {
        self.matchers.is_empty() && self.stages.is_empty()
    }

    /// The source text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The stream selector's matchers, in source order (for indexes).
    pub fn stream_matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// True when the event with this tag and record is selected.
    pub fn matches(&self, tag: &str, record: &Record) -> bool {
        if self.has_pipeline {
            return self.process(tag, record).is_some();
        }
        // Without parsers or formatting every stage sees the same event, and every part must
        // hold, so check the cheapest first.
        let fields = Fields::of_record(tag, record);
        if !self.stream_matches(&fields) {
            return false;
        }
        for stage in &self.stages {
            if let Stage::Label(expr) = stage
                && !expr.matches(&fields)
            {
                return false;
            }
        }
        if !self.has_line_filter {
            return true;
        }
        let line = line_of(record);
        for regex in [false, true] {
            for stage in &self.stages {
                if let Stage::Line(filter) = stage
                    && filter.is_regex() == regex
                    && !filter.matches(&line)
                {
                    return false;
                }
            }
        }
        true
    }

    /// True when stages follow the stream selector (line filters, label filters, parsers,
    /// formats): without them, whether an event is selected depends on its stream matchers
    /// alone.
    pub fn has_stages(&self) -> bool {
        !self.stages.is_empty()
    }

    /// The stream matchers, equality first.
    fn stream_matches(&self, fields: &Fields<'_>) -> bool {
        let plain = self.matchers.iter().filter(|m| !m.is_regex());
        let regex = self.matchers.iter().filter(|m| m.is_regex());
        plain.chain(regex).all(|m| m.matches_fields(fields))
    }

    /// Runs the whole pipeline on one event, stage by stage in source order: `None` when the
    /// event is dropped, otherwise its final line and extracted labels (for display, and for
    /// metric queries).
    pub fn process<'r>(&self, tag: &'r str, record: &'r Record) -> Option<Processed<'r>> {
        if !self.stream_matches(&Fields::of_record(tag, record)) {
            return None;
        }
        let mut line = line_of(record);
        let mut labels = Labels::new();
        for stage in &self.stages {
            let fields = Fields {
                tag,
                record,
                labels: &labels,
            };
            match stage {
                Stage::Line(filter) => {
                    if !filter.matches(&line) {
                        return None;
                    }
                }
                Stage::Label(expr) => {
                    if !expr.matches(&fields) {
                        return None;
                    }
                }
                Stage::Parser(parser) => parser.extract(&line, &mut labels),
                Stage::LineFormat(template) => line = Cow::Owned(template.render(&line, &fields)),
                Stage::LabelFormat(items) => {
                    // Every item reads the labels as they were before the stage, as in Loki.
                    let before = labels.clone();
                    let fields = Fields {
                        tag,
                        record,
                        labels: &before,
                    };
                    for item in items {
                        item.apply(&line, fields, &mut labels);
                    }
                }
            }
        }
        Some(Processed { line, labels })
    }

    /// The texts of the `|= "text"` filters that search the original line (those before any
    /// `line_format`), empty ones left out: an event whose line lacks one of them is never
    /// selected, so a store can skip it before decoding.
    ///
    /// Careful with raw bytes: a line taken from a `message`, `log` or `msg` string field
    /// appears verbatim in an encoded record, but a record without those fields has its JSON
    /// rendering as its line, where a literal may span keys, quotes and numbers that are not
    /// in the encoded bytes as such.
    pub fn required_literals(&self) -> Vec<&str> {
        self.stages
            .iter()
            .take_while(|stage| !matches!(stage, Stage::LineFormat(_)))
            .filter_map(|stage| match stage {
                Stage::Line(filter)
                    if filter.op == LineOp::Contains && !filter.value.is_empty() =>
                {
                    Some(filter.value.as_str())
                }
                _ => None,
            })
            .collect()
    }
}

/// The text of field `name` of an event as matchers read it: a dotted path into the record,
/// `tag` falling back to the event's tag, `""` when missing. For indexes that look an event up
/// by the values its selectors' equality matchers want.
pub fn field_text<'r>(tag: &'r str, record: &'r Record, name: &str) -> Cow<'r, str> {
    Fields::of_record(tag, record).text(name)
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a selector did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {}: {message}", position + 1)]
pub struct ParseError {
    /// The byte offset in the source text where the problem is (the source's length when the
    /// text ended too early). Shown as the 1-based column `position + 1`, which counts bytes.
    pub position: usize,
    /// What is wrong, for people.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

/// The fields that hold an event's line, in order of preference.
const LINE_FIELDS: [&str; 3] = ["message", "log", "msg"];

/// The *line* of a record, which line filters (`|=`, `!=`, `|~`, `!~`) search: the text of the
/// first present field among `message`, `log` and `msg` (in that order of preference, wherever
/// they are in the record), and otherwise the whole record as JSON.
///
/// Live tailing and search use this same definition, so what a user sees as "the line" is what
/// their filters search.
pub fn line_of(record: &Record) -> Cow<'_, str> {
    let mut best: Option<(usize, &Value)> = None;
    for (name, value) in record.fields() {
        if let Some(rank) = LINE_FIELDS.iter().position(|f| f == name)
            && best.is_none_or(|(r, _)| rank < r)
        {
            if rank == 0 {
                return value.to_text();
            }
            best = Some((rank, value));
        }
    }
    match best {
        Some((_, value)) => value.to_text(),
        None => Cow::Owned(record.to_json()),
    }
}
