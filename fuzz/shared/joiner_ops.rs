//! How the `joiners` target reads its input as a setup and a list of operations, shared with
//! `gen_seeds` so that seeds are laid out exactly as the target expects.
//!
//! Byte 0 is the setup:
//! - `byte0 & 0x07` (modulo 5): the multiline mode, `java`, `python`, `go`, `ruby` or `custom`
//!   (with [`CUSTOM_START`] as `start_pattern`);
//! - `0x08`: Docker lines — a pushed line may end with `"\n"` or `"\r\n"`, and the multiline
//!   separator is [`DOCKER_SEPARATOR`]; without it lines never end with a newline and the
//!   separator is the default `"\n"`;
//! - `(byte0 >> 4) & 0x03`: the multiline `max_lines`, one of [`MAX_LINES`];
//! - `0x40`: small `max_bytes` ([`SMALL_MAX_BYTES`] for both joiners) instead of the defaults.
//!
//! Then operations, each an opcode byte `op` and its operands:
//! - `op & 7` in `0..=3`, **push a line**: the stream byte is `op >> 3` (see [`Stream`]);
//!   when the stream is a Docker partial piece, one byte of ordinal (`% 6`, so 0 to 5); then
//!   one length byte `n` and `n` bytes of text (fewer at the end of the input). In Docker
//!   mode, `op & 1` ends the line with `"\r\n"` instead of `"\n"` and `op & 2` gives it no
//!   ending. Bytes `\n` and `0x1e` are removed from the text, so that a line is one line and
//!   the separators stay unambiguous. The `log` field is a `Str` when the bytes are UTF-8, a
//!   `Bin` otherwise.
//! - `4`: **advance** the fake clock by the next byte × 25 ms;
//! - `5`: **flush_due** at the current time;
//! - `6`: **push an event without a line**: stream as for a line (and the ordinal byte of a
//!   piece), then one byte `n`: its `log` is `Value::UInt(n)`;
//! - `7`: advance by the next byte × 25 ms, then flush_due.
//!
//! Every event is pushed to both joiners with the same sequence number (0, 1, 2, … in push
//! order).

// The targets and gen_seeds each use a part of this module.
#![allow(dead_code)]

use std::time::Duration;

use flumen_process::multiline::MultilineMode;

/// The multiline modes byte 0 selects.
pub const MODES: [MultilineMode; 5] = [
    MultilineMode::Java,
    MultilineMode::Python,
    MultilineMode::Go,
    MultilineMode::Ruby,
    MultilineMode::Custom,
];

/// `start_pattern` of the `custom` mode: a line that does not start with white space starts
/// an event.
pub const CUSTOM_START: &str = r"^\S";

/// The multiline separator in Docker mode (the ASCII record separator, removed from lines).
pub const DOCKER_SEPARATOR: &str = "\u{1e}";

/// The multiline `max_lines` values byte 0 selects.
pub const MAX_LINES: [usize; 4] = [1000, 1, 2, 3];

/// `max_bytes` of both joiners when `0x40` is set in byte 0.
pub const SMALL_MAX_BYTES: u64 = 64;

/// Bit 3 of byte 0.
pub const DOCKER: u8 = 0x08;
/// Bit 6 of byte 0.
pub const SMALL_BYTES: u8 = 0x40;

/// How long a clock step of 1 lasts.
pub const TICK: Duration = Duration::from_millis(25);

/// The container ids a stream byte selects.
pub const CONTAINERS: [&str; 2] = ["a", "b"];
/// The tags a stream byte selects.
pub const TAGS: [&str; 2] = ["app", "web"];
/// The `partial_id`s a stream byte selects.
pub const PARTIAL_IDS: [&str; 2] = ["p1", "p2"];

/// The setup of byte 0.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub mode: MultilineMode,
    pub docker: bool,
    pub max_lines: usize,
    pub small_bytes: bool,
}

impl Setup {
    pub fn from_byte(byte0: u8) -> Self {
        Self {
            mode: MODES[usize::from(byte0 & 0x07) % MODES.len()],
            docker: byte0 & DOCKER != 0,
            max_lines: MAX_LINES[usize::from((byte0 >> 4) & 0x03)],
            small_bytes: byte0 & SMALL_BYTES != 0,
        }
    }

    /// The multiline separator.
    pub fn separator(&self) -> &'static str {
        if self.docker { DOCKER_SEPARATOR } else { "\n" }
    }
}

/// Where an event goes: the five low bits of a push's opcode shifted right by 3.
/// Bit 0: container (`a`/`b`); bit 1: tag (`app`/`web`); bit 2: a Docker partial piece;
/// bit 3: its `partial_id` (`p1`/`p2`); bit 4: `partial_last = "true"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream(pub u8);

impl Stream {
    pub fn container(self) -> &'static str {
        CONTAINERS[usize::from(self.0 & 1)]
    }
    pub fn tag(self) -> &'static str {
        TAGS[usize::from((self.0 >> 1) & 1)]
    }
    pub fn partial(self) -> bool {
        self.0 & 0x04 != 0
    }
    pub fn partial_id(self) -> &'static str {
        PARTIAL_IDS[usize::from((self.0 >> 3) & 1)]
    }
    pub fn last(self) -> bool {
        self.0 & 0x10 != 0
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A line event; `ordinal` is set for partial pieces; `text` is the whole `log` value's
    /// bytes (line ending included).
    Push {
        stream: Stream,
        ordinal: u64,
        text: Vec<u8>,
    },
    /// An event whose `log` is `Value::UInt(value)`.
    PushOther {
        stream: Stream,
        ordinal: u64,
        value: u64,
    },
    /// Advance the clock by this many ticks.
    Advance(u64),
    FlushDue,
}

/// Reads the setup and the operations; `None` for empty input.
pub fn decode(data: &[u8]) -> Option<(Setup, Vec<Op>)> {
    let (&byte0, mut rest) = data.split_first()?;
    let setup = Setup::from_byte(byte0);
    let mut ops = Vec::new();
    while let Some(op) = take(&mut rest) {
        let stream = Stream(op >> 3);
        let ordinal = |rest: &mut &[u8]| {
            if stream.partial() {
                take(rest).map(|b| u64::from(b % 6))
            } else {
                Some(0)
            }
        };
        match op & 7 {
            kind @ 0..=3 => {
                let Some(ordinal) = ordinal(&mut rest) else {
                    break;
                };
                let len = usize::from(take(&mut rest).unwrap_or(0)).min(rest.len());
                let (bytes, tail) = rest.split_at(len);
                rest = tail;
                let mut text: Vec<u8> = bytes
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\n' && b != 0x1e)
                    .collect();
                if setup.docker && kind & 2 == 0 {
                    if kind & 1 != 0 {
                        text.push(b'\r');
                    }
                    text.push(b'\n');
                }
                ops.push(Op::Push {
                    stream,
                    ordinal,
                    text,
                });
            }
            4 => ops.push(Op::Advance(u64::from(take(&mut rest).unwrap_or(0)))),
            5 => ops.push(Op::FlushDue),
            6 => {
                let Some(ordinal) = ordinal(&mut rest) else {
                    break;
                };
                let value = u64::from(take(&mut rest).unwrap_or(0));
                ops.push(Op::PushOther {
                    stream,
                    ordinal,
                    value,
                });
            }
            _ => {
                ops.push(Op::Advance(u64::from(take(&mut rest).unwrap_or(0))));
                ops.push(Op::FlushDue);
            }
        }
    }
    Some((setup, ops))
}

fn take(rest: &mut &[u8]) -> Option<u8> {
    let (&b, tail) = rest.split_first()?;
    *rest = tail;
    Some(b)
}

/// Writes a push of `text` (which must not contain `\n` or `0x1e`) to `out`: in Docker mode
/// with the line ending `ending` (`""`, `"\n"` or `"\r\n"`), otherwise with none. Text past
/// 255 bytes is cut (at a character boundary).
pub fn encode_push(out: &mut Vec<u8>, stream: Stream, ordinal: u8, ending: &str, text: &str) {
    let kind = match ending {
        "\n" => 0,
        "\r\n" => 1,
        "" => 2,
        other => panic!("line ending {other:?}"),
    };
    assert!(stream.0 < 32, "stream byte has five bits");
    out.push(stream.0 << 3 | kind);
    if stream.partial() {
        out.push(ordinal);
    }
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    assert!(!text.contains(&b'\n') && !text.contains(&0x1e));
    out.push(end as u8);
    out.extend_from_slice(text);
}

/// Writes an advance of `ticks` × [`TICK`], followed by a flush_due when `flush` is set.
pub fn encode_advance(out: &mut Vec<u8>, ticks: u8, flush: bool) {
    out.push(if flush { 7 } else { 4 });
    out.push(ticks);
}
