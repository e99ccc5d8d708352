//! The stages that change what later stages see: parsers that extract labels from the line,
//! and `line_format` / `label_format`, which rewrite the line and labels.

use regex::Regex;
use serde_json::Value as Json;

use crate::eval::Fields;
use crate::template::Template;

/// The label a failed parser sets, as in Loki.
pub(crate) const ERROR_LABEL: &str = "__error__";

/// Labels extracted from one event, in the order they were first set.
pub(crate) type Labels = Vec<(String, String)>;

/// Sets `name` to `value`, replacing an earlier value.
pub(crate) fn set_label(labels: &mut Labels, name: &str, value: String) {
    match labels.iter_mut().find(|(n, _)| n == name) {
        Some((_, slot)) => *slot = value,
        None => labels.push((name.to_owned(), value)),
    }
}

/// A parser stage: reads the current line and adds labels.
#[derive(Debug, Clone)]
pub(crate) enum LineParser {
    /// `| json`: every scalar, nested keys joined with `_`.
    JsonAll,
    /// `| json name="path", ...`.
    JsonPaths(Vec<(String, JsonPath)>),
    /// `| logfmt`.
    Logfmt,
    /// `| regexp "..."`: the named groups that take part in the match.
    Regexp(Regex),
    /// `| pattern "..."`.
    Pattern(Pattern),
}

impl LineParser {
    pub(crate) fn extract(&self, line: &str, labels: &mut Labels) {
        match self {
            Self::JsonAll => match serde_json::from_str::<Json>(line) {
                Ok(Json::Object(map)) => {
                    for (key, value) in &map {
                        flatten_json(&sanitize(key), value, labels);
                    }
                }
                _ => set_label(labels, ERROR_LABEL, "JSONParserErr".to_owned()),
            },
            Self::JsonPaths(paths) => match serde_json::from_str::<Json>(line) {
                Ok(json @ Json::Object(_)) => {
                    for (name, path) in paths {
                        let value = path.find(&json).map(json_text).unwrap_or_default();
                        set_label(labels, name, value);
                    }
                }
                _ => set_label(labels, ERROR_LABEL, "JSONParserErr".to_owned()),
            },
            Self::Logfmt => {
                if parse_logfmt(line, labels).is_err() {
                    set_label(labels, ERROR_LABEL, "LogfmtParserErr".to_owned());
                }
            }
            Self::Regexp(regex) => {
                if let Some(captures) = regex.captures(line) {
                    for name in regex.capture_names().flatten() {
                        if let Some(m) = captures.name(name) {
                            set_label(labels, name, m.as_str().to_owned());
                        }
                    }
                }
            }
            Self::Pattern(pattern) => pattern.extract(line, labels),
        }
    }
}

/// Adds `value` under `name`, objects flattened with `_`; arrays and nulls are skipped, as in
/// Loki.
fn flatten_json(name: &str, value: &Json, labels: &mut Labels) {
    match value {
        Json::Object(map) => {
            for (key, inner) in map {
                flatten_json(&format!("{name}_{}", sanitize(key)), inner, labels);
            }
        }
        Json::Array(_) | Json::Null => {}
        scalar => set_label(labels, name, json_text(scalar)),
    }
}

/// A JSON value as a label: strings as they are, everything else as JSON.
fn json_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A key as a label name: characters other than `[A-Za-z0-9_]` become `_`, and a leading
/// digit gets a `_` before it (Loki's rule).
pub(crate) fn sanitize(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A step of a `| json name="path"` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathStep {
    Key(String),
    Index(usize),
}

/// `a.b[0]["c d"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath(pub(crate) Vec<PathStep>);

impl JsonPath {
    /// Reads a path; on error, the byte offset in `text` and why.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'.' if at > 0 => {
                    at += 1;
                    if at == bytes.len() || matches!(bytes[at], b'.' | b'[') {
                        return Err((at, "expected a key after `.`".to_owned()));
                    }
                }
                b'[' => {
                    let close = text[at..]
                        .find(']')
                        .map(|i| at + i)
                        .ok_or((at, "expected `]`".to_owned()))?;
                    let inside = &text[at + 1..close];
                    let step = if let Some(key) =
                        inside.strip_prefix('"').and_then(|s| s.strip_suffix('"'))
                    {
                        PathStep::Key(key.to_owned())
                    } else {
                        PathStep::Index(inside.parse().map_err(|_| {
                            (
                                at + 1,
                                "expected an index or a quoted key in `[]`".to_owned(),
                            )
                        })?)
                    };
                    steps.push(step);
                    at = close + 1;
                    continue;
                }
                _ => {}
            }
            let end = text[at..].find(['.', '[']).map_or(text.len(), |i| at + i);
            if end == at {
                return Err((at, "expected a key".to_owned()));
            }
            steps.push(PathStep::Key(text[at..end].to_owned()));
            at = end;
        }
        if steps.is_empty() {
            return Err((0, "expected a path like `a.b[0]`".to_owned()));
        }
        Ok(Self(steps))
    }

    fn find<'j>(&self, json: &'j Json) -> Option<&'j Json> {
        self.0.iter().try_fold(json, |value, step| match step {
            PathStep::Key(key) => value.get(key),
            PathStep::Index(i) => value.get(i),
        })
    }
}

/// Reads `key=value key="quoted value" flag` pairs into `labels`; `Err` on malformed input
/// (after keeping the pairs before the problem).
fn parse_logfmt(line: &str, labels: &mut Labels) -> Result<(), ()> {
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ' ' || c.is_ascii_control());
        if rest.is_empty() {
            return Ok(());
        }
        let key_end = rest
            .find(|c: char| c == '=' || c == ' ' || c == '"' || c.is_ascii_control())
            .unwrap_or(rest.len());
        if key_end == 0 {
            return Err(());
        }
        let key = sanitize(&rest[..key_end]);
        rest = &rest[key_end..];
        let Some(after_eq) = rest.strip_prefix('=') else {
            set_label(labels, &key, String::new());
            continue;
        };
        let (value, after) = match after_eq.strip_prefix('"') {
            Some(quoted) => logfmt_quoted(quoted)?,
            None => {
                let end = after_eq.find([' ', '"', '=']).unwrap_or(after_eq.len());
                if after_eq[end..].starts_with(['"', '=']) {
                    return Err(());
                }
                (after_eq[..end].to_owned(), &after_eq[end..])
            }
        };
        set_label(labels, &key, value);
        rest = after;
    }
}

/// The body of a quoted logfmt value (after the opening quote) and the text after it.
fn logfmt_quoted(text: &str) -> Result<(String, &str), ()> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some(c @ ('"' | '\\' | '/')) => value.push(c),
                _ => return Err(()),
            },
            c => value.push(c),
        }
    }
    Err(())
}

/// Loki's pattern: literal text and `<name>` captures (`<_>` captures nothing).
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// Alternating as written; no two captures in a row.
    nodes: Vec<PatternNode>,
    /// The pattern text, unescaped (rendered by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternNode {
    Literal(String),
    /// `None` for `<_>`.
    Capture(Option<String>),
}

impl Pattern {
    /// Reads a pattern; on error, the byte offset in `text` and why.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut nodes: Vec<PatternNode> = Vec::new();
        let mut literal_start = 0;
        let mut at = 0;
        while let Some(open) = text[at..].find('<').map(|i| at + i) {
            let name_end = text[open + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |i| open + 1 + i);
            let name = &text[open + 1..name_end];
            let is_capture = text[name_end..].starts_with('>')
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if !is_capture {
                at = open + 1;
                continue;
            }
            if open > literal_start {
                nodes.push(PatternNode::Literal(text[literal_start..open].to_owned()));
            } else if matches!(nodes.last(), Some(PatternNode::Capture(_))) {
                return Err((
                    open,
                    "two captures in a row: put literal text between them".to_owned(),
                ));
            }
            let named = (name != "_").then(|| name.to_owned());
            if let Some(name) = &named
                && nodes
                    .iter()
                    .any(|n| n == &PatternNode::Capture(Some(name.clone())))
            {
                return Err((open, format!("capture `<{name}>` appears twice")));
            }
            nodes.push(PatternNode::Capture(named));
            at = name_end + 1;
            literal_start = at;
        }
        if literal_start < text.len() {
            nodes.push(PatternNode::Literal(text[literal_start..].to_owned()));
        }
        if !nodes
            .iter()
            .any(|n| matches!(n, PatternNode::Capture(Some(_))))
        {
            return Err((
                0,
                "a pattern needs at least one named capture like `<name>`".to_owned(),
            ));
        }
        Ok(Self {
            nodes,
            source: text.to_owned(),
        })
    }

    /// Matches like Loki: a leading literal must start the line, each capture runs to the
    /// next occurrence of the literal after it (or to the end of the line when that literal
    /// is missing, which ends the match), and a trailing literal is not required.
    fn extract(&self, line: &str, labels: &mut Labels) {
        let mut nodes = self.nodes.as_slice();
        let mut rest = line;
        if let [PatternNode::Literal(first), tail @ ..] = nodes {
            match rest.strip_prefix(first.as_str()) {
                Some(after) => rest = after,
                None => return,
            }
            nodes = tail;
        }
        while let [PatternNode::Capture(name), tail @ ..] = nodes {
            let (captured, after, done) = match tail {
                [PatternNode::Literal(literal), ..] => match rest.find(literal.as_str()) {
                    Some(i) => (&rest[..i], &rest[i + literal.len()..], false),
                    None => (rest, "", true),
                },
                _ => (rest, "", true),
            };
            if let Some(name) = name {
                set_label(labels, name, captured.to_owned());
            }
            if done {
                return;
            }
            rest = after;
            nodes = &tail[1..];
        }
    }
}

/// One `name=source` of `| label_format`.
#[derive(Debug, Clone)]
pub(crate) enum LabelFormat {
    /// `new=old`: the label `new` gets the value of `old`, and the extracted label `old` goes.
    Rename { to: String, from: String },
    /// `new="{{...}}"`.
    Template { to: String, template: Template },
}

impl LabelFormat {
    pub(crate) fn apply(&self, line: &str, fields: Fields<'_>, labels: &mut Labels) {
        match self {
            Self::Rename { to, from } => {
                let value = fields.text(from).into_owned();
                labels.retain(|(name, _)| name != from);
                set_label(labels, to, value);
            }
            Self::Template { to, template } => {
                let value = template.render(line, &fields);
                set_label(labels, to, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parser: &LineParser, line: &str) -> Labels {
        let mut labels = Labels::new();
        parser.extract(line, &mut labels);
        labels
    }

    fn pairs(items: &[(&str, &str)]) -> Labels {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn json_flattens_nested_objects() {
        let line = r#"{"a":{"b":1,"c-d":{"e":"x"}},"s":"str","t":true,"n":null,"arr":[1],"1x":2}"#;
        assert_eq!(
            run(&LineParser::JsonAll, line),
            pairs(&[
                ("a_b", "1"),
                ("a_c_d_e", "x"),
                ("s", "str"),
                ("t", "true"),
                ("_1x", "2")
            ])
        );
        assert_eq!(
            run(&LineParser::JsonAll, "not json"),
            pairs(&[("__error__", "JSONParserErr")])
        );
        assert_eq!(
            run(&LineParser::JsonAll, "[1]"),
            pairs(&[("__error__", "JSONParserErr")])
        );
    }

    #[test]
    fn json_paths() {
        let path = |p: &str| JsonPath::parse(p).unwrap();
        let parser = LineParser::JsonPaths(vec![
            ("x".into(), path("a.b")),
            ("y".into(), path("list[1]")),
            ("z".into(), path(r#"a["c d"]"#)),
            ("w".into(), path("missing.key")),
            ("o".into(), path("a")),
        ]);
        let line = r#"{"a":{"b":"deep","c d":3},"list":[10,20]}"#;
        assert_eq!(
            run(&parser, line),
            pairs(&[
                ("x", "deep"),
                ("y", "20"),
                ("z", "3"),
                ("w", ""),
                ("o", r#"{"b":"deep","c d":3}"#)
            ])
        );
        assert!(JsonPath::parse("").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("a..b").is_err());
    }

    #[test]
    fn logfmt() {
        assert_eq!(
            run(
                &LineParser::Logfmt,
                r#"level=info msg="hello \"you\"" dur=1.5s flag k.x=1"#
            ),
            pairs(&[
                ("level", "info"),
                ("msg", "hello \"you\""),
                ("dur", "1.5s"),
                ("flag", ""),
                ("k_x", "1")
            ])
        );
        assert_eq!(
            run(&LineParser::Logfmt, r#"a=1 b="unterminated"#),
            pairs(&[("a", "1"), ("__error__", "LogfmtParserErr")])
        );
        assert_eq!(
            run(&LineParser::Logfmt, "=x"),
            pairs(&[("__error__", "LogfmtParserErr")])
        );
    }

    #[test]
    fn regexp_named_groups() {
        let parser = LineParser::Regexp(
            Regex::new(r"(?P<method>\w+) (?P<path>\S+)(?: (?P<opt>x))?").unwrap(),
        );
        assert_eq!(
            run(&parser, "GET /index.html 200"),
            pairs(&[("method", "GET"), ("path", "/index.html")])
        );
        assert_eq!(run(&parser, "???"), Labels::new());
    }

    #[test]
    fn pattern_like_loki() {
        let pattern =
            Pattern::parse(r#"<ip> - - <_> "<method> <uri> <_>" <status> <size>"#).unwrap();
        let line =
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache.gif HTTP/1.0" 200 2326"#;
        assert_eq!(
            run(&LineParser::Pattern(pattern.clone()), line),
            pairs(&[
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("uri", "/apache.gif"),
                ("status", "200"),
                ("size", "2326")
            ])
        );
        // A missing literal ends the match with the rest in the current capture.
        assert_eq!(
            run(&LineParser::Pattern(pattern), "1.2.3.4 - - x"),
            pairs(&[("ip", "1.2.3.4")])
        );
        let leading = Pattern::parse("level=<level> ").unwrap();
        assert_eq!(
            run(&LineParser::Pattern(leading.clone()), "level=warn x"),
            pairs(&[("level", "warn")])
        );
        assert_eq!(
            run(&LineParser::Pattern(leading), "x level=warn"),
            Labels::new()
        );
        assert!(Pattern::parse("<a><b>").is_err());
        assert!(Pattern::parse("<_> x").is_err());
        assert!(Pattern::parse("no captures <1>").is_err());
        assert!(Pattern::parse("<a> <a>").is_err());
    }
}
