//! Web server logs: Apache/nginx access logs (common, combined, nginx's `main`) and nginx's
//! error log, by byte scanning.
//!
//! Access log fields are named as in Fluent Bit's `apache2` parser — `host`, `user`, `time`,
//! `method`, `path`, `code`, `size`, `referer`, `agent` — plus `protocol` (the request line's
//! `HTTP/1.1`, which Fluent Bit drops) and, for nginx's `main` format, `forwarded_for`. The
//! identd field (always `-` in practice) is not kept. `code` and `size` are integers (`size`
//! `-`, Apache's "no body", is 0); a value that is not a number stays a string.
//!
//! Quoted fields are kept as written, escapes included: nginx writes `"` as `\x22` and bytes
//! outside printable ASCII as `\xHH`; Apache writes `\"`, and a `\"` does not end the field.
//! The request line is split into `method`, `path` and `protocol` when it has that shape
//! (`GET /a b HTTP/1.1` gives the path `/a b`; `GET /` gives no protocol); a request line that
//! is one word (`GARBAGE`, a TLS handshake sent to a plain-text port) is the `method`, as in
//! Fluent Bit; a request of `-` or `""` gives none of the three.

use flumen_event::record::Value;

/// Which access log shape to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Common Log Format, optionally followed by the combined fields (as Fluent Bit's
    /// `apache2` regex).
    Common,
    /// Combined: common plus `"referer" "agent"`.
    Combined,
    /// nginx: combined, optionally plus `"$http_x_forwarded_for"` (the `main` format of the
    /// official image and of nginx.conf's commented example).
    Nginx,
}

struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn fail(&self, what: &str) -> String {
        format!("expected {what} at column {}", self.pos + 1)
    }

    /// Up to the next space (not included; the space is consumed).
    fn word(&mut self, what: &str) -> Result<&'a str, String> {
        let rest = &self.line[self.pos..];
        let end = memchr::memchr(b' ', rest.as_bytes()).ok_or_else(|| self.fail(what))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// Up to the next space or the end.
    fn last_word(&mut self) -> &'a str {
        let rest = &self.line[self.pos..];
        let end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        if self.line.as_bytes().get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(what))
        }
    }

    /// `[…]`, content returned.
    fn bracketed(&mut self) -> Result<&'a str, String> {
        self.expect(b'[', "'['")?;
        let rest = &self.line[self.pos..];
        let end = memchr::memchr(b']', rest.as_bytes()).ok_or_else(|| self.fail("']'"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// `"…"` with `\"` not closing it; content returned as written.
    fn quoted(&mut self) -> Result<&'a str, String> {
        self.expect(b'"', "'\"'")?;
        let bytes = self.line.as_bytes();
        let start = self.pos;
        let mut from = start;
        loop {
            let at = from
                + memchr::memchr(b'"', &bytes[from..])
                    .ok_or_else(|| format!("unterminated quoted field from column {start}"))?;
            let backslashes = bytes[start..at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                self.pos = at + 1;
                return Ok(&self.line[start..at]);
            }
            from = at + 1;
        }
    }

    fn at_end(&self) -> bool {
        self.pos == self.line.len()
    }
}

fn number(text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Value::Int(n),
        _ => Value::from(text),
    }
}

fn push(out: &mut Vec<(String, Value)>, name: &str, value: impl Into<Value>) {
    out.push((name.to_owned(), value.into()));
}

/// Parses one access log line into `out`.
pub(crate) fn parse_access(
    line: &str,
    flavor: Flavor,
    out: &mut Vec<(String, Value)>,
) -> Result<(), String> {
    let mut c = Cursor { line, pos: 0 };
    let host = c.word("a space after the client address")?;
    c.word("a space after the identd field")?;
    let user = c.word("a space after the user")?;
    let time = c.bracketed()?;
    c.expect(b' ', "a space after the time")?;
    let request = c.quoted()?;
    c.expect(b' ', "a space after the request")?;
    let code = c.word("a space after the status")?;
    let size = c.last_word();
    let mut tail = None;
    if !c.at_end() || flavor != Flavor::Common {
        c.expect(b' ', "a space after the size")?;
        let referer = c.quoted()?;
        c.expect(b' ', "a space after the referer")?;
        let agent = c.quoted()?;
        let mut forwarded_for = None;
        if flavor == Flavor::Nginx && !c.at_end() {
            c.expect(b' ', "a space after the user agent")?;
            forwarded_for = Some(c.quoted()?);
        }
        tail = Some((referer, agent, forwarded_for));
    }
    if !c.at_end() {
        return Err(c.fail("the end of the line"));
    }

    out.reserve(11);
    push(out, "host", host);
    push(out, "user", user);
    push(out, "time", time);
    if !request.is_empty() && request != "-" {
        match request.split_once(' ') {
            None => push(out, "method", request),
            Some((method, rest)) => {
                push(out, "method", method);
                let rest = rest.trim_matches(' ');
                match rest.rsplit_once(' ') {
                    Some((path, protocol)) if protocol.starts_with("HTTP/") => {
                        push(out, "path", path.trim_end_matches(' '));
                        push(out, "protocol", protocol);
                    }
                    _ => push(out, "path", rest),
                }
            }
        }
    }
    push(out, "code", number(code));
    push(
        out,
        "size",
        if size == "-" {
            Value::Int(0)
        } else {
            number(size)
        },
    );
    if let Some((referer, agent, forwarded_for)) = tail {
        push(out, "referer", referer);
        push(out, "agent", agent);
        if let Some(ff) = forwarded_for {
            push(out, "forwarded_for", ff);
        }
    }
    Ok(())
}

/// Parses one nginx error log line into `out`:
/// `2026/11/21 13:31:17 [error] 14705#14705: *12 open() "/x" failed (2: No such file or
/// directory), client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "h"`.
///
/// Fields: `time`, `severity` (nginx's word: `debug` … `emerg`; the canonical `level` comes
/// from it), `pid`, `tid`, `cid` (the connection number after `*`, when there is one),
/// `message`, and the context nginx appends, under nginx's own names: `client`, `server`,
/// `request`, `subrequest`, `upstream`, `host`, `referrer`, … (quotes removed). nginx does not
/// escape the message: it may hold quotes and, for bad requests, bytes that are not UTF-8.
pub(crate) fn parse_nginx_error(line: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    let b = line.as_bytes();
    let shape_ok = b.len() >= 22
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b' '
        && b[20] == b'[';
    if !shape_ok {
        return Err("expected YYYY/MM/DD HH:MM:SS [level] at the start".to_owned());
    }
    let mut c = Cursor { line, pos: 20 };
    let severity = c.bracketed()?;
    c.expect(b' ', "a space after the level")?;
    let ids = c.word("pid#tid: ")?;
    let ids = ids
        .strip_suffix(':')
        .ok_or_else(|| "expected pid#tid: after the level".to_owned())?;
    let (pid, tid) = ids
        .split_once('#')
        .ok_or_else(|| "expected pid#tid: after the level".to_owned())?;
    let mut rest = &line[c.pos..];
    let mut cid = None;
    if let Some(after) = rest.strip_prefix('*') {
        let len = after.bytes().take_while(u8::is_ascii_digit).count();
        if len > 0 && after.as_bytes().get(len) == Some(&b' ') {
            cid = Some(&after[..len]);
            rest = &after[len + 1..];
        }
    }
    let (message, context) = split_context(rest);

    out.reserve(7 + context.len());
    push(out, "time", &line[..19]);
    push(out, "severity", severity);
    push(out, "pid", number(pid));
    push(out, "tid", number(tid));
    if let Some(cid) = cid {
        push(out, "cid", number(cid));
    }
    push(out, "message", message);
    for (key, value) in context {
        push(out, key, value);
    }
    Ok(())
}

/// Splits `message, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", host: "h"` into
/// the message and the context pairs. When the context does not read cleanly, it all stays in
/// the message.
fn split_context(text: &str) -> (&str, Vec<(&str, &str)>) {
    let Some(start) = memchr::memmem::find(text.as_bytes(), b", client: ") else {
        return (text, Vec::new());
    };
    let mut pairs = Vec::with_capacity(5);
    let mut rest = &text[start..];
    while !rest.is_empty() {
        let Some(after_sep) = rest.strip_prefix(", ") else {
            return (text, Vec::new());
        };
        let Some((key, after_key)) = after_sep.split_once(": ") else {
            return (text, Vec::new());
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b' ')
        {
            return (text, Vec::new());
        }
        let (value, next) = if let Some(quoted) = after_key.strip_prefix('"') {
            // nginx does not escape quotes here: the value ends at the quote that ends the line
            // or is followed by the next ", key: ".
            let mut end = None;
            for (i, _) in quoted.match_indices('"') {
                let after = &quoted[i + 1..];
                if after.is_empty() || starts_with_key(after) {
                    end = Some(i);
                    break;
                }
            }
            match end {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                // nginx cuts error lines at 2048 bytes: a long request loses its closing quote.
                None => (quoted, ""),
            }
        } else {
            let end = after_key
                .match_indices(", ")
                .map(|(i, _)| i)
                .find(|&i| starts_with_key(&after_key[i..]))
                .unwrap_or(after_key.len());
            (&after_key[..end], &after_key[end..])
        };
        pairs.push((key, value));
        rest = next;
    }
    (&text[..start], pairs)
}

/// True when `text` opens with `, word: `.
fn starts_with_key(text: &str) -> bool {
    let Some(after) = text.strip_prefix(", ") else {
        return false;
    };
    let len = after
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b' ')
        .count();
    len > 0 && after[len..].starts_with(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str, flavor: Flavor) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        parse_access(line, flavor, &mut out).map(|()| out)
    }

    fn get<'a>(f: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
        f.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    const COMMON: &str =
        r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
    const COMBINED: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

    #[test]
    fn common_and_combined() {
        let f = fields(COMMON, Flavor::Common).unwrap();
        let names: Vec<_> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "host", "user", "time", "method", "path", "protocol", "code", "size"
            ]
        );
        assert_eq!(get(&f, "user"), Some(&Value::from("frank")));
        assert_eq!(
            get(&f, "time"),
            Some(&Value::from("10/Oct/2000:13:55:36 -0700"))
        );
        assert_eq!(get(&f, "code"), Some(&Value::Int(200)));
        assert_eq!(get(&f, "size"), Some(&Value::Int(2326)));
        // Common accepts the combined tail, as Fluent Bit's apache2 regex does.
        let f = fields(COMBINED, Flavor::Common).unwrap();
        assert_eq!(
            get(&f, "agent"),
            Some(&Value::from("Mozilla/4.08 [en] (Win98; I ;Nav)"))
        );
        let f = fields(COMBINED, Flavor::Combined).unwrap();
        assert_eq!(
            get(&f, "referer"),
            Some(&Value::from("http://www.example.com/start.html"))
        );
        // Combined needs its tail.
        assert!(
            fields(COMMON, Flavor::Combined)
                .unwrap_err()
                .ends_with("expected a space after the size at column 86")
        );
        // Trailing junk is not ignored.
        assert!(fields(&format!("{COMBINED} x"), Flavor::Combined).is_err());
        assert!(fields(&format!("{COMMON} x"), Flavor::Common).is_err());
    }

    #[test]
    fn nginx_main_adds_forwarded_for() {
        let line = format!("{COMBINED} \"203.0.113.7, 10.0.0.1\"");
        let f = fields(&line, Flavor::Nginx).unwrap();
        assert_eq!(
            get(&f, "forwarded_for"),
            Some(&Value::from("203.0.113.7, 10.0.0.1"))
        );
        assert!(fields(&line, Flavor::Combined).is_err());
        assert!(fields(COMBINED, Flavor::Nginx).is_ok());
    }

    #[test]
    fn odd_request_lines() {
        let with = |request: &str| {
            let line = format!(r#"::1 - - [10/Oct/2000:13:55:36 -0700] "{request}" 400 - "-" "-""#);
            let f = fields(&line, Flavor::Combined).unwrap();
            assert_eq!(get(&f, "size"), Some(&Value::Int(0)));
            (
                get(&f, "method").map(|v| v.to_text().into_owned()),
                get(&f, "path").map(|v| v.to_text().into_owned()),
                get(&f, "protocol").map(|v| v.to_text().into_owned()),
            )
        };
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            with("GET /a b HTTP/1.1"),
            (s("GET"), s("/a b"), s("HTTP/1.1"))
        );
        assert_eq!(with("GET /"), (s("GET"), s("/"), None));
        assert_eq!(with("GARBAGE"), (s("GARBAGE"), None, None));
        assert_eq!(with("-"), (None, None, None));
        assert_eq!(with(""), (None, None, None));
        assert_eq!(
            with(r#"GET /\"q\" HTTP/1.0"#),
            (s("GET"), s(r#"/\"q\""#), s("HTTP/1.0"))
        );
        assert_eq!(with(r"GET /x\\"), (s("GET"), s(r"/x\\"), None));
    }

    #[test]
    fn nginx_error_lines() {
        let mut f = Vec::new();
        parse_nginx_error(
            r#"2026/11/21 13:31:17 [error] 14705#14705: *12 open() "/www/a b"c" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /a%20b%22c HTTP/1.1", upstream: "http://127.0.0.1:1/x", host: "127.0.0.1:33137""#,
            &mut f,
        )
        .unwrap();
        let names: Vec<_> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "time", "severity", "pid", "tid", "cid", "message", "client", "server", "request",
                "upstream", "host"
            ]
        );
        assert_eq!(
            get(&f, "message"),
            Some(&Value::from(
                r#"open() "/www/a b"c" failed (2: No such file or directory)"#
            ))
        );
        assert_eq!(get(&f, "cid"), Some(&Value::Int(12)));
        assert_eq!(
            get(&f, "request"),
            Some(&Value::from("GET /a%20b%22c HTTP/1.1"))
        );
        assert_eq!(get(&f, "host"), Some(&Value::from("127.0.0.1:33137")));

        let mut f = Vec::new();
        parse_nginx_error(
            "2026/11/21 13:31:16 [notice] 14701#14701: using the \"epoll\" event method",
            &mut f,
        )
        .unwrap();
        assert_eq!(get(&f, "cid"), None);
        assert_eq!(
            get(&f, "message"),
            Some(&Value::from("using the \"epoll\" event method"))
        );

        // A line cut short (nginx stops at 2048 bytes) loses the closing quote.
        let mut f = Vec::new();
        parse_nginx_error(
            "2026/11/21 13:31:16 [info] 1#1: *3 odd, client: 1.2.3.4, request: \"GET /aaa",
            &mut f,
        )
        .unwrap();
        assert_eq!(get(&f, "message"), Some(&Value::from("odd")));
        assert_eq!(get(&f, "request"), Some(&Value::from("GET /aaa")));

        // An unquoted value runs to the next ", key: ".
        let mut f = Vec::new();
        parse_nginx_error(
            "2026/11/21 13:31:16 [info] 1#1: odd, client: 1.2.3.4, bad-key: x, server: s",
            &mut f,
        )
        .unwrap();
        assert_eq!(get(&f, "client"), Some(&Value::from("1.2.3.4, bad-key: x")));
        assert_eq!(get(&f, "server"), Some(&Value::from("s")));

        for bad in [
            "",
            "2026/11/21 13:31:16 notice 1#1: x",
            "2026/11/21 13:31:16 [notice] x",
            "2026-11-21 13:31:16 [notice] 1#1: x",
        ] {
            assert!(parse_nginx_error(bad, &mut Vec::new()).is_err(), "{bad}");
        }
    }
}
