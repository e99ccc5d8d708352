//! Zero-copy msgpack reading.
//!
//! The hot path of flumen validates every chunk a sender delivers without building values:
//! [`Reader`] walks a byte slice, hands out sub-slices, and tells an *incomplete* buffer (read
//! more bytes and try again) from an *invalid* one (close the connection). Skipping a value is a
//! loop over a count of pending items, not recursion, so hostile nesting cannot overflow the
//! stack, and every element costs at least one byte, so a lying length cannot make it spin.
//!
//! Writing msgpack is left to the `rmp` crate, but for strings ([`write_str`]), which are most
//! of what records hold: writing their header straight into the vector is several times faster
//! than going through `io::Write`.

use crate::EventTime;

/// Why a msgpack buffer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The buffer ends inside a value: more bytes may complete it.
    #[error("incomplete msgpack value")]
    Incomplete,
    /// The bytes are not what the protocol allows here; more bytes will not help.
    #[error("{0}")]
    Invalid(&'static str),
}

/// One msgpack value's header, with the payload of scalars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A string's bytes (UTF-8 is not checked here).
    Str(&'a [u8]),
    /// Binary bytes.
    Bin(&'a [u8]),
    /// An array header: this many values follow.
    Array(u32),
    /// A map header: this many key/value pairs follow.
    Map(u32),
    /// An extension value: type and data.
    Ext(i8, &'a [u8]),
}

/// A cursor over a msgpack byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type Result<T> = std::result::Result<T, MsgpackError>;

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The whole underlying buffer.
    pub fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Incomplete)?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(MsgpackError::Incomplete)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize> {
        Ok(usize::from(self.byte()?))
    }

    fn len16(&mut self) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<usize> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// The next byte, without consuming it.
    pub fn peek(&self) -> Result<u8> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(MsgpackError::Incomplete)
    }

    /// Reads one value's header (and a scalar's payload).
    pub fn read(&mut self) -> Result<Value<'a>> {
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::UInt(u64::from(marker)),
            0x80..=0x8f => Value::Map(u32::from(marker & 0x0f)),
            0x90..=0x9f => Value::Array(u32::from(marker & 0x0f)),
            0xa0..=0xbf => Value::Str(self.take(usize::from(marker & 0x1f))?),
            0xc0 => Value::Nil,
            0xc1 => return Err(MsgpackError::Invalid("reserved msgpack marker 0xc1")),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Value::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Value::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Value::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = match marker {
                    0xc7 => self.len8()?,
                    0xc8 => self.len16()?,
                    _ => self.len32()?,
                };
                let ty = self.byte()? as i8;
                Value::Ext(ty, self.take(n)?)
            }
            0xca => Value::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::UInt(u64::from(self.byte()?)),
            0xcd => Value::UInt(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::UInt(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Value::UInt(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::Int(i64::from(self.byte()? as i8)),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => {
                let n = 1usize << (marker - 0xd4);
                let ty = self.byte()? as i8;
                Value::Ext(ty, self.take(n)?)
            }
            0xd9 => {
                let n = self.len8()?;
                Value::Str(self.take(n)?)
            }
            0xda => {
                let n = self.len16()?;
                Value::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.len32()?;
                Value::Str(self.take(n)?)
            }
            0xdc => Value::Array(self.len16()? as u32),
            0xdd => Value::Array(self.len32()? as u32),
            0xde => Value::Map(self.len16()? as u32),
            0xdf => Value::Map(self.len32()? as u32),
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
        })
    }

    /// Skips one whole value (with everything nested in it) and returns its bytes.
    ///
    /// This is the validation hot path: it computes each item's size from its marker without
    /// building a [`Value`].
    pub fn skip_value(&mut self) -> Result<&'a [u8]> {
        let value = &self.buf[self.pos..];
        let len = ValueScan::new().resume(value)?;
        self.pos += len;
        Ok(&value[..len])
    }

    /// Reads an array header.
    pub fn read_array_len(&mut self) -> Result<u32> {
        match self.read()? {
            Value::Array(n) => Ok(n),
            _ => Err(MsgpackError::Invalid("expected an array")),
        }
    }

    /// Reads a string or binary value's bytes (senders use both for tags and packed entries).
    pub fn read_str_or_bin(&mut self) -> Result<&'a [u8]> {
        match self.read()? {
            Value::Str(b) | Value::Bin(b) => Ok(b),
            _ => Err(MsgpackError::Invalid("expected a string or binary")),
        }
    }

    /// Reads a map value and returns its bytes; anything else is invalid.
    pub fn read_map_raw(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        if !matches!(self.read()?, Value::Map(_)) {
            return Err(MsgpackError::Invalid("expected a map"));
        }
        self.pos = start;
        self.skip_value()
    }

    /// Reads an event time: EventTime (ext type 0, fixext8 or ext8), an integer, or a float.
    pub fn read_time(&mut self) -> Result<EventTime> {
        match self.read()? {
            Value::Ext(0, data) if data.len() == 8 => {
                let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let nanos = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                if nanos >= 1_000_000_000 {
                    return Err(MsgpackError::Invalid("EventTime nanoseconds out of range"));
                }
                Ok(EventTime::new(u64::from(secs), nanos))
            }
            Value::UInt(secs) if secs <= u64::from(u32::MAX) => Ok(EventTime::new(secs, 0)),
            Value::UInt(_) => Err(MsgpackError::Invalid("event time past the year 2106")),
            Value::F64(secs) => {
                EventTime::from_f64_secs(secs).ok_or(MsgpackError::Invalid("time out of range"))
            }
            Value::F32(secs) => EventTime::from_f64_secs(f64::from(secs))
                .ok_or(MsgpackError::Invalid("time out of range")),
            Value::Int(_) => Err(MsgpackError::Invalid("negative event time")),
            _ => Err(MsgpackError::Invalid("expected an event time")),
        }
    }
}

/// A walk over one msgpack value that stops where the bytes run out and, given more bytes,
/// goes on from there: a value arriving in pieces is scanned once, not once per piece.
///
/// It keeps what [`Reader::skip_value`] keeps in its loop — how far the value's whole items
/// reach, and how many items are still to come — and only ever moves past whole items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueScan {
    /// Bytes of the value's items scanned so far.
    scanned: usize,
    /// Items still to come (1 before the value's first byte).
    pending: u64,
}

impl Default for ValueScan {
    fn default() -> Self {
        Self::new()
    }
}

impl ValueScan {
    /// A scan at the start of a value.
    pub fn new() -> Self {
        Self {
            scanned: 0,
            pending: 1,
        }
    }

    /// Scans on through `buf`, which starts at the value's first byte and extends what
    /// earlier calls saw. Returns the value's length once it is whole;
    /// [`MsgpackError::Incomplete`] when more bytes are needed (call again with them).
    pub fn resume(&mut self, buf: &[u8]) -> Result<usize> {
        // Locals, written back once: this loop is the validation hot path.
        let mut pos = self.scanned;
        let mut pending = self.pending;
        let outcome = loop {
            if pending == 0 {
                break Ok(pos);
            }
            match item_at(buf, pos) {
                Ok((size, items)) => {
                    pos += size;
                    pending = pending - 1 + items;
                }
                Err(error) => break Err(error),
            }
        };
        self.scanned = pos;
        self.pending = pending;
        outcome
    }
}

/// The item starting at `pos` in `buf`, computed from its marker: how many bytes it takes and
/// how many nested items follow it. Incomplete unless all its bytes are in `buf`.
#[inline(always)]
fn item_at(buf: &[u8], pos: usize) -> Result<(usize, u64)> {
    let marker = *buf.get(pos).ok_or(MsgpackError::Incomplete)?;
    let at = pos + 1;
    let be_len = |width: usize| -> Result<usize> {
        let bytes = buf.get(at..at + width).ok_or(MsgpackError::Incomplete)?;
        Ok(bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    };
    // (bytes after the marker, nested items that follow)
    let (size, items): (usize, u64) = match marker {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
        0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => (0, u64::from(marker & 0x0f)),
        0xa0..=0xbf => (usize::from(marker & 0x1f), 0),
        0xc1 => return Err(MsgpackError::Invalid("reserved msgpack marker 0xc1")),
        0xc4 | 0xd9 => (1 + be_len(1)?, 0),
        0xc5 | 0xda => (2 + be_len(2)?, 0),
        0xc6 | 0xdb => (4 + be_len(4)?, 0),
        0xc7 => (2 + be_len(1)?, 0),
        0xc8 => (3 + be_len(2)?, 0),
        0xc9 => (5 + be_len(4)?, 0),
        0xca | 0xce | 0xd2 => (4, 0),
        0xcb | 0xcf | 0xd3 => (8, 0),
        0xcc | 0xd0 => (1, 0),
        0xcd | 0xd1 => (2, 0),
        0xd4..=0xd8 => (1 + (1usize << (marker - 0xd4)), 0),
        0xdc => (2, be_len(2)? as u64),
        0xdd => (4, be_len(4)? as u64),
        0xde => (2, 2 * be_len(2)? as u64),
        0xdf => (4, 2 * be_len(4)? as u64),
    };
    match at.checked_add(size) {
        Some(end) if end <= buf.len() => Ok((end - pos, items)),
        _ => Err(MsgpackError::Incomplete),
    }
}

/// Appends a msgpack string holding `s` (bytes the caller vouches for as UTF-8, or accepts
/// being read as a string anyway, as Fluentd senders do).
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    match len {
        0..32 => out.push(0xa0 | len as u8),
        32..256 => out.extend_from_slice(&[0xd9, len as u8]),
        256..65536 => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reports_incomplete_for_every_prefix() {
        let mut buf = Vec::new();
        rmp::encode::write_array_len(&mut buf, 3).unwrap();
        rmp::encode::write_str(&mut buf, "tag").unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "k").unwrap();
        rmp::encode::write_bin(&mut buf, &[1, 2, 3]).unwrap();
        rmp::encode::write_u64(&mut buf, u64::MAX).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(
                Reader::new(&buf[..cut]).skip_value(),
                Err(MsgpackError::Incomplete),
                "prefix {cut}"
            );
        }
        let mut r = Reader::new(&buf);
        assert_eq!(r.skip_value().unwrap(), &buf[..]);
        assert!(r.is_empty());
    }

    #[test]
    fn huge_claimed_lengths_end_as_incomplete() {
        // array32 claiming 4 billion elements, followed by nothing.
        let buf = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Reader::new(&buf).skip_value(),
            Err(MsgpackError::Incomplete)
        );
    }

    #[test]
    fn reads_event_time_forms() {
        let mut buf = Vec::new();
        EventTime::new(7, 9).write_msgpack(&mut buf);
        buf.extend_from_slice(&[0xc7, 8, 0, 0, 0, 0, 1, 0, 0, 0, 2]); // ext8 form
        rmp::encode::write_uint(&mut buf, 42).unwrap();
        let mut r = Reader::new(&buf);
        assert_eq!(r.read_time().unwrap(), EventTime::new(7, 9));
        assert_eq!(r.read_time().unwrap(), EventTime::new(1, 2));
        assert_eq!(r.read_time().unwrap(), EventTime::new(42, 0));
    }
}
