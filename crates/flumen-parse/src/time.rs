//! Reading event times from text and numbers, with an ordered list of formats.
//!
//! A [`TimeParser`] is built once from format names and tried in order on each value; the first
//! format that reads the whole value wins. The names:
//!
//! | name | reads | example |
//! |------|-------|---------|
//! | `rfc3339` (alias `iso8601`) | RFC 3339, leniently: `T`, `t` or a space between date and time, `.` or `,` before the fraction (any number of digits, nanoseconds kept), zone `Z`, `±HH:MM`, `±HHMM`, `±HH` or none (then `timezone`) | `2024-01-01T10:00:00.123Z`, `2024-01-01 10:00:00,123` |
//! | `epoch` | seconds since 1970, fractional allowed | `1704103200`, `1704103200.123456` |
//! | `epoch_ms`, `epoch_us`, `epoch_ns` | milli-, micro-, nanoseconds since 1970 | `1704103200123` |
//! | `clf` | Common Log Format (Apache, nginx `$time_local`) | `10/Oct/2000:13:55:36 -0700` |
//! | `syslog` | RFC 3164 (BSD syslog) time, no year: the year is the current one, or the previous one when that would put the time more than 31 days in the future; no zone (then `timezone`) | `Oct 11 22:14:15`, `Oct  1 22:14:15` |
//! | anything with a `%` | a [chrono strftime](https://docs.rs/chrono/latest/chrono/format/strftime/index.html) pattern; without a zone (`%z`, `%:z`) the time is read in `timezone`; without a year the year is inferred as for `syslog`; without a time of day it is midnight | `%Y-%m-%d %H:%M:%S%.f`, `%d/%b/%Y:%H:%M:%S %z` |
//!
//! `timezone` is an offset (`+02:00`, `-0500`, `+02`, `UTC`, `Z`); it applies only to formats
//! whose text carries no zone. Without it such times are UTC. Named zones (`Europe/Paris`) are
//! not supported: their offset changes over the year and a fixed offset would be wrong for part
//! of it.
//!
//! Numbers (JSON `"time": 1704103200.5`, msgpack integers) are read by the `epoch*` formats
//! in the list; an [`EventTime`] value is taken as it is. A time is only accepted when an
//! `EventTime` can carry it: from 1970 to 2106 (32-bit seconds on the wire). That bound is what
//! lets a list like `["epoch", "epoch_ms"]` tell seconds from milliseconds: `1704103200123`
//! read as seconds lies past 2106, so the milliseconds format takes it.

use std::fmt;

use chrono::format::{Item, Parsed, StrftimeItems};
use flumen_event::EventTime;
use flumen_event::record::Value;

/// An ordered list of time formats and the offset for zone-less times; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct TimeParser {
    formats: Vec<TimeFormat>,
    names: String,
    offset_secs: i32,
}

#[derive(Clone)]
enum TimeFormat {
    Rfc3339,
    Epoch(u32),
    Clf,
    Syslog,
    Strftime(Vec<Item<'static>>),
}

impl fmt::Debug for TimeParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeParser")
            .field("formats", &self.names)
            .field("offset_secs", &self.offset_secs)
            .finish()
    }
}

impl TimeParser {
    /// Builds a parser from format names (tried in order) and an optional offset for times that
    /// carry no zone. Errors name the offending format or zone.
    pub fn new(formats: &[String], timezone: Option<&str>) -> Result<Self, String> {
        if formats.is_empty() {
            return Err("time_formats: the list is empty".to_owned());
        }
        let mut compiled = Vec::with_capacity(formats.len());
        for name in formats {
            compiled.push(match name.as_str() {
                "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
                "epoch" => TimeFormat::Epoch(0),
                "epoch_ms" => TimeFormat::Epoch(3),
                "epoch_us" => TimeFormat::Epoch(6),
                "epoch_ns" => TimeFormat::Epoch(9),
                "clf" => TimeFormat::Clf,
                "syslog" => TimeFormat::Syslog,
                other if other.contains('%') => {
                    let items = StrftimeItems::new(other)
                        .parse_to_owned()
                        .map_err(|_| format!("time_formats: {other:?} is not a valid strftime pattern"))?;
                    TimeFormat::Strftime(items)
                }
                other => {
                    return Err(format!(
                        "time_formats: unknown format {other:?}; expected rfc3339, epoch, epoch_ms, \
                         epoch_us, epoch_ns, clf, syslog or a strftime pattern with % fields"
                    ));
                }
            });
        }
        let offset_secs = match timezone {
            None => 0,
            Some(text) => parse_offset_setting(text).ok_or_else(|| {
                format!(
                    "timezone: {text:?} is not a UTC offset like +02:00, -0500 or UTC \
                     (named zones are not supported)"
                )
            })?,
        };
        Ok(Self {
            formats: compiled,
            names: formats.join(", "),
            offset_secs,
        })
    }

    /// The format names, comma-separated, for messages (`rfc3339, epoch`).
    pub fn names(&self) -> &str {
        &self.names
    }

    /// Reads `text` with the first format that accepts all of it (surrounding spaces aside).
    pub fn parse(&self, text: &str) -> Option<EventTime> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        self.formats.iter().find_map(|format| match format {
            TimeFormat::Rfc3339 => parse_rfc3339(text, self.offset_secs),
            TimeFormat::Epoch(exp) => parse_epoch_text(text, *exp),
            TimeFormat::Clf => parse_clf(text, self.offset_secs),
            TimeFormat::Syslog => parse_syslog_time(text, self.offset_secs, now_unix()),
            TimeFormat::Strftime(items) => parse_strftime(text, items, self.offset_secs),
        })
    }

    /// Reads a field's value: text as [`TimeParser::parse`], numbers with the `epoch*` formats
    /// of the list (in order), an `EventTime` as it is, bytes as their lossy text.
    pub fn parse_value(&self, value: &Value) -> Option<EventTime> {
        match value {
            Value::Str(s) => self.parse(s),
            Value::Bin(b) => self.parse(&String::from_utf8_lossy(b)),
            Value::Time(t) => Some(*t),
            Value::Int(n) => {
                self.numeric(|exp| u64::try_from(*n).ok().and_then(|n| from_scaled_int(n, exp)))
            }
            Value::UInt(n) => self.numeric(|exp| from_scaled_int(*n, exp)),
            Value::Float(f) => {
                self.numeric(|exp| EventTime::from_f64_secs(*f / 10f64.powi(exp as i32)))
            }
            _ => None,
        }
    }

    fn numeric(&self, read: impl Fn(u32) -> Option<EventTime>) -> Option<EventTime> {
        self.formats.iter().find_map(|format| match format {
            TimeFormat::Epoch(exp) => read(*exp),
            _ => None,
        })
    }
}

/// The largest second an [`EventTime`] carries on the wire (2106-02-07).
const MAX_SECS: i64 = u32::MAX as i64;

/// An `EventTime` from Unix seconds, when it is in the range an `EventTime` carries.
fn event_time(secs: i64, nanos: u32) -> Option<EventTime> {
    (0..=MAX_SECS)
        .contains(&secs)
        .then(|| EventTime::new(secs as u64, nanos))
}

fn from_scaled_int(n: u64, exp: u32) -> Option<EventTime> {
    let div = 10u64.pow(exp);
    let secs = i64::try_from(n / div).ok()?;
    let nanos = (n % div) * 10u64.pow(9 - exp);
    event_time(secs, nanos as u32)
}

fn now_unix() -> i64 {
    EventTime::now().secs as i64
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Unix seconds of a civil date and time at `offset_secs` east of UTC, after range checks.
fn civil_secs(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset_secs: i32,
) -> Option<i64> {
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
            - i64::from(offset_secs),
    )
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0')))
}

/// Reads a fraction's digits (after the separator) into nanoseconds; returns them and how many
/// bytes were digits. Digits past the ninth are read and dropped.
fn fraction(bytes: &[u8]) -> (u32, usize) {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10
            + bytes
                .get(i)
                .filter(|_| i < len)
                .map_or(0, |b| u32::from(b - b'0'));
    }
    (nanos, len)
}

/// `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH` → seconds east of UTC.
fn parse_zone(bytes: &[u8]) -> Option<i32> {
    match bytes {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// A `timezone` setting: an offset, `UTC` or `Z`.
fn parse_offset_setting(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("gmt") {
        return Some(0);
    }
    parse_zone(text.as_bytes())
}

/// Lenient RFC 3339; see the module documentation. Zone-less times are at `default_offset`.
pub(crate) fn parse_rfc3339(text: &str, default_offset: i32) -> Option<EventTime> {
    let s = text.as_bytes();
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    let second = digits(&s[17..19])?;
    let mut rest = &s[19..];
    let mut nanos = 0;
    if let [b'.' | b',', after @ ..] = rest {
        let (n, len) = fraction(after);
        if len == 0 {
            return None;
        }
        nanos = n;
        rest = &after[len..];
    }
    let offset = if rest.is_empty() {
        default_offset
    } else {
        parse_zone(rest)?
    };
    let secs = civil_secs(i64::from(year), month, day, hour, minute, second, offset)?;
    event_time(secs, nanos)
}

/// Epoch text (`1704103200`, `1704103200.25`, `1.7041032e9`) in units of `10^-exp` seconds.
fn parse_epoch_text(text: &str, exp: u32) -> Option<EventTime> {
    let s = text.as_bytes();
    let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 {
        return None;
    }
    if int_len == s.len() {
        if int_len > 20 {
            return None;
        }
        return from_scaled_int(text.parse().ok()?, exp);
    }
    if s[int_len] == b'.' {
        let (frac_nanos, frac_len) = fraction(&s[int_len + 1..]);
        if int_len + 1 + frac_len == s.len() && int_len <= 20 {
            // Whole units plus a fraction of a unit; in nanoseconds.
            let whole: u64 = text[..int_len].parse().ok()?;
            let unit_nanos = 10u128.pow(9 - exp);
            let total = u128::from(whole) * unit_nanos
                + u128::from(frac_nanos) * unit_nanos / 1_000_000_000;
            let secs = i64::try_from(total / 1_000_000_000).ok()?;
            return event_time(secs, (total % 1_000_000_000) as u32);
        }
    }
    if s.iter().any(|b| matches!(b, b'e' | b'E')) {
        let f: f64 = text.parse().ok()?;
        return EventTime::from_f64_secs(f / 10f64.powi(exp as i32));
    }
    None
}

pub(crate) fn month_number(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let name = [
        name.first()?.to_ascii_lowercase(),
        name.get(1)?.to_ascii_lowercase(),
        name.get(2)?.to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == name)
        .map(|i| i as u32 + 1)
}

/// `10/Oct/2000:13:55:36 -0700`; a missing zone means `default_offset`.
fn parse_clf(text: &str, default_offset: i32) -> Option<EventTime> {
    let s = text.as_bytes();
    if s.len() < 20
        || s[2] != b'/'
        || s[6] != b'/'
        || s[11] != b':'
        || s[14] != b':'
        || s[17] != b':'
    {
        return None;
    }
    let day = digits(&s[0..2])?;
    let month = month_number(&s[3..6])?;
    let year = digits(&s[7..11])?;
    let hour = digits(&s[12..14])?;
    let minute = digits(&s[15..17])?;
    let second = digits(&s[18..20])?;
    let mut rest = &s[20..];
    let mut nanos = 0;
    if let [b'.', after @ ..] = rest {
        let (n, len) = fraction(after);
        nanos = n;
        rest = &after[len..];
    }
    let offset = match rest {
        [] => default_offset,
        [b' ', zone @ ..] => parse_zone(zone)?,
        _ => return None,
    };
    let secs = civil_secs(i64::from(year), month, day, hour, minute, second, offset)?;
    event_time(secs, nanos)
}

/// The year of a year-less date: this year, or last year when this year's date would be more
/// than 31 days ahead of `now` (a December line read in January).
fn infer_year(
    month: u32,
    day: u32,
    hms: (u32, u32, u32),
    offset_secs: i32,
    now: i64,
) -> Option<i64> {
    let local_now = now + i64::from(offset_secs);
    let this_year = chrono::DateTime::from_timestamp(local_now, 0)
        .map_or(1970, |d| i64::from(chrono::Datelike::year(&d)));
    let candidate = civil_secs(this_year, month, day, hms.0, hms.1, hms.2, offset_secs);
    match candidate {
        Some(secs) if secs <= now + 31 * 86_400 => Some(this_year),
        // Feb 29 of a non-leap current year falls through to last year, which is also not a
        // leap year; that time is rejected by the caller's range checks.
        _ => Some(this_year - 1),
    }
}

/// `Oct 11 22:14:15`, `Oct  1 22:14:15`, `Oct 1 22:14:15.123`; the year is inferred.
pub(crate) fn parse_syslog_time(text: &str, offset_secs: i32, now: i64) -> Option<EventTime> {
    let s = text.as_bytes();
    let month = month_number(s.get(..3)?)?;
    let mut i = 3;
    if s.get(i) != Some(&b' ') {
        return None;
    }
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    let day_len = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=2).contains(&day_len) {
        return None;
    }
    let day = digits(&s[i..i + day_len])?;
    i += day_len;
    let t = s.get(i..i + 9)?;
    if t[0] != b' ' || t[3] != b':' || t[6] != b':' {
        return None;
    }
    let hms = (digits(&t[1..3])?, digits(&t[4..6])?, digits(&t[7..9])?);
    i += 9;
    let mut nanos = 0;
    if let [b'.', after @ ..] = &s[i..] {
        let (n, len) = fraction(after);
        if len == 0 {
            return None;
        }
        nanos = n;
        i += 1 + len;
    }
    if i != s.len() {
        return None;
    }
    let year = infer_year(month, day, hms, offset_secs, now)?;
    let secs = civil_secs(year, month, day, hms.0, hms.1, hms.2, offset_secs)?;
    event_time(secs, nanos)
}

fn parse_strftime(text: &str, items: &[Item<'static>], offset_secs: i32) -> Option<EventTime> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
    if let Some(ts) = parsed.timestamp() {
        return event_time(ts, parsed.nanosecond().unwrap_or(0));
    }
    if parsed.hour_div_12().is_none() && parsed.hour_mod_12().is_none() {
        parsed.set_hour(0).ok()?;
        parsed.set_minute(0).ok()?;
    }
    let offset = parsed.offset().unwrap_or(offset_secs);
    if parsed.year().is_none() && parsed.isoyear().is_none() && parsed.year_mod_100().is_none() {
        let month = parsed.month()?;
        let day = parsed.day()?;
        let hour = parsed.hour_div_12()? * 12 + parsed.hour_mod_12()?;
        let hms = (hour, parsed.minute()?, parsed.second().unwrap_or(0));
        let year = infer_year(month, day, hms, offset, now_unix())?;
        parsed.set_year(year).ok()?;
    }
    let naive = parsed.to_naive_datetime_with_offset(offset).ok()?;
    let utc = naive.and_utc();
    event_time(
        utc.timestamp() - i64::from(offset),
        utc.timestamp_subsec_nanos(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(formats: &[&str], tz: Option<&str>) -> TimeParser {
        let formats: Vec<String> = formats.iter().map(|s| s.to_string()).collect();
        TimeParser::new(&formats, tz).unwrap()
    }

    fn t(text: &str) -> String {
        text.to_owned()
    }

    #[test]
    fn rfc3339_and_its_everyday_variants() {
        let p = parser(&["rfc3339"], None);
        for (text, want) in [
            ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00.000000000Z"),
            ("2024-01-01T10:00:00.123Z", "2024-01-01T10:00:00.123000000Z"),
            (
                "2024-01-01t10:00:00.123456789z",
                "2024-01-01T10:00:00.123456789Z",
            ),
            (
                "2024-01-01T10:00:00.1234567891234Z",
                "2024-01-01T10:00:00.123456789Z",
            ),
            (
                "2024-01-01T12:00:00+02:00",
                "2024-01-01T10:00:00.000000000Z",
            ),
            ("2024-01-01T05:30:00-0430", "2024-01-01T10:00:00.000000000Z"),
            ("2024-01-01T12:00:00+02", "2024-01-01T10:00:00.000000000Z"),
            ("2024-01-01 10:00:00,123", "2024-01-01T10:00:00.123000000Z"),
            ("2024-02-29 10:00:00", "2024-02-29T10:00:00.000000000Z"),
            (" 2024-01-01T10:00:00Z\n", "2024-01-01T10:00:00.000000000Z"),
        ] {
            assert_eq!(
                p.parse(text).map(|t| t.to_string()),
                Some(t(want)),
                "{text}"
            );
        }
        for text in [
            "2024-01-01",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00 Z",
            "2024-01-01T10:00:00+2:00",
            "1969-12-31T23:59:59Z",
            "2200-01-01T00:00:00Z",
            "x024-01-01T10:00:00Z",
        ] {
            assert_eq!(p.parse(text), None, "{text}");
        }
    }

    #[test]
    fn zone_less_times_use_the_configured_offset() {
        let p = parser(&["rfc3339", "%Y/%m/%d %H:%M:%S"], Some("+02:00"));
        assert_eq!(
            p.parse("2024-01-01 12:00:00").unwrap().to_string(),
            "2024-01-01T10:00:00.000000000Z"
        );
        assert_eq!(
            p.parse("2024/01/01 12:00:00").unwrap().to_string(),
            "2024-01-01T10:00:00.000000000Z"
        );
        // A time with its own zone ignores the setting.
        assert_eq!(
            p.parse("2024-01-01T12:00:00Z").unwrap().to_string(),
            "2024-01-01T12:00:00.000000000Z"
        );
        for tz in ["UTC", "Z", "+0000", "-05", "+05:30"] {
            assert!(TimeParser::new(&[t("rfc3339")], Some(tz)).is_ok(), "{tz}");
        }
        let err = TimeParser::new(&[t("rfc3339")], Some("Europe/Paris")).unwrap_err();
        assert!(err.starts_with("timezone: \"Europe/Paris\""), "{err}");
    }

    #[test]
    fn epochs_in_every_unit() {
        let p = parser(&["epoch"], None);
        assert_eq!(
            p.parse("1704103200").unwrap(),
            EventTime::new(1_704_103_200, 0)
        );
        assert_eq!(
            p.parse("1704103200.123456789").unwrap(),
            EventTime::new(1_704_103_200, 123_456_789)
        );
        assert_eq!(
            p.parse("1704103200.5").unwrap(),
            EventTime::new(1_704_103_200, 500_000_000)
        );
        assert_eq!(
            p.parse("1.7041032e9").unwrap(),
            EventTime::new(1_704_103_200, 0)
        );
        assert_eq!(p.parse("-5"), None);
        assert_eq!(p.parse("12abc"), None);
        assert_eq!(p.parse("99999999999999999999999"), None);
        let ms = parser(&["epoch_ms"], None);
        assert_eq!(
            ms.parse("1704103200123").unwrap(),
            EventTime::new(1_704_103_200, 123_000_000)
        );
        assert_eq!(
            ms.parse("1704103200123.5").unwrap(),
            EventTime::new(1_704_103_200, 123_500_000)
        );
        let us = parser(&["epoch_us"], None);
        assert_eq!(
            us.parse("1704103200123456").unwrap(),
            EventTime::new(1_704_103_200, 123_456_000)
        );
        let ns = parser(&["epoch_ns"], None);
        assert_eq!(
            ns.parse("1704103200123456789").unwrap(),
            EventTime::new(1_704_103_200, 123_456_789)
        );
    }

    #[test]
    fn numbers_use_the_epoch_formats_in_order() {
        let p = parser(&["rfc3339", "epoch", "epoch_ms"], None);
        assert_eq!(
            p.parse_value(&Value::UInt(1_704_103_200)).unwrap().secs,
            1_704_103_200
        );
        // Too far in the future as seconds: milliseconds.
        assert_eq!(
            p.parse_value(&Value::Int(1_704_103_200_123)).unwrap(),
            EventTime::new(1_704_103_200, 123_000_000)
        );
        let t = p.parse_value(&Value::Float(1_704_103_200.25)).unwrap();
        assert_eq!((t.secs, t.nanos), (1_704_103_200, 250_000_000));
        assert_eq!(p.parse_value(&Value::Int(-1)), None);
        assert_eq!(p.parse_value(&Value::Bool(true)), None);
        let when = EventTime::new(5, 6);
        assert_eq!(p.parse_value(&Value::Time(when)), Some(when));
        assert_eq!(
            p.parse_value(&Value::Str("2024-01-01T10:00:00Z".into()))
                .unwrap()
                .secs,
            1_704_103_200
        );
        // Without an epoch format numbers are not times.
        assert_eq!(
            parser(&["rfc3339"], None).parse_value(&Value::UInt(1_704_103_200)),
            None
        );
    }

    #[test]
    fn common_log_format() {
        let p = parser(&["clf"], None);
        assert_eq!(
            p.parse("10/Oct/2000:13:55:36 -0700").unwrap().to_string(),
            "2000-10-10T20:55:36.000000000Z"
        );
        assert_eq!(
            p.parse("21/Nov/2026:13:31:17 +0000").unwrap().to_string(),
            "2026-11-21T13:31:17.000000000Z"
        );
        assert_eq!(p.parse("10/Foo/2000:13:55:36 -0700"), None);
        assert_eq!(
            p.parse("10/Oct/2000:13:55:36 -07"),
            Some(p.parse("10/Oct/2000:20:55:36 +0000").unwrap())
        );
        assert_eq!(p.parse("10/Oct/2000 13:55:36 -0700"), None);
    }

    #[test]
    fn syslog_times_get_a_year() {
        // 2026-11-21T13:31:00Z.
        let now = 1_795_267_860;
        let at = |text: &str| parse_syslog_time(text, 0, now).map(|t| t.to_string());
        assert_eq!(
            at("Nov 21 13:31:24").unwrap(),
            "2026-11-21T13:31:24.000000000Z"
        );
        assert_eq!(
            at("Nov  1 00:00:00").unwrap(),
            "2026-11-01T00:00:00.000000000Z"
        );
        assert_eq!(
            at("Nov 1 00:00:00.5").unwrap(),
            "2026-11-01T00:00:00.500000000Z"
        );
        // Within a month ahead: clocks differ; this year.
        assert_eq!(
            at("Dec 15 00:00:00").unwrap(),
            "2026-12-15T00:00:00.000000000Z"
        );
        // Further ahead: last year.
        assert_eq!(
            at("Dec 31 00:00:00").unwrap(),
            "2025-12-31T00:00:00.000000000Z"
        );
        for bad in [
            "Nov 21 13:31",
            "Nov 21 13:31:24 x",
            "Foo 21 13:31:24",
            "Nov 123 13:31:24",
            "Nov 31 00:00:00",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
        assert!(parser(&["syslog"], None).parse("Jan  1 00:00:00").is_some());
    }

    #[test]
    fn strftime_patterns() {
        let p = parser(&["%Y-%m-%d %H:%M:%S%.f"], None);
        assert_eq!(
            p.parse("2024-01-01 10:00:00.5").unwrap().to_string(),
            "2024-01-01T10:00:00.500000000Z"
        );
        assert_eq!(
            p.parse("2024-01-01 10:00:00").unwrap().to_string(),
            "2024-01-01T10:00:00.000000000Z"
        );
        let z = parser(&["%d/%b/%Y:%H:%M:%S %z"], Some("+05:00"));
        assert_eq!(
            z.parse("10/Oct/2000:13:55:36 -0700").unwrap().to_string(),
            "2000-10-10T20:55:36.000000000Z"
        );
        let date = parser(&["%Y%m%d"], None);
        assert_eq!(
            date.parse("20240101").unwrap().to_string(),
            "2024-01-01T00:00:00.000000000Z"
        );
        let secs = parser(&["%s"], None);
        assert_eq!(secs.parse("1704103200").unwrap().secs, 1_704_103_200);
        let yearless = parser(&["%b %d %H:%M:%S"], None);
        assert!(yearless.parse("Jan 01 00:00:00").is_some());
        let java = parser(&["%b %d, %Y %l:%M:%S %p"], None);
        assert_eq!(
            java.parse("Nov 21, 2026 1:31:30 PM").unwrap().to_string(),
            "2026-11-21T13:31:30.000000000Z"
        );
        assert_eq!(p.parse("2024-01-01"), None);
    }

    #[test]
    fn bad_format_lists_are_rejected() {
        assert!(TimeParser::new(&[], None).unwrap_err().contains("empty"));
        let err = TimeParser::new(&[t("rfc3999")], None).unwrap_err();
        assert!(err.contains("unknown format \"rfc3999\""), "{err}");
        let err = TimeParser::new(&[t("%Y-%Q")], None).unwrap_err();
        assert!(err.contains("not a valid strftime"), "{err}");
    }

    #[test]
    fn first_matching_format_wins() {
        let p = parser(&["rfc3339", "epoch", "clf"], None);
        assert_eq!(p.names(), "rfc3339, epoch, clf");
        assert!(p.parse("2024-01-01T10:00:00Z").is_some());
        assert!(p.parse("1704103200").is_some());
        assert!(p.parse("10/Oct/2000:13:55:36 -0700").is_some());
        assert_eq!(p.parse("yesterday"), None);
        assert_eq!(p.parse(""), None);
    }
}
