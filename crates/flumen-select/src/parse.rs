//! The parser: a hand-written recursive descent over the source bytes, so that every error can
//! say exactly where it is.

use regex::Regex;
use regex_syntax::hir::{Hir, Look};

use crate::eval::{
    LabelExpr, LabelFilter, LineFilter, LineOp, MatchOp, Matcher, NumOp, Number, Unit,
};
use crate::pipeline::{JsonPath, LabelFormat, LineParser, Pattern};
use crate::template::Template;
use crate::{ParseError, Stage};

/// How deep parentheses may nest in label filter expressions.
pub(crate) const MAX_NESTING: usize = 32;

/// Parses a whole selector into its matchers and stages.
pub(crate) fn parse(source: &str) -> Result<(Vec<Matcher>, Vec<Stage>), ParseError> {
    let mut parser = Parser::new(source);
    let matchers = parser.stream()?;
    let (stages, _) = parser.pipeline(false)?;
    parser.skip_ws();
    if parser.peek().is_some() {
        return Err(parser.expected(STAGE_START));
    }
    Ok((matchers, stages))
}

const STAGE_START: &str = "a line filter (`|=`, `!=`, `|~`, `!~`) or a stage after `|` (`| name op value`, `| json`, ...)";

/// `| unwrap name`, `| unwrap duration(name)` or `| unwrap bytes(name)`, and the label
/// filters after it.
#[derive(Debug, Clone)]
pub(crate) struct Unwrap {
    /// Where its `|` is: the log query's text ends before it.
    pub(crate) start: usize,
    pub(crate) name: String,
    pub(crate) unit: Unit,
    /// As written: `name`, `duration(name)`, ... (rendered by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) written: String,
    pub(crate) filters: Vec<LabelExpr>,
}

/// Operators as written, before the context decides which are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    EqEq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn from_str(text: &str) -> Option<Self> {
        Some(match text {
            "=" => Self::Eq,
            "==" => Self::EqEq,
            "!=" => Self::Ne,
            "=~" => Self::Re,
            "!~" => Self::NotRe,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "<" => Self::Lt,
            "<=" => Self::Le,
            _ => return None,
        })
    }
}

const STREAM_OPS: &str = "`=`, `!=`, `=~` or `!~`";
const LABEL_OPS: &str = "`=`, `!=`, `=~`, `!~`, `>`, `>=`, `<` or `<=`";

/// Loki stages that flumen does not have, to explain rather than just reject.
const UNSUPPORTED_STAGES: [&str; 4] = ["unpack", "decolorize", "drop", "keep"];

/// The stage keywords after `|` (when no operator follows: `| json = "x"` is a label filter).
const STAGE_KEYWORDS: [&str; 7] = [
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "line_format",
    "label_format",
    "unwrap",
];

/// A string literal's place in the source, to point into it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Literal {
    /// Offset of the opening quote.
    start: usize,
    /// Backticks: no escapes.
    raw: bool,
}

/// The parser's position in the source; the metric grammar (`parse_metric`) extends it.
pub(crate) struct Parser<'a> {
    pub(crate) source: &'a str,
    pub(crate) pos: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        Self { source, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.source.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.source.as_bytes().get(self.pos + ahead).copied()
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.source[self.pos..]
    }

    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.pos, message)
    }

    /// `expected X`, with what was found instead when the text did not end.
    pub(crate) fn expected(&self, what: &str) -> ParseError {
        match self.rest().chars().next() {
            None => self.error(format!("expected {what}")),
            Some(found) => self.error(format!("expected {what}, found {}", describe(found))),
        }
    }

    /// `{ matcher, ... }`
    pub(crate) fn stream(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(self.expected("`{` to start the stream selector (`{}` selects everything)"));
        }
        self.pos += 1;
        let mut matchers = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(matchers);
        }
        loop {
            matchers.push(self.matcher()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(matchers);
                }
                _ => return Err(self.expected("`,` or `}`")),
            }
        }
    }

    /// `name op "value"` in the stream selector.
    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name = self.name()?;
        let (op, op_pos) = self.operator(name, STREAM_OPS)?;
        let op = match op {
            Op::Eq => MatchOp::Eq,
            Op::Ne => MatchOp::Ne,
            Op::Re => MatchOp::Re,
            Op::NotRe => MatchOp::NotRe,
            _ => {
                let written = &self.source[op_pos..self.pos];
                let hint = match op {
                    Op::EqEq => "",
                    _ => " (numeric comparisons go in label filters: `| name > 5`)",
                };
                return Err(ParseError::new(
                    op_pos,
                    format!(
                        "unknown operator `{written}` in the stream selector: expected \
                         {STREAM_OPS}{hint}"
                    ),
                ));
            }
        };
        self.text_matcher(name, op)
    }

    /// The string after `op`, as a [`Matcher`].
    fn text_matcher(&mut self, name: &str, op: MatchOp) -> Result<Matcher, ParseError> {
        let (value, literal) = self.string(op.as_str())?;
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(self.regex(&value, literal, true)?),
            MatchOp::Eq | MatchOp::Ne => None,
        };
        Ok(Matcher::new(name.to_owned(), op, value, regex))
    }

    /// `[A-Za-z_][A-Za-z0-9_.]*`
    pub(crate) fn name(&mut self) -> Result<&'a str, ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
            _ => return Err(self.expected("a field name")),
        }
        while let Some(b) = self.peek() {
            if is_name_byte(b) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(&self.source[start..self.pos])
    }

    /// An operator after `name`; returns it and where it starts.
    fn operator(&mut self, name: &str, allowed: &str) -> Result<(Op, usize), ParseError> {
        self.skip_ws();
        let start = self.pos;
        while let Some(b'=' | b'!' | b'~' | b'<' | b'>') = self.peek() {
            self.pos += 1;
        }
        let written = &self.source[start..self.pos];
        if written.is_empty() {
            return Err(self.expected(&format!("an operator after `{name}` ({allowed})")));
        }
        match Op::from_str(written) {
            Some(op) => Ok((op, start)),
            None => Err(ParseError::new(
                start,
                format!("unknown operator `{written}`: expected {allowed}"),
            )),
        }
    }

    /// A double-quoted or backtick string, unescaped, after `after` (for the error message).
    pub(crate) fn string(&mut self, after: &str) -> Result<(String, Literal), ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(b'`') => {
                let body = &self.source[start + 1..];
                match memchr::memchr(b'`', body.as_bytes()) {
                    Some(end) => {
                        self.pos = start + 1 + end + 1;
                        Ok((body[..end].to_owned(), Literal { start, raw: true }))
                    }
                    None => Err(ParseError::new(
                        start,
                        "unterminated string: no closing backtick",
                    )),
                }
            }
            Some(b'"') => {
                let mut value = String::new();
                let mut chars = self.source[start + 1..].char_indices();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            self.pos = start + 1 + i + 1;
                            return Ok((value, Literal { start, raw: false }));
                        }
                        '\\' => match chars.next() {
                            Some((_, '"')) => value.push('"'),
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, other)) => {
                                return Err(ParseError::new(
                                    start + 1 + i,
                                    format!(
                                        "unknown escape `\\{other}`: a double-quoted string \
                                         knows `\\\"`, `\\\\`, `\\n` and `\\t` (write regexes in \
                                         backticks, or double the backslash)"
                                    ),
                                ));
                            }
                            None => break,
                        },
                        c => value.push(c),
                    }
                }
                Err(ParseError::new(
                    start,
                    "unterminated string: no closing `\"`",
                ))
            }
            _ => Err(self.expected(&format!(
                "a string in double quotes or backticks after `{after}`"
            ))),
        }
    }

    /// Compiles `pattern` (anchored at both ends, or not); errors point into the literal.
    pub(crate) fn regex(
        &self,
        pattern: &str,
        literal: Literal,
        anchored: bool,
    ) -> Result<Regex, ParseError> {
        let hir = match regex_syntax::Parser::new().parse(pattern) {
            Ok(hir) => hir,
            Err(error) => {
                let (offset, kind) = match &error {
                    regex_syntax::Error::Parse(e) => (e.span().start.offset, e.kind().to_string()),
                    regex_syntax::Error::Translate(e) => {
                        (e.span().start.offset, e.kind().to_string())
                    }
                    other => (0, other.to_string()),
                };
                return Err(ParseError::new(
                    self.offset_in(literal, offset),
                    format!("invalid regex: {kind}"),
                ));
            }
        };
        let compiled = if anchored {
            // Anchor the parsed expression rather than pasting `^(?:…)$` around the text,
            // which a `(?x)` comment could swallow.
            let anchored = Hir::concat(vec![Hir::look(Look::Start), hir, Hir::look(Look::End)]);
            Regex::new(&anchored.to_string())
        } else {
            Regex::new(pattern)
        };
        compiled.map_err(|e| ParseError::new(literal.start, format!("invalid regex: {e}")))
    }

    /// The source offset of byte `offset` of the unescaped value of `literal`.
    pub(crate) fn offset_in(&self, literal: Literal, offset: usize) -> usize {
        let body = self.source[literal.start + 1..].char_indices();
        if literal.raw {
            return literal.start + 1 + offset;
        }
        let mut unescaped = 0;
        let mut escaped = false;
        for (i, c) in body {
            if escaped {
                escaped = false;
                continue;
            }
            if unescaped >= offset {
                return literal.start + 1 + i;
            }
            if c == '\\' {
                escaped = true;
                unescaped += 1;
            } else {
                unescaped += c.len_utf8();
            }
        }
        literal.start
    }

    /// Stages up to the first text that cannot start one, and a final `| unwrap`.
    pub(crate) fn pipeline(
        &mut self,
        allow_unwrap: bool,
    ) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        loop {
            match self.stage()? {
                Some(StageOrUnwrap::Stage(stage)) => stages.push(stage),
                Some(StageOrUnwrap::Unwrap { pipe, word: at }) => {
                    if !allow_unwrap {
                        return Err(ParseError::new(
                            at,
                            "`unwrap` only goes in the range of a metric query, as in \
                             `sum_over_time({...} | unwrap latency [5m])`",
                        ));
                    }
                    let unwrap = self.unwrap(pipe)?;
                    return Ok((stages, Some(unwrap)));
                }
                None => return Ok((stages, None)),
            }
        }
    }

    /// One stage, or `None` when the next text cannot start one.
    fn stage(&mut self) -> Result<Option<StageOrUnwrap>, ParseError> {
        self.skip_ws();
        let op = match (self.peek(), self.peek_at(1)) {
            (Some(b'|'), Some(b'=')) => LineOp::Contains,
            (Some(b'|'), Some(b'~')) => LineOp::Regex,
            (Some(b'!'), Some(b'=')) => LineOp::NotContains,
            (Some(b'!'), Some(b'~')) => LineOp::NotRegex,
            (Some(b'|'), _) => {
                let pipe = self.pos;
                self.pos += 1;
                return self.pipe_stage(pipe).map(Some);
            }
            _ => return Ok(None),
        };
        self.pos += 2;
        Ok(Some(StageOrUnwrap::Stage(Stage::Line(
            self.line_filter(op)?,
        ))))
    }

    /// The string after a line filter operator.
    fn line_filter(&mut self, op: LineOp) -> Result<LineFilter, ParseError> {
        let (value, literal) = self.string(op.as_str())?;
        Ok(match op {
            LineOp::Contains | LineOp::NotContains => LineFilter::contains(op, value),
            LineOp::Regex | LineOp::NotRegex => {
                let regex = self.regex(&value, literal, false)?;
                LineFilter::regex(op, value, regex)
            }
        })
    }

    /// What follows a `|`: a stage keyword, or label filters.
    fn pipe_stage(&mut self, pipe: usize) -> Result<StageOrUnwrap, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let word_end = start
            + self
                .rest()
                .bytes()
                .position(|b| !is_name_byte(b))
                .unwrap_or(self.rest().len());
        let word = &self.source[start..word_end];
        let mut after = word_end;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.source.as_bytes().get(after) {
            after += 1;
        }
        let operator_follows = matches!(
            self.source.as_bytes().get(after),
            Some(b'=' | b'!' | b'<' | b'>')
        );
        if operator_follows || word.is_empty() {
            return Ok(StageOrUnwrap::Stage(Stage::Label(self.or_expr(0)?)));
        }
        if UNSUPPORTED_STAGES.contains(&word) {
            return Err(ParseError::new(
                start,
                format!("`{word}` stages are not supported"),
            ));
        }
        if !STAGE_KEYWORDS.contains(&word) {
            return Ok(StageOrUnwrap::Stage(Stage::Label(self.or_expr(0)?)));
        }
        self.pos = word_end;
        let stage = match word {
            "json" => Stage::Parser(self.json()?),
            "logfmt" => Stage::Parser(LineParser::Logfmt),
            "regexp" => Stage::Parser(self.regexp()?),
            "pattern" => Stage::Parser(self.pattern()?),
            "line_format" => Stage::LineFormat(self.template("line_format")?),
            "label_format" => Stage::LabelFormat(self.label_format()?),
            _ => {
                return Ok(StageOrUnwrap::Unwrap { pipe, word: start });
            }
        };
        Ok(StageOrUnwrap::Stage(stage))
    }

    /// After `json`: nothing, or `name [= "path"] { , name [= "path"] }`.
    fn json(&mut self) -> Result<LineParser, ParseError> {
        self.skip_ws();
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return Ok(LineParser::JsonAll);
        }
        let mut paths = Vec::new();
        loop {
            let name = self.name()?;
            self.skip_ws();
            let path = if self.peek() == Some(b'=') {
                self.pos += 1;
                let (text, literal) = self.string("=")?;
                JsonPath::parse(&text).map_err(|(offset, message)| {
                    ParseError::new(
                        self.offset_in(literal, offset),
                        format!("invalid JSON path: {message}"),
                    )
                })?
            } else {
                JsonPath::parse(name).map_err(|(offset, message)| {
                    ParseError::new(
                        self.pos - name.len() + offset,
                        format!("invalid JSON path: {message}"),
                    )
                })?
            };
            paths.push((name.to_owned(), path));
            self.skip_ws();
            if self.peek() != Some(b',') {
                return Ok(LineParser::JsonPaths(paths));
            }
            self.pos += 1;
        }
    }

    /// After `regexp`: a regex with at least one named group.
    fn regexp(&mut self) -> Result<LineParser, ParseError> {
        let (value, literal) = self.string("regexp")?;
        let regex = self.regex(&value, literal, false)?;
        if regex.capture_names().flatten().next().is_none() {
            return Err(ParseError::new(
                literal.start,
                "a `regexp` stage needs at least one named group like `(?P<name>...)`",
            ));
        }
        Ok(LineParser::Regexp(regex))
    }

    /// After `pattern`: Loki's pattern syntax.
    fn pattern(&mut self) -> Result<LineParser, ParseError> {
        let (value, literal) = self.string("pattern")?;
        Pattern::parse(&value)
            .map(LineParser::Pattern)
            .map_err(|(offset, message)| {
                ParseError::new(
                    self.offset_in(literal, offset),
                    format!("invalid pattern: {message}"),
                )
            })
    }

    /// A template string after `after`.
    fn template(&mut self, after: &str) -> Result<Template, ParseError> {
        let (value, literal) = self.string(after)?;
        Template::parse(&value).map_err(|e| {
            ParseError::new(
                self.offset_in(literal, e.offset),
                format!("invalid template: {}", e.message),
            )
        })
    }

    /// After `label_format`: `new=old` or `new="template"`, separated by commas.
    fn label_format(&mut self) -> Result<Vec<LabelFormat>, ParseError> {
        let mut items = Vec::new();
        loop {
            let to = self.name()?.to_owned();
            self.skip_ws();
            if self.peek() != Some(b'=') {
                return Err(self.expected(&format!("`=` after `{to}`")));
            }
            self.pos += 1;
            self.skip_ws();
            let item = if matches!(self.peek(), Some(b'"' | b'`')) {
                LabelFormat::Template {
                    to,
                    template: self.template("=")?,
                }
            } else {
                LabelFormat::Rename {
                    to,
                    from: self.name()?.to_owned(),
                }
            };
            items.push(item);
            self.skip_ws();
            if self.peek() != Some(b',') {
                return Ok(items);
            }
            self.pos += 1;
        }
    }

    /// After `unwrap`: the field, an optional conversion, and label filters.
    fn unwrap(&mut self, pipe: usize) -> Result<Unwrap, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let first = self.name()?;
        let first_end = self.pos;
        self.skip_ws();
        let (name, unit) = if self.peek() == Some(b'(') {
            let unit = match first {
                "duration" | "duration_seconds" => Unit::Duration,
                "bytes" => Unit::Bytes,
                _ => {
                    return Err(ParseError::new(
                        start,
                        format!(
                            "unknown conversion `{first}`: expected `duration`, \
                             `duration_seconds` or `bytes`"
                        ),
                    ));
                }
            };
            self.pos += 1;
            let name = self.name()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.expected("`)`"));
            }
            self.pos += 1;
            (name, unit)
        } else {
            self.pos = first_end;
            (first, Unit::Plain)
        };
        let written = self.source[start..self.pos].to_owned();
        let mut filters = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() != Some(b'|') || matches!(self.peek_at(1), Some(b'=' | b'~')) {
                break;
            }
            self.pos += 1;
            filters.push(self.or_expr(0)?);
        }
        Ok(Unwrap {
            start: pipe,
            name: name.to_owned(),
            unit,
            written,
            filters,
        })
    }

    /// `and_expr { "or" and_expr }`
    pub(crate) fn or_expr(&mut self, depth: usize) -> Result<LabelExpr, ParseError> {
        let mut items = vec![self.and_expr(depth)?];
        while self.keyword("or") {
            items.push(self.and_expr(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            LabelExpr::Or(items)
        })
    }

    /// `primary { ("and" | ",") primary }`
    fn and_expr(&mut self, depth: usize) -> Result<LabelExpr, ParseError> {
        let mut items = vec![self.primary(depth)?];
        loop {
            self.skip_ws();
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else if !self.keyword("and") {
                break;
            }
            items.push(self.primary(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            LabelExpr::And(items)
        })
    }

    /// Consumes `word` when it comes next as a whole word.
    pub(crate) fn keyword(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest().as_bytes();
        if rest.starts_with(word.as_bytes())
            && rest.get(word.len()).is_none_or(|&b| !is_name_byte(b))
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// `"(" or_expr ")"` or a label filter.
    fn primary(&mut self, depth: usize) -> Result<LabelExpr, ParseError> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Ok(LabelExpr::Filter(self.label_filter()?));
        }
        if depth >= MAX_NESTING {
            return Err(self.error(format!(
                "parentheses nest too deep (at most {MAX_NESTING} levels)"
            )));
        }
        self.pos += 1;
        let inner = self.or_expr(depth + 1)?;
        self.skip_ws();
        if self.peek() != Some(b')') {
            return Err(self.expected("`)`, `and` or `or`"));
        }
        self.pos += 1;
        Ok(inner)
    }

    /// `name op value` after `|`.
    fn label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        let name = self.name()?;
        let (op, op_pos) = self.operator(name, LABEL_OPS)?;
        let written = &self.source[op_pos..self.pos];
        let num_op = match op {
            Op::Re => return self.text_matcher(name, MatchOp::Re).map(LabelFilter::Text),
            Op::NotRe => {
                return self
                    .text_matcher(name, MatchOp::NotRe)
                    .map(LabelFilter::Text);
            }
            Op::Eq | Op::EqEq | Op::Ne => {
                self.skip_ws();
                let text_op = if op == Op::Ne {
                    MatchOp::Ne
                } else {
                    MatchOp::Eq
                };
                if matches!(self.peek(), Some(b'"' | b'`')) {
                    return self.text_matcher(name, text_op).map(LabelFilter::Text);
                }
                if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
                    return Err(self.expected(&format!("a string or a number after `{written}`")));
                }
                if op == Op::Ne { NumOp::Ne } else { NumOp::Eq }
            }
            Op::Gt => NumOp::Gt,
            Op::Ge => NumOp::Ge,
            Op::Lt => NumOp::Lt,
            Op::Le => NumOp::Le,
        };
        let (value, literal, unit) = self.number(written)?;
        Ok(LabelFilter::Number {
            name: name.to_owned(),
            op: num_op,
            value,
            unit,
            literal: literal.to_owned(),
        })
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?`, or a duration (`1m30s`) or byte size (`1KB`).
    pub(crate) fn number(&mut self, after: &str) -> Result<(Number, &'a str, Unit), ParseError> {
        self.skip_ws();
        let start = self.pos;
        let bytes = self.source.as_bytes();
        let digits = |mut at: usize| {
            let from = at;
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            (at > from).then_some(at)
        };
        let mut at = start;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        let Some(mut end) = digits(at) else {
            return Err(self.expected(&format!("a number after `{after}`")));
        };
        if bytes.get(end) == Some(&b'.')
            && let Some(after_fraction) = digits(end + 1)
        {
            end = after_fraction;
        }
        if let Some(b'e' | b'E') = bytes.get(end) {
            let mut exp = end + 1;
            if let Some(b'+' | b'-') = bytes.get(exp) {
                exp += 1;
            }
            if let Some(after_exponent) = digits(exp) {
                end = after_exponent;
            }
        }
        if self.source[end..].starts_with(|c: char| c.is_alphabetic()) {
            return self.quantity(start);
        }
        if bytes.get(end).is_some_and(|&b| is_name_byte(b)) {
            let mut stop = end;
            while bytes.get(stop).is_some_and(|&b| is_name_byte(b)) {
                stop += 1;
            }
            return Err(ParseError::new(
                start,
                format!("invalid number `{}`", &self.source[start..stop]),
            ));
        }
        let literal = &self.source[start..end];
        let value = match literal.parse::<i128>() {
            Ok(n) => Number::Int(n),
            Err(_) => match literal.parse::<f64>() {
                Ok(f) if f.is_finite() => Number::Float(f),
                _ => {
                    return Err(ParseError::new(
                        start,
                        format!("number `{literal}` is out of range"),
                    ));
                }
            },
        };
        self.pos = end;
        Ok((value, literal, Unit::Plain))
    }

    /// A number with a unit at `start`: a duration (read as seconds) or a byte size.
    fn quantity(&mut self, start: usize) -> Result<(Number, &'a str, Unit), ParseError> {
        let len = self.source[start..]
            .char_indices()
            .find(|&(i, c)| !(c.is_alphanumeric() || c == '.' || (i == 0 && c == '-')))
            .map_or(self.source.len() - start, |(i, _)| i);
        let literal = &self.source[start..start + len];
        let (value, unit) = if let Some(seconds) = crate::units::parse_duration(literal) {
            (seconds, Unit::Duration)
        } else if let Some(bytes) = crate::units::parse_bytes(literal) {
            (bytes, Unit::Bytes)
        } else {
            return Err(ParseError::new(
                start,
                format!(
                    "invalid number `{literal}`: expected a number, a duration like `1m30s` \
                     (ns, us, ms, s, m, h) or a byte size like `10KB` (B, kB, KiB, MB, MiB, ...)"
                ),
            ));
        };
        self.pos = start + len;
        Ok((Number::Float(value), literal, unit))
    }
}

/// What [`Parser::stage`] found.
enum StageOrUnwrap {
    Stage(Stage),
    /// `| unwrap` with the offsets of its `|` and of the word; the caller parses the rest.
    Unwrap {
        pipe: usize,
        word: usize,
    },
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// A character as an error message shows it.
fn describe(c: char) -> String {
    match c {
        '`' => "a backtick".to_owned(),
        c if c.is_control() => format!("{c:?}"),
        c => format!("`{c}`"),
    }
}
