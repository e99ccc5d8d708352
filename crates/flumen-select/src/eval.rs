//! The parsed parts of a selector and how each one tests an event.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use flumen_event::record::{Record, Value};
use memchr::memmem;
use regex::Regex;

/// A matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the text equals the value.
    Eq,
    /// `!=`: the text does not equal the value.
    Ne,
    /// `=~`: the text matches the regex, anchored at both ends.
    Re,
    /// `!~`: the text does not match the regex (anchored).
    NotRe,
}

impl MatchOp {
    /// The operator as written: `=`, `!=`, `=~` or `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Re => "=~",
            Self::NotRe => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `name op "value"` test on a field's text: a matcher of the stream selector, or a text
/// label filter.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex, for `=~` and `!~`.
    regex: Option<Regex>,
}

impl Matcher {
    pub(crate) fn new(name: String, op: MatchOp, value: String, regex: Option<Regex>) -> Self {
        debug_assert_eq!(regex.is_some(), matches!(op, MatchOp::Re | MatchOp::NotRe));
        Self {
            name,
            op,
            value,
            regex,
        }
    }

    /// The field name (a dotted path, or `tag`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value, unescaped: the text for `=` and `!=`, the regex as written (not anchored)
    /// for `=~` and `!~`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// True when the field text `text` passes this matcher (a missing field is `""`).
    pub fn matches_text(&self, text: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => text == self.value,
            (MatchOp::Ne, _) => text != self.value,
            (MatchOp::Re, Some(regex)) => regex.is_match(text),
            (MatchOp::NotRe, Some(regex)) => !regex.is_match(text),
            (MatchOp::Re | MatchOp::NotRe, None) => unreachable!("regex matchers carry a regex"),
        }
    }

    /// True for `=~` and `!~`.
    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }

    pub(crate) fn matches_fields(&self, fields: &Fields<'_>) -> bool {
        self.matches_text(&fields.text(&self.name))
    }
}

/// What a stage sees of one event: the labels extracted so far by parsers (which win), the
/// record, and the event's tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) tag: &'a str,
    pub(crate) record: &'a Record,
    pub(crate) labels: &'a [(String, String)],
}

impl<'a> Fields<'a> {
    /// Without extracted labels: the plain selector's view.
    pub(crate) fn of_record(tag: &'a str, record: &'a Record) -> Self {
        Self {
            tag,
            record,
            labels: &[],
        }
    }

    fn label(&self, name: &str) -> Option<&'a str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of field `name`: `""` when missing; `tag` falls back to the event's tag.
    pub(crate) fn text(&self, name: &str) -> Cow<'a, str> {
        if let Some(label) = self.label(name) {
            return Cow::Borrowed(label);
        }
        match lookup(name, self.record) {
            Some(value) => value.to_text(),
            None if name == "tag" => Cow::Borrowed(self.tag),
            None => Cow::Borrowed(""),
        }
    }

    /// The text of field `name`, or `None` when it is missing.
    pub(crate) fn text_if_present(&self, name: &str) -> Option<Cow<'a, str>> {
        if let Some(label) = self.label(name) {
            return Some(Cow::Borrowed(label));
        }
        match lookup(name, self.record) {
            Some(value) => Some(value.to_text()),
            None if name == "tag" => Some(Cow::Borrowed(self.tag)),
            None => None,
        }
    }

    /// The value of field `name` read in `unit`, when it is present and reads as one.
    fn quantity(&self, name: &str, unit: Unit) -> Option<Number> {
        if let Some(label) = self.label(name) {
            return unit.read_text(label);
        }
        match lookup(name, self.record) {
            Some(value) => unit.read_value(value),
            None if name == "tag" => unit.read_text(self.tag),
            None => None,
        }
    }
}

fn lookup<'r>(name: &str, record: &'r Record) -> Option<&'r Value> {
    if name == "tag" {
        record.get(name)
    } else {
        record.get_path(name)
    }
}

/// How a numeric comparison reads a field: as a plain number, a duration or a byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// `| status >= 500`
    Plain,
    /// `| duration > 2s`: the field holds a duration (`"2.5s"`) or a number of seconds.
    Duration,
    /// `| size > 1KB`: the field holds a byte size (`"1.5 MB"`) or a number of bytes.
    Bytes,
}

impl Unit {
    pub(crate) fn read_text(self, text: &str) -> Option<Number> {
        let plain = Number::of_text(text);
        match self {
            Self::Plain => plain,
            Self::Duration => {
                plain.or_else(|| crate::units::parse_duration(text.trim()).map(Number::Float))
            }
            Self::Bytes => plain.or_else(|| crate::units::parse_bytes(text).map(Number::Float)),
        }
    }

    fn read_value(self, value: &Value) -> Option<Number> {
        match value {
            Value::Str(s) => self.read_text(s),
            other => Number::of_value(other),
        }
    }
}

/// A number: integers exactly, everything else as a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn of_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(n) => Some(Self::Int(i128::from(*n))),
            Value::UInt(n) => Some(Self::Int(i128::from(*n))),
            Value::Float(f) if !f.is_nan() => Some(Self::Float(*f)),
            Value::Str(s) => Self::of_text(s),
            _ => None,
        }
    }

    /// Reads text the way `Value::as_f64` does (trimmed, Rust's float syntax), keeping
    /// integers exact. NaN is not a number here.
    pub(crate) fn of_text(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(n) = text.parse::<i128>() {
            return Some(Self::Int(n));
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| !f.is_nan())
            .map(Self::Float)
    }

    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Self::Int(n) => n as f64,
            Self::Float(f) => f,
        }
    }

    fn compare(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }
}

/// A numeric comparison's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl NumOp {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => ordering.is_eq(),
            Self::Ne => ordering.is_ne(),
            Self::Gt => ordering.is_gt(),
            Self::Ge => ordering.is_ge(),
            Self::Lt => ordering.is_lt(),
            Self::Le => ordering.is_le(),
        }
    }
}

/// One `| name op value` comparison.
#[derive(Debug, Clone)]
pub(crate) enum LabelFilter {
    /// On the field's text.
    Text(Matcher),
    /// On the field's number, duration (in seconds) or byte size.
    Number {
        name: String,
        op: NumOp,
        value: Number,
        unit: Unit,
        /// The number as written (shown by `Debug`, rendered by the tests).
        #[cfg_attr(not(test), allow(dead_code))]
        literal: String,
    },
}

impl LabelFilter {
    fn matches(&self, fields: &Fields<'_>) -> bool {
        match self {
            Self::Text(matcher) => matcher.matches_fields(fields),
            Self::Number {
                name,
                op,
                value,
                unit,
                ..
            } => fields
                .quantity(name, *unit)
                .and_then(|field| field.compare(*value))
                .is_some_and(|ordering| op.holds(ordering)),
        }
    }
}

/// Label filters combined with `and` and `or`.
#[derive(Debug, Clone)]
pub(crate) enum LabelExpr {
    Filter(LabelFilter),
    /// Two or more, all required.
    And(Vec<LabelExpr>),
    /// Two or more, one required.
    Or(Vec<LabelExpr>),
}

impl LabelExpr {
    pub(crate) fn matches(&self, fields: &Fields<'_>) -> bool {
        match self {
            Self::Filter(filter) => filter.matches(fields),
            Self::And(items) => items.iter().all(|e| e.matches(fields)),
            Self::Or(items) => items.iter().any(|e| e.matches(fields)),
        }
    }
}

/// A line filter's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Regex,
    /// `!~`
    NotRegex,
}

impl LineOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Contains => "|=",
            Self::NotContains => "!=",
            Self::Regex => "|~",
            Self::NotRegex => "!~",
        }
    }
}

/// `|= "text"`, `!= "text"`, `|~ "re"` or `!~ "re"`.
#[derive(Debug, Clone)]
pub(crate) struct LineFilter {
    pub(crate) op: LineOp,
    /// The text or regex, unescaped (shown by `Debug`, rendered by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) value: String,
    test: LineTest,
}

#[derive(Debug, Clone)]
enum LineTest {
    /// Substring search; `None` for the empty string, which every line contains. (Boxed: a
    /// finder is a few hundred bytes.)
    Contains(Option<Box<memmem::Finder<'static>>>),
    /// Unanchored regex search.
    Regex(Regex),
}

impl LineFilter {
    pub(crate) fn contains(op: LineOp, value: String) -> Self {
        let finder =
            (!value.is_empty()).then(|| Box::new(memmem::Finder::new(&value).into_owned()));
        Self {
            op,
            value,
            test: LineTest::Contains(finder),
        }
    }

    pub(crate) fn regex(op: LineOp, value: String, regex: Regex) -> Self {
        Self {
            op,
            value,
            test: LineTest::Regex(regex),
        }
    }

    pub(crate) fn is_regex(&self) -> bool {
        matches!(self.test, LineTest::Regex(_))
    }

    pub(crate) fn matches(&self, line: &str) -> bool {
        let found = match &self.test {
            LineTest::Contains(None) => true,
            LineTest::Contains(Some(finder)) => finder.find(line.as_bytes()).is_some(),
            LineTest::Regex(regex) => regex.is_match(line),
        };
        match self.op {
            LineOp::Contains | LineOp::Regex => found,
            LineOp::NotContains | LineOp::NotRegex => !found,
        }
    }
}
