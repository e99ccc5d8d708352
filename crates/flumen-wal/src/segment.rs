//! Segment files: naming, header, record framing, and the scanner that reads records back,
//! skipping corrupt ones.
//!
//! # On-disk format
//!
//! The log is a directory of segment files named after the sequence number of their first
//! record, zero-padded so that names sort in order: `00000000000000000042.wal`.
//!
//! ```text
//! segment := magic (8 bytes) first_seq (u64 LE)                               16 bytes
//! record  := len (u32 LE) crc (u32 LE) seq (u64 LE) payload (len bytes)       "FLUMWAL2"
//! crc     := crc32c(payload ‖ len ‖ seq), len and seq as in the header
//! ```
//!
//! Every record carries its own sequence number, consecutive across segments, and the checksum
//! covers the header as well as the payload. So a block of zeros is never a record (the
//! CRC32C of twelve zero bytes is not 0), and a valid record found in the wrong place (a stale
//! block, a copy) has the wrong sequence number and is rejected. The payload's checksum is
//! computed first so that an appending task can compute it before the writer thread assigns
//! the sequence number; the writer then only extends it over the 12 header bytes.
//!
//! Segments written by earlier versions (magic `"FLUMWAL1"`) are still read; new segments are
//! always written in the current format. Their records are `len (u32 LE) crc32c(payload)
//! (u32 LE) payload`, numbered by position: the n-th record of a segment whose first sequence
//! number is `f` has sequence number `f + n`.
//!
//! # Corruption
//!
//! A record is trusted only when its whole payload is present, its checksum matches and (in
//! the current format) its sequence number is the next one expected, or, after corrupt bytes,
//! a later one that those bytes could have held (each record takes at least a header's worth
//! of bytes). [`SegmentScanner`] skips a corrupt record by looking for the next such record and
//! reports the bytes and records it skipped: one bad record never hides the good ones after it.
//! Only corruption running to the end of the newest segment, with no valid record after it, is
//! a torn tail, which recovery cuts off.
//!
//! A segment's header is checked against its name. Readers skip a segment whose header is
//! corrupt. Recovery mends the newest segment's instead, as the file's name is enough to read
//! its records ([`SegmentScanner::open_despite_header`]): valid records numbered from the
//! name's sequence number confirm the segment, and the header is written again
//! ([`rewrite_header`]); a segment with no valid record at all is renamed `<name>.corrupt`
//! and left for inspection, and the log goes on in a new segment.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::WalError;

/// The magic of segments in the current format.
pub(crate) const MAGIC: &[u8; 8] = b"FLUMWAL2";
/// The magic of segments written by earlier versions, still read.
const MAGIC_V1: &[u8; 8] = b"FLUMWAL1";
pub(crate) const HEADER_LEN: u64 = 16;
/// The length of a record's header in the current format.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// The length of a record's header in earlier versions' segments.
const RECORD_HEADER_LEN_V1: usize = 8;
/// The largest payload a record may carry.
pub const MAX_RECORD_LEN: usize = 256 * 1024 * 1024;
/// How much a scanner reads from a segment at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// A segment's record format, told by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `"FLUMWAL1"`: records without sequence numbers, checksum over the payload only.
    V1,
    /// `"FLUMWAL2"`: the current format.
    V2,
}

impl Format {
    /// The format whose magic `magic` is, if it is one the log wrote.
    fn of_magic(magic: &[u8]) -> Option<Self> {
        match magic {
            m if m == MAGIC => Some(Format::V2),
            m if m == MAGIC_V1 => Some(Format::V1),
            _ => None,
        }
    }

    fn magic(self) -> &'static [u8; 8] {
        match self {
            Format::V1 => MAGIC_V1,
            Format::V2 => MAGIC,
        }
    }

    fn record_header_len(self) -> usize {
        match self {
            Format::V1 => RECORD_HEADER_LEN_V1,
            Format::V2 => RECORD_HEADER_LEN,
        }
    }
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// The header of a new segment, in the current format.
pub(crate) fn encode_header(first_seq: u64) -> [u8; HEADER_LEN as usize] {
    header_in(Format::V2, first_seq)
}

fn header_in(format: Format, first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(format.magic());
    out[8..].copy_from_slice(&first_seq.to_le_bytes());
    out
}

/// Writes the header of the segment at `path` again, as `format` and `first_seq` say, and
/// makes it durable: for a segment whose header was damaged but whose records are intact.
pub(crate) fn rewrite_header(path: &Path, format: Format, first_seq: u64) -> Result<(), WalError> {
    use std::os::unix::fs::FileExt;
    // Not opened for appending: a positioned write to a file opened so lands at its end.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    file.write_all_at(&header_in(format, first_seq), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| WalError::io(path, e))
}

/// The checksum of a payload alone: computed by the appending task, then finished by
/// [`record_header`] once the record's sequence number is known.
pub(crate) fn payload_crc(payload: &[u8]) -> u32 {
    crc32c::crc32c(payload)
}

/// Frames one record: the header for a payload of `len` bytes whose [`payload_crc`] is
/// `payload_crc`, stored as record `seq`.
pub(crate) fn record_header(len: usize, payload_crc: u32, seq: u64) -> [u8; RECORD_HEADER_LEN] {
    let mut out = [0u8; RECORD_HEADER_LEN];
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[8..].copy_from_slice(&seq.to_le_bytes());
    let crc = header_crc(payload_crc, &out);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Extends a payload's checksum over the length and sequence number in `header`.
fn header_crc(payload_crc: u32, header: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(payload_crc, &header[..4]);
    crc32c::crc32c_append(crc, &header[8..RECORD_HEADER_LEN])
}

/// What the bytes at one position of a segment are.
#[derive(Debug, PartialEq, Eq)]
enum Candidate {
    /// A valid record: its sequence number and where its payload lies.
    Record { seq: u64, payload: Range<usize> },
    /// The record it starts may be valid, but the buffer ends inside it.
    Incomplete,
    /// Not a valid record.
    Invalid,
}

/// Checks whether `buf` starts with a valid record. `expected` is the next sequence number,
/// `skipped` how many corrupt bytes come right before `buf`, and `limit` how many bytes of
/// the segment are readable from the start of `buf` on (at least `buf.len()`).
fn check_at(format: Format, buf: &[u8], limit: u64, expected: u64, skipped: u64) -> Candidate {
    let header_len = format.record_header_len();
    let Some(header) = buf.get(..header_len) else {
        // More bytes are readable (`limit` is past `buf`): is there room for a whole header?
        return if limit >= header_len as u64 {
            Candidate::Incomplete
        } else {
            Candidate::Invalid
        };
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let total = header_len + len;
    if len > MAX_RECORD_LEN || total as u64 > limit {
        return Candidate::Invalid;
    }
    // In the first format zeros pass the checksum (CRC32C of nothing is 0); flumen never wrote
    // an empty record, so an empty one there is zeroed bytes, not a record.
    if len == 0 && matches!(format, Format::V1) {
        return Candidate::Invalid;
    }
    let seq = match format {
        Format::V1 => expected,
        Format::V2 => u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
    };
    // Corrupt bytes before a record can have held at most one record per header's worth.
    let most_lost = skipped / RECORD_HEADER_LEN as u64;
    if seq < expected || seq - expected > most_lost {
        return Candidate::Invalid;
    }
    let Some(payload) = buf.get(header_len..total) else {
        return Candidate::Incomplete;
    };
    let stored = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let crc = match format {
        Format::V1 => crc32c::crc32c(payload),
        Format::V2 => header_crc(crc32c::crc32c(payload), header),
    };
    if crc != stored {
        return Candidate::Invalid;
    }
    Candidate::Record {
        seq,
        payload: header_len..total,
    }
}

/// The next step through a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// `buf` starts with a valid record.
    Record { seq: u64, payload: Range<usize> },
    /// More bytes are needed to tell.
    NeedMore,
    /// The first `n` bytes start no valid record.
    Skip(usize),
    /// Nothing readable is left.
    End,
}

/// Finds the next record in `buf` (see [`check_at`] for the arguments): the record it starts
/// with, or how many bytes to skip to reach the first position that may start one.
fn step(format: Format, buf: &[u8], limit: u64, expected: u64, skipped: u64) -> Step {
    let buf = &buf[..buf.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    if buf.is_empty() && limit == 0 {
        return Step::End;
    }
    for at in 0..buf.len().max(1) {
        let rest = &buf[at..];
        let candidate = check_at(
            format,
            rest,
            limit - at as u64,
            expected,
            skipped + at as u64,
        );
        match (candidate, at) {
            (Candidate::Record { seq, payload }, 0) => return Step::Record { seq, payload },
            (Candidate::Incomplete, 0) => return Step::NeedMore,
            (Candidate::Invalid, _) => {}
            (_, at) => return Step::Skip(at),
        }
    }
    Step::Skip(buf.len())
}

/// Reads and checks a segment's header: its format, if its magic is one the log wrote and it
/// names `first_seq`.
pub(crate) fn read_header(
    file: &mut File,
    path: &Path,
    first_seq: u64,
) -> Result<Format, WalError> {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WalError::Corrupt {
            path: path.to_owned(),
            reason: "segment shorter than its header",
        },
        _ => WalError::io(path, e),
    })?;
    let Some(format) = Format::of_magic(&header[..8]) else {
        return Err(WalError::Corrupt {
            path: path.to_owned(),
            reason: "not a flumen log segment (bad magic)",
        });
    };
    if u64::from_le_bytes(header[8..].try_into().expect("8 bytes")) != first_seq {
        return Err(WalError::Corrupt {
            path: path.to_owned(),
            reason: "segment header does not match its name",
        });
    }
    Ok(format)
}

/// Bytes of a segment that hold no valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CorruptSpan {
    /// Where they start in the segment file.
    pub offset: u64,
    /// How many.
    pub bytes: u64,
}

/// What a [`SegmentScanner`] found next.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A valid record.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Its payload.
        payload: Bytes,
    },
    /// Corrupt bytes followed by a valid record; `records` were lost in them (in a segment of
    /// the earlier format, where records carry no sequence number, counted as one).
    Corrupt {
        /// The bytes.
        span: CorruptSpan,
        /// How many records they held.
        records: u64,
    },
    /// Corrupt bytes running to the end of what is readable: how many records they held is
    /// for the caller to tell, from where the next segment (or the durable end) starts.
    CorruptTail(CorruptSpan),
}

/// Reads a segment's records in order, verifying each, and skips corrupt bytes by looking for
/// the next valid record after them (see the module's documentation).
#[derive(Debug)]
pub(crate) struct SegmentScanner {
    path: PathBuf,
    first_seq: u64,
    format: Format,
    file: File,
    /// File offset just past the bytes read into `chunk`.
    read_offset: u64,
    /// Bytes read, not yet consumed from `pos` on.
    chunk: Bytes,
    pos: usize,
    /// The sequence number the next record should have.
    next_seq: u64,
    /// Where the corrupt bytes being skipped start, while skipping.
    skipping_from: Option<u64>,
    /// The file's length, once a read found its end.
    eof: Option<u64>,
}

impl SegmentScanner {
    /// Opens the segment starting at `first_seq` in `dir` and checks its header.
    pub fn open(dir: &Path, first_seq: u64) -> Result<Self, WalError> {
        let path = segment_path(dir, first_seq);
        let mut file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        let format = read_header(&mut file, &path, first_seq)?;
        Ok(Self::after_header(path, file, first_seq, format))
    }

    /// Opens the segment starting at `first_seq` in `dir` whatever its header says, to look
    /// for records behind a damaged one: they are read in the format its magic names if it
    /// names one (only the sequence number it states is wrong), otherwise in the current
    /// format, and numbered from `first_seq`, which the file's name gives.
    pub fn open_despite_header(dir: &Path, first_seq: u64) -> Result<Self, WalError> {
        let path = segment_path(dir, first_seq);
        let mut file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        let mut magic = [0u8; 8];
        let format = match file.read_exact(&mut magic) {
            Ok(()) => Format::of_magic(&magic).unwrap_or(Format::V2),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Format::V2,
            Err(e) => return Err(WalError::io(&path, e)),
        };
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(HEADER_LEN))
            .map_err(|e| WalError::io(&path, e))?;
        Ok(Self::after_header(path, file, first_seq, format))
    }

    /// A scanner of `file`, whose first record is `first_seq`, read up to the end of its
    /// header.
    fn after_header(path: PathBuf, file: File, first_seq: u64, format: Format) -> Self {
        Self {
            path,
            first_seq,
            format,
            file,
            read_offset: HEADER_LEN,
            chunk: Bytes::new(),
            pos: 0,
            next_seq: first_seq,
            skipping_from: None,
            eof: None,
        }
    }

    /// The segment's first sequence number.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The segment's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The sequence number the next record should have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The file offset of the next byte to look at.
    pub fn offset(&self) -> u64 {
        self.read_offset - (self.chunk.len() - self.pos) as u64
    }

    /// After a [`Scanned::CorruptTail`]: the records it held end before `seq`.
    pub fn resume_at(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// The next record, corrupt span or `None` before file offset `limit` (the segment's end,
    /// or how far it is durable).
    pub fn next(&mut self, limit: u64) -> Result<Option<Scanned>, WalError> {
        // The end of the file found by an earlier call may have moved since: look again.
        self.eof = None;
        loop {
            let limit = limit.min(self.eof.unwrap_or(u64::MAX));
            let offset = self.offset();
            let skipped = self.skipping_from.map_or(0, |from| offset - from);
            let rest = &self.chunk[self.pos..];
            let readable = limit.saturating_sub(offset);
            match step(self.format, rest, readable, self.next_seq, skipped) {
                Step::Record { seq, payload } => {
                    if let Some(from) = self.skipping_from.take() {
                        // Report the gap first; the record is found again on the next call.
                        let records = match self.format {
                            Format::V1 => 1,
                            Format::V2 => seq - self.next_seq,
                        };
                        self.next_seq += records;
                        return Ok(Some(Scanned::Corrupt {
                            span: CorruptSpan {
                                offset: from,
                                bytes: skipped,
                            },
                            records,
                        }));
                    }
                    let total = payload.end;
                    let payload = self
                        .chunk
                        .slice(self.pos + payload.start..self.pos + payload.end);
                    self.pos += total;
                    self.next_seq = seq + 1;
                    return Ok(Some(Scanned::Record { seq, payload }));
                }
                Step::Skip(n) => {
                    self.skipping_from.get_or_insert(offset);
                    self.pos += n;
                }
                Step::NeedMore => self.read_more(limit)?,
                Step::End => {
                    return Ok(self.skipping_from.take().map(|from| {
                        Scanned::CorruptTail(CorruptSpan {
                            offset: from,
                            bytes: offset - from,
                        })
                    }));
                }
            }
        }
    }

    /// Reads the next chunk of the file, up to `limit`, keeping what is not consumed yet.
    fn read_more(&mut self, limit: u64) -> Result<(), WalError> {
        let rest = &self.chunk[self.pos..];
        let header_len = self.format.record_header_len();
        let wanted = match rest.get(..4) {
            Some(len) => header_len + u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize,
            None => header_len,
        };
        let room = limit.saturating_sub(self.read_offset);
        let want = (wanted.saturating_sub(rest.len()).max(READ_CHUNK) as u64).min(room);
        let mut next = Vec::with_capacity(rest.len() + want as usize);
        next.extend_from_slice(rest);
        let n = (&mut self.file)
            .take(want)
            .read_to_end(&mut next)
            .map_err(|e| WalError::io(&self.path, e))?;
        self.read_offset += n as u64;
        self.chunk = Bytes::from(next);
        self.pos = 0;
        if (n as u64) < want {
            // The file is shorter than the limit: what is readable ends here.
            self.eof = Some(self.read_offset);
        }
        Ok(())
    }
}

/// fsyncs a directory so that created, renamed and removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}
