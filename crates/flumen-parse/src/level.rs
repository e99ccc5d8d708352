//! Log levels: one canonical set, whatever the sender called them.
//!
//! Programs spell severities a hundred ways — `INFO`, `info`, `I`, `warning`, `WARN`, `err`,
//! syslog's numeric severities 0–7, pino/bunyan's 10–60, Java's `SEVERE`/`FINE`. [`Level::parse`]
//! maps them all to six levels, written in capitals in the `level` field (so a selector reads
//! `{level=~"ERROR|FATAL"}`).

use std::fmt;

/// The canonical levels, least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Finest detail.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation (syslog `notice` and `informational` too).
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// A failure of one operation.
    Error,
    /// The program or system cannot go on (syslog `emerg`, `alert`, `crit`).
    Fatal,
}

/// The field the canonical level is written to.
pub const LEVEL_FIELD: &str = "level";

impl Level {
    /// All levels, least severe first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The canonical name: `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// Reads a level as programs write it, ignoring case and surrounding spaces, brackets and
    /// colons (`[WARN]`, `error:`). Numbers 0–7 are syslog severities, 10–60 pino/bunyan levels.
    pub fn parse(text: &str) -> Option<Level> {
        let word = text
            .trim()
            .trim_matches(|c: char| matches!(c, '[' | ']' | '<' | '>' | '(' | ')' | ':'));
        if let Ok(n) = word.parse::<u32>() {
            return Self::from_number(n);
        }
        if word.len() > 13 {
            return None;
        }
        let lower = word.to_ascii_lowercase();
        Some(match lower.as_str() {
            "trace" | "t" | "finer" | "finest" | "verbose" | "v" | "trc" => Level::Trace,
            "debug" | "d" | "dbg" | "fine" | "config" | "debu" => Level::Debug,
            "info" | "i" | "inf" | "information" | "informational" | "notice" | "n" | "note"
            | "ok" => Level::Info,
            "warn" | "w" | "wrn" | "warning" | "warnings" => Level::Warn,
            "error" | "e" | "err" | "eror" | "errors" | "severe" | "failure" | "fail" => {
                Level::Error
            }
            "fatal" | "f" | "crit" | "critical" | "emerg" | "emergency" | "alert" | "panic"
            | "a" | "c" | "dpanic" => Level::Fatal,
            _ => return None,
        })
    }

    /// A numeric level: syslog severity (0 emerg … 7 debug) or pino/bunyan (10 trace … 60
    /// fatal).
    pub fn from_number(n: u32) -> Option<Level> {
        Some(match n {
            0..=2 => Level::Fatal,
            3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            7 => Level::Debug,
            10 => Level::Trace,
            20 => Level::Debug,
            30 => Level::Info,
            40 => Level::Warn,
            50 => Level::Error,
            60 => Level::Fatal,
            _ => return None,
        })
    }

    /// The level of a syslog severity (0–7).
    pub fn from_syslog_severity(severity: u8) -> Level {
        Self::from_number(u32::from(severity.min(7))).expect("0..=7 are all mapped")
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::parse(s).ok_or_else(|| {
            format!("unknown level {s:?}; expected one of trace, debug, info, warn, error, fatal")
        })
    }
}

impl<'de> serde::Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_many_spellings_map_to_one_level() {
        for (text, level) in [
            ("INFO", Level::Info),
            ("info", Level::Info),
            ("I", Level::Info),
            (" notice ", Level::Info),
            ("warning", Level::Warn),
            ("WARN", Level::Warn),
            ("[WARN]", Level::Warn),
            ("err", Level::Error),
            ("ERROR:", Level::Error),
            ("SEVERE", Level::Error),
            ("crit", Level::Fatal),
            ("emerg", Level::Fatal),
            ("FINE", Level::Debug),
            ("trace", Level::Trace),
            ("3", Level::Error),
            ("4", Level::Warn),
            ("6", Level::Info),
            ("7", Level::Debug),
            ("0", Level::Fatal),
            ("50", Level::Error),
            ("30", Level::Info),
        ] {
            assert_eq!(Level::parse(text), Some(level), "{text}");
        }
        for text in ["", "hello", "8", "99", "informationalxxxxxxxx"] {
            assert_eq!(Level::parse(text), None, "{text}");
        }
    }

    #[test]
    fn levels_order_by_severity() {
        assert!(Level::Warn > Level::Info);
        assert!(Level::Fatal > Level::Error);
        assert_eq!(Level::from_syslog_severity(2), Level::Fatal);
        assert_eq!(Level::from_syslog_severity(200), Level::Debug);
    }
}
