//! The Go-template subset of `| line_format` and `| label_format`: text with `{{ ... }}`
//! actions that print fields, `__line__`, string literals and a few functions.

use crate::eval::Fields;

/// A parsed template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The template text, unescaped (rendered by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// `{{ command | command ... }}`: each command's result is the last argument of the next.
    Action(Vec<Command>),
}

#[derive(Debug, Clone)]
enum Command {
    /// A value on its own, only first in an action.
    Value(Arg),
    Call(Func, Vec<Arg>),
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.name`: a label or field, `""` when missing.
    Field(String),
    /// `"text"` or `` `text` ``.
    Str(String),
    /// `__line__`: the current line.
    Line,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    ToUpper,
    ToLower,
    TrimSpace,
    Default,
}

impl Func {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ToUpper" | "upper" => Self::ToUpper,
            "ToLower" | "lower" => Self::ToLower,
            "TrimSpace" | "trim" => Self::TrimSpace,
            "default" => Self::Default,
            _ => return None,
        })
    }

    fn arity(self) -> usize {
        match self {
            Self::ToUpper | Self::ToLower | Self::TrimSpace => 1,
            Self::Default => 2,
        }
    }

    fn apply(self, args: &[String]) -> String {
        match (self, args) {
            (Self::ToUpper, [s]) => s.to_uppercase(),
            (Self::ToLower, [s]) => s.to_lowercase(),
            (Self::TrimSpace, [s]) => s.trim().to_owned(),
            (Self::Default, [fallback, s]) if s.is_empty() => fallback.clone(),
            (Self::Default, [_, s]) => s.clone(),
            _ => unreachable!("arity is checked when parsing"),
        }
    }
}

const FUNCTIONS: &str =
    "`ToUpper`, `ToLower`, `TrimSpace` (or `upper`, `lower`, `trim`) and `default`";

/// A template problem at a byte offset of the template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

fn error<T>(offset: usize, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        offset,
        message: message.into(),
    })
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut at = 0;
        while let Some(open) = text[at..].find("{{").map(|i| at + i) {
            if open > at {
                parts.push(Part::Text(text[at..open].to_owned()));
            }
            let Some(close) = text[open + 2..].find("}}").map(|i| open + 2 + i) else {
                return error(open, "unclosed action: expected `}}`");
            };
            parts.push(Part::Action(ActionParser::parse(text, open + 2, close)?));
            at = close + 2;
        }
        if at < text.len() {
            parts.push(Part::Text(text[at..].to_owned()));
        }
        Ok(Self {
            source: text.to_owned(),
            parts,
        })
    }

    /// The template filled in from `fields`, with `__line__` being `line`.
    pub(crate) fn render(&self, line: &str, fields: &Fields<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Action(commands) => out.push_str(&run(commands, line, fields)),
            }
        }
        out
    }
}

fn run(commands: &[Command], line: &str, fields: &Fields<'_>) -> String {
    let mut piped: Option<String> = None;
    for command in commands {
        piped = Some(match command {
            Command::Value(arg) => arg.value(line, fields),
            Command::Call(func, args) => {
                let mut values: Vec<String> = args.iter().map(|a| a.value(line, fields)).collect();
                values.extend(piped.take());
                func.apply(&values)
            }
        });
    }
    piped.unwrap_or_default()
}

impl Arg {
    fn value(&self, line: &str, fields: &Fields<'_>) -> String {
        match self {
            Self::Field(name) => fields.text(name).into_owned(),
            Self::Str(text) => text.clone(),
            Self::Line => line.to_owned(),
        }
    }
}

/// Reads the inside of one `{{ }}`.
struct ActionParser<'a> {
    text: &'a str,
    pos: usize,
    end: usize,
}

enum Token {
    Arg(Arg),
    Ident(String),
    Pipe,
}

impl<'a> ActionParser<'a> {
    fn parse(text: &'a str, start: usize, end: usize) -> Result<Vec<Command>, TemplateError> {
        let mut parser = Self {
            text,
            pos: start,
            end,
        };
        let mut commands = Vec::new();
        loop {
            commands.push(parser.command(!commands.is_empty())?);
            match parser.token()? {
                None => return Ok(commands),
                Some((_, Token::Pipe)) => {}
                Some((at, _)) => return error(at, "expected `|` or `}}`"),
            }
        }
    }

    fn command(&mut self, piped: bool) -> Result<Command, TemplateError> {
        let (at, first) = match self.token()? {
            Some(token) => token,
            None => {
                return error(
                    self.pos,
                    "expected a field like `.name`, a string or a function",
                );
            }
        };
        match first {
            Token::Pipe => error(at, "expected a field like `.name`, a string or a function"),
            Token::Arg(arg) if !piped => Ok(Command::Value(arg)),
            Token::Arg(_) => error(at, format!("expected a function after `|` ({FUNCTIONS})")),
            Token::Ident(name) => {
                let Some(func) = Func::from_name(&name) else {
                    return error(
                        at,
                        format!("unknown function `{name}`: expected {FUNCTIONS}"),
                    );
                };
                let mut args = Vec::new();
                while let Some(arg) = self.arg()? {
                    args.push(arg);
                }
                let given = args.len() + usize::from(piped);
                if given != func.arity() {
                    return error(
                        at,
                        format!("`{name}` takes {} argument(s), got {given}", func.arity()),
                    );
                }
                Ok(Command::Call(func, args))
            }
        }
    }

    /// The next argument, or `None` before `|` or the end.
    fn arg(&mut self) -> Result<Option<Arg>, TemplateError> {
        let before = self.pos;
        match self.token()? {
            Some((_, Token::Arg(arg))) => Ok(Some(arg)),
            Some((at, Token::Ident(name))) => error(
                at,
                format!("unexpected `{name}`: arguments are fields, strings or `__line__`"),
            ),
            Some((_, Token::Pipe)) | None => {
                self.pos = before;
                Ok(None)
            }
        }
    }

    fn token(&mut self) -> Result<Option<(usize, Token)>, TemplateError> {
        let bytes = self.text.as_bytes();
        while self.pos < self.end && bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        let start = self.pos;
        if start >= self.end {
            return Ok(None);
        }
        let token = match bytes[start] {
            b'|' => {
                self.pos += 1;
                Token::Pipe
            }
            b'.' => {
                self.pos += 1;
                let name = self.word();
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return error(start, "expected a field name after `.`");
                }
                Token::Arg(Arg::Field(name.to_owned()))
            }
            b'"' | b'`' => Token::Arg(Arg::Str(self.string()?)),
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let word = self.word();
                if word == "__line__" {
                    Token::Arg(Arg::Line)
                } else {
                    Token::Ident(word.to_owned())
                }
            }
            _ => {
                let found = self.text[start..].chars().next().unwrap_or(' ');
                return error(start, format!("unexpected `{found}` in a template action"));
            }
        };
        Ok(Some((start, token)))
    }

    fn word(&mut self) -> &'a str {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while self.pos < self.end
            && (bytes[self.pos].is_ascii_alphanumeric() || matches!(bytes[self.pos], b'_' | b'.'))
        {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// A Go string literal: `"..."` with `\"`, `\\`, `\n`, `\t`, or `` `...` `` as is.
    fn string(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        let quote = self.text.as_bytes()[start] as char;
        let mut value = String::new();
        let mut chars = self.text[start + 1..self.end].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos = start + 1 + i + 1;
                    return Ok(value);
                }
                '\\' if quote == '"' => match chars.next() {
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    _ => return error(start + 1 + i, "unknown escape in a template string"),
                },
                c => value.push(c),
            }
        }
        error(start, "unterminated string in a template action")
    }
}

#[cfg(test)]
mod tests {
    use flumen_event::record::{Record, Value};

    use super::*;

    fn render(template: &str, labels: &[(String, String)]) -> String {
        let record = Record::from(vec![
            ("service".to_owned(), Value::from("api")),
            ("message".to_owned(), Value::from("hello")),
        ]);
        let fields = Fields {
            tag: "t",
            record: &record,
            labels,
        };
        Template::parse(template)
            .unwrap_or_else(|e| panic!("{template:?}: {e:?}"))
            .render("the line", &fields)
    }

    #[test]
    fn fills_in_fields_and_functions() {
        let labels = vec![("level".to_owned(), "warn".to_owned())];
        assert_eq!(render("{{.service}} {{ .message }}", &[]), "api hello");
        assert_eq!(render("[{{.level | ToUpper}}]", &labels), "[WARN]");
        assert_eq!(render("{{ ToUpper .level }}", &labels), "WARN");
        assert_eq!(render("{{ .missing | default \"-\" }}", &labels), "-");
        assert_eq!(render("{{ default `-` .level }}", &labels), "warn");
        assert_eq!(render("{{ __line__ | upper }}!", &labels), "THE LINE!");
        assert_eq!(render("{{\" x \" | TrimSpace}}", &labels), "x");
        assert_eq!(render("no actions", &labels), "no actions");
        assert_eq!(render("{{.tag}}", &labels), "t");
    }

    #[test]
    fn reports_where_it_is_wrong() {
        let err = |t: &str| Template::parse(t).unwrap_err();
        assert_eq!(err("ab {{ .a").offset, 3);
        assert_eq!(err("{{ nope .a }}").offset, 3);
        assert!(
            err("{{ nope .a }}")
                .message
                .starts_with("unknown function `nope`")
        );
        assert_eq!(err("{{ .a | }}").offset, 8);
        assert_eq!(err("{{ .a .b }}").offset, 6);
        assert_eq!(err("{{ ToUpper }}").offset, 3);
        assert_eq!(err("{{ . }}").offset, 3);
        assert_eq!(err("{{ .a | .b }}").offset, 8);
        assert_eq!(err("{{ \"x }}").offset, 3);
        assert_eq!(err("{{ if .a }}").offset, 3);
        assert_eq!(err("{{ .a | default }}").offset, 8);
        assert_eq!(err("{{ 5 }}").offset, 3);
    }
}
