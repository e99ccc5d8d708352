//! The Fluentd Forward Protocol v1, sans I/O.
//!
//! A connection carries msgpack frames back to back. [`FrameDecoder::decode`] (or, for one
//! buffer, [`decode_frame`]) looks at the start of a receive buffer and returns either a whole
//! frame and how many bytes it used, or `None` when more bytes are needed; the decoder
//! remembers how far it scanned a partial frame, so a large frame arriving in small reads costs
//! one scan, not one per read. The four event modes all come out as one [`ForwardFrame`]: a
//! tag and a validated stream of entries, borrowed from the buffer where possible:
//!
//! | mode | frame | entries |
//! |---|---|---|
//! | Message | `[tag, time, record, option?]` | rebuilt as one `[time, record]` |
//! | Forward | `[tag, [[time, record], ...], option?]` | the array's contents, borrowed |
//! | PackedForward | `[tag, bin\|str, option?]` | the bin's contents, borrowed |
//! | CompressedPackedForward | as PackedForward, `compressed: "gzip"` | inflated (every gzip member) |
//!
//! A msgpack `nil` on its own is a heartbeat. Options: `chunk` asks for an `{"ack": chunk}`
//! answer ([`encode_ack`]), `size` is informational, `compressed: "text"` means uncompressed,
//! unknown options are ignored. Every error is fatal for the connection: after a malformed frame
//! the stream has no reliable frame boundary left.

use std::borrow::Cow;
use std::io::Read;

use flumen_event::EventTime;
use flumen_event::entry::{EntryError, validate_entries, write_entry};
use flumen_event::msgpack::{MsgpackError, Reader, Value, ValueScan};

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest frame accepted, in bytes, and the most a compressed chunk may inflate to.
    pub max_frame_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 * 1024 * 1024,
        }
    }
}

/// Which of the protocol's event modes a frame used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One event: `[tag, time, record, option?]`.
    Message,
    /// An array of entries.
    Forward,
    /// Entries packed into a binary or string.
    PackedForward,
    /// Packed entries, gzip-compressed.
    CompressedPackedForward,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardFrame<'a> {
    /// Which mode the sender used.
    pub mode: Mode,
    /// The tag.
    pub tag: &'a str,
    /// The entries, validated, laid end to end.
    pub entries: Cow<'a, [u8]>,
    /// How many entries there are.
    pub count: u32,
    /// The `chunk` option: when present the sender waits for `{"ack": chunk}`.
    pub chunk: Option<&'a [u8]>,
}

/// What one step of decoding found at the start of the buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// A frame carrying events.
    Frame(ForwardFrame<'a>),
    /// A `nil` heartbeat: nothing to do.
    Heartbeat,
}

/// Why a frame was refused. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The bytes are not a Forward frame.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// An entry inside the frame is malformed.
    #[error("malformed entry: {0}")]
    Entry(#[from] EntryError),
    /// The frame is larger than [`Limits::max_frame_size`].
    #[error("frame of at least {size} bytes is over the limit of {limit}")]
    FrameTooLarge {
        /// How many bytes the frame has at least.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A compressed chunk inflates past [`Limits::max_frame_size`].
    #[error("compressed chunk inflates past the limit of {limit} bytes")]
    InflatedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A compressed chunk is not valid gzip.
    #[error("invalid gzip data: {0}")]
    Gzip(String),
    /// The frame uses an option value flumen does not support.
    #[error("unsupported {0}")]
    Unsupported(&'static str),
}

impl ForwardError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::Malformed(_) | ForwardError::Entry(_) => "malformed",
            ForwardError::FrameTooLarge { .. } => "too_large",
            ForwardError::InflatedTooLarge { .. } => "inflated_too_large",
            ForwardError::Gzip(_) => "gzip",
            ForwardError::Unsupported(_) => "unsupported",
        }
    }
}

fn malformed(error: MsgpackError) -> ForwardError {
    match error {
        MsgpackError::Incomplete => ForwardError::Malformed("truncated value"),
        MsgpackError::Invalid(reason) => ForwardError::Malformed(reason),
    }
}

/// Decodes the frame at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again with the
/// whole buffer), or the decoded frame and the number of bytes it used. Each call scans the
/// frame from its start: a connection, which calls again after every read, uses a
/// [`FrameDecoder`] instead.
pub fn decode_frame<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<(Decoded<'a>, usize)>, ForwardError> {
    FrameDecoder::new(*limits).decode(buf)
}

/// Decodes the frames of one connection, remembering how far a partial frame was scanned, so
/// that a frame arriving in many small reads is scanned once in all, not once per read.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: Limits,
    /// How far the frame at the start of the buffer was scanned.
    scan: ValueScan,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            scan: ValueScan::new(),
        }
    }

    /// Decodes the frame at the start of `buf`, as [`decode_frame`] does, going on from where
    /// the last call stopped.
    ///
    /// Between calls, `buf` may only grow at its end, or, after a frame was returned, lose that
    /// frame's bytes at its start (the caller advances past what was used).
    pub fn decode<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Option<(Decoded<'a>, usize)>, ForwardError> {
        let limits = &self.limits;
        let len = match self.scan.resume(buf) {
            Ok(len) => len,
            Err(MsgpackError::Incomplete) => {
                if buf.len() > limits.max_frame_size {
                    return Err(ForwardError::FrameTooLarge {
                        size: buf.len(),
                        limit: limits.max_frame_size,
                    });
                }
                return Ok(None);
            }
            Err(MsgpackError::Invalid(reason)) => return Err(ForwardError::Malformed(reason)),
        };
        // The next frame starts a new scan, whatever this one turns out to hold.
        self.scan = ValueScan::new();
        let frame = &buf[..len];
        if frame.len() > limits.max_frame_size {
            return Err(ForwardError::FrameTooLarge {
                size: frame.len(),
                limit: limits.max_frame_size,
            });
        }
        if frame == [0xc0] {
            return Ok(Some((Decoded::Heartbeat, 1)));
        }
        let decoded = decode_whole_frame(frame, limits)?;
        Ok(Some((Decoded::Frame(decoded), frame.len())))
    }
}

/// Decodes one complete frame (exactly one msgpack value).
fn decode_whole_frame<'a>(
    frame: &'a [u8],
    limits: &Limits,
) -> Result<ForwardFrame<'a>, ForwardError> {
    let mut r = Reader::new(frame);
    let len = r
        .read_array_len()
        .map_err(|_| ForwardError::Malformed("a frame must be an array"))?;
    if !(2..=4).contains(&len) {
        return Err(ForwardError::Malformed("a frame must have 2 to 4 elements"));
    }
    let tag = r
        .read_str_or_bin()
        .map_err(|_| ForwardError::Malformed("the tag must be a string"))?;
    let tag =
        std::str::from_utf8(tag).map_err(|_| ForwardError::Malformed("the tag is not UTF-8"))?;
    let second = r.peek().map_err(malformed)?;
    match second {
        // An array of entries: Forward mode.
        0x90..=0x9f | 0xdc | 0xdd => {
            let count = r.read_array_len().map_err(malformed)?;
            let start = r.position();
            for _ in 0..count {
                r.skip_value().map_err(malformed)?;
            }
            let entries = &frame[start..r.position()];
            let options = read_options(&mut r, len - 2)?;
            let validated = validate_entries(entries)?;
            debug_assert_eq!(validated, count);
            finish(
                Mode::Forward,
                tag,
                Cow::Borrowed(entries),
                validated,
                options,
            )
        }
        // Packed entries: PackedForward or CompressedPackedForward.
        0xa0..=0xbf | 0xc4..=0xc6 | 0xd9..=0xdb => {
            let packed = r.read_str_or_bin().map_err(malformed)?;
            let options = read_options(&mut r, len - 2)?;
            let (mode, entries) = if options.gzip {
                (
                    Mode::CompressedPackedForward,
                    Cow::Owned(gunzip(packed, limits.max_frame_size)?),
                )
            } else {
                (Mode::PackedForward, Cow::Borrowed(packed))
            };
            let count = validate_entries(&entries)?;
            finish(mode, tag, entries, count, options)
        }
        // Anything else must be a time: Message mode.
        _ => {
            if len < 3 {
                return Err(ForwardError::Malformed(
                    "a message needs a time and a record",
                ));
            }
            let time_start = r.position();
            let time = r.read_time().map_err(malformed)?;
            let time_len = r.position() - time_start;
            let record = r.read_map_raw().map_err(malformed)?;
            let options = read_options(&mut r, len - 3)?;
            if options.gzip {
                return Err(ForwardError::Unsupported("compression in Message mode"));
            }
            let mut entry = Vec::with_capacity(1 + time_len + record.len());
            write_entry(&mut entry, time, record);
            finish(Mode::Message, tag, Cow::Owned(entry), 1, options)
        }
    }
}

fn finish<'a>(
    mode: Mode,
    tag: &'a str,
    entries: Cow<'a, [u8]>,
    count: u32,
    options: Options<'a>,
) -> Result<ForwardFrame<'a>, ForwardError> {
    Ok(ForwardFrame {
        mode,
        tag,
        entries,
        count,
        chunk: options.chunk,
    })
}

#[derive(Debug, Default)]
struct Options<'a> {
    chunk: Option<&'a [u8]>,
    gzip: bool,
}

/// Reads the optional trailing option map (`remaining` is 0 or 1 elements left in the frame).
fn read_options<'a>(r: &mut Reader<'a>, remaining: u32) -> Result<Options<'a>, ForwardError> {
    let mut options = Options::default();
    if remaining == 0 {
        return Ok(options);
    }
    let pairs = match r.read().map_err(malformed)? {
        Value::Map(n) => n,
        Value::Nil => return Ok(options),
        _ => return Err(ForwardError::Malformed("options must be a map")),
    };
    for _ in 0..pairs {
        let key = r
            .read_str_or_bin()
            .map_err(|_| ForwardError::Malformed("option keys must be strings"))?;
        match key {
            b"chunk" => {
                let chunk = r
                    .read_str_or_bin()
                    .map_err(|_| ForwardError::Malformed("the chunk option must be a string"))?;
                options.chunk = Some(chunk);
            }
            b"compressed" => match r.read_str_or_bin().map_err(malformed)? {
                b"gzip" => options.gzip = true,
                b"text" => options.gzip = false,
                _ => {
                    return Err(ForwardError::Unsupported(
                        "compression (only gzip and text)",
                    ));
                }
            },
            _ => {
                r.skip_value().map_err(malformed)?;
            }
        }
    }
    Ok(options)
}

/// Inflates every concatenated gzip member, refusing to grow past `limit` bytes.
fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, ForwardError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(data);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ForwardError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(ForwardError::InflatedTooLarge { limit });
    }
    Ok(out)
}

/// Encodes the answer to a frame that carried a `chunk` option: `{"ack": chunk}`.
pub fn encode_ack(chunk: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    out.extend_from_slice(&[0xa3, b'a', b'c', b'k']);
    flumen_event::msgpack::write_str(out, chunk);
}

/// Reads an ack answer `{"ack": chunk}` from the start of `buf`: the chunk id and the bytes used,
/// `None` if incomplete.
pub fn decode_ack(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ForwardError> {
    let mut r = Reader::new(buf);
    let value = match r.skip_value() {
        Ok(v) => v,
        Err(MsgpackError::Incomplete) => return Ok(None),
        Err(MsgpackError::Invalid(reason)) => return Err(ForwardError::Malformed(reason)),
    };
    let mut m = Reader::new(value);
    let Value::Map(pairs) = m.read().map_err(malformed)? else {
        return Err(ForwardError::Malformed("an ack must be a map"));
    };
    for _ in 0..pairs {
        let key = m.read_str_or_bin().map_err(malformed)?;
        if key == b"ack" {
            let chunk = m.read_str_or_bin().map_err(malformed)?;
            return Ok(Some((chunk, value.len())));
        }
        m.skip_value().map_err(malformed)?;
    }
    Err(ForwardError::Malformed(
        "an ack map must have an \"ack\" key",
    ))
}

/// How a [`PackedForwardEncoder`] lays out the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// PackedForward: entries as a bin.
    None,
    /// CompressedPackedForward: entries gzipped into a bin.
    Gzip,
}

/// Encodes PackedForward frames: `[tag, bin(entries), {"size": n, "chunk"?: id, "compressed"?}]`.
pub fn encode_packed_forward(
    out: &mut Vec<u8>,
    tag: &str,
    entries: &[u8],
    count: u32,
    chunk: Option<&str>,
    compression: Compression,
) {
    out.push(0x93);
    rmp::encode::write_str(out, tag).expect("Vec write");
    match compression {
        Compression::None => rmp::encode::write_bin(out, entries).expect("Vec write"),
        Compression::Gzip => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(entries).expect("Vec write");
            let compressed = gz.finish().expect("Vec write");
            rmp::encode::write_bin(out, &compressed).expect("Vec write");
        }
    }
    let pairs = 1 + u32::from(chunk.is_some()) + u32::from(compression == Compression::Gzip);
    rmp::encode::write_map_len(out, pairs).expect("Vec write");
    rmp::encode::write_str(out, "size").expect("Vec write");
    rmp::encode::write_uint(out, u64::from(count)).expect("Vec write");
    if let Some(chunk) = chunk {
        rmp::encode::write_str(out, "chunk").expect("Vec write");
        rmp::encode::write_str(out, chunk).expect("Vec write");
    }
    if compression == Compression::Gzip {
        rmp::encode::write_str(out, "compressed").expect("Vec write");
        rmp::encode::write_str(out, "gzip").expect("Vec write");
    }
}

/// The UDP heartbeat answer Fluentd's `in_forward` sends back to any datagram.
pub const UDP_HEARTBEAT_REPLY: &[u8] = b"\0";

/// Encodes a Message-mode frame `[tag, time, record, {"chunk": id}?]`.
pub fn write_message(
    out: &mut Vec<u8>,
    tag: &str,
    time: EventTime,
    record: &[u8],
    chunk: Option<&str>,
) {
    out.push(if chunk.is_some() { 0x94 } else { 0x93 });
    rmp::encode::write_str(out, tag).expect("Vec write");
    time.write_msgpack(out);
    out.extend_from_slice(record);
    if let Some(chunk) = chunk {
        rmp::encode::write_map_len(out, 1).expect("Vec write");
        rmp::encode::write_str(out, "chunk").expect("Vec write");
        rmp::encode::write_str(out, chunk).expect("Vec write");
    }
}

#[cfg(test)]
mod tests;
