//! Drives a multiline joiner and a Docker partial-line joiner (`flumen_process::Joiner`) with
//! a sequence of operations read from the input: push a line or an event without a line (on
//! one of four streams, as a Docker partial piece or not), advance a fake clock, `flush_due`;
//! at the end `flush_all`. Layout in `shared/joiner_ops.rs`.
//!
//! Beyond "no panic", it checks the `Joiner` contract — every event pushed comes out exactly
//! once, alone or inside a joined event:
//! - every output carries the sequence number of an event that was pushed, no number comes
//!   out twice, and the tag is that event's;
//! - after every operation, `holds(0..pushed)` is true exactly when `next_deadline` is `Some`;
//!   when it is false everything pushed so far has come out (counted below), so a "no" is
//!   never wrong; after `flush_due(now)` the next deadline is after `now`; after `flush_all`
//!   nothing is held;
//! - multiline: an event without a line (`log` not a string) comes out unchanged. A line event
//!   comes out with its own record, time and metadata, its `log` holding its line or, joined,
//!   its line first and further lines after the separator (and, joined by a built-in mode's
//!   rules, `level = "ERROR"` added). Split on the separator (`"\n"`, or
//!   `0x1e` in Docker mode — lines never contain either, see `joiner_ops.rs`), the lines that
//!   come out are exactly the lines that went in (as a multiset, each without its one trailing
//!   `"\n"`/`"\r\n"`), so their count is the number of line events pushed;
//! - partial: an event that is not a piece comes out unchanged; a joined piece has no
//!   `partial_*` fields left and its container and source are those of its pieces; the bytes
//!   of all `log` values that come out are the bytes that went in (same total, same byte
//!   histogram), and the `log` values that are not text come out as they went in.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::{LEVEL_FIELD, Level};
use flumen_process::multiline::{Multiline, MultilineConfig, MultilineMode};
use flumen_process::partial::{
    PARTIAL_ID, PARTIAL_LAST, PARTIAL_MESSAGE, PARTIAL_ORDINAL, PartialConfig, PartialJoin,
};
use flumen_process::{Joiner, Numbered};
use libfuzzer_sys::fuzz_target;

#[path = "../shared/joiner_ops.rs"]
mod joiner_ops;

use joiner_ops::{CUSTOM_START, MAX_LINES, MODES, Op, SMALL_MAX_BYTES, Setup, Stream, TICK};

/// Compiled steps, one per setup (mode × docker × max_lines × small_bytes).
struct Steps {
    multiline: HashMap<(usize, bool, usize, bool), Arc<Multiline>>,
    partial: [Arc<PartialJoin>; 2],
}

fn steps() -> &'static Steps {
    static STEPS: OnceLock<Steps> = OnceLock::new();
    STEPS.get_or_init(|| {
        let mut multiline = HashMap::new();
        for (mode_index, &mode) in MODES.iter().enumerate() {
            for docker in [false, true] {
                for max_lines in MAX_LINES {
                    for small in [false, true] {
                        let mut config = MultilineConfig::new(mode);
                        if mode == MultilineMode::Custom {
                            config.start_pattern = Some(CUSTOM_START.to_owned());
                        }
                        config.separator = setup_separator(docker).to_owned();
                        config.max_lines = max_lines;
                        if small {
                            config.max_bytes = ByteSize::b(SMALL_MAX_BYTES);
                        }
                        let step = Multiline::new(&config).expect("valid multiline config");
                        multiline.insert((mode_index, docker, max_lines, small), Arc::new(step));
                    }
                }
            }
        }
        let partial = [false, true].map(|small| {
            let mut config = PartialConfig::default();
            if small {
                config.max_bytes = ByteSize::b(SMALL_MAX_BYTES);
            }
            Arc::new(PartialJoin::new(&config).expect("valid partial config"))
        });
        Steps { multiline, partial }
    })
}

fn setup_separator(docker: bool) -> &'static str {
    Setup {
        mode: MultilineMode::Java,
        docker,
        max_lines: 1,
        small_bytes: false,
    }
    .separator()
}

/// A line without its one trailing `"\n"` or `"\r\n"` (as the multiline step strips it).
fn strip_newline(line: &str) -> &str {
    match line.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => line,
    }
}

fn event(seq: u64, stream: Stream, ordinal: u64, log: Value) -> Event {
    let mut fields = vec![
        ("container_id".to_owned(), Value::from(stream.container())),
        ("source".to_owned(), Value::from("stdout")),
        ("log".to_owned(), log),
    ];
    if stream.partial() {
        fields.extend([
            (PARTIAL_MESSAGE.to_owned(), Value::from("true")),
            (PARTIAL_ID.to_owned(), Value::from(stream.partial_id())),
            (PARTIAL_ORDINAL.to_owned(), Value::from(ordinal.to_string())),
            (
                PARTIAL_LAST.to_owned(),
                Value::from(if stream.last() { "true" } else { "false" }),
            ),
        ]);
    }
    Event {
        time: EventTime::new(1_700_000_000 + seq, 0),
        record: Record::from(fields),
        metadata: seq.is_multiple_of(3).then(|| vec![0x81, 0xa1, b'm', 0x01]),
    }
}

fn without_log(record: &Record) -> Record {
    let mut record = record.clone();
    record.remove("log");
    record
}

/// What one joiner was given and what came out of it.
struct Ledger {
    name: &'static str,
    /// Multiline with built-in rules: a joined event gets `level = "ERROR"` unless it has one.
    joined_is_error: bool,
    pushed: HashMap<u64, (&'static str, Event)>,
    out: HashSet<u64>,
    /// Events accounted for by what came out (multiline: lines and events without a line).
    accounted: u64,
    /// Multiline: every line pushed, stripped; every line that came out.
    lines_in: Vec<String>,
    lines_out: Vec<String>,
    /// Partial: byte histograms and totals of the `log` texts, and the other `log` values.
    bytes_in: [u64; 256],
    bytes_out: [u64; 256],
    total_in: u64,
    total_out: u64,
    other_in: Vec<u64>,
    other_out: Vec<u64>,
}

impl Ledger {
    fn new(name: &'static str, joined_is_error: bool) -> Self {
        Self {
            name,
            joined_is_error,
            pushed: HashMap::new(),
            out: HashSet::new(),
            accounted: 0,
            lines_in: Vec::new(),
            lines_out: Vec::new(),
            bytes_in: [0; 256],
            bytes_out: [0; 256],
            total_in: 0,
            total_out: 0,
            other_in: Vec::new(),
            other_out: Vec::new(),
        }
    }

    /// Records an output and returns the event pushed with its sequence number.
    fn take_out(&mut self, tag: &str, seq: u64) -> (&'static str, Event) {
        let name = self.name;
        let (pushed_tag, pushed) = self
            .pushed
            .get(&seq)
            .unwrap_or_else(|| panic!("{name}: seq {seq} came out but was never pushed"))
            .clone();
        assert!(self.out.insert(seq), "{name}: seq {seq} came out twice");
        assert_eq!(
            tag, pushed_tag,
            "{name}: seq {seq} came out with another tag"
        );
        (pushed_tag, pushed)
    }

    fn multiline_in(&mut self, seq: u64, tag: &'static str, event: &Event) {
        if let Some(Value::Str(line)) = event.record.get("log") {
            self.lines_in.push(strip_newline(line).to_owned());
        }
        self.pushed.insert(seq, (tag, event.clone()));
    }

    fn multiline_out(&mut self, separator: &str, tag: &str, (seq, event): &Numbered) {
        let (_, pushed) = self.take_out(tag, *seq);
        let Some(Value::Str(pushed_line)) = pushed.record.get("log") else {
            assert_eq!(
                event, &pushed,
                "multiline: an event without a line is not changed"
            );
            self.accounted += 1;
            return;
        };
        assert_eq!(event.time, pushed.time, "multiline: seq {seq}'s time");
        assert_eq!(
            event.metadata, pushed.metadata,
            "multiline: seq {seq}'s metadata"
        );
        let Some(Value::Str(joined)) = event.record.get("log") else {
            panic!("multiline: seq {seq} came out without a string log: {event:?}");
        };
        let pieces: Vec<&str> = joined.split(separator).collect();
        let mut expected = without_log(&pushed.record);
        if pieces.len() > 1 && self.joined_is_error {
            expected.insert_if_absent(LEVEL_FIELD, Level::Error.as_str());
        }
        assert_eq!(
            without_log(&event.record),
            expected,
            "multiline: seq {seq}'s record (joined: {})",
            pieces.len() > 1
        );
        if pieces.len() == 1 {
            assert_eq!(
                joined, pushed_line,
                "multiline: a lone line comes out unchanged"
            );
            self.lines_out.push(strip_newline(joined).to_owned());
        } else {
            assert_eq!(
                pieces[0],
                strip_newline(pushed_line),
                "multiline: a joined event starts with the line of its seq {seq}"
            );
            self.lines_out
                .extend(pieces.iter().map(|p| (*p).to_owned()));
        }
        self.accounted += pieces.len() as u64;
    }

    fn partial_in(&mut self, seq: u64, tag: &'static str, event: &Event) {
        match event.record.get("log") {
            Some(Value::Str(s)) => self.add_bytes_in(s.as_bytes()),
            Some(Value::Bin(b)) => self.add_bytes_in(b),
            Some(Value::UInt(n)) => self.other_in.push(*n),
            other => panic!("the target pushes no log like {other:?}"),
        }
        self.pushed.insert(seq, (tag, event.clone()));
    }

    fn add_bytes_in(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.bytes_in[usize::from(b)] += 1;
        }
        self.total_in += bytes.len() as u64;
    }

    fn partial_out(&mut self, tag: &str, (seq, event): &Numbered) {
        let (_, pushed) = self.take_out(tag, *seq);
        let bytes: &[u8] = match event.record.get("log") {
            Some(Value::Str(s)) => s.as_bytes(),
            Some(Value::Bin(b)) => b,
            Some(Value::UInt(n)) => {
                self.other_out.push(*n);
                &[]
            }
            other => panic!("partial: seq {seq} came out with the log {other:?}"),
        };
        for &b in bytes {
            self.bytes_out[usize::from(b)] += 1;
        }
        self.total_out += bytes.len() as u64;
        // A piece whose `log` is not text cannot be joined without losing it: it passes as
        // it is, like an event that is not a piece.
        let joinable = pushed.record.get(PARTIAL_MESSAGE).is_some()
            && matches!(pushed.record.get("log"), None | Some(Value::Str(_) | Value::Bin(_)));
        if !joinable {
            assert_eq!(
                event, &pushed,
                "partial: an event that is not a joinable piece is not changed"
            );
            return;
        }
        for field in [PARTIAL_MESSAGE, PARTIAL_ID, PARTIAL_ORDINAL, PARTIAL_LAST] {
            assert!(
                event.record.get(field).is_none(),
                "partial: seq {seq} came out with {field}: {event:?}"
            );
        }
        for field in ["container_id", "source"] {
            assert_eq!(
                event.record.get(field),
                pushed.record.get(field),
                "partial: seq {seq}'s {field}"
            );
        }
    }

    /// Whether everything pushed so far has come out.
    fn all_out(&self, multiline: bool) -> bool {
        if multiline {
            self.accounted == self.pushed.len() as u64
        } else {
            self.total_out == self.total_in
        }
    }
}

/// The `holds` / `next_deadline` checks after an operation.
fn check_held(joiner: &dyn Joiner, ledger: &Ledger, multiline: bool) {
    let name = ledger.name;
    let pushed = ledger.pushed.len() as u64;
    let holds = joiner.holds(0..pushed);
    assert_eq!(
        holds,
        joiner.next_deadline().is_some(),
        "{name}: holds(0..{pushed}) {holds} vs next_deadline {:?}",
        joiner.next_deadline()
    );
    if !holds {
        assert!(
            ledger.all_out(multiline),
            "{name}: nothing is held, yet not everything pushed came out"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((setup, ops)) = joiner_ops::decode(data) else {
        return;
    };
    let steps = steps();
    let mode_index = MODES.iter().position(|m| *m == setup.mode).expect("listed");
    let separator = setup.separator();
    let mut multiline =
        steps.multiline[&(mode_index, setup.docker, setup.max_lines, setup.small_bytes)].joiner();
    let mut partial = steps.partial[usize::from(setup.small_bytes)].joiner();
    let mut ml = Ledger::new("multiline", setup.mode != MultilineMode::Custom);
    let mut pj = Ledger::new("partial", false);

    let start = Instant::now();
    let mut clock = Duration::ZERO;
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut tagged = Vec::new();

    for op in ops {
        let now = start + clock;
        match op {
            Op::Push {
                stream,
                ordinal,
                ref text,
            } => {
                let log = match String::from_utf8(text.clone()) {
                    Ok(s) => Value::Str(s),
                    Err(e) => Value::Bin(e.into_bytes()),
                };
                push(
                    &mut *multiline,
                    &mut *partial,
                    &mut ml,
                    &mut pj,
                    separator,
                    seq,
                    stream,
                    event(seq, stream, ordinal, log),
                    now,
                    &mut out,
                );
                seq += 1;
            }
            Op::PushOther {
                stream,
                ordinal,
                value,
            } => {
                push(
                    &mut *multiline,
                    &mut *partial,
                    &mut ml,
                    &mut pj,
                    separator,
                    seq,
                    stream,
                    event(seq, stream, ordinal, Value::UInt(value)),
                    now,
                    &mut out,
                );
                seq += 1;
            }
            Op::Advance(ticks) => {
                clock += TICK * u32::try_from(ticks).expect("a byte");
            }
            Op::FlushDue => {
                tagged.clear();
                multiline.flush_due(now, &mut tagged);
                for (tag, numbered) in &tagged {
                    ml.multiline_out(separator, tag, numbered);
                }
                if let Some(at) = multiline.next_deadline() {
                    assert!(
                        at > now,
                        "multiline: a deadline at or before now after flush_due"
                    );
                }
                tagged.clear();
                partial.flush_due(now, &mut tagged);
                for (tag, numbered) in &tagged {
                    pj.partial_out(tag, numbered);
                }
                if let Some(at) = partial.next_deadline() {
                    assert!(
                        at > now,
                        "partial: a deadline at or before now after flush_due"
                    );
                }
            }
        }
        check_held(&*multiline, &ml, true);
        check_held(&*partial, &pj, false);
    }

    tagged.clear();
    multiline.flush_all(&mut tagged);
    for (tag, numbered) in &tagged {
        ml.multiline_out(separator, tag, numbered);
    }
    tagged.clear();
    partial.flush_all(&mut tagged);
    for (tag, numbered) in &tagged {
        pj.partial_out(tag, numbered);
    }
    for (joiner, ledger, is_multiline) in [(&multiline, &ml, true), (&partial, &pj, false)] {
        assert!(
            !joiner.holds(0..u64::MAX),
            "{}: held after flush_all",
            ledger.name
        );
        assert_eq!(
            joiner.next_deadline(),
            None,
            "{}: deadline after flush_all",
            ledger.name
        );
        check_held(&**joiner, ledger, is_multiline);
    }

    // Conservation.
    ml.lines_in.sort_unstable();
    ml.lines_out.sort_unstable();
    assert_eq!(
        ml.lines_out.len(),
        ml.lines_in.len(),
        "multiline: as many lines come out as went in"
    );
    assert_eq!(
        ml.lines_out, ml.lines_in,
        "multiline: the lines that came out"
    );
    assert_eq!(pj.total_out, pj.total_in, "partial: bytes out vs in");
    assert!(
        pj.bytes_out == pj.bytes_in,
        "partial: byte histogram out vs in"
    );
    pj.other_in.sort_unstable();
    pj.other_out.sort_unstable();
    assert_eq!(
        pj.other_out, pj.other_in,
        "partial: the log values that are not text (Value::UInt) out vs in"
    );
});

#[allow(clippy::too_many_arguments)]
fn push(
    multiline: &mut dyn Joiner,
    partial: &mut dyn Joiner,
    ml: &mut Ledger,
    pj: &mut Ledger,
    separator: &str,
    seq: u64,
    stream: Stream,
    event: Event,
    now: Instant,
    out: &mut Vec<Numbered>,
) {
    let tag = stream.tag();
    ml.multiline_in(seq, tag, &event);
    pj.partial_in(seq, tag, &event);

    out.clear();
    multiline.push(tag, (seq, event.clone()), now, out);
    for numbered in out.iter() {
        ml.multiline_out(separator, tag, numbered);
    }
    out.clear();
    partial.push(tag, (seq, event), now, out);
    for numbered in out.iter() {
        pj.partial_out(tag, numbered);
    }
}
