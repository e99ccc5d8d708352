//! How the `parse_line` target reads its input, shared with `gen_seeds` so that seeds are laid
//! out exactly as the target expects.
//!
//! Byte 0 selects the parser: `byte0 & 0x0f` indexes [`FORMATS`] (modulo its 11 entries, so
//! 11–15 are 0–4 again); bit 4 (`0x10`) sets `keep_original`; bit 5 (`0x20`) sets
//! `target = "parsed"` (the fields go into one map instead of the top of the record). Bits 6
//! and 7 are ignored. The rest of the input is the line: a `Value::Str` in the event's `log`
//! field when it is UTF-8, a `Value::Bin` otherwise.

// The targets and gen_seeds each use a part of this module.
#![allow(dead_code)]

use flumen_event::record::Value;
use flumen_parse::{Format, ParseConfig};

/// Every format, in the order byte 0 indexes them.
pub const FORMATS: [Format; 11] = [
    Format::Json,
    Format::Logfmt,
    Format::Regex,
    Format::Syslog,
    Format::ApacheCommon,
    Format::ApacheCombined,
    Format::NginxCombined,
    Format::NginxError,
    Format::Tle,
    Format::Plain,
    Format::Auto,
];

/// The pattern of the `regex` format: Fluent Bit's `apache` parser (parsers.conf).
pub const APACHE_PATTERN: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$"#;

/// Bit 4 of byte 0: keep the source field after a successful parse.
pub const KEEP_ORIGINAL: u8 = 0x10;
/// Bit 5 of byte 0: put the parsed fields under [`TARGET`].
pub const WITH_TARGET: u8 = 0x20;
/// The `target` field used when [`WITH_TARGET`] is set.
pub const TARGET: &str = "parsed";

/// How many distinct parsers byte 0 selects (format × keep_original × target).
pub const PARSERS: usize = FORMATS.len() * 4;

/// The index (below [`PARSERS`]) of the parser byte 0 selects.
pub fn parser_index(byte0: u8) -> usize {
    let format = usize::from(byte0 & 0x0f) % FORMATS.len();
    let keep = usize::from(byte0 & KEEP_ORIGINAL != 0);
    let target = usize::from(byte0 & WITH_TARGET != 0);
    (keep | target << 1) * FORMATS.len() + format
}

/// The configuration of parser `index` (see [`parser_index`]).
pub fn parser_config(index: usize) -> ParseConfig {
    let format = FORMATS[index % FORMATS.len()];
    let variant = index / FORMATS.len();
    let mut config = ParseConfig::new(format);
    if format == Format::Regex {
        config.pattern = Some(APACHE_PATTERN.to_owned());
    }
    config.keep_original = variant & 1 != 0;
    if variant & 2 != 0 {
        config.target = Some(TARGET.to_owned());
    }
    config
}

/// The byte 0 that selects `format` with the given options.
pub fn selector_byte(format: Format, keep_original: bool, with_target: bool) -> u8 {
    let index = FORMATS
        .iter()
        .position(|f| *f == format)
        .expect("every format is listed") as u8;
    index
        | if keep_original { KEEP_ORIGINAL } else { 0 }
        | if with_target { WITH_TARGET } else { 0 }
}

/// One input: the parser's index and the line's value; `None` for empty input.
pub fn split(data: &[u8]) -> Option<(usize, Value)> {
    let (&byte0, line) = data.split_first()?;
    let value = match std::str::from_utf8(line) {
        Ok(text) => Value::Str(text.to_owned()),
        Err(_) => Value::Bin(line.to_vec()),
    };
    Some((parser_index(byte0), value))
}
