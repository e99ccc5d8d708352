//! The contract of steps that hold events back to join them with later ones.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::{Duration, Instant};

use flumen_event::record::Event;

/// An event on its way through a session, with the sequence number of the first input event it
/// contains. The session numbers input events in arrival order; a joined event keeps the number
/// of its first part, so the session can tell which inputs are still held (see
/// [`Joiner::holds`]) and so when a sender may be told they are stored.
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

    /// True when an event numbered in `seqs` may be held. A group is taken to hold every
    /// number from its first event's to its last's (events of other streams in between
    /// included): a cautious answer, never a wrong "no".
    fn holds(&self, seqs: Range<u64>) -> bool;
}

/// A group a joiner holds: it knows the sequence number of its first event, which must not
/// change while the group is held.
pub(crate) trait HeldGroup {
    /// The sequence number of the group's first event.
    fn first_seq(&self) -> u64;

    /// The largest sequence number of the events in the group.
    fn last_seq(&self) -> u64;
}

/// The groups one joiner holds, by stream key, indexed by deadline so that the joiner can
/// release what is due.
///
/// A stream key starts with the tag (see [`HeldGroups::stream_key`]); the tag is given back
/// with a group that is released by deadline or by [`HeldGroups::take_all`].
#[derive(Debug)]
pub(crate) struct HeldGroups<G> {
    flush_timeout: Duration,
    /// Held groups by stream key.
    groups: HashMap<String, Held<G>>,
    /// Held groups by deadline (the id breaks ties).
    deadlines: BTreeMap<(Instant, u64), String>,
    next_id: u64,
    /// Scratch space for stream keys.
    key: String,
}

#[derive(Debug)]
struct Held<G> {
    id: u64,
    deadline: Instant,
    tag_len: usize,
    group: G,
}

impl<G: HeldGroup> HeldGroups<G> {
    /// No groups; each group inserted is due `flush_timeout` after it is inserted.
    pub(crate) fn new(flush_timeout: Duration) -> Self {
        Self {
            flush_timeout,
            groups: HashMap::new(),
            deadlines: BTreeMap::new(),
            next_id: 0,
            key: String::new(),
        }
    }

    /// True when no group is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The key of `event`'s stream: the tag, then each stream field's text (a missing field
    /// differs from an empty one). The tag is `key[..tag.len()]`. The string is scratch space
    /// of this value; give it back with [`HeldGroups::reuse_key`].
    pub(crate) fn stream_key(&mut self, tag: &str, fields: &[String], event: &Event) -> String {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push_str(tag);
        for field in fields {
            key.push('\0');
            match event.record.get(field) {
                Some(value) => key.push_str(&value.to_text()),
                None => key.push('\u{1}'),
            }
        }
        key
    }

    /// Keeps `key` (from [`HeldGroups::stream_key`]) for the next stream key.
    pub(crate) fn reuse_key(&mut self, key: String) {
        self.key = key;
    }

    /// The group held for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&G> {
        self.groups.get(key).map(|held| &held.group)
    }

    /// The group held for `key`.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut G> {
        self.groups.get_mut(key).map(|held| &mut held.group)
    }

    /// Holds `group` for `key` (whose first `tag_len` bytes are the tag), due `flush_timeout`
    /// after `now`. No group may be held for `key` already.
    pub(crate) fn insert(&mut self, key: &str, tag_len: usize, group: G, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.flush_timeout;
        self.deadlines.insert((deadline, id), key.to_owned());
        let held = Held {
            id,
            deadline,
            tag_len,
            group,
        };
        self.groups.insert(key.to_owned(), held);
    }

    /// Stops holding the group of `key`; returns it.
    pub(crate) fn remove(&mut self, key: &str) -> Option<G> {
        let held = self.groups.remove(key)?;
        Some(self.unindex(held))
    }

    /// Holds `group` for `key` in place of the group held there (same tag, a new deadline from
    /// `now`); returns the group it replaces, or `None` (holding nothing) when none was held.
    pub(crate) fn replace(&mut self, key: &str, group: G, now: Instant) -> Option<G> {
        let held = self.groups.remove(key)?;
        let tag_len = held.tag_len;
        let old = self.unindex(held);
        self.insert(key, tag_len, group, now);
        Some(old)
    }

    /// Stops holding the group with the earliest deadline if that is not after `now`; returns
    /// its tag and the group.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<(String, G)> {
        let entry = self.deadlines.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let mut key = entry.remove();
        let held = self.groups.remove(&key).expect("indexed groups are held");
        key.truncate(held.tag_len);
        Some((key, held.group))
    }

    /// Stops holding every group; returns them with their tags, oldest first sequence first.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (String, G)> + use<G> {
        self.deadlines.clear();
        let mut all: Vec<_> = self
            .groups
            .drain()
            .map(|(mut key, held)| {
                key.truncate(held.tag_len);
                (held.group.first_seq(), key, held.group)
            })
            .collect();
        all.sort_unstable_by_key(|(first_seq, _, _)| *first_seq);
        all.into_iter().map(|(_, tag, group)| (tag, group))
    }

    /// When the earliest held group times out, if any is held.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first_key_value().map(|((at, _), _)| *at)
    }

    /// See [`Joiner::holds`].
    pub(crate) fn holds(&self, seqs: &Range<u64>) -> bool {
        !seqs.is_empty()
            && self.groups.values().any(|held| {
                held.group.first_seq() < seqs.end && held.group.last_seq() >= seqs.start
            })
    }

    /// Removes a group taken out of `groups` from the deadline index.
    fn unindex(&mut self, held: Held<G>) -> G {
        self.deadlines.remove(&(held.deadline, held.id));
        held.group
    }
}
