//! Syslog lines: RFC 5424 and RFC 3164 (BSD), with or without the `<PRI>` prefix.
//!
//! What is accepted, checked against what `logger` (util-linux) and rsyslog really write (see
//! `tests/data/syslog/`):
//!
//! - **RFC 5424**: `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`;
//!   `-` is the nil value of any header field; a UTF-8 BOM opening the message is dropped; the
//!   message is otherwise kept exactly (rsyslog relaying a BSD message in RFC 5424 leaves the
//!   space that followed the tag's colon at its start).
//! - **RFC 3164**: `[<PRI>]TIMESTAMP [HOSTNAME] TAG[PID]: MSG`, where the timestamp is the BSD
//!   `Oct 11 22:14:15` or an RFC 3339 time (rsyslog's `RSYSLOG_FileFormat`, Debian's default for
//!   its files). The hostname is absent when the word after the timestamp already ends in `:`
//!   (what some local loggers send). The tag is a word followed by `:` or `[pid]`; a `tag[pid]`
//!   without the colon is accepted (rsyslog's file templates write tags that way for messages
//!   that arrived as RFC 5424); a lone word without a colon cannot be told from the message and
//!   is left in it. One space after the tag is dropped. A hostname of `-` means none.
//! - A line without `<PRI>` must start with a timestamp; one with `<PRI>` but no timestamp is
//!   read as `TAG: MSG`. `PRI` above 191 (facility 23, severity 7) is an error.

use std::borrow::Cow;

use flumen_event::EventTime;
use flumen_event::record::Value;

use crate::level::Level;

/// Which syslog format a line was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 5424 (`<PRI>1 …`).
    Rfc5424,
    /// RFC 3164, BSD syslog, or a file line in the same shape.
    Rfc3164,
}

/// One structured-data element: `[id name="value" …]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID (`timeQuality`, `exampleSDID@32473`).
    pub id: &'a str,
    /// Its parameters, in order, with `\"`, `\\` and `\]` unescaped.
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// A parsed syslog line, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    /// The format the line was in.
    pub protocol: Protocol,
    /// The facility number (0–23), when the line had a `<PRI>`.
    pub facility: Option<u8>,
    /// The severity number (0 emerg – 7 debug), when the line had a `<PRI>`.
    pub severity: Option<u8>,
    /// The timestamp as written (`2024-01-01T10:00:00.123+02:00`, `Oct 11 22:14:15`).
    pub timestamp: Option<&'a str>,
    /// The HOSTNAME field.
    pub hostname: Option<&'a str>,
    /// APP-NAME (RFC 5424) or the tag (RFC 3164).
    pub app_name: Option<&'a str>,
    /// PROCID (RFC 5424) or the `[pid]` of the tag.
    pub proc_id: Option<&'a str>,
    /// MSGID (RFC 5424 only).
    pub msg_id: Option<&'a str>,
    /// Structured data (RFC 5424 only).
    pub structured_data: Vec<SdElement<'a>>,
    /// The free-form message.
    pub message: &'a str,
}

/// RFC 5424 facility names, by number.
pub const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity keywords, by number (as in `logger -p` and rsyslog).
pub const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl<'a> SyslogMessage<'a> {
    /// The canonical level of the severity.
    pub fn level(&self) -> Option<Level> {
        self.severity.map(Level::from_syslog_severity)
    }

    /// The event time of the timestamp: RFC 3339 as written, a BSD time with the year inferred
    /// and read at `offset_secs` east of UTC.
    pub fn time(&self, offset_secs: i32) -> Option<EventTime> {
        let ts = self.timestamp?;
        crate::time::parse_rfc3339(ts, offset_secs).or_else(|| {
            crate::time::parse_syslog_time(ts, offset_secs, EventTime::now().secs as i64)
        })
    }

    /// The fields, in the order and with the names the `syslog` parser writes: `facility` and
    /// `severity` (names, as in [`FACILITY_NAMES`] and [`SEVERITY_NAMES`]), `level`
    /// (canonical), `timestamp`, `hostname`, `app_name`, `proc_id`, `msg_id`,
    /// `structured_data` (a map of SD-ID → map of parameters) and `message`. Absent parts are
    /// left out; `message` is always there.
    pub fn into_fields(self) -> Vec<(String, Value)> {
        let mut fields = Vec::with_capacity(10);
        if let Some(f) = self.facility {
            fields.push((
                "facility".to_owned(),
                Value::from(FACILITY_NAMES[usize::from(f)]),
            ));
        }
        if let Some(s) = self.severity {
            fields.push((
                "severity".to_owned(),
                Value::from(SEVERITY_NAMES[usize::from(s)]),
            ));
            fields.push((
                crate::level::LEVEL_FIELD.to_owned(),
                Value::from(Level::from_syslog_severity(s).as_str()),
            ));
        }
        for (name, part) in [
            ("timestamp", self.timestamp),
            ("hostname", self.hostname),
            ("app_name", self.app_name),
            ("proc_id", self.proc_id),
            ("msg_id", self.msg_id),
        ] {
            if let Some(part) = part {
                fields.push((name.to_owned(), Value::from(part)));
            }
        }
        if !self.structured_data.is_empty() {
            let elements = self
                .structured_data
                .into_iter()
                .map(|e| {
                    let params = e
                        .params
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), Value::Str(v.into_owned())))
                        .collect();
                    (e.id.to_owned(), Value::Map(params))
                })
                .collect();
            fields.push(("structured_data".to_owned(), Value::Map(elements)));
        }
        fields.push(("message".to_owned(), Value::from(self.message)));
        fields
    }
}

/// Parses one syslog line (without its line ending); see the [module documentation](self).
pub fn parse_line(line: &str) -> Result<SyslogMessage<'_>, String> {
    let mut rest = line;
    let mut pri = None;
    if let Some(after) = rest.strip_prefix('<') {
        let len = after.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 || len > 3 || after.as_bytes().get(len) != Some(&b'>') {
            return Err("invalid PRI: expected <0> to <191>".to_owned());
        }
        let value: u16 = after[..len].parse().expect("1 to 3 digits");
        if value > 191 {
            return Err(format!("invalid PRI <{value}>: above 191"));
        }
        pri = Some(value as u8);
        rest = &after[len + 1..];
    }
    let (facility, severity) = match pri {
        Some(p) => (Some(p >> 3), Some(p & 7)),
        None => (None, None),
    };
    // RFC 5424: a version number and a space right after PRI.
    let version_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if pri.is_some()
        && (1..=2).contains(&version_len)
        && rest.as_bytes().get(version_len) == Some(&b' ')
    {
        return parse_5424(&rest[version_len + 1..], facility, severity);
    }
    parse_3164(rest, pri.is_some(), facility, severity)
}

/// Splits off one space-delimited header field; `-` is nil.
fn header_field<'a>(rest: &mut &'a str, name: &str) -> Result<Option<&'a str>, String> {
    let text = *rest;
    let end = memchr::memchr(b' ', text.as_bytes())
        .ok_or_else(|| format!("RFC 5424 header ends before {name}"))?;
    *rest = &text[end + 1..];
    let field = &text[..end];
    if field.is_empty() {
        return Err(format!("RFC 5424 header has an empty {name}"));
    }
    Ok((field != "-").then_some(field))
}

fn parse_5424<'a>(
    mut rest: &'a str,
    facility: Option<u8>,
    severity: Option<u8>,
) -> Result<SyslogMessage<'a>, String> {
    let timestamp = header_field(&mut rest, "HOSTNAME")?;
    let hostname = header_field(&mut rest, "APP-NAME")?;
    let app_name = header_field(&mut rest, "PROCID")?;
    let proc_id = header_field(&mut rest, "MSGID")?;
    // MSGID may end the line only when STRUCTURED-DATA follows; it always does.
    let msg_id = header_field(&mut rest, "STRUCTURED-DATA")?;
    let mut structured_data = Vec::new();
    let bytes = rest.as_bytes();
    let sd_end = if bytes.first() == Some(&b'-') {
        1
    } else if bytes.first() == Some(&b'[') {
        parse_sd(rest, &mut structured_data)?
    } else {
        return Err("RFC 5424 STRUCTURED-DATA is neither - nor [".to_owned());
    };
    let message = match &rest[sd_end..] {
        "" => "",
        m if m.starts_with(' ') => {
            let m = &m[1..];
            m.strip_prefix('\u{feff}').unwrap_or(m)
        }
        _ => return Err("RFC 5424 STRUCTURED-DATA is not followed by a space".to_owned()),
    };
    Ok(SyslogMessage {
        protocol: Protocol::Rfc5424,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id,
        structured_data,
        message,
    })
}

/// Reads `[id k="v" …][…]` from the start of `text`; returns where it ended.
fn parse_sd<'a>(text: &'a str, out: &mut Vec<SdElement<'a>>) -> Result<usize, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let bad =
        |what: &str, at: usize| format!("RFC 5424 STRUCTURED-DATA: {what} at column {}", at + 1);
    while b.get(i) == Some(&b'[') {
        i += 1;
        let id_start = i;
        while i < b.len() && !matches!(b[i], b' ' | b']' | b'=' | b'"') {
            i += 1;
        }
        if i == id_start {
            return Err(bad("empty SD-ID", i));
        }
        let id = &text[id_start..i];
        let mut params = Vec::new();
        loop {
            match b.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => i += 1,
                _ => return Err(bad("expected a space or ]", i)),
            }
            let name_start = i;
            while i < b.len() && !matches!(b[i], b' ' | b']' | b'=' | b'"') {
                i += 1;
            }
            if i == name_start || b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
                return Err(bad("expected name=\"value\"", i));
            }
            let name = &text[name_start..i];
            i += 2;
            let value_start = i;
            let mut escaped = false;
            loop {
                match b.get(i) {
                    None => return Err(bad("unterminated parameter value", i)),
                    Some(b'\\') => {
                        escaped = true;
                        i += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            let raw = text
                .get(value_start..i)
                .ok_or_else(|| bad("unterminated parameter value", i))?;
            i += 1;
            let value = if escaped {
                Cow::Owned(unescape_sd(raw))
            } else {
                Cow::Borrowed(raw)
            };
            params.push((name, value));
        }
        out.push(SdElement { id, params });
    }
    Ok(i)
}

/// `\"`, `\\` and `\]` stand for the character; any other backslash is kept (RFC 5424 §6.3.3).
fn unescape_sd(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\' | ']')) => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The length of a timestamp opening `text`: BSD (`Oct 11 22:14:15[.frac]`) or an RFC 3339
/// word.
fn timestamp_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if b.first()?.is_ascii_digit() {
        let end = memchr::memchr(b' ', b).unwrap_or(b.len());
        return crate::time::parse_rfc3339(&text[..end], 0).map(|_| end);
    }
    if !b.first()?.is_ascii_alphabetic() {
        return None;
    }
    // "Mmm dd hh:mm:ss" with the day space-padded or not.
    let mut i = 3;
    if b.get(i) != Some(&b' ') {
        return None;
    }
    while b.get(i) == Some(&b' ') && i < 5 {
        i += 1;
    }
    let day = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&day) {
        return None;
    }
    i += day;
    let t = b.get(i..i + 9)?;
    let two_digits = |at: usize| t[at].is_ascii_digit() && t[at + 1].is_ascii_digit();
    if t[0] != b' '
        || t[3] != b':'
        || t[6] != b':'
        || !two_digits(1)
        || !two_digits(4)
        || !two_digits(7)
    {
        return None;
    }
    crate::time::month_number(&b[..3])?;
    i += 9;
    if b.get(i) == Some(&b'.') {
        i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    Some(i)
}

fn parse_3164(
    line: &str,
    had_pri: bool,
    facility: Option<u8>,
    severity: Option<u8>,
) -> Result<SyslogMessage<'_>, String> {
    let mut rest = line;
    let mut timestamp = None;
    let mut hostname = None;
    if let Some(len) = timestamp_len(rest) {
        timestamp = Some(&rest[..len]);
        rest = rest[len..].trim_start_matches(' ');
        // The hostname, unless the next word is already the tag.
        let word_end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        let word = &rest[..word_end];
        if !word.is_empty() && !word.ends_with(':') && word_end < rest.len() {
            hostname = (word != "-").then_some(word);
            rest = &rest[word_end + 1..];
        }
    } else if !had_pri {
        return Err("not a syslog line: no <PRI> and no timestamp".to_owned());
    }
    let (app_name, proc_id, message) = split_tag(rest);
    Ok(SyslogMessage {
        protocol: Protocol::Rfc3164,
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        proc_id,
        msg_id: None,
        structured_data: Vec::new(),
        message,
    })
}

/// `tag[pid]: msg`, `tag: msg`, `tag[pid] msg` → (tag, pid, msg); otherwise all is message.
fn split_tag(text: &str) -> (Option<&str>, Option<&str>, &str) {
    let b = text.as_bytes();
    let tag_len = b
        .iter()
        .take_while(|c| !matches!(c, b':' | b'[' | b' ' | b']'))
        .count();
    // A tag is at most 48 bytes in practice (RFC 3164 says 32); longer words are message.
    if tag_len == 0 || tag_len > 48 {
        return (None, None, text);
    }
    let tag = &text[..tag_len];
    let mut i = tag_len;
    let mut pid = None;
    if b.get(i) == Some(&b'[') {
        let Some(close) = memchr::memchr(b']', &b[i..]) else {
            return (None, None, text);
        };
        pid = Some(&text[i + 1..i + close]);
        i += close + 1;
    }
    match b.get(i) {
        Some(b':') => i += 1,
        Some(b' ') if pid.is_some() => {}
        None if pid.is_some() => {}
        _ => return (None, None, text),
    }
    if b.get(i) == Some(&b' ') {
        i += 1;
    }
    (Some(tag), pid, &text[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_with_structured_data() {
        let m = parse_line(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
             [esc@1 note=\"say \\\"hi\\\" [ok\\] back\\\\slash \\x\"] \u{feff}An application event",
        )
        .unwrap();
        assert_eq!(m.protocol, Protocol::Rfc5424);
        assert_eq!((m.facility, m.severity), (Some(20), Some(5)));
        assert_eq!(m.level(), Some(Level::Info));
        assert_eq!(m.timestamp, Some("2003-10-11T22:14:15.003Z"));
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!(m.app_name, Some("evntslog"));
        assert_eq!(m.proc_id, None);
        assert_eq!(m.msg_id, Some("ID47"));
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.structured_data[0].id, "exampleSDID@32473");
        assert_eq!(
            m.structured_data[0].params[1],
            ("eventSource", Cow::Borrowed("Application"))
        );
        assert_eq!(
            m.structured_data[1].params[0].1,
            "say \"hi\" [ok] back\\slash \\x"
        );
        assert_eq!(m.message, "An application event");
        assert_eq!(
            m.time(0).unwrap().to_string(),
            "2003-10-11T22:14:15.003000000Z"
        );
        let fields = m.into_fields();
        let names: Vec<_> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "facility",
                "severity",
                "level",
                "timestamp",
                "hostname",
                "app_name",
                "msg_id",
                "structured_data",
                "message"
            ]
        );
        assert_eq!(fields[0].1, Value::from("local4"));
        assert_eq!(fields[1].1, Value::from("notice"));
        assert_eq!(fields[2].1, Value::from("INFO"));
    }

    #[test]
    fn rfc5424_nil_fields_and_no_message() {
        let m = parse_line("<13>1 - - - - - -").unwrap();
        assert_eq!(m.timestamp, None);
        assert_eq!(m.hostname, None);
        assert_eq!(m.message, "");
        let m = parse_line("<13>1 - - myapp - - -  two spaces").unwrap();
        assert_eq!(m.message, " two spaces");
        assert!(parse_line("<13>1 - - myapp").is_err());
        assert!(parse_line("<13>1 - - a b c [x").is_err());
        assert!(parse_line("<13>1 - - a b c [x a=\"1] m").is_err());
        assert!(parse_line("<13>1 - - a b c [x a=1] m").is_err());
        assert!(parse_line("<13>1 - - a b c []").is_err());
        assert!(parse_line("<13>1 - - a b c [x]m").is_err());
        assert!(parse_line("<13>1 - - a b c x").is_err());
    }

    #[test]
    fn rfc3164_shapes() {
        let m = parse_line("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick")
            .unwrap();
        assert_eq!(m.protocol, Protocol::Rfc3164);
        assert_eq!((m.facility, m.severity), (Some(4), Some(2)));
        assert_eq!(m.timestamp, Some("Oct 11 22:14:15"));
        assert_eq!(m.hostname, Some("mymachine"));
        assert_eq!(m.app_name, Some("su"));
        assert_eq!(m.proc_id, Some("230"));
        assert_eq!(m.message, "'su root' failed for lonvick");

        // No hostname: the word after the time is the tag.
        let m = parse_line("<13>Oct  1 22:14:15 myapp: hello").unwrap();
        assert_eq!(m.timestamp, Some("Oct  1 22:14:15"));
        assert_eq!(
            (m.hostname, m.app_name, m.message),
            (None, Some("myapp"), "hello")
        );

        // A file line: no PRI, RFC 3339 time.
        let m =
            parse_line("2026-11-21T13:31:27.265557+00:00 vm postfix/smtpd[16217] connect from x")
                .unwrap();
        assert_eq!(m.facility, None);
        assert_eq!(m.timestamp, Some("2026-11-21T13:31:27.265557+00:00"));
        assert_eq!(m.app_name, Some("postfix/smtpd"));
        assert_eq!(m.proc_id, Some("16217"));
        assert_eq!(m.message, "connect from x");

        // A tag without colon or pid cannot be told from the message.
        let m = parse_line("Nov 21 13:31:27 vm myapp application started").unwrap();
        assert_eq!((m.app_name, m.message), (None, "myapp application started"));

        // PRI, no timestamp.
        let m = parse_line("<13>myapp: hi").unwrap();
        assert_eq!(
            (m.timestamp, m.app_name, m.message),
            (None, Some("myapp"), "hi")
        );
        let m = parse_line("<13>").unwrap();
        assert_eq!(m.message, "");
        let m = parse_line("Nov 21 13:31:27 - myapp nothing").unwrap();
        assert_eq!(m.hostname, None);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert_eq!(
            parse_line("<999>1 - - - - - -").unwrap_err(),
            "invalid PRI <999>: above 191"
        );
        assert!(parse_line("<1x>hello").is_err());
        assert!(parse_line("<>hello").is_err());
        assert!(parse_line("<1234>hello").is_err());
        assert!(parse_line("hello world").is_err());
        assert!(parse_line("").is_err());
        assert!(parse_line("<191>x").is_ok());
    }
}
