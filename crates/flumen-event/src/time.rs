use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time of an event: seconds and nanoseconds since the Unix epoch, UTC.
///
/// This is Fluentd's `EventTime`. On the wire it is msgpack ext type 0 holding two big-endian
/// `u32`s (seconds, nanoseconds); senders without sub-second precision send a plain integer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Whole seconds since the epoch.
    pub secs: u64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl EventTime {
    /// A time from seconds and nanoseconds; nanoseconds past a second carry into `secs`.
    pub fn new(secs: u64, nanos: u32) -> Self {
        Self {
            secs: secs + u64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::new(d.as_secs(), d.subsec_nanos())
    }

    /// A time from fractional epoch seconds (Fluentd's `time` HTTP parameter); `None` when
    /// negative, not finite, or past what an EventTime holds (32-bit seconds, the year 2106).
    pub fn from_f64_secs(secs: f64) -> Option<Self> {
        if !secs.is_finite() || secs < 0.0 || secs >= f64::from(u32::MAX) + 1.0 {
            return None;
        }
        let whole = secs.trunc();
        let nanos = ((secs - whole) * 1e9).round() as u32;
        Some(Self::new(whole as u64, nanos))
    }

    /// Nanoseconds since the epoch.
    pub fn as_unix_nanos(self) -> u128 {
        u128::from(self.secs) * 1_000_000_000 + u128::from(self.nanos)
    }

    /// The time as a `chrono` UTC date-time, for formatting; `None` past year 262143.
    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp(i64::try_from(self.secs).ok()?, self.nanos)
    }

    /// Writes the time as msgpack ext type 0 (fixext8), the form Fluentd v1 senders use.
    pub fn write_msgpack(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xd7, 0x00]);
        // EventTime seconds are 32-bit on the wire; times past 2106 cannot be expressed.
        out.extend_from_slice(&(self.secs as u32).to_be_bytes());
        out.extend_from_slice(&self.nanos.to_be_bytes());
    }
}

/// RFC 3339 in UTC with exactly nine fractional digits: `2026-11-21T11:17:01.123456789Z`.
impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            // Not `format("%Y-…")`: that parses its pattern on every call, and events are
            // rendered by the hundred thousand a second.
            Some(dt) => f.write_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
            None => write!(f, "{}.{:09}", self.secs, self.nanos),
        }
    }
}

impl fmt::Debug for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds() {
        let t = EventTime::new(1_700_000_000, 5);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.000000005Z");
    }

    #[test]
    fn fractional_seconds_round_to_nanos() {
        let t = EventTime::from_f64_secs(1.25).unwrap();
        assert_eq!((t.secs, t.nanos), (1, 250_000_000));
        assert!(EventTime::from_f64_secs(-1.0).is_none());
        assert!(EventTime::from_f64_secs(f64::NAN).is_none());
    }
}
