//! The grammar: a port of Fluentd's `V1Parser` (`parse_element`, `parse_include`), its
//! `LiteralParser` (quoted strings, JSON values, embedded code) and its `BasicParser` (what a
//! blank, a comment and a line end are), working on byte offsets into one file's text. Each
//! function names the Ruby method it follows; where the Ruby relies on a regular expression,
//! the comment gives it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ruby::{self, Outcome};
use crate::{Config, Element, Embedded, ErrorKind, Loader, MAX_DEPTH, Param, ParseError, Special};

/// Parameters Fluentd reserves and allows everywhere (`RESERVED_PARAMS`).
const RESERVED_PARAMS: [&str; 4] = ["@type", "@id", "@label", "@log_level"];
/// Elements in which other `@` keys are an error, besides the top level (`ELEM_SYMBOLS`).
const ELEM_SYMBOLS: [&str; 4] = ["match", "source", "filter", "system"];

/// What is shared by the main file and its includes.
struct Context<'l> {
    loader: &'l Loader,
    /// Follow `@include`s (else keep them as parameters).
    resolve: bool,
    /// The files being parsed, outermost first (to refuse an include cycle).
    chain: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

pub(crate) fn parse_text(
    loader: &Loader,
    text: &str,
    origin: &Path,
    resolve: bool,
) -> Result<Config, ParseError> {
    let mut cx = Context {
        loader,
        resolve,
        chain: vec![absolute(origin)],
        files: vec![origin.to_path_buf()],
    };
    let file: Arc<Path> = Arc::from(origin);
    let mut root = Element {
        name: "ROOT".to_owned(),
        arg: String::new(),
        params: Vec::new(),
        elements: Vec::new(),
        file: file.clone(),
        line: 0,
        column: 0,
    };
    let mut parser = Parser::new(text, file);
    parser.parse_element(&mut cx, true, &mut root, 0)?;
    Ok(Config {
        root,
        files: cx.files,
    })
}

pub(crate) fn load_file(loader: &Loader, path: &Path) -> Result<Config, ParseError> {
    let text = read(path).map_err(|message| ParseError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        kind: ErrorKind::Io {
            path: path.display().to_string(),
            message,
        },
    })?;
    parse_text(loader, &text, path, true)
}

fn read(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_owned())
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// What a string scan gives.
#[derive(Default)]
struct Scanned {
    value: String,
    special: Option<Special>,
    embedded: Vec<Embedded>,
}

/// Where an unquoted string stops (the `boundary_charset` of `scan_nonquoted_string`).
#[derive(Clone, Copy)]
enum Boundary {
    /// `LINE_END`: blanks, then maybe a comment, then a line break or the end.
    LineEnd,
    /// `SPACING`: a blank, a line break, `#` or the end (keys).
    Spacing,
    /// `ZERO_OR_MORE_SPACING >`: blanks and comments, then `>` (element arguments).
    TagEnd,
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
    file: Arc<Path>,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'t> Parser<'t> {
    fn new(text: &'t str, file: Arc<Path>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Parser {
            text,
            pos,
            file,
            line_starts,
        }
    }

    // ----- positions and errors -----

    fn line_col(&self, pos: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= pos);
        let start = self.line_starts[line - 1];
        (line, self.text[start..pos].chars().count() + 1)
    }

    fn error_at(&self, pos: usize, kind: ErrorKind) -> ParseError {
        let (line, column) = self.line_col(pos);
        ParseError {
            file: self.file.to_path_buf(),
            line,
            column,
            kind,
        }
    }

    // ----- characters -----

    fn rest(&self) -> &'t str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut chars = self.rest().chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eof(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Skips to the next `\n` (not past it): `#.*` in Ruby, whose `.` stops at `\n`.
    fn skip_to_newline(&mut self) {
        self.pos = self
            .rest()
            .find('\n')
            .map_or(self.text.len(), |i| self.pos + i);
    }

    // ----- BasicParser -----

    /// `spacing`: `(?:[ \t\r\n]|\z|\#.*?(?:\z|[\r\n]))+` — blanks, line breaks and comments.
    fn spacing(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => self.pos += 1,
                Some('#') => {
                    self.skip_to_newline();
                    self.eat('\n');
                }
                _ => return,
            }
        }
    }

    /// `spacing_without_comment`: `(?:[ \t\r\n]|\z)+`; returns what it skipped.
    fn spacing_without_comment(&mut self) -> &'t str {
        let start = self.pos;
        let len = self.rest().len()
            - self
                .rest()
                .trim_start_matches([' ', '\t', '\r', '\n'])
                .len();
        self.pos += len;
        &self.text[start..self.pos]
    }

    /// Whether `LINE_END` (`[ \t]*(?:\#.*)?(?:\z|[\r\n])`) matches at `pos`.
    fn line_end_at(&self, pos: usize) -> bool {
        let rest = self.text[pos..].trim_start_matches([' ', '\t']);
        let rest = match rest.strip_prefix('#') {
            Some(comment) => comment.find('\n').map_or("", |i| &comment[i..]),
            None => rest,
        };
        rest.is_empty() || rest.starts_with(['\r', '\n'])
    }

    /// `line_end`: skips `LINE_END+`; false when there is none.
    fn line_end(&mut self) -> bool {
        let mut matched = false;
        loop {
            if !self.line_end_at(self.pos) {
                return matched;
            }
            matched = true;
            self.pos += self.rest().len() - self.rest().trim_start_matches([' ', '\t']).len();
            if self.peek() == Some('#') {
                self.skip_to_newline();
            }
            if self.eof() {
                return true;
            }
            // A `\r` or `\n`.
            self.pos += 1;
        }
    }

    /// Whether `ZERO_OR_MORE_SPACING >` matches at `pos`.
    fn tag_end_at(&self, pos: usize) -> bool {
        let mut rest = &self.text[pos..];
        loop {
            match rest.as_bytes().first() {
                Some(b'>') => return true,
                Some(b' ' | b'\t' | b'\r' | b'\n') => rest = &rest[1..],
                Some(b'#') => match rest.find('\n') {
                    Some(i) => rest = &rest[i + 1..],
                    None => return false,
                },
                _ => return false,
            }
        }
    }

    fn boundary_at(&self, boundary: Boundary, pos: usize) -> bool {
        match boundary {
            Boundary::LineEnd => self.line_end_at(pos),
            Boundary::Spacing => {
                matches!(
                    self.text[pos..].chars().next(),
                    None | Some(' ' | '\t' | '\r' | '\n')
                )
            }
            Boundary::TagEnd => self.tag_end_at(pos),
        }
    }

    // ----- V1Parser -----

    /// `parse_element`: the body of `element` (the root when `root`), up to its closing tag or,
    /// for the root, the end of the file.
    fn parse_element(
        &mut self,
        cx: &mut Context<'_>,
        root: bool,
        element: &mut Element,
        depth: usize,
    ) -> Result<(), ParseError> {
        loop {
            self.spacing();
            if self.eof() {
                if root {
                    return Ok(());
                }
                return Err(ParseError {
                    file: element.file.to_path_buf(),
                    line: element.line,
                    column: element.column,
                    kind: ErrorKind::MissingClose {
                        name: element.name.clone(),
                        open: element.tag(),
                        open_line: element.line,
                    },
                });
            }
            let start = self.pos;
            if self.rest().starts_with("</") {
                self.pos += 2;
                let name = self.element_name();
                self.spacing();
                if !self.eat('>') {
                    return Err(self.error_at(self.pos, ErrorKind::ExpectedCloseEnd { name }));
                }
                if !self.line_end() {
                    return Err(self.error_at(
                        self.pos,
                        ErrorKind::ExpectedLineEnd {
                            after: format!("the end tag </{name}>"),
                        },
                    ));
                }
                if root {
                    return Err(self.error_at(start, ErrorKind::UnexpectedClose { found: name }));
                }
                if name != element.name {
                    return Err(self.error_at(
                        start,
                        ErrorKind::MismatchedClose {
                            found: name,
                            open: element.tag(),
                            open_line: element.line,
                        },
                    ));
                }
                return Ok(());
            } else if self.eat('<') {
                let name = self.element_name();
                if name.is_empty() {
                    return Err(self.error_at(start, ErrorKind::MissingElementName));
                }
                self.spacing();
                let arg = self.scan_string(cx, Boundary::TagEnd)?.unwrap_or_default();
                if arg.special.is_some() {
                    let code = arg
                        .embedded
                        .last()
                        .map(|e| e.code.clone())
                        .unwrap_or_default();
                    return Err(self.error_at(start, ErrorKind::MisplacedSpecial { code }));
                }
                self.spacing();
                if !self.eat('>') {
                    return Err(self.error_at(self.pos, ErrorKind::ExpectedTagEnd { name }));
                }
                if !self.line_end() {
                    return Err(self.error_at(
                        self.pos,
                        ErrorKind::ExpectedLineEnd {
                            after: format!("the tag <{name}>"),
                        },
                    ));
                }
                if depth >= MAX_DEPTH {
                    return Err(self.error_at(start, ErrorKind::TooDeep));
                }
                let (line, column) = self.line_col(start);
                let mut child = Element {
                    name,
                    arg: arg.value,
                    params: Vec::new(),
                    elements: Vec::new(),
                    file: self.file.clone(),
                    line,
                    column,
                };
                self.parse_element(cx, false, &mut child, depth + 1)?;
                element.elements.push(child);
            } else if root && self.include_keyword() {
                // `skip(/(\@include|include)#{SPACING}/)`: the keyword, then at least one
                // blank, line break or comment — all of them, so the path may be on a later
                // line, as in Fluentd.
                self.spacing();
                self.parse_include(cx, element, start, depth)?;
            } else {
                let key = self.scan_string(cx, Boundary::Spacing)?.unwrap_or_default();
                let skipped = self.spacing_without_comment();
                let (line, column) = self.line_col(start);
                if skipped.contains('\n') || self.eof() {
                    // A key without a value (`tag_mapped`, `without_source`).
                    element.params.push(Param {
                        key: key.value,
                        value: String::new(),
                        special: key.special,
                        embedded: key.embedded,
                        file: self.file.clone(),
                        line,
                        column,
                    });
                } else if key.value == "@include" {
                    self.parse_include(cx, element, start, depth)?;
                } else {
                    if key.value.starts_with('@')
                        && !RESERVED_PARAMS.contains(&key.value.as_str())
                        && (root || ELEM_SYMBOLS.contains(&element.name.as_str()))
                    {
                        return Err(
                            self.error_at(start, ErrorKind::ReservedPrefix { key: key.value })
                        );
                    }
                    let mut value = self.parse_literal(cx)?;
                    if !self.line_end() {
                        return Err(self.error_at(
                            self.pos,
                            ErrorKind::ExpectedLineEnd {
                                after: format!("the value of {}", key.value),
                            },
                        ));
                    }
                    let mut embedded = key.embedded;
                    embedded.append(&mut value.embedded);
                    element.params.push(Param {
                        key: key.value,
                        value: value.value,
                        special: value.special.or(key.special),
                        embedded,
                        file: self.file.clone(),
                        line,
                        column,
                    });
                }
            }
        }
    }

    /// `ELEMENT_NAME = /[a-zA-Z0-9_]+/`, possibly empty.
    fn element_name(&mut self) -> String {
        let len = self.rest().len()
            - self
                .rest()
                .trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
                .len();
        let name = self.rest()[..len].to_owned();
        self.pos += len;
        name
    }

    /// `@include` or `include` followed by `SPACING` (a blank, a line break, `#` or the end);
    /// skips the keyword.
    fn include_keyword(&mut self) -> bool {
        for keyword in ["@include", "include"] {
            if let Some(after) = self.rest().strip_prefix(keyword)
                && matches!(
                    after.chars().next(),
                    None | Some(' ' | '\t' | '\r' | '\n' | '#')
                )
            {
                self.pos += keyword.len();
                return true;
            }
        }
        false
    }

    /// `parse_include` and `eval_include`: the path up to the end of the line, then the
    /// included files' contents into `element`, as if they were written here.
    fn parse_include(
        &mut self,
        cx: &mut Context<'_>,
        element: &mut Element,
        start: usize,
        depth: usize,
    ) -> Result<(), ParseError> {
        let uri = self.scan_string(cx, Boundary::LineEnd)?.unwrap_or_default();
        let (line, column) = self.line_col(start);
        if !cx.resolve {
            element.params.push(Param {
                key: "@include".to_owned(),
                value: uri.value,
                special: uri.special,
                embedded: uri.embedded,
                file: self.file.clone(),
                line,
                column,
            });
            self.line_end();
            return Ok(());
        }
        let uri = uri.value;
        let here = |kind| self.error_at(start, kind);
        let path = include_path(&uri).map_err(here)?;
        let pattern = if Path::new(&path).is_absolute() {
            path.clone()
        } else {
            let base = self.file.parent().unwrap_or(Path::new(""));
            let base = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base
            };
            format!("{}/{path}", glob::Pattern::escape(&base.to_string_lossy()))
        };
        let mut entries = if path.contains(['*', '?', '[']) {
            let options = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            };
            let matches = glob::glob_with(&pattern, options).map_err(|e| {
                here(ErrorKind::Io {
                    path: uri.clone(),
                    message: format!("bad pattern: {e}"),
                })
            })?;
            matches.filter_map(Result::ok).collect::<Vec<_>>()
        } else {
            let entry = PathBuf::from(&pattern);
            if !entry.exists() {
                return Err(here(ErrorKind::IncludeNotFound { path: uri }));
            }
            vec![entry]
        };
        entries.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        if depth + cx.chain.len() > MAX_DEPTH {
            return Err(here(ErrorKind::TooDeep));
        }
        for entry in entries {
            let canonical = absolute(&entry);
            if cx.chain.contains(&canonical) {
                return Err(here(ErrorKind::IncludeCycle {
                    path: entry.display().to_string(),
                }));
            }
            let text = read(&entry).map_err(|message| {
                here(ErrorKind::Io {
                    path: entry.display().to_string(),
                    message,
                })
            })?;
            cx.chain.push(canonical);
            cx.files.push(entry.clone());
            let mut included = Parser::new(&text, Arc::from(entry.as_path()));
            included.parse_element(cx, true, element, depth)?;
            cx.chain.pop();
        }
        self.line_end();
        Ok(())
    }

    // ----- LiteralParser -----

    /// `parse_literal`: a JSON array or hash, or a string to the end of the line.
    fn parse_literal(&mut self, cx: &mut Context<'_>) -> Result<Scanned, ParseError> {
        self.spacing_without_comment();
        match self.peek() {
            Some(open @ ('[' | '{')) => self.scan_json(cx, open == '['),
            _ => Ok(self.scan_string(cx, Boundary::LineEnd)?.unwrap_or_default()),
        }
    }

    /// `scan_string`: double-quoted, single-quoted or unquoted up to `boundary`; `None` for an
    /// empty unquoted string.
    fn scan_string(
        &mut self,
        cx: &mut Context<'_>,
        boundary: Boundary,
    ) -> Result<Option<Scanned>, ParseError> {
        match self.peek() {
            Some('"') => self.scan_double_quoted(cx).map(Some),
            Some('\'') => self.scan_single_quoted().map(Some),
            _ => Ok(self.scan_nonquoted(boundary)),
        }
    }

    /// `scan_nonquoted_string`: `#` is always part of it; any other character ends it where
    /// `boundary` matches, and a line break always does.
    fn scan_nonquoted(&mut self, boundary: Boundary) -> Option<Scanned> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some('#') => self.pos += 1,
                None | Some('\n') => break,
                Some(c) => {
                    if self.boundary_at(boundary, self.pos) {
                        break;
                    }
                    self.pos += c.len_utf8();
                }
            }
        }
        (self.pos > start).then(|| Scanned {
            value: self.text[start..self.pos].to_owned(),
            ..Scanned::default()
        })
    }

    /// `scan_single_quoted_string`: `\'` and `\\` are escapes; the string ends on its line.
    fn scan_single_quoted(&mut self) -> Result<Scanned, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Scanned {
                        value,
                        ..Scanned::default()
                    });
                }
                Some('\\') if matches!(self.peek2(), Some('\'' | '\\')) => {
                    self.pos += 1;
                    value.extend(self.bump());
                }
                None | Some('\n') => {
                    return Err(self.error_at(start, ErrorKind::UnterminatedString { quote: '\'' }));
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    value.push(c);
                }
            }
        }
    }

    /// `scan_double_quoted_string`, step by step as in Ruby.
    fn scan_double_quoted(&mut self, cx: &mut Context<'_>) -> Result<Scanned, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Scanned::default();
        let mut nil = false;
        let mut default = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, ErrorKind::UnterminatedString { quote: '"' }));
            };
            let next = self.peek2();
            if c == '"' {
                self.pos += 1;
                out.special = if nil {
                    Some(Special::UseNil)
                } else if default {
                    Some(Special::UseDefault)
                } else {
                    None
                };
                if out.special.is_some() {
                    out.value.clear();
                }
                return Ok(out);
            } else if matches!(next, None | Some('\r' | '\n')) {
                // `[^"](?:\z|[\r\n])`: the character and the line break are kept, except
                // that a backslash before a line break removes both (a continuation).
                self.pos += c.len_utf8();
                if c != '\\' {
                    out.value.push(c);
                    out.value.extend(next);
                }
                if next.is_some() {
                    self.pos += 1;
                }
            } else if c == '\\' {
                // `\\.`, where `.` is not `\n` (that case is the one above).
                let escape_at = self.pos;
                self.pos += 1;
                let e = self.bump().unwrap_or_default();
                out.value.push(match e {
                    'r' => '\r',
                    'n' => '\n',
                    't' => '\t',
                    'f' => '\u{c}',
                    'b' => '\u{8}',
                    '0' => '\0',
                    e if e.is_ascii_alphanumeric() => {
                        return Err(self.error_at(escape_at, ErrorKind::InvalidEscape { ch: e }));
                    }
                    e => e,
                });
            } else if c == '#' && next == Some('{') {
                let (outcome, embedded) = self.embedded_code(cx)?;
                match outcome {
                    Outcome::Value(value) => out.value.push_str(&value.unwrap_or_default()),
                    Outcome::UseNil => nil = true,
                    Outcome::UseDefault => default = true,
                }
                out.embedded.push(embedded);
            } else if c == '\n' {
                // Ruby's `.` does not match `\n`: a line break not right after another character.
                return Err(self.error_at(self.pos, ErrorKind::LineBreakInString));
            } else {
                self.pos += c.len_utf8();
                out.value.push(c);
            }
        }
    }

    /// `#{...}` at the current position (on the `#`): its code, evaluated.
    fn embedded_code(&mut self, cx: &mut Context<'_>) -> Result<(Outcome, Embedded), ParseError> {
        let start = self.pos;
        let code_start = start + 2;
        let Some(end) = ruby::code_end(self.text, code_start) else {
            return Err(self.error_at(start, ErrorKind::UnterminatedRuby));
        };
        let code = &self.text[code_start..end];
        self.pos = end + 1;
        let outcome = ruby::eval(code, cx.loader).map_err(|kind| self.error_at(start, kind))?;
        let (line, column) = self.line_col(start);
        Ok((
            outcome,
            Embedded {
                code: code.to_owned(),
                line,
                column,
            },
        ))
    }

    /// `scan_json`: a JSON array or hash from its `[` or `{` (the current position) to the
    /// bracket that closes it, across lines; `#` outside its strings starts a comment (so do
    /// `//` and `/* */`, which Fluentd's JSON parser allows), `#{...}` inside them is embedded
    /// code. Kept as compact JSON, as Fluentd's `JSON.dump(JSON.parse(...))` does.
    fn scan_json(&mut self, cx: &mut Context<'_>, array: bool) -> Result<Scanned, ParseError> {
        let start = self.pos;
        let mut json = String::new();
        let mut out = Scanned::default();
        let mut depth = 0usize;
        let mut in_string = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, ErrorKind::UnterminatedJson { array }));
            };
            let next = self.peek2();
            if in_string {
                match c {
                    '\\' => {
                        self.pos += 1;
                        json.push(c);
                        if let Some(e) = self.bump() {
                            json.push(e);
                        }
                        continue;
                    }
                    '"' => in_string = false,
                    '#' if next == Some('{') && !self.rest()[2..].starts_with('}') => {
                        let at = self.pos;
                        let (outcome, embedded) = self.embedded_code(cx)?;
                        match outcome {
                            Outcome::Value(value) => json.push_str(&value.unwrap_or_default()),
                            Outcome::UseNil | Outcome::UseDefault => {
                                let code = embedded.code;
                                return Err(self.error_at(at, ErrorKind::MisplacedSpecial { code }));
                            }
                        }
                        out.embedded.push(embedded);
                        continue;
                    }
                    _ => {}
                }
            } else {
                match c {
                    '"' => in_string = true,
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth = depth.saturating_sub(1),
                    '#' => {
                        self.skip_to_newline();
                        continue;
                    }
                    '/' if next == Some('/') => {
                        self.skip_to_newline();
                        continue;
                    }
                    '/' if next == Some('*') => {
                        match self.rest()[2..].find("*/") {
                            Some(i) => self.pos += 2 + i + 2,
                            None => self.pos = self.text.len(),
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            self.pos += c.len_utf8();
            json.push(c);
            if depth == 0 {
                break;
            }
        }
        let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
            self.error_at(
                start,
                ErrorKind::InvalidJson {
                    detail: e.to_string(),
                },
            )
        })?;
        out.value = value.to_string();
        Ok(out)
    }
}

/// The file path of an `@include` (`eval_include`): spaces are read as `+` and the path is
/// decoded as a form component (`+` and `%20` are spaces) — Fluentd parses it as a URI. A
/// `file:` URI gives its path; any other scheme (of two letters or more: `C:` is a Windows
/// drive) is a remote include.
fn include_path(uri: &str) -> Result<String, ErrorKind> {
    let scheme_len = uri
        .find(':')
        .filter(|&i| {
            let scheme = &uri[..i];
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .unwrap_or(0);
    let path = match &uri[..scheme_len] {
        "" => uri,
        "file" => {
            let rest = &uri["file:".len()..];
            rest.strip_prefix("//").unwrap_or(rest)
        }
        scheme if scheme.len() == 1 => uri,
        _ => {
            return Err(ErrorKind::IncludeRemote {
                uri: uri.to_owned(),
            });
        }
    };
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                decoded.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            b => decoded.push(b),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}
