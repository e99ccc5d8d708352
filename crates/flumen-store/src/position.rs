//! [`EventPosition`]: where one event is in the durable log, the cursor shared by search and
//! live streams.

use std::fmt;
use std::str::FromStr;

use flumen_wal::Position;

/// One event's place in the durable log: the position of the log record (batch) that carries
/// it and its index among that batch's entries.
///
/// Every event flumen ever stored has exactly one, fixed when it was appended to the log, so
/// the store and the live streams hand out the same cursor for the same event, and positions
/// order events in the order flumen received them. Its text form (`<record>.<index>`, both
/// decimal) is opaque to clients: they get it with an event and give it back to resume after
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventPosition {
    /// The log record that carries the event.
    pub record: Position,
    /// The event's index among the record's entries, from 0.
    pub index: u32,
}

impl EventPosition {
    /// The event at `index` in the record at `record`.
    pub const fn new(record: Position, index: u32) -> Self {
        Self { record, index }
    }
}

impl fmt::Display for EventPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.record.get(), self.index)
    }
}

/// A text that is not an event position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event position: {0:?} (expected <record>.<index>, as given with an event)")]
pub struct BadEventPosition(String);

impl FromStr for EventPosition {
    type Err = BadEventPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadEventPosition(text.chars().take(64).collect());
        let (record, index) = text.split_once('.').ok_or_else(bad)?;
        let record = record.parse::<u64>().map_err(|_| bad())?;
        let index = index.parse::<u32>().map_err(|_| bad())?;
        Ok(Self::new(Position::new(record), index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_orders_like_the_log() {
        let a = EventPosition::new(Position::new(7), 3);
        let b = EventPosition::new(Position::new(7), 12);
        let c = EventPosition::new(Position::new(8), 0);
        assert!(a < b && b < c);
        assert_eq!(a.to_string(), "7.3");
        assert_eq!("7.3".parse::<EventPosition>(), Ok(a));
        for bad in ["", "7", "7.", ".3", "7.3.1", "-1.0", "x.y", "7.99999999999"] {
            assert!(bad.parse::<EventPosition>().is_err(), "{bad:?}");
        }
    }
}
