//! The embedded Ruby of `"#{...}"`: finding where the code ends, and evaluating the few forms
//! configurations use (`ENV[...]`, `ENV.fetch(...)`, `||`, host name, worker id, `use_nil`,
//! `use_default`). Anything else is refused; no Ruby is run.

use crate::{ErrorKind, Loader};

/// What a piece of embedded code gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A value; `None` is Ruby's `nil`, which interpolates as `""`.
    Value(Option<String>),
    /// `use_nil`: the whole parameter is `nil`.
    UseNil,
    /// `use_default`: the whole parameter takes its default.
    UseDefault,
}

/// Nesting of braces and strings inside the code, beyond which we give up.
const MAX_NESTING: usize = 32;

/// The byte offset in `text` of the `}` that closes the code starting at `start` (just after
/// `#{`), skipping Ruby strings, nested braces and comments; `None` when nothing closes it.
pub(crate) fn code_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start;
    // What is open: b'{' a brace (or an interpolation inside a string), b'"' / b'\'' / b'`' a
    // string.
    let mut open: Vec<u8> = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        match open.last().copied() {
            Some(q @ (b'"' | b'\'' | b'`')) => match b {
                b'\\' => i += 1,
                b'#' if q != b'\'' && bytes.get(i + 1) == Some(&b'{') => {
                    if open.len() >= MAX_NESTING {
                        return None;
                    }
                    open.push(b'{');
                    i += 1;
                }
                _ if b == q => {
                    open.pop();
                }
                _ => {}
            },
            _ => match b {
                b'{' => {
                    if open.len() >= MAX_NESTING {
                        return None;
                    }
                    open.push(b'{');
                }
                b'}' if open.is_empty() => return Some(i),
                b'}' => {
                    open.pop();
                }
                b'"' | b'\'' | b'`' => {
                    if open.len() >= MAX_NESTING {
                        return None;
                    }
                    open.push(b);
                }
                // A comment, to the end of the line.
                b'#' => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Evaluates `code` (the text between `#{` and `}`).
pub(crate) fn eval(code: &str, loader: &Loader) -> Result<Outcome, ErrorKind> {
    let unsupported = || ErrorKind::UnsupportedRuby {
        code: code.to_owned(),
    };
    let mut p = Expr {
        rest: code,
        loader,
        whole: code,
    };
    p.blank();
    if p.rest.is_empty() {
        return Ok(Outcome::Value(None));
    }
    let outcome = p.or()?;
    p.blank();
    if !p.rest.is_empty() {
        return Err(unsupported());
    }
    Ok(outcome)
}

struct Expr<'c, 'l> {
    rest: &'c str,
    loader: &'l Loader,
    whole: &'c str,
}

impl Expr<'_, '_> {
    fn unsupported(&self) -> ErrorKind {
        ErrorKind::UnsupportedRuby {
            code: self.whole.to_owned(),
        }
    }

    fn blank(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\r', '\n']);
    }

    fn eat(&mut self, token: &str) -> bool {
        self.blank();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), ErrorKind> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.unsupported())
        }
    }

    fn ident(&mut self) -> Option<&str> {
        self.blank();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        if end == 0 || self.rest.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        let (ident, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(ident)
    }

    /// `primary ('||' primary)*`: the first operand that is not `nil`. Operands after it are
    /// not evaluated (an `ENV.fetch` there cannot fail), as in Ruby.
    fn or(&mut self) -> Result<Outcome, ErrorKind> {
        let mut outcome = self.primary(true)?;
        while self.eat("||") {
            let evaluate = outcome == Outcome::Value(None);
            let next = self.primary(evaluate)?;
            if evaluate {
                outcome = next;
            }
        }
        Ok(outcome)
    }

    fn primary(&mut self, evaluate: bool) -> Result<Outcome, ErrorKind> {
        self.blank();
        if self.rest.starts_with(['\'', '"']) {
            return Ok(Outcome::Value(Some(self.string()?)));
        }
        if self.eat("(") {
            let outcome = self.or()?;
            self.expect(")")?;
            return Ok(outcome);
        }
        let Some(ident) = self.ident() else {
            return Err(self.unsupported());
        };
        let ident = ident.to_owned();
        let outcome = match ident.as_str() {
            "nil" => Outcome::Value(None),
            "use_nil" => Outcome::UseNil,
            "use_default" => Outcome::UseDefault,
            "worker_id" => Outcome::Value(Some(
                self.loader
                    .var("SERVERENGINE_WORKER_ID")
                    .unwrap_or_default(),
            )),
            "hostname" => self.hostname("hostname", evaluate)?,
            "Socket" => {
                self.expect(".")?;
                if self.ident() != Some("gethostname") {
                    return Err(self.unsupported());
                }
                self.eat("()");
                self.hostname("Socket.gethostname", evaluate)?
            }
            "ENV" => {
                if self.eat("[") {
                    let name = self.string()?;
                    self.expect("]")?;
                    Outcome::Value(self.loader.var(&name))
                } else if self.eat(".") {
                    if self.ident() != Some("fetch") {
                        return Err(self.unsupported());
                    }
                    self.expect("(")?;
                    let name = self.string()?;
                    let default = if self.eat(",") {
                        Some(self.primary(evaluate)?)
                    } else {
                        None
                    };
                    self.expect(")")?;
                    match (self.loader.var(&name), default) {
                        (Some(value), _) => Outcome::Value(Some(value)),
                        (None, Some(default)) => default,
                        (None, None) if !evaluate => Outcome::Value(None),
                        (None, None) => return Err(ErrorKind::MissingEnv { name }),
                    }
                } else {
                    return Err(self.unsupported());
                }
            }
            _ => return Err(self.unsupported()),
        };
        Ok(outcome)
    }

    fn hostname(&self, code: &str, evaluate: bool) -> Result<Outcome, ErrorKind> {
        match self.loader.host() {
            Some(host) => Ok(Outcome::Value(Some(host.to_owned()))),
            None if !evaluate => Ok(Outcome::Value(None)),
            None => Err(ErrorKind::NoHostname {
                code: code.to_owned(),
            }),
        }
    }

    /// A Ruby string literal: `'...'` (escapes `\'` and `\\`) or `"..."` (the usual escapes;
    /// no interpolation).
    fn string(&mut self) -> Result<String, ErrorKind> {
        self.blank();
        let mut chars = self.rest.char_indices();
        let quote = match chars.next() {
            Some((_, q @ ('\'' | '"'))) => q,
            _ => return Err(self.unsupported()),
        };
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                _ if c == quote => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    match (quote, e) {
                        ('\'', '\'' | '\\') => out.push(e),
                        ('\'', _) => {
                            out.push('\\');
                            out.push(e);
                        }
                        (_, 'n') => out.push('\n'),
                        (_, 't') => out.push('\t'),
                        (_, 'r') => out.push('\r'),
                        (_, '0') => out.push('\0'),
                        (_, 's') => out.push(' '),
                        (_, e) if e.is_ascii_alphanumeric() => return Err(self.unsupported()),
                        (_, e) => out.push(e),
                    }
                }
                '#' if quote == '"' && self.rest[i + 1..].starts_with('{') => {
                    return Err(self.unsupported());
                }
                c => out.push(c),
            }
        }
        Err(self.unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loader() -> Loader {
        Loader::new().env(|name| match name {
            "HOME" => Some("/home/me".to_owned()),
            "EMPTY" => Some(String::new()),
            "SERVERENGINE_WORKER_ID" => Some("2".to_owned()),
            _ => None,
        })
    }

    fn value(code: &str) -> Result<Outcome, ErrorKind> {
        eval(code, &loader())
    }

    fn some(s: &str) -> Result<Outcome, ErrorKind> {
        Ok(Outcome::Value(Some(s.to_owned())))
    }

    #[test]
    fn code_ends_at_the_matching_brace() {
        let text = r#"ENV["A"]}" rest"#;
        assert_eq!(code_end(text, 0), Some(8));
        let text = r#""}" }"#;
        assert_eq!(code_end(text, 0), Some(4));
        let text = r#"{ "a" => 1 }[ "a" ] } x"#;
        assert_eq!(code_end(text, 0), Some(20));
        let text = r##""#{x}" }"##;
        assert_eq!(code_end(text, 0), Some(7));
        assert_eq!(code_end("# } comment\n}", 0), Some(12));
        assert_eq!(code_end("ENV['A'", 0), None);
        assert_eq!(code_end(&"{".repeat(100), 0), None);
    }

    #[test]
    fn env_forms() {
        assert_eq!(value("ENV['HOME']"), some("/home/me"));
        assert_eq!(value(r#"ENV["HOME"]"#), some("/home/me"));
        assert_eq!(value(" ENV[ 'NOPE' ] "), Ok(Outcome::Value(None)));
        assert_eq!(value("ENV.fetch('HOME', 'x')"), some("/home/me"));
        assert_eq!(value("ENV.fetch('NOPE', 'x')"), some("x"));
        assert_eq!(value("ENV.fetch(\"NOPE\", nil)"), Ok(Outcome::Value(None)));
        assert_eq!(
            value("ENV.fetch('NOPE')"),
            Err(ErrorKind::MissingEnv {
                name: "NOPE".to_owned()
            })
        );
        assert_eq!(value("ENV['NOPE'] || 'd'"), some("d"));
        assert_eq!(value("ENV['EMPTY'] || 'd'"), some(""));
        assert_eq!(value("ENV['HOME'] || ENV.fetch('NOPE')"), some("/home/me"));
        assert_eq!(value("ENV['NOPE'] || use_nil"), Ok(Outcome::UseNil));
        assert_eq!(value("ENV['NOPE'] || use_default"), Ok(Outcome::UseDefault));
        assert_eq!(value("worker_id"), some("2"));
        assert_eq!(value(""), Ok(Outcome::Value(None)));
        assert_eq!(value("'a\\'b'"), some("a'b"));
    }

    #[test]
    fn hostname_only_when_given() {
        assert_eq!(
            value("Socket.gethostname"),
            Err(ErrorKind::NoHostname {
                code: "Socket.gethostname".to_owned()
            })
        );
        let with_host = loader().hostname("web-1");
        assert_eq!(
            eval("hostname", &with_host),
            Ok(Outcome::Value(Some("web-1".to_owned())))
        );
        assert_eq!(
            eval("Socket.gethostname", &with_host),
            Ok(Outcome::Value(Some("web-1".to_owned())))
        );
    }

    #[test]
    fn other_code_is_refused() {
        for code in [
            "1+1",
            "ENV['A'].upcase",
            "`rm -rf /`",
            "File.read('/etc/passwd')",
            "ENV",
            "\"#{x}\"",
            "#",
        ] {
            assert_eq!(
                value(code),
                Err(ErrorKind::UnsupportedRuby {
                    code: code.to_owned()
                }),
                "{code}"
            );
        }
    }
}
