//! Parsers that turn log lines into fields, time formats, and canonical log levels.
//!
//! A [`Parser`] is one `[[filters]]` step of the configuration ([`ParseConfig`]): it takes the
//! line from one field of an event's record (Docker's `log`, by default the first of `log`,
//! `message`, `msg`), parses it in one of the [`Format`]s, merges the fields it found into the
//! record (or under `target`), sets the event time from the time field and writes the
//! canonical [`Level`] to `level`. It is compiled once and shared by every thread.
//!
//! **Nothing is dropped.** A line that does not parse stays as it was, in its field; the event
//! gets a `parse_error` field with a short reason, and [`Parser::apply`] returns the reason so
//! that the caller counts it. The same happens, after a successful parse, when the time field
//! matches none of the formats (the time field is then kept and the event time left alone) or
//! a `types` cast fails (the value is kept uncast). A line that is not UTF-8 (a [`Value::Bin`])
//! is parsed from its lossy text (U+FFFD for bad bytes) and always marked
//! `line is not UTF-8; replaced` — its fields are in the record, but they are not the bytes that
//! were sent, which an operator should be able to find and count. Several reasons are joined
//! with `"; "`. One trailing `\n` or `\r\n` is removed before parsing.
//!
//! Parsing is linear in the line: hand-written byte scanners for everything but `regex`, whose
//! `regex` crate guarantees linear time (no catastrophic backtracking), and merging that stays
//! linear for lines with millions of fields.
//!
//! # Formats and the fields they write
//!
//! | format | fields | default time field → formats |
//! |--------|--------|-------------------------------|
//! | `json` | the object's members; nested objects as maps, numbers as `Int`/`UInt`/`Float` | first of `time`, `timestamp`, `ts`, `@timestamp` → `rfc3339`, `epoch`, `epoch_ms`, `epoch_us`, `epoch_ns` |
//! | `logfmt` | `key=value` pairs as strings, bare keys as `true` (see [logfmt](#logfmt)) | as `json` |
//! | `regex` | the pattern's named groups (unmatched optional groups are left out) | `time` → `rfc3339`, `clf`, `epoch`, `epoch_ms` |
//! | `syslog` | `facility`, `severity` (names), `level`, `timestamp`, `hostname`, `app_name`, `proc_id`, `msg_id`, `structured_data` (SD-ID → map of params), `message` ([`syslog`]) | `timestamp` → `rfc3339`, `syslog` |
//! | `apache_common` | `host`, `user`, `time`, `method`, `path`, `protocol`, `code`, `size` (+ `referer`, `agent` when present) | `time` → `clf` |
//! | `apache_combined` | `apache_common`'s + `referer`, `agent` | `time` → `clf` |
//! | `nginx_combined` | `apache_combined`'s + `forwarded_for` when the line has nginx's `main` `"$http_x_forwarded_for"` | `time` → `clf` |
//! | `nginx_error` | `time`, `severity`, `pid`, `tid`, `cid`, `message`, `client`, `server`, `request`, `upstream`, `host`, `referrer`, … | `time` → `%Y/%m/%d %H:%M:%S` |
//! | `tle` | `time`, `level`, `logger` (env_logger's `[time LEVEL target]` only), `message` | `time` → `rfc3339`, `%Y/%m/%d %H:%M:%S%.f` |
//! | `plain` | `message` | none |
//! | `auto` | `json` if the line's first byte is `{`, else `syslog` if it starts with `<digits>`, else `tle` if it starts with a timestamp and reads as one, else `plain` | the chosen format's |
//!
//! The access log names are those of Fluent Bit's `apache2` and `apache` parsers (`host`,
//! `user`, `time`, `method`, `path`, `code`, `size`, `referer`, `agent`), so dashboards and
//! queries written for Fluent Bit keep working; `protocol` and `forwarded_for` are additions.
//! `code` and `size` are integers. See [access logs](#access-logs) for odd request lines.
//!
//! In `auto`, a line that looks like JSON or syslog but does not parse is a parse error (kept
//! and marked); a line that looks like nothing is `plain`, which is not an error.
//!
//! After parsing, in this order: `types` casts the named fields; the time field (the first of
//! the candidates that is present, or `time_field`) is read with the time formats
//! ([`time`]) into the event time and removed unless `keep_time_field`; the level field
//! (`level_field`, or the first present of `level`, `severity`, `lvl`, `loglevel`, `log_level`,
//! `levelname`, `priority`) is normalised with [`Level::parse`] (numbers with
//! [`Level::from_number`]) into `level` — beside the parsed fields, or at the top of the record
//! when `target` is set, where selectors look for it; a level nobody knows is left as it is.
//! Then the fields are merged into the record (a field of the same name is replaced in place,
//! new ones are appended) or set as one map under `target`, and the source field is removed
//! unless `keep_original` or a parsed field took its name.
//!
//! # logfmt
//!
//! Keys are runs of bytes other than space, tab, `=` and `"`. A value is bare (up to the next
//! space or tab; it may contain `=`) or double-quoted with Go escapes (`\"`, `\\`, `\n`,
//! `\t`, `\uXXXX`, …; an unknown escape is kept as written). `key=` is the empty string, a
//! bare key is `true`. Values stay strings (logfmt has no types; cast them with `types`). A
//! line needs at least one `key=value` pair, so that a plain sentence is an error rather than a
//! row of bare keys. A repeated key keeps its first position and its last value.
//!
//! # JSON
//!
//! The line must be one object (an array, string or number is an error: `JSON line is an
//! array, not an object`); it is read by `serde_json` straight into record values. Nested
//! objects are maps, integers `Int` (negative) or `UInt`, other numbers `Float`; nesting stops
//! at serde_json's 128 levels (an error). A repeated key keeps its first position and its
//! last value.
//!
//! # Access logs
//!
//! Quoted fields are kept as the server wrote them (nginx writes `"` as `\x22` and non-ASCII
//! bytes as `\xHH`; Apache's `\"` does not end a field). The request line gives `method`,
//! `path` and `protocol` when it has that shape (`GET /a b HTTP/1.1` gives the path `/a b`,
//! `GET /` no protocol); a one-word request (`GARBAGE`, a TLS handshake sent to a plain-text
//! port) is the `method`; `-` gives none. `size` `-` (Apache's "no body") is 0; a `code` or
//! `size` that is not a number stays a string. The identd field (always `-`) is not kept.
//!
//! # nginx error log
//!
//! `2026/11/21 13:31:17 [error] 14705#14705: *12 open() "/x" failed (2: No such file or
//! directory), client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "h"`
//! gives `time`, `severity` (nginx's word; `level` is derived from it), `pid`, `tid`, `cid`
//! (the `*12`, when present), `message`, and the context nginx appends under its own names
//! (`client`, `server`, `request`, `subrequest`, `upstream`, `host`, `referrer`, …, quotes
//! removed). nginx does not escape the message, which may hold quotes and bytes that are not
//! UTF-8; it cuts lines at 2048 bytes, so the last quoted value may lack its closing quote (it
//! then runs to the end of the line). nginx writes local time without a zone: set `timezone`.
//!
//! # tle
//!
//! A timestamp (`YYYY-MM-DD` or `YYYY/MM/DD`, `T` or a space, `HH:MM:SS`, an optional fraction
//! after `.` or `,`, an optional zone), optionally in `[…]`, then a level word, then the
//! message: `2024-01-01T10:00:00.123Z ERROR [main] msg`, `2024-01-01 10:00:00,123 WARN msg`
//! (Python logging), `[2024-01-01 10:00:00] ERROR: msg`, `[2024-01-01T10:00:00Z INFO
//! my_crate] msg` (env_logger; `my_crate` becomes `logger`), `2024/01/01 10:00:00 msg` (Go's
//! `log`, no level). The level word must be one [`Level::parse`] knows and at least three
//! letters, so that a message opening with "A" or "30" is not taken for a level.
//!
//! # Parse errors
//!
//! An event without the field is left untouched and is not an error (as with Fluent Bit's
//! parser filter). The reasons are short and start with what failed:
//! `field "log" holds a map, not a line`, `invalid JSON at column 5: …`, `JSON line is an
//! array, not an object`, `logfmt: no key=value pair`, `no match for regex`, `no match for
//! apache_common: expected '[' at column 17`, `syslog: invalid PRI <999>: above 191`, `tle: no
//! timestamp at the start of the line`, `time "x" matches none of rfc3339, epoch`, `types:
//! status "abc" is not an int`, `line is not UTF-8; replaced`.

#![deny(missing_docs)]

mod access;
mod json;
pub mod level;
mod logfmt;
pub mod syslog;
pub mod time;
mod tle;

use std::collections::{BTreeMap, HashMap};

use flumen_event::record::{Event, Record, Value};
use serde::Deserialize;

pub use level::{LEVEL_FIELD, Level};
pub use time::TimeParser;

/// The field a parse failure is reported in.
pub const PARSE_ERROR_FIELD: &str = "parse_error";

/// The reason given for a line that was not UTF-8.
pub const NOT_UTF8: &str = "line is not UTF-8; replaced";

/// Where the line is looked for when `field` is not set: the first of these that is present.
pub const DEFAULT_SOURCE_FIELDS: [&str; 3] = ["log", "message", "msg"];

/// Where the level is looked for when `level_field` is not set.
pub const DEFAULT_LEVEL_FIELDS: [&str; 7] = [
    "level",
    "severity",
    "lvl",
    "loglevel",
    "log_level",
    "levelname",
    "priority",
];

/// The line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// `key=value key="quoted value"`.
    Logfmt,
    /// A regular expression with named captures (`pattern`).
    Regex,
    /// RFC 5424 or RFC 3164 syslog.
    Syslog,
    /// Apache/NCSA Common Log Format.
    ApacheCommon,
    /// Apache/NCSA Combined Log Format.
    ApacheCombined,
    /// nginx's `combined` (the same as Apache's), or its `main` (plus X-Forwarded-For).
    NginxCombined,
    /// nginx's error log.
    NginxError,
    /// Timestamp, level, message.
    Tle,
    /// The line as `message`.
    Plain,
    /// JSON, syslog, tle or plain, by the line's shape.
    Auto,
}

impl Format {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Logfmt => "logfmt",
            Format::Regex => "regex",
            Format::Syslog => "syslog",
            Format::ApacheCommon => "apache_common",
            Format::ApacheCombined => "apache_combined",
            Format::NginxCombined => "nginx_combined",
            Format::NginxError => "nginx_error",
            Format::Tle => "tle",
            Format::Plain => "plain",
            Format::Auto => "auto",
        }
    }

    /// The time field candidates and formats used when the configuration names none.
    fn default_time(self) -> (&'static [&'static str], &'static [&'static str]) {
        const EPOCHS: &[&str] = &["rfc3339", "epoch", "epoch_ms", "epoch_us", "epoch_ns"];
        match self {
            Format::Json | Format::Logfmt => (&["time", "timestamp", "ts", "@timestamp"], EPOCHS),
            Format::Regex => (&["time"], &["rfc3339", "clf", "epoch", "epoch_ms"]),
            Format::Syslog => (&["timestamp"], &["rfc3339", "syslog"]),
            Format::ApacheCommon | Format::ApacheCombined | Format::NginxCombined => {
                (&["time"], &["clf"])
            }
            Format::NginxError => (&["time"], &["%Y/%m/%d %H:%M:%S"]),
            Format::Tle => (&["time"], &["rfc3339", "%Y/%m/%d %H:%M:%S%.f"]),
            Format::Plain | Format::Auto => (&[], &[]),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One parse step's settings: a `[[filters]]` table of the configuration without its `type`,
/// `match` and `name` keys.
///
/// ```toml
/// format = "nginx_combined"
/// field = "log"                 # default: the first of log, message, msg
/// time_formats = ["clf"]        # default: per format
/// keep_original = true
/// types = { size = "int" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// The line format.
    pub format: Format,
    /// The field holding the line; default: the first of `log`, `message`, `msg` present.
    #[serde(default)]
    pub field: Option<String>,
    /// The regular expression of the `regex` format (`regex` crate syntax; named groups, as
    /// `(?P<name>…)` or `(?<name>…)`, become fields).
    #[serde(default)]
    pub pattern: Option<String>,
    /// The parsed field holding the time; default per format (see the crate documentation).
    /// An empty string turns time extraction off.
    #[serde(default)]
    pub time_field: Option<String>,
    /// Time formats, tried in order ([`time`]); default per format.
    #[serde(default)]
    pub time_formats: Vec<String>,
    /// The UTC offset of times written without a zone (`+02:00`); default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Keep the time field after it became the event time (default: remove it).
    #[serde(default)]
    pub keep_time_field: bool,
    /// Keep the source field after a successful parse (default: remove it).
    #[serde(default)]
    pub keep_original: bool,
    /// Put the parsed fields in a map under this field instead of merging them at the top.
    #[serde(default)]
    pub target: Option<String>,
    /// The parsed field holding the level; default: the first of [`DEFAULT_LEVEL_FIELDS`]
    /// present.
    #[serde(default)]
    pub level_field: Option<String>,
    /// Casts of parsed fields: `"int"`, `"float"`, `"bool"` or `"string"`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
}

impl ParseConfig {
    /// Settings with every default, for `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            field: None,
            pattern: None,
            time_field: None,
            time_formats: Vec::new(),
            timezone: None,
            keep_time_field: false,
            keep_original: false,
            target: None,
            level_field: None,
            types: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cast {
    Int,
    Float,
    Bool,
    Str,
}

impl Cast {
    fn name(self) -> &'static str {
        match self {
            Cast::Int => "an int",
            Cast::Float => "a float",
            Cast::Bool => "a bool",
            Cast::Str => "a string",
        }
    }

    fn apply(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (Cast::Str, v) => Some(Value::Str(v.to_text().into_owned())),
            (Cast::Int, Value::Int(_) | Value::UInt(_)) => Some(value.clone()),
            (Cast::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                Some(Value::Int(*f as i64))
            }
            (Cast::Int, Value::Str(s)) => {
                let s = s.trim();
                s.parse::<i64>()
                    .map(Value::Int)
                    .or_else(|_| s.parse::<u64>().map(Value::UInt))
                    .ok()
            }
            (Cast::Float, Value::Int(n)) => Some(Value::Float(*n as f64)),
            (Cast::Float, Value::UInt(n)) => Some(Value::Float(*n as f64)),
            (Cast::Float, Value::Float(_)) => Some(value.clone()),
            (Cast::Float, Value::Str(s)) => s.trim().parse::<f64>().ok().map(Value::Float),
            (Cast::Bool, Value::Bool(_)) => Some(value.clone()),
            (Cast::Bool, Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            (Cast::Bool, Value::Int(n)) => Some(Value::Bool(*n != 0)),
            (Cast::Bool, Value::UInt(n)) => Some(Value::Bool(*n != 0)),
            _ => None,
        }
    }
}

/// Where the time comes from and how it is read.
#[derive(Debug)]
struct TimeStep {
    fields: Vec<String>,
    parser: TimeParser,
}

#[derive(Debug)]
struct RegexEngine {
    regex: regex::Regex,
    /// Capture group index and name, for the named groups.
    names: Vec<(usize, String)>,
}

/// A compiled parse step; see the [crate documentation](crate).
#[derive(Debug)]
pub struct Parser {
    format: Format,
    regex: Option<RegexEngine>,
    field: Option<String>,
    /// The time step of each format this parser may use (several for `auto`).
    time: Vec<(Format, Option<TimeStep>)>,
    keep_time_field: bool,
    keep_original: bool,
    target: Option<String>,
    level_field: Option<String>,
    casts: Vec<(String, Cast)>,
}

fn time_step(format: Format, config: &ParseConfig) -> Result<Option<TimeStep>, String> {
    let (default_fields, default_formats) = format.default_time();
    let fields: Vec<String> = match &config.time_field {
        Some(f) if f.is_empty() => return Ok(None),
        Some(f) => vec![f.clone()],
        None => default_fields.iter().map(|s| (*s).to_owned()).collect(),
    };
    if fields.is_empty() {
        return Ok(None);
    }
    let formats: Vec<String> = if config.time_formats.is_empty() {
        default_formats.iter().map(|s| (*s).to_owned()).collect()
    } else {
        config.time_formats.clone()
    };
    let parser = TimeParser::new(&formats, config.timezone.as_deref())?;
    Ok(Some(TimeStep { fields, parser }))
}

impl Parser {
    /// Compiles a parse step. Errors name the setting: `pattern: regex parse error: …`,
    /// `time_formats: unknown format …`, `types.status: unknown type …`.
    pub fn new(config: &ParseConfig) -> Result<Parser, String> {
        let regex = match (config.format, &config.pattern) {
            (Format::Regex, None) => return Err("pattern: required by the regex format".to_owned()),
            (Format::Regex, Some(pattern)) => {
                let regex = regex::Regex::new(pattern).map_err(|e| format!("pattern: {e}"))?;
                let names: Vec<(usize, String)> = regex
                    .capture_names()
                    .enumerate()
                    .filter_map(|(i, name)| name.map(|n| (i, n.to_owned())))
                    .collect();
                if names.is_empty() {
                    return Err(
                        "pattern: has no named group; name the parts to keep with (?<name>...)"
                            .to_owned(),
                    );
                }
                Some(RegexEngine { regex, names })
            }
            (_, Some(_)) => {
                return Err(format!(
                    "pattern: only the regex format takes a pattern, not {}",
                    config.format
                ));
            }
            (_, None) => None,
        };
        let formats: &[Format] = if config.format == Format::Auto {
            &[Format::Json, Format::Syslog, Format::Tle, Format::Plain]
        } else {
            std::slice::from_ref(&config.format)
        };
        let mut time = Vec::with_capacity(formats.len());
        for &format in formats {
            time.push((format, time_step(format, config)?));
        }
        // A time setting on a format without a time field still has to be valid.
        if let Some(tz) = &config.timezone {
            TimeParser::new(&["rfc3339".to_owned()], Some(tz))?;
        }
        if !config.time_formats.is_empty() {
            TimeParser::new(&config.time_formats, None)?;
        }
        let mut casts = Vec::with_capacity(config.types.len());
        for (field, ty) in &config.types {
            let cast = match ty.as_str() {
                "int" | "integer" => Cast::Int,
                "float" => Cast::Float,
                "bool" | "boolean" => Cast::Bool,
                "string" => Cast::Str,
                other => {
                    return Err(format!(
                        "types.{field}: unknown type {other:?}; expected int, float, bool or string"
                    ));
                }
            };
            casts.push((field.clone(), cast));
        }
        for (name, value) in [("field", &config.field), ("target", &config.target)] {
            if value.as_deref() == Some("") {
                return Err(format!("{name}: must not be empty"));
            }
        }
        Ok(Parser {
            format: config.format,
            regex,
            field: config.field.clone(),
            time,
            keep_time_field: config.keep_time_field,
            keep_original: config.keep_original,
            target: config.target.clone(),
            level_field: config.level_field.clone(),
            casts,
        })
    }

    /// The configured format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Parses the line in the configured field of `event.record` and merges the result into
    /// the event: fields, event time, level. On failure the event keeps its line, gets a
    /// `parse_error` field with the reason, and the reason is returned (see the
    /// [crate documentation](crate)).
    pub fn apply(&self, event: &mut Event) -> Result<(), String> {
        let record = &mut event.record;
        // An event without the field is not this parser's business (another sender, another
        // shape): it passes untouched, as with Fluent Bit's parser filter.
        let source: &str = match &self.field {
            Some(name) if record.get(name).is_some() => name,
            Some(_) => return Ok(()),
            None => match DEFAULT_SOURCE_FIELDS
                .iter()
                .find(|name| record.get(name).is_some())
            {
                Some(name) => name,
                None => return Ok(()),
            },
        };
        let slot = record.get_mut(source).expect("checked above");
        let original = std::mem::replace(slot, Value::Null);
        let mut errors: Vec<String> = Vec::new();
        let lossy;
        let text: &str = match &original {
            Value::Str(s) => s,
            Value::Bin(b) => {
                errors.push(NOT_UTF8.to_owned());
                lossy = String::from_utf8_lossy(b);
                &lossy
            }
            other => {
                let kind = kind_name(other);
                *record.get_mut(source).expect("still there") = original;
                return fail(record, format!("field {source:?} holds {kind}, not a line"));
            }
        };
        let line = strip_line_ending(text);
        let mut fields = Vec::new();
        let parsed = self.parse_line(line, &mut fields);
        let format = match parsed {
            Ok(format) => format,
            Err(reason) => {
                *record.get_mut(source).expect("still there") = original;
                errors.push(reason);
                return fail(record, errors.join("; "));
            }
        };

        self.cast(&mut fields, &mut errors);
        if let Some(step) = self.time_step(format) {
            read_time(
                step,
                &mut fields,
                &mut event.time,
                self.keep_time_field,
                &mut errors,
            );
        }
        let level = self.level(&fields);
        let record = &mut event.record;
        let source_reused =
            fields.iter().any(|(k, _)| k == source) || self.target.as_deref() == Some(source);
        if self.keep_original || source_reused {
            *record.get_mut(source).expect("still there") = original;
        } else {
            drop(original);
            record.remove(source);
        }
        match &self.target {
            None => {
                if let Some(level) = level {
                    set_field(&mut fields, LEVEL_FIELD, Value::from(level.as_str()));
                }
                merge(record, fields);
            }
            Some(target) => {
                record.insert(target.as_str(), Value::Map(dedupe(fields)));
                if let Some(level) = level {
                    record.insert(LEVEL_FIELD, level.as_str());
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            fail(record, errors.join("; "))
        }
    }

    /// Parses `line` into `fields`; returns the format used (for `auto`, the one chosen).
    fn parse_line(&self, line: &str, fields: &mut Vec<(String, Value)>) -> Result<Format, String> {
        let format = match self.format {
            Format::Auto => {
                // The first byte, not the first non-space one: an indented `{` is a code line
                // of a traceback more often than JSON (seen in tests/data).
                let b = line.as_bytes();
                if b.first() == Some(&b'{') {
                    Format::Json
                } else if b.first() == Some(&b'<') && b.get(1).is_some_and(u8::is_ascii_digit) {
                    Format::Syslog
                } else if tle::looks_like(line) && tle::parse_tle(line, fields).is_ok() {
                    return Ok(Format::Tle);
                } else {
                    fields.clear();
                    Format::Plain
                }
            }
            format => format,
        };
        let result = match format {
            Format::Json => json::parse_json(line, fields),
            Format::Logfmt => logfmt::parse_logfmt(line, fields),
            Format::Regex => self.parse_regex(line, fields),
            Format::Syslog => syslog::parse_line(line).map(|m| fields.extend(m.into_fields())),
            Format::ApacheCommon => access::parse_access(line, access::Flavor::Common, fields),
            Format::ApacheCombined => access::parse_access(line, access::Flavor::Combined, fields),
            Format::NginxCombined => access::parse_access(line, access::Flavor::Nginx, fields),
            Format::NginxError => access::parse_nginx_error(line, fields),
            Format::Tle => tle::parse_tle(line, fields),
            Format::Plain | Format::Auto => {
                fields.push(("message".to_owned(), Value::from(line)));
                Ok(())
            }
        };
        result.map(|()| format).map_err(|reason| {
            fields.clear();
            match format {
                Format::Json | Format::Regex => reason,
                Format::ApacheCommon
                | Format::ApacheCombined
                | Format::NginxCombined
                | Format::NginxError => format!("no match for {format}: {reason}"),
                _ => format!("{format}: {reason}"),
            }
        })
    }

    fn parse_regex(&self, line: &str, fields: &mut Vec<(String, Value)>) -> Result<(), String> {
        let engine = self
            .regex
            .as_ref()
            .expect("regex format has a compiled pattern");
        let mut locations = engine.regex.capture_locations();
        if engine.regex.captures_read(&mut locations, line).is_none() {
            return Err("no match for regex".to_owned());
        }
        fields.reserve(engine.names.len());
        for (index, name) in &engine.names {
            if let Some((start, end)) = locations.get(*index) {
                fields.push((name.clone(), Value::from(&line[start..end])));
            }
        }
        Ok(())
    }

    fn time_step(&self, format: Format) -> Option<&TimeStep> {
        self.time
            .iter()
            .find(|(f, _)| *f == format)
            .and_then(|(_, step)| step.as_ref())
    }

    fn cast(&self, fields: &mut [(String, Value)], errors: &mut Vec<String>) {
        for (name, cast) in &self.casts {
            for (key, value) in fields.iter_mut().filter(|(k, _)| k == name) {
                match cast.apply(value) {
                    Some(cast_value) => *value = cast_value,
                    None => errors.push(format!(
                        "types: {key} {} is not {}",
                        quote_short(&value.to_text()),
                        cast.name()
                    )),
                }
            }
        }
    }

    fn level(&self, fields: &[(String, Value)]) -> Option<Level> {
        let value = match &self.level_field {
            Some(name) => find(fields, name)?,
            None => DEFAULT_LEVEL_FIELDS
                .iter()
                .find_map(|name| find(fields, name))?,
        };
        match value {
            Value::Str(s) => Level::parse(s),
            Value::UInt(n) => Level::from_number(u32::try_from(*n).ok()?),
            Value::Int(n) => Level::from_number(u32::try_from(*n).ok()?),
            _ => None,
        }
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::UInt(_) | Value::Float(_) => "a number",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Time(_) => "a time",
        Value::Ext(..) => "an extension value",
        Value::Str(_) | Value::Bin(_) => "a string",
    }
}

/// Marks the record and returns the reason as the error.
fn fail(record: &mut Record, reason: String) -> Result<(), String> {
    record.insert(PARSE_ERROR_FIELD, reason.as_str());
    Err(reason)
}

fn strip_line_ending(text: &str) -> &str {
    match text.strip_suffix('\n') {
        Some(t) => t.strip_suffix('\r').unwrap_or(t),
        None => text,
    }
}

fn find<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Sets `name` in a field list: replaces the first such field, or appends.
fn set_field(fields: &mut Vec<(String, Value)>, name: &str, value: Value) {
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some((_, slot)) => *slot = value,
        None => fields.push((name.to_owned(), value)),
    }
}

/// `"text"`, or its first 64 characters and `…"` for long values.
fn quote_short(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Reads the event time from the first time field present; removes that field unless `keep`.
fn read_time(
    step: &TimeStep,
    fields: &mut Vec<(String, Value)>,
    time: &mut flumen_event::EventTime,
    keep: bool,
    errors: &mut Vec<String>,
) {
    let Some(index) = step
        .fields
        .iter()
        .find_map(|name| fields.iter().position(|(k, _)| k == name))
    else {
        return;
    };
    match step.parser.parse_value(&fields[index].1) {
        Some(t) => {
            *time = t;
            if !keep {
                fields.remove(index);
            }
        }
        None => errors.push(format!(
            "time {} matches none of {}",
            quote_short(&fields[index].1.to_text()),
            step.parser.names()
        )),
    }
}

/// Above this many parsed fields, merging uses an index instead of a scan per field.
const SMALL_MERGE: usize = 32;

/// Merges fields into the record: a field of the same name is replaced in place, others are
/// appended; within `fields`, the last of a repeated name wins. Linear in the total number of
/// fields even for hostile lines with millions of keys.
fn merge(record: &mut Record, fields: Vec<(String, Value)>) {
    if fields.len() <= SMALL_MERGE {
        for (name, value) in fields {
            record.insert(name, value);
        }
        return;
    }
    let mut all = Vec::with_capacity(record.len() + fields.len());
    record.retain(|name, value| {
        all.push((name.to_owned(), std::mem::replace(value, Value::Null)));
        false
    });
    all.extend(fields);
    *record = Record::from(dedupe(all));
}

/// Removes repeated names, keeping the first position and the last value.
fn dedupe(fields: Vec<(String, Value)>) -> Vec<(String, Value)> {
    if fields.len() <= SMALL_MERGE {
        let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            set_field(&mut out, &name, value);
        }
        return out;
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(fields.len());
    let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        match index.get(&name) {
            Some(&i) => out[i].1 = value,
            None => {
                index.insert(name.clone(), out.len());
                out.push((name, value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
