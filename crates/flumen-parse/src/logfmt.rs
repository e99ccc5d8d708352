//! logfmt: `key=value key="quoted value" bare_key`.
//!
//! Keys are runs of bytes other than space, tab, `=` and `"`. A value is either bare (up to
//! the next space or tab; it may contain `=`) or double-quoted with Go-style escapes (`\"`,
//! `\\`, `\n`, `\t`, `\r`, `\uXXXX`, …; an unknown escape is kept as written). `key=` is the
//! empty string; a bare key is `true`. Values are strings — logfmt has no types — except bare
//! keys; cast with `types` (`status = "int"`). A line must hold at least one `key=value` pair,
//! so that plain sentences are not read as rows of bare keys.

use flumen_event::record::Value;

/// Parses one logfmt line into `out`.
pub(crate) fn parse_logfmt(line: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs = 0usize;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b'"') {
            i += 1;
        }
        if i == key_start {
            return Err(format!(
                "unexpected {:?} at column {}: expected a key",
                char::from(b[i]),
                i + 1
            ));
        }
        let key = &line[key_start..i];
        if b.get(i) == Some(&b'"') {
            return Err(format!("unexpected '\"' in key at column {}", i + 1));
        }
        if b.get(i) != Some(&b'=') {
            out.push((key.to_owned(), Value::Bool(true)));
            continue;
        }
        i += 1;
        pairs += 1;
        if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let (value, end) = quoted(line, start)
                .ok_or_else(|| format!("unterminated quoted value from column {}", start))?;
            i = end;
            if i < b.len() && !matches!(b[i], b' ' | b'\t') {
                return Err(format!(
                    "expected a space after the quoted value at column {}",
                    i + 1
                ));
            }
            out.push((key.to_owned(), Value::Str(value)));
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            out.push((key.to_owned(), Value::from(&line[start..i])));
        }
    }
    if pairs == 0 {
        return Err("no key=value pair".to_owned());
    }
    Ok(())
}

/// Reads a quoted value whose content starts at `start`; returns the unescaped value and the
/// index after the closing quote.
fn quoted(line: &str, start: usize) -> Option<(String, usize)> {
    let b = line.as_bytes();
    // Fast path: no escapes before the closing quote.
    let close = start + memchr::memchr2(b'"', b'\\', &b[start..])?;
    if b[close] == b'"' {
        return Some((line[start..close].to_owned(), close + 1));
    }
    let mut out = String::with_capacity(close - start + 16);
    out.push_str(&line[start..close]);
    let mut i = close;
    loop {
        let next = i + memchr::memchr2(b'"', b'\\', &b[i..])?;
        out.push_str(&line[i..next]);
        if b[next] == b'"' {
            return Some((out, next + 1));
        }
        // A backslash.
        let esc = *b.get(next + 1)?;
        i = next + 2;
        match esc {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => match line
                .get(next + 2..next + 6)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            {
                Some(code) => {
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    i = next + 6;
                }
                None => out.push_str("\\u"),
            },
            _ => {
                // Unknown escape: keep the backslash; the escaped character is copied by the
                // next round (it may be the start of a multi-byte character).
                out.push('\\');
                i = next + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Vec<(String, Value)>, String> {
        let mut out = Vec::new();
        parse_logfmt(line, &mut out).map(|()| out)
    }

    #[test]
    fn pairs_quotes_and_bare_keys() {
        let f = parse(
            r#"at=info method=GET path="/a b" host=x.herokuapp.com fwd="1.2.3.4" dyno=web.1 connect=0ms service=18ms status=200 bytes=13 empty= debug msg="say \"hi\"\n\u00e9 \q" url=/x?a=b"#,
        )
        .unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("at"), Some(Value::from("info")));
        assert_eq!(get("path"), Some(Value::from("/a b")));
        assert_eq!(get("status"), Some(Value::from("200")));
        assert_eq!(get("empty"), Some(Value::from("")));
        assert_eq!(get("debug"), Some(Value::Bool(true)));
        assert_eq!(get("msg"), Some(Value::from("say \"hi\"\né \\q")));
        assert_eq!(get("url"), Some(Value::from("/x?a=b")));
        assert_eq!(f.len(), 14);
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(parse("just some words").unwrap_err(), "no key=value pair");
        assert_eq!(parse("").unwrap_err(), "no key=value pair");
        assert!(parse("a=\"open").unwrap_err().starts_with("unterminated"));
        assert!(parse("a=\"x\\\"").unwrap_err().starts_with("unterminated"));
        assert!(parse("=x").unwrap_err().contains("expected a key"));
        assert!(
            parse("a=\"x\"b")
                .unwrap_err()
                .contains("after the quoted value")
        );
        assert!(parse("a\"b=1").unwrap_err().contains("in key"));
        assert_eq!(parse("a=\"\\é\"").unwrap()[0].1, Value::from("\\é"));
        assert_eq!(parse("\ta=1\t").unwrap().len(), 1);
    }
}
