//! Segment files: naming, header, record framing and recovery scans.
//!
//! # On-disk format
//!
//! The log is a directory of segment files named after the sequence number of their first
//! record, zero-padded so that names sort in order: `00000000000000000042.wal`.
//!
//! ```text
//! segment := header record*
//! header  := "FLUMWAL1" (8 bytes) first_seq (u64 LE)                 16 bytes
//! record  := len (u32 LE) crc32c(payload) (u32 LE) payload (len bytes)
//! ```
//!
//! Records are numbered consecutively across segments: the n-th record of a segment whose first
//! sequence number is `f` has sequence number `f + n`. A record is only trusted when its whole
//! payload is present and its CRC32C matches; the first record that fails this in the newest
//! segment marks the torn tail, which recovery cuts off.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::WalError;

pub(crate) const MAGIC: &[u8; 8] = b"FLUMWAL1";
pub(crate) const HEADER_LEN: u64 = 16;
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// The largest payload a record may carry.
pub const MAX_RECORD_LEN: usize = 256 * 1024 * 1024;

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

pub(crate) fn encode_header(first_seq: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&first_seq.to_le_bytes());
    out
}

/// Frames one record: the 8-byte header for `payload`.
pub(crate) fn record_header(payload: &[u8]) -> [u8; RECORD_HEADER_LEN] {
    let mut out = [0u8; RECORD_HEADER_LEN];
    out[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out
}

/// What a framed record at the start of a buffer turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framed {
    /// A whole, valid record of `total` bytes (header included).
    Record { total: usize },
    /// The buffer ends inside the record.
    Incomplete,
    /// The length or the checksum is wrong.
    Corrupt(&'static str),
}

pub(crate) fn check_record(buf: &[u8]) -> Framed {
    let Some(header) = buf.get(..RECORD_HEADER_LEN) else {
        return Framed::Incomplete;
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_RECORD_LEN {
        return Framed::Corrupt("record length over the limit");
    }
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let Some(payload) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Framed::Incomplete;
    };
    if crc32c::crc32c(payload) != crc {
        return Framed::Corrupt("checksum mismatch");
    }
    Framed::Record {
        total: RECORD_HEADER_LEN + len,
    }
}

/// Reads and checks a segment's header.
pub(crate) fn read_header(file: &mut File, path: &Path) -> Result<u64, WalError> {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)
        .map_err(|e| WalError::io(path, e))?;
    if &header[..8] != MAGIC {
        return Err(WalError::Corrupt {
            path: path.to_owned(),
            reason: "not a flumen log segment (bad magic)",
        });
    }
    Ok(u64::from_le_bytes(header[8..].try_into().expect("8 bytes")))
}

/// The outcome of scanning a segment from its first record.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Valid records.
    pub records: u64,
    /// Byte offset just past the last valid record.
    pub valid_end: u64,
    /// Bytes after `valid_end` (a torn or corrupt tail).
    pub trailing: u64,
}

/// Walks every record of a segment, verifying checksums, until the end or the first bad record.
pub(crate) fn scan(path: &Path) -> Result<Scan, WalError> {
    let mut file = File::open(path).map_err(|e| WalError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    read_header(&mut file, path)?;
    let mut records = 0;
    let mut offset = HEADER_LEN;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0usize;
    let mut eof = false;
    loop {
        match check_record(&buf[start..]) {
            Framed::Record { total } => {
                records += 1;
                offset += total as u64;
                start += total;
            }
            Framed::Incomplete if !eof => {
                buf.drain(..start);
                start = 0;
                eof = read_more(&mut file, &mut buf, 1 << 20).map_err(|e| WalError::io(path, e))?
                    == 0;
            }
            Framed::Incomplete | Framed::Corrupt(_) => break,
        }
    }
    Ok(Scan {
        records,
        valid_end: offset,
        trailing: file_len - offset,
    })
}

/// Appends up to `max` more bytes from `file` to `buf`; returns how many.
pub(crate) fn read_more(file: &mut File, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    file.take(max as u64).read_to_end(buf)
}

/// fsyncs a directory so that created, renamed and removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}
