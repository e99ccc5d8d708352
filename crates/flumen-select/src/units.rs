//! Durations and byte sizes as LogQL writes them: `1m30s`, `2.5s`, `500ms`; `1KB`, `10MiB`.

/// Seconds in each duration unit, longest spelling first so that `ms` is not read as `m`.
const DURATION_UNITS: [(&str, f64); 11] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86_400.0),
    ("w", 604_800.0),
    ("y", 31_536_000.0),
];

/// Reads a duration like Go's `time.ParseDuration` (`1h30m`, `2.5s`, `-1.5h`, `300ms`), plus
/// Prometheus's `d`, `w` and `y`; returns seconds. A unit is required after every number,
/// except for a bare `0`.
pub(crate) fn parse_duration(text: &str) -> Option<f64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let (number, after) = leading_decimal(rest)?;
        let (unit, seconds) = DURATION_UNITS
            .iter()
            .filter(|(unit, _)| after.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())?;
        total += number * seconds;
        rest = &after[unit.len()..];
    }
    total
        .is_finite()
        .then_some(if negative { -total } else { total })
}

/// A duration as whole nanoseconds (for ranges and steps), when it is positive and fits.
pub(crate) fn parse_duration_ns(text: &str) -> Option<i64> {
    let seconds = parse_duration(text)?;
    let ns = (seconds * 1e9).round();
    (ns >= 1.0 && ns < i64::MAX as f64).then_some(ns as i64)
}

/// Reads a byte size like go-humanize's `ParseBytes` (`42`, `1.5 MB`, `10KiB`, `3k`): decimal
/// units are powers of 1000, `i` units powers of 1024, case does not matter.
pub(crate) fn parse_bytes(text: &str) -> Option<f64> {
    let (number, unit) = leading_decimal(text.trim())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let (prefix, binary) = match unit.strip_suffix('i') {
        Some(prefix) if !prefix.is_empty() => (prefix, true),
        _ => (unit, false),
    };
    let power = match prefix {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        "e" => 6,
        _ => return None,
    };
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let bytes = number * base.powi(power);
    bytes.is_finite().then_some(bytes)
}

/// `digits [. digits]` or `. digits` at the start of `text`, and what follows.
fn leading_decimal(text: &str) -> Option<(f64, &str)> {
    let end = text
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))
        .unwrap_or(text.len());
    let number = &text[..end];
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((number.parse().ok()?, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(2.0));
        assert_eq!(parse_duration("2.5s"), Some(2.5));
        assert_eq!(parse_duration("1m30s"), Some(90.0));
        assert_eq!(parse_duration("300ms"), Some(0.3));
        assert_eq!(parse_duration("1h"), Some(3600.0));
        assert_eq!(parse_duration("-1.5h"), Some(-5400.0));
        assert_eq!(
            parse_duration("10µs").map(|s| (s * 1e6).round()),
            Some(10.0)
        );
        assert_eq!(parse_duration("0"), Some(0.0));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration_ns("5m"), Some(300_000_000_000));
        assert_eq!(parse_duration_ns("0s"), None);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("42"), Some(42.0));
        assert_eq!(parse_bytes("1KB"), Some(1000.0));
        assert_eq!(parse_bytes("1kB"), Some(1000.0));
        assert_eq!(parse_bytes("1KiB"), Some(1024.0));
        assert_eq!(parse_bytes("1.5 MB"), Some(1_500_000.0));
        assert_eq!(parse_bytes("2GiB"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_bytes("3k"), Some(3000.0));
        assert_eq!(parse_bytes("5B"), Some(5.0));
        assert_eq!(parse_bytes("5 apples"), None);
        assert_eq!(parse_bytes("MB"), None);
    }
}
