//! "Timestamp level message" lines, the shape most hand-rolled and framework loggers print:
//!
//! ```text
//! 2024-01-01T10:00:00.123Z ERROR [main] connection refused        (log4j-style)
//! 2024-01-01 10:00:00,123 WARN disk almost full                    (Python logging's asctime)
//! [2024-01-01 10:00:00] ERROR: payment failed                      (bracketed time)
//! [2024-01-01T10:00:00Z INFO  my_crate::db] pool ready             (Rust env_logger)
//! 2024/01/01 10:00:00 listening on :8080                           (Go's log, no level)
//! ```
//!
//! The timestamp is a date (`YYYY-MM-DD` or `YYYY/MM/DD`), `T` or a space, `HH:MM:SS`, an
//! optional fraction after `.` or `,` and an optional zone (`Z`, `±HH:MM`, `±HHMM`), optionally
//! inside `[…]`. The next word is the level when [`Level::parse`] knows it and it is at least
//! three letters (so that a message opening with "A" or "30" is not read as a level); brackets
//! and a trailing colon around it are dropped. Inside an open bracket (env_logger), the words
//! after the level up to `]` are the `logger`. Everything after is the `message`, as written.
//!
//! Fields: `time` (the timestamp text), `level` (the word as written; the parser then writes
//! the canonical level over it), `logger` (bracketed form only), `message`.

use flumen_event::record::Value;

use crate::level::Level;

/// Where the timestamp opening `b` ends, if one does.
fn timestamp_end(b: &[u8], start: usize) -> Option<usize> {
    let s = b.get(start..start + 19)?;
    let d = |i: usize| s[i].is_ascii_digit();
    let sep = s[4];
    let shape = (0..4).all(d)
        && matches!(sep, b'-' | b'/')
        && d(5)
        && d(6)
        && s[7] == sep
        && d(8)
        && d(9)
        && matches!(s[10], b'T' | b' ')
        && d(11)
        && d(12)
        && s[13] == b':'
        && d(14)
        && d(15)
        && s[16] == b':'
        && d(17)
        && d(18);
    if !shape {
        return None;
    }
    let mut i = start + 19;
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(b'+' | b'-') => {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 2 && b.get(i + 3) == Some(&b':') {
                let more = b[i + 4..].iter().take_while(|c| c.is_ascii_digit()).count();
                if more == 2 {
                    i += 6;
                }
            } else if digits == 4 || digits == 2 {
                i += 1 + digits;
            }
        }
        _ => {}
    }
    Some(i)
}

/// True when the line opens with a timestamp this parser reads (the `auto` format's test).
pub(crate) fn looks_like(line: &str) -> bool {
    let b = line.as_bytes();
    let start = usize::from(b.first() == Some(&b'['));
    timestamp_end(b, start).is_some()
}

/// Parses one line into `out`.
pub(crate) fn parse_tle(line: &str, out: &mut Vec<(String, Value)>) -> Result<(), String> {
    let b = line.as_bytes();
    let mut in_bracket = b.first() == Some(&b'[');
    let start = usize::from(in_bracket);
    let ts_end = timestamp_end(b, start)
        .ok_or_else(|| "no timestamp at the start of the line".to_owned())?;
    let time = &line[start..ts_end];
    let mut i = ts_end;
    let skip_spaces = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    skip_spaces(&mut i);
    if in_bracket && b.get(i) == Some(&b']') {
        in_bracket = false;
        i += 1;
        skip_spaces(&mut i);
    }
    if i < b.len() && i == ts_end {
        return Err(format!(
            "expected a space after the timestamp at column {}",
            i + 1
        ));
    }
    // The level word.
    let word_end = i + b[i..]
        .iter()
        .take_while(|c| !matches!(c, b' ' | b'\t'))
        .count();
    let mut word = &line[i..word_end];
    let mut closes_bracket = false;
    if in_bracket && word.ends_with(']') {
        word = &word[..word.len() - 1];
        closes_bracket = true;
    }
    let bare = word
        .trim_end_matches(':')
        .trim_matches(|c| matches!(c, '[' | ']' | '<' | '>' | '(' | ')'));
    let mut level = None;
    if bare.len() >= 3
        && bare.bytes().all(|c| c.is_ascii_alphabetic())
        && Level::parse(bare).is_some()
    {
        level = Some(bare);
        i = word_end;
        if closes_bracket {
            in_bracket = false;
        }
        skip_spaces(&mut i);
    }
    let mut logger = None;
    if in_bracket {
        let close = memchr::memchr(b']', &b[i..])
            .ok_or_else(|| "unterminated '[' around the timestamp".to_owned())?;
        let name = line[i..i + close].trim();
        if !name.is_empty() {
            logger = Some(name);
        }
        i += close + 1;
        skip_spaces(&mut i);
    }
    out.reserve(4);
    out.push(("time".to_owned(), Value::from(time)));
    if let Some(level) = level {
        out.push((crate::level::LEVEL_FIELD.to_owned(), Value::from(level)));
    }
    if let Some(logger) = logger {
        out.push(("logger".to_owned(), Value::from(logger)));
    }
    out.push(("message".to_owned(), Value::from(&line[i..])));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        parse_tle(line, &mut out)?;
        Ok(out
            .into_iter()
            .map(|(k, v)| (k, v.to_text().into_owned()))
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_usual_shapes() {
        for (line, want) in [
            (
                "2024-01-01T10:00:00.123Z ERROR [main] msg",
                &[
                    ("time", "2024-01-01T10:00:00.123Z"),
                    ("level", "ERROR"),
                    ("message", "[main] msg"),
                ][..],
            ),
            (
                "2024-01-01 10:00:00,123 WARN msg",
                &[
                    ("time", "2024-01-01 10:00:00,123"),
                    ("level", "WARN"),
                    ("message", "msg"),
                ],
            ),
            (
                "[2024-01-01 10:00:00] ERROR: msg",
                &[
                    ("time", "2024-01-01 10:00:00"),
                    ("level", "ERROR"),
                    ("message", "msg"),
                ],
            ),
            (
                "[2024-01-01T10:00:00Z INFO  my_crate::db] pool ready",
                &[
                    ("time", "2024-01-01T10:00:00Z"),
                    ("level", "INFO"),
                    ("logger", "my_crate::db"),
                    ("message", "pool ready"),
                ],
            ),
            (
                "[2024-01-01T10:00:00Z WARN] short",
                &[
                    ("time", "2024-01-01T10:00:00Z"),
                    ("level", "WARN"),
                    ("message", "short"),
                ],
            ),
            (
                "2024/01/01 10:00:00 listening on :8080",
                &[
                    ("time", "2024/01/01 10:00:00"),
                    ("message", "listening on :8080"),
                ],
            ),
            (
                "2024-01-01T10:00:00+02:00 [warning] x",
                &[
                    ("time", "2024-01-01T10:00:00+02:00"),
                    ("level", "warning"),
                    ("message", "x"),
                ],
            ),
            (
                "2024-01-01T10:00:00-0500 A new user; 30 online",
                &[
                    ("time", "2024-01-01T10:00:00-0500"),
                    ("message", "A new user; 30 online"),
                ],
            ),
            (
                "2024-01-01 10:00:00",
                &[("time", "2024-01-01 10:00:00"), ("message", "")],
            ),
            (
                "2024-01-01 10:00:00 INFO",
                &[
                    ("time", "2024-01-01 10:00:00"),
                    ("level", "INFO"),
                    ("message", ""),
                ],
            ),
        ] {
            assert_eq!(parse(line).unwrap(), pairs(want), "{line}");
        }
    }

    #[test]
    fn not_tle() {
        for line in [
            "",
            "hello",
            "2024-01-01",
            "2024-01-01X10:00:00 x",
            "2024-01-01 10:00:00x INFO",
            "[2024-01-01 10:00:00 INFO never closed",
        ] {
            assert!(parse(line).is_err(), "{line}");
        }
        assert!(looks_like("[2024-01-01 10:00:00] x"));
        assert!(looks_like("2024/01/01 10:00:00 x"));
        assert!(!looks_like("Nov 21 13:31:27 x"));
    }
}
