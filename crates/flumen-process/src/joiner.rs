//! The contract of steps that hold events back to join them with later ones.

use std::time::Instant;

use flumen_event::record::Event;

/// An event on its way through a session, with the sequence number of the first input event it
/// contains. The session numbers input events in arrival order; a joined event keeps the number
/// of its first part, so the session can tell which inputs are still held (see
/// [`Joiner::oldest_held`]) and so when a sender may be told they are stored.
pub type Numbered = (u64, Event);

/// A step that joins several events into one (multiline stack traces, Docker's split lines).
///
/// A joiner keeps groups per stream (the tag plus the fields that tell streams apart) and
/// releases a group when it is complete or when it has waited too long. It never drops an
/// event: every event pushed comes out, alone or inside a joined one.
pub trait Joiner: Send + Sync + std::fmt::Debug {
    /// Takes one event of `tag`; appends to `out` whatever is complete now (events of `tag`).
    fn push(&mut self, tag: &str, event: Numbered, now: Instant, out: &mut Vec<Numbered>);

    /// Releases the groups whose flush timeout has passed at `now`, with their tags.
    fn flush_due(&mut self, now: Instant, out: &mut Vec<(String, Numbered)>);

    /// Releases every group (the connection or the process is ending).
    fn flush_all(&mut self, out: &mut Vec<(String, Numbered)>);

    /// When the earliest held group times out, if any is held.
    fn next_deadline(&self) -> Option<Instant>;

    /// The smallest sequence number among held events, if any is held.
    fn oldest_held(&self) -> Option<u64>;
}
