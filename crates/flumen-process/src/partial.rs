//! Joining the long lines Docker splits.
//!
//! Docker's log copier reads a container's output in 16 KiB buffers; a line longer than that
//! goes out as several messages. Since Docker 19.03 (moby `daemon/logger/copier.go`) each
//! piece carries partial-log metadata, which the fluentd log driver writes as four record
//! fields, all strings:
//!
//! - `partial_message`: `"true"`;
//! - `partial_id`: a random id shared by the pieces of one line;
//! - `partial_ordinal`: `"1"`, `"2"`, … in order;
//! - `partial_last`: `"false"`, and `"true"` on the piece that ends the line.
//!
//! Each piece's `log` holds its bytes without a newline; all pieces carry the first piece's
//! timestamp. (A line cut by the end of the stream never gets a `"true"` piece.)
//!
//! This step joins the pieces of each `partial_id` — per stream (the tag and `stream_fields`),
//! so ids never meet across containers — in ordinal order, whatever order they arrive in and
//! however ids interleave, into one event: the first piece's record, time and metadata, with
//! `field` (default `log`) the pieces' concatenation and the four `partial_*` fields removed
//! (as `fluent-plugin-concat` does by default). The pieces are joined as bytes, so a UTF-8
//! character cut by the 16 KiB boundary comes back whole. The joined event carries the
//! sequence number of the first piece that arrived.
//!
//! A group is released when its last piece and every piece before it have arrived. Nothing is
//! ever dropped; what cannot be completed is released as it is, with a `partial_error` field
//! saying what happened:
//!
//! - a piece still missing `flush_timeout` (default 5s) after the group's first piece arrived:
//!   the pieces that did arrive, joined in order;
//! - a second piece with an ordinal already held (a resend): the held pieces are released and
//!   the new piece starts a new group;
//! - pieces adding up to more than `max_bytes` (default 10 MiB): the held pieces are released
//!   and the rest of the line gathers in a new group.
//!
//! Events without `partial_message = "true"` pass straight through, even when pieces of their
//! stream are held (Docker never interleaves a stream's whole lines with the pieces of one of
//! its long lines). So do events that claim to be pieces but have no usable `partial_id` or
//! `partial_ordinal`: they cannot be joined, and are left as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use flumen_event::record::{Event, Value};
use serde::Deserialize;

use crate::joiner::{HeldGroup, HeldGroups};
use crate::{Joiner, Numbered};

/// The field marking a piece.
pub const PARTIAL_MESSAGE: &str = "partial_message";
/// The field holding the id shared by a line's pieces.
pub const PARTIAL_ID: &str = "partial_id";
/// The field holding a piece's place, from 1.
pub const PARTIAL_ORDINAL: &str = "partial_ordinal";
/// The field saying whether a piece is the line's last.
pub const PARTIAL_LAST: &str = "partial_last";
/// The field added to a joined event that is incomplete.
pub const PARTIAL_ERROR: &str = "partial_error";

/// Configuration of the partial-line step: one `[[filters]]` table without `type`, `match` and
/// `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    /// The longest the pieces of a line are held after the first arrived (default 5s).
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// The largest joined line (default 10 MiB); past it, what is held is released.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// The fields that, with the tag, tell streams apart (default `container_id`, `source`).
    #[serde(default = "default_stream_fields")]
    pub stream_fields: Vec<String>,
    /// The field holding the pieces' text (default `log`).
    #[serde(default = "default_field")]
    pub field: String,
}

fn default_flush_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_max_bytes() -> ByteSize {
    ByteSize::mib(10)
}

fn default_stream_fields() -> Vec<String> {
    vec!["container_id".to_owned(), "source".to_owned()]
}

fn default_field() -> String {
    "log".to_owned()
}

impl Default for PartialConfig {
    fn default() -> Self {
        Self {
            flush_timeout: default_flush_timeout(),
            max_bytes: default_max_bytes(),
            stream_fields: default_stream_fields(),
            field: default_field(),
        }
    }
}

/// The compiled partial-line step, shared by every session.
#[derive(Debug)]
pub struct PartialJoin {
    flush_timeout: Duration,
    max_bytes: usize,
    stream_fields: Vec<String>,
    field: String,
}

impl PartialJoin {
    /// Checks `config`; errors name the key at fault.
    pub fn new(config: &PartialConfig) -> Result<Self, String> {
        if config.flush_timeout.is_zero() {
            return Err("flush_timeout: must be more than 0".to_owned());
        }
        if config.max_bytes.as_u64() == 0 {
            return Err("max_bytes: must be more than 0".to_owned());
        }
        if config.field.is_empty() {
            return Err("field: must not be empty".to_owned());
        }
        Ok(Self {
            flush_timeout: config.flush_timeout,
            max_bytes: usize::try_from(config.max_bytes.as_u64()).unwrap_or(usize::MAX),
            stream_fields: config.stream_fields.clone(),
            field: config.field.clone(),
        })
    }

    /// A joiner with its own state.
    pub fn joiner(self: &Arc<Self>) -> Box<dyn Joiner> {
        Box::new(PartialJoiner {
            config: Arc::clone(self),
            groups: HeldGroups::new(self.flush_timeout),
        })
    }

    /// The bytes of a piece's text field (empty when missing or not text).
    /// True unless the line field holds something other than text (a piece whose line is a
    /// number or a map cannot be joined without losing it, so it passes as it is).
    fn has_text_or_nothing(&self, event: &Event) -> bool {
        matches!(
            event.record.get(&self.field),
            None | Some(Value::Str(_) | Value::Bin(_))
        )
    }

    fn text<'a>(&self, event: &'a Event) -> &'a [u8] {
        match event.record.get(&self.field) {
            Some(Value::Str(s)) => s.as_bytes(),
            Some(Value::Bin(b)) => b,
            _ => &[],
        }
    }
}

/// A piece's partial metadata: `(id, ordinal, last)`, when it is a usable piece.
fn piece(event: &Event) -> Option<(&str, u64, bool)> {
    let record = &event.record;
    if !truthy(record.get(PARTIAL_MESSAGE)?) {
        return None;
    }
    let id = match record.get(PARTIAL_ID)? {
        Value::Str(s) if !s.is_empty() => s.as_str(),
        _ => return None,
    };
    let ordinal = match record.get(PARTIAL_ORDINAL)? {
        Value::Str(s) => s.trim().parse().ok()?,
        Value::UInt(n) => *n,
        Value::Int(n) => u64::try_from(*n).ok()?,
        _ => return None,
    };
    let last = record.get(PARTIAL_LAST).is_some_and(truthy);
    Some((id, ordinal, last))
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Str(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The pieces of one line being held.
#[derive(Debug)]
struct Group {
    /// The pieces by ordinal.
    parts: BTreeMap<u64, Numbered>,
    /// The ordinal of the last piece, once it arrived.
    last: Option<u64>,
    /// The ordinal the group starts at: 1, or where a group cut at `max_bytes` goes on.
    base: u64,
    bytes: usize,
    /// The sequence number of the first piece that arrived.
    first_seq: u64,
}

impl HeldGroup for Group {
    fn first_seq(&self) -> u64 {
        self.first_seq
    }

    fn last_seq(&self) -> u64 {
        self.parts
            .values()
            .map(|(seq, _)| *seq)
            .max()
            .unwrap_or(self.first_seq)
    }
}

impl Group {
    /// A group starting at ordinal `base`, whose first piece to arrive has `first_seq`.
    fn new(base: u64, first_seq: u64) -> Self {
        Self {
            parts: BTreeMap::new(),
            last: None,
            base,
            bytes: 0,
            first_seq,
        }
    }

    fn complete(&self) -> bool {
        let (Some(last), Some(first), Some(high)) = (
            self.last,
            self.parts.keys().next(),
            self.parts.keys().next_back(),
        ) else {
            return false;
        };
        *first <= self.base.max(1)
            && *high == last
            && u64::try_from(self.parts.len()).is_ok_and(|n| n == last - first + 1)
    }

    /// The ordinals held, as `1-3, 5`.
    fn ordinals(&self) -> String {
        let mut text = String::new();
        let mut keys = self.parts.keys().copied().peekable();
        while let Some(start) = keys.next() {
            let mut end = start;
            while keys.peek() == Some(&(end + 1)) {
                end = keys.next().expect("peeked");
            }
            if !text.is_empty() {
                text.push_str(", ");
            }
            let _ = if end == start {
                write!(text, "{start}")
            } else {
                write!(text, "{start}-{end}")
            };
        }
        text
    }
}

/// One session's partial-line state.
#[derive(Debug)]
struct PartialJoiner {
    config: Arc<PartialJoin>,
    /// Held groups by stream key and `partial_id`.
    groups: HeldGroups<Group>,
}

impl PartialJoiner {
    /// The joined event of `group`, with `error` as its `partial_error` when incomplete.
    fn finish(&self, group: Group, error: Option<String>) -> Numbered {
        let first_seq = group.first_seq;
        let mut parts = group.parts.into_values();
        let (_, mut event) = parts.next().expect("a group holds a piece");
        let mut text = self.config.text(&event).to_vec();
        for (_, part) in parts {
            text.extend_from_slice(self.config.text(&part));
        }
        let text = match String::from_utf8(text) {
            Ok(s) => Value::Str(s),
            Err(e) => Value::Bin(e.into_bytes()),
        };
        let record = &mut event.record;
        record.retain(|k, _| {
            !matches!(
                k,
                PARTIAL_MESSAGE | PARTIAL_ID | PARTIAL_ORDINAL | PARTIAL_LAST
            )
        });
        record.insert(self.config.field.as_str(), text);
        if let Some(error) = error {
            record.insert(PARTIAL_ERROR, error);
        }
        (first_seq, event)
    }

    fn incomplete(group: &Group, why: &str) -> String {
        let last = match group.last {
            Some(last) => format!("the last is {last}"),
            None => "the last never arrived".to_owned(),
        };
        format!("{why}: released pieces {} ({last})", group.ordinals())
    }
}

impl Joiner for PartialJoiner {
    fn push(&mut self, tag: &str, event: Numbered, now: Instant, out: &mut Vec<Numbered>) {
        let Some((id, ordinal, last)) =
            piece(&event.1).filter(|_| self.config.has_text_or_nothing(&event.1))
        else {
            out.push(event);
            return;
        };
        let mut key = self
            .groups
            .stream_key(tag, &self.config.stream_fields, &event.1);
        key.push('\0');
        key.push_str(id);
        let size = self.config.text(&event.1).len();

        if let Some(group) = self.groups.get(&key) {
            let why = if group.parts.contains_key(&ordinal) {
                Some("a piece arrived twice")
            } else if group.bytes + size > self.config.max_bytes {
                Some("longer than max_bytes")
            } else {
                None
            };
            if let Some(why) = why {
                // The rest of the line goes on from here.
                let next = Group::new(ordinal, event.0);
                let group = self.groups.replace(&key, next, now).expect("held");
                let error = Self::incomplete(&group, why);
                out.push(self.finish(group, Some(error)));
            }
        } else {
            self.groups
                .insert(&key, tag.len(), Group::new(1, event.0), now);
        }

        let group = self.groups.get_mut(&key).expect("just opened");
        group.bytes += size;
        if last {
            group.last = Some(ordinal);
        }
        group.parts.insert(ordinal, event);
        if group.complete() {
            let group = self.groups.remove(&key).expect("held");
            out.push(self.finish(group, None));
        }
        self.groups.reuse_key(key);
    }

    fn flush_due(&mut self, now: Instant, out: &mut Vec<(String, Numbered)>) {
        while let Some((tag, group)) = self.groups.take_due(now) {
            let error = Self::incomplete(&group, "flush_timeout passed");
            out.push((tag, self.finish(group, Some(error))));
        }
    }

    fn flush_all(&mut self, out: &mut Vec<(String, Numbered)>) {
        for (tag, group) in self.groups.take_all() {
            let error = Self::incomplete(&group, "flushed before the line was complete");
            out.push((tag, self.finish(group, Some(error))));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.groups.next_deadline()
    }

    fn holds(&self, seqs: std::ops::Range<u64>) -> bool {
        self.groups.holds(&seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::EventTime;
    use flumen_event::record::Record;

    fn piece(container: &str, id: &str, ordinal: u64, last: bool, text: &str) -> Event {
        Event {
            time: EventTime::new(1_700_000_000 + ordinal, 0),
            record: Record::from(vec![
                ("container_id".to_owned(), Value::from(container)),
                ("container_name".to_owned(), Value::from("/shop")),
                ("source".to_owned(), Value::from("stdout")),
                ("log".to_owned(), Value::from(text)),
                (PARTIAL_MESSAGE.to_owned(), Value::from("true")),
                (PARTIAL_ID.to_owned(), Value::from(id)),
                (PARTIAL_ORDINAL.to_owned(), Value::from(ordinal.to_string())),
                (PARTIAL_LAST.to_owned(), Value::from(last.to_string())),
            ]),
            metadata: None,
        }
    }

    fn whole(container: &str, text: &str) -> Event {
        Event {
            time: EventTime::new(1, 0),
            record: Record::from(vec![
                ("container_id".to_owned(), Value::from(container)),
                ("source".to_owned(), Value::from("stdout")),
                ("log".to_owned(), Value::from(text)),
            ]),
            metadata: None,
        }
    }

    fn joiner(config: &str) -> Box<dyn Joiner> {
        let config: PartialConfig = toml::from_str(config).expect("config");
        Arc::new(PartialJoin::new(&config).expect("valid")).joiner()
    }

    fn names(event: &Event) -> Vec<&str> {
        event
            .record
            .fields()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect()
    }

    #[test]
    fn pieces_join_into_the_first_record() {
        let mut j = joiner("");
        let now = Instant::now();
        let mut out = Vec::new();
        j.push(
            "docker",
            (10, piece("c1", "p1", 1, false, "aaa")),
            now,
            &mut out,
        );
        j.push(
            "docker",
            (11, piece("c1", "p1", 2, false, "bbb")),
            now,
            &mut out,
        );
        assert!(out.is_empty());
        assert!(j.holds(10..11) && !j.holds(0..10), "10 is the oldest held");
        assert_eq!(j.next_deadline(), Some(now + Duration::from_secs(5)));
        j.push(
            "docker",
            (12, piece("c1", "p1", 3, true, "cc\u{e9}")),
            now,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let (seq, event) = &out[0];
        assert_eq!(*seq, 10);
        assert_eq!(event.time, EventTime::new(1_700_000_001, 0));
        assert_eq!(
            event.record.get("log"),
            Some(&Value::from("aaabbbcc\u{e9}"))
        );
        assert_eq!(
            names(event),
            ["container_id", "container_name", "source", "log"]
        );
        assert!(!j.holds(0..u64::MAX), "nothing is held");
        assert_eq!(j.next_deadline(), None);
    }

    #[test]
    fn a_piece_whose_line_is_not_text_passes_as_it_is() {
        // Found by the joiners fuzz target: joining would have lost the value.
        let mut j = joiner("");
        let mut event = piece("c1", "p", 1, true, "");
        event.record.insert("log", Value::UInt(7));
        let mut out = Vec::new();
        j.push("docker", (3, event.clone()), Instant::now(), &mut out);
        assert_eq!(out, [(3, event)]);
        assert!(!j.holds(0..u64::MAX), "nothing is held");
    }

    #[test]
    fn out_of_order_and_interleaved_pieces() {
        let mut j = joiner("");
        let now = Instant::now();
        let mut out = Vec::new();
        let pieces = [
            piece("c1", "x", 2, false, "x2"),
            piece("c1", "y", 1, false, "y1"),
            piece("c2", "x", 1, false, "other-x1"),
            piece("c1", "x", 3, true, "x3"),
            whole("c1", "a whole line"),
            piece("c1", "y", 2, true, "y2"),
            piece("c1", "x", 1, false, "x1"),
            piece("c2", "x", 2, true, "other-x2"),
        ];
        for (seq, p) in pieces.into_iter().enumerate() {
            j.push("docker", (seq as u64, p), now, &mut out);
        }
        let got: Vec<_> = out
            .iter()
            .map(|(seq, e)| (*seq, e.record.get("log").and_then(Value::as_str).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (4, "a whole line"),
                (1, "y1y2"),
                (0, "x1x2x3"),
                (2, "other-x1other-x2"),
            ]
        );
        // The record is ordinal 1's.
        assert_eq!(out[2].1.time, EventTime::new(1_700_000_001, 0));
    }

    #[test]
    fn a_missing_piece_is_released_at_the_timeout_marked() {
        let mut j = joiner("flush_timeout = \"2s\"");
        let t0 = Instant::now();
        let mut out = Vec::new();
        j.push(
            "docker",
            (0, piece("c1", "p", 1, false, "head-")),
            t0,
            &mut out,
        );
        j.push(
            "docker",
            (1, piece("c1", "p", 3, true, "-tail")),
            t0,
            &mut out,
        );
        let mut late = Vec::new();
        j.flush_due(t0 + Duration::from_millis(1999), &mut late);
        assert!(late.is_empty());
        j.flush_due(t0 + Duration::from_secs(2), &mut late);
        assert_eq!(late.len(), 1);
        let (tag, (seq, event)) = &late[0];
        assert_eq!((tag.as_str(), *seq), ("docker", 0));
        assert_eq!(event.record.get("log"), Some(&Value::from("head--tail")));
        assert_eq!(
            event.record.get(PARTIAL_ERROR),
            Some(&Value::from(
                "flush_timeout passed: released pieces 1, 3 (the last is 3)"
            ))
        );
        assert!(event.record.get(PARTIAL_ID).is_none());
    }

    #[test]
    fn duplicates_size_and_flush_all_never_lose_pieces() {
        let mut j = joiner("max_bytes = 8");
        let now = Instant::now();
        let mut out = Vec::new();
        j.push("d", (0, piece("c", "p", 1, false, "12345")), now, &mut out);
        // A resent piece: what is held goes out, the resend starts again.
        j.push("d", (1, piece("c", "p", 1, false, "12345")), now, &mut out);
        // Past max_bytes: what is held goes out, the rest gathers anew.
        j.push("d", (2, piece("c", "p", 2, false, "6789")), now, &mut out);
        j.push("d", (3, piece("c", "p", 3, true, "0")), now, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|(seq, e)| {
                (
                    *seq,
                    e.record.get("log").and_then(Value::as_str).unwrap(),
                    e.record.get(PARTIAL_ERROR).and_then(Value::as_str),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    0,
                    "12345",
                    Some("a piece arrived twice: released pieces 1 (the last never arrived)")
                ),
                (
                    1,
                    "12345",
                    Some("longer than max_bytes: released pieces 1 (the last never arrived)")
                ),
                (2, "67890", None),
            ]
        );
        j.push("d", (4, piece("c", "q", 1, false, "zz")), now, &mut out);
        let mut rest = Vec::new();
        j.flush_all(&mut rest);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1.0, 4);
        assert!(rest[0].1.1.record.get(PARTIAL_ERROR).is_some());
    }

    #[test]
    fn a_character_cut_between_pieces_comes_back_whole() {
        let mut j = joiner("");
        let now = Instant::now();
        let mut out = Vec::new();
        let bytes = "caf\u{e9}".as_bytes();
        let mut first = piece("c", "p", 1, false, "");
        first.record.insert("log", Value::Bin(bytes[..4].to_vec()));
        let mut second = piece("c", "p", 2, true, "");
        second.record.insert("log", Value::Bin(bytes[4..].to_vec()));
        j.push("d", (0, first), now, &mut out);
        j.push("d", (1, second), now, &mut out);
        assert_eq!(out[0].1.record.get("log"), Some(&Value::from("caf\u{e9}")));
    }

    #[test]
    fn what_is_not_a_usable_piece_passes_through() {
        let mut j = joiner("");
        let now = Instant::now();
        let mut out = Vec::new();
        let mut no_id = piece("c", "p", 1, false, "x");
        no_id.record.remove(PARTIAL_ID);
        let mut not_partial = piece("c", "p", 1, false, "y");
        not_partial.record.insert(PARTIAL_MESSAGE, "false");
        j.push("d", (0, no_id.clone()), now, &mut out);
        j.push("d", (1, not_partial.clone()), now, &mut out);
        assert_eq!(out, [(0, no_id), (1, not_partial)]);
        // Typed metadata (booleans, integers) is understood too.
        let mut typed = piece("c", "p", 1, true, "z");
        typed.record.insert(PARTIAL_MESSAGE, true);
        typed.record.insert(PARTIAL_ORDINAL, Value::UInt(1));
        typed.record.insert(PARTIAL_LAST, true);
        out.clear();
        j.push("d", (2, typed), now, &mut out);
        assert_eq!(
            names(&out[0].1),
            ["container_id", "container_name", "source", "log"]
        );
    }

    #[test]
    fn config() {
        let config: PartialConfig = toml::from_str("").unwrap();
        assert_eq!(config.flush_timeout, Duration::from_secs(5));
        assert_eq!(config.max_bytes, ByteSize::mib(10));
        assert_eq!(config.stream_fields, ["container_id", "source"]);
        assert!(toml::from_str::<PartialConfig>("timeout = \"1s\"").is_err());
        let config: PartialConfig = toml::from_str("flush_timeout = \"0s\"").unwrap();
        assert!(
            PartialJoin::new(&config)
                .unwrap_err()
                .starts_with("flush_timeout: ")
        );
    }
}
