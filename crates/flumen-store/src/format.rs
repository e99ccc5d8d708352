//! The store's files on disk, version 2.
//!
//! # Layout
//!
//! ```text
//! <store dir>/
//!   checkpoint                        how far the store has stored the log (see `checkpoint.rs`)
//!   <tenant>/                         the tenant's name when it is [A-Za-z0-9_-]{1,64},
//!                                     otherwise `x-` and its UTF-8 bytes in hex
//!     <YYYY-MM-DDTHH>/                a partition: what arrived in that UTC hour
//!       <seq, 20 digits>.chunks       a chunk file, written whole by one flush or compaction
//! ```
//!
//! Partitions are by arrival hour (the log batch's `received_at`), not by event time, so a
//! sender with a wrong clock cannot scatter a tenant over thousands of directories, and
//! retention removes what arrived longest ago. Event times are in each chunk's metadata, which
//! is what time ranges of queries are checked against.
//!
//! # Chunk file (`.chunks`)
//!
//! ```text
//! "FLUMSTO2"                  8 bytes, magic and format version
//! chunk 0 .. chunk n-1        each a zstd frame of the chunk's head, then one of its body
//! footer                      postcard-encoded `FileFooter`
//! u32 LE footer length
//! u32 LE CRC32C of the footer
//! "FLUMSTO2"                  8 bytes
//! ```
//!
//! The footer says which tenant and partition the file belongs to, its sequence number, its
//! tier (0 for a flush, one more than its sources' for a compaction), the files it replaces
//! (when compaction wrote it), and for each chunk: the stream labels, the
//! time range, the first and last event positions, the count, where its head and body are and
//! their sizes and CRC32Cs, and a binary fuse filter of the chunk's indexed field values
//! (`name=value`, hashed with XXH3-64), so that a query for one `deployment_id` opens only
//! the chunks that may hold it (a false positive costs a chunk read, about 0.4% of the time),
//! and whether every event's line is a string field (then a literal that a line filter
//! requires and that the chunk's body lacks rules out the whole chunk).
//!
//! A file is written under a `.tmp` name, synced, renamed and its directory synced, so a
//! `.chunks` file is always whole; a file whose trailer, footer or a chunk does not check out
//! was damaged afterwards, and is reported and skipped, never trusted.
//!
//! # Chunk (before compression)
//!
//! One stream's events, in log order, column by column (integers are LEB128 varints), in two
//! parts compressed apart. The **head** is what counting needs — times, positions, tags,
//! sizes — so that `count_over_time` or `bytes_over_time` of a stream reads a few bytes per
//! event instead of the records:
//!
//! ```text
//! count
//! tag count, then each tag: length, UTF-8 bytes
//! count × zigzag(time_ns − previous time_ns), the first from 0
//! count × record length
//! count × (record delta from the previous event's record, or from the chunk's first; index)
//! count × tag number                        only when there is more than one tag
//! count × metadata length + 1, or 0 for none
//! ```
//!
//! Times and record lengths come first, so that counting stops reading there.
//!
//! The **body** is every metadata map, then every record, msgpack exactly as received.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xorf::{BinaryFuse8, Filter};

use crate::position::EventPosition;
use flumen_wal::Position;

/// The magic bytes that open and close every chunk file, with the format version.
pub(crate) const MAGIC: &[u8; 8] = b"FLUMSTO2";
/// The trailer after the footer: its length, its CRC32C and the magic.
const TRAILER_LEN: usize = 4 + 4 + MAGIC.len();
/// The extension of a whole chunk file.
pub(crate) const EXTENSION: &str = "chunks";
/// The largest footer a reader accepts, so that a damaged length cannot ask for gigabytes.
const MAX_FOOTER: usize = 256 << 20;
/// The largest uncompressed chunk block a reader accepts.
pub(crate) const MAX_BLOCK: usize = 1 << 30;

/// A chunk file's footer: what the catalog keeps in memory for every file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileFooter {
    /// The tenant whose events the file holds.
    pub tenant: String,
    /// The partition: the UTC hour (Unix seconds / 3600) the events arrived in.
    pub hour: u64,
    /// The file's sequence number, unique in the store.
    pub seq: u64,
    /// 0 for a flush; a compaction's file is one tier above the files it merged.
    pub tier: u8,
    /// The sequence numbers of the files this one replaces (compaction); they are removed once
    /// it is durable, and a recovery removes any that a crash left behind.
    pub replaces: Vec<u64>,
    /// The chunks, in file order.
    pub chunks: Vec<ChunkMeta>,
}

/// What is known about one chunk without reading it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChunkMeta {
    /// The stream's labels, sorted by name; labels an event lacks are absent.
    pub labels: Vec<(String, String)>,
    /// The earliest event time, Unix nanoseconds.
    pub min_time: u64,
    /// The latest event time, Unix nanoseconds.
    pub max_time: u64,
    /// The first event's position (events are in log order).
    pub first: (u64, u32),
    /// The last event's position.
    pub last: (u64, u32),
    /// How many events.
    pub count: u32,
    /// Where the compressed head starts in the file; the body follows it.
    pub offset: u64,
    /// The compressed head's length.
    pub head_len: u32,
    /// The compressed head's and body's length.
    pub len: u32,
    /// The uncompressed head's length.
    pub head_raw_len: u32,
    /// The uncompressed head's and body's length.
    pub raw_len: u32,
    /// CRC32C of the compressed head.
    pub head_crc: u32,
    /// CRC32C of the compressed body.
    pub crc: u32,
    /// The indexed field values present (`name=value` hashes), when there are any.
    pub filter: Option<IndexFilter>,
    /// True when every event's line is a string field (`message`, `log` or `msg`, see
    /// `fields::line_bytes`), so its bytes are in the body as they are in the line.
    pub string_lines: bool,
}

/// A chunk's filter of indexed field values: a binary fuse filter, stored as its bincode
/// encoding (the filter's own serde form cannot be written by postcard).
#[derive(Debug, Clone)]
pub(crate) struct IndexFilter(BinaryFuse8);

impl IndexFilter {
    fn contains(&self, key: u64) -> bool {
        self.0.contains(&key)
    }
}

impl Serialize for IndexFilter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = bincode::encode_to_vec(&self.0, bincode::config::standard())
            .map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for IndexFilter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: &[u8] = Deserialize::deserialize(deserializer)?;
        let (filter, _) = bincode::decode_from_slice(bytes, bincode::config::standard())
            .map_err(serde::de::Error::custom)?;
        Ok(Self(filter))
    }
}

impl ChunkMeta {
    /// False when the chunk certainly holds no event with this indexed field value.
    pub fn may_contain(&self, key: u64) -> bool {
        self.filter.as_ref().is_some_and(|f| f.contains(key))
    }

    /// The first event's position.
    pub fn first_position(&self) -> EventPosition {
        EventPosition::new(Position::new(self.first.0), self.first.1)
    }

    /// The last event's position.
    pub fn last_position(&self) -> EventPosition {
        EventPosition::new(Position::new(self.last.0), self.last.1)
    }

    /// The label's value, or "" when the stream has no such label (as matchers see it).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.labels[i].1.as_str())
            .unwrap_or("")
    }
}

/// The hash an indexed field value is filed under.
pub(crate) fn index_key(name: &str, value: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(name.as_bytes());
    hasher.update(b"=");
    hasher.update(value.as_bytes());
    hasher.digest()
}

/// A filter over `keys` (sorted and deduplicated here); `None` for no keys.
pub(crate) fn build_filter(mut keys: Vec<u64>) -> Option<IndexFilter> {
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return None;
    }
    // Construction fails only on duplicate keys, which were removed; a failure would merely
    // make every lookup a maybe, so fall back to no pruning rather than to an error.
    BinaryFuse8::try_from(&keys)
        .ok()
        .map(IndexFilter)
        .or_else(|| {
            tracing::warn!(
                message = "Could not build a chunk's index filter.",
                keys = keys.len()
            );
            None
        })
}

/// The name of the file with sequence number `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}.{EXTENSION}")
}

/// The sequence number in a chunk file's name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// The directory name of a tenant.
pub(crate) fn tenant_dir_name(tenant: &str) -> String {
    let plain = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        tenant.to_owned()
    } else {
        let hex: String = tenant.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x-{hex}")
    }
}

/// The directory name of the partition of UTC hour `hour` (Unix seconds / 3600).
pub(crate) fn partition_dir_name(hour: u64) -> String {
    match flumen_event::EventTime::new(hour.saturating_mul(3600), 0).to_datetime() {
        Some(start) => start.format("%Y-%m-%dT%H").to_string(),
        // Past chrono's years: still a unique, orderable name.
        None => format!("h{hour:020}"),
    }
}

/// One chunk, compressed: its head and its body.
#[derive(Debug, Default)]
pub(crate) struct SealedChunk {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

/// Writes a chunk file chunk by chunk under `<path>.tmp`; [`FileWriter::finish`] adds the
/// footer, syncs it and renames it to `path`. A writer dropped before that removes its
/// temporary file. The directory is synced by the caller (once for all files of a flush).
pub(crate) struct FileWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<io::BufWriter<File>>,
    offset: u64,
    chunks: Vec<ChunkMeta>,
}

impl FileWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let tmp = tmp_path(path);
        let mut out = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut writer = Self {
            path: path.to_owned(),
            tmp,
            out: None,
            offset: MAGIC.len() as u64,
            chunks: Vec::new(),
        };
        out.write_all(MAGIC)?;
        writer.out = Some(out);
        Ok(writer)
    }

    /// Appends a chunk just compressed; where it is and its checksums go into `meta`.
    pub fn push(&mut self, mut meta: ChunkMeta, chunk: &SealedChunk) -> io::Result<()> {
        meta.head_len = u32::try_from(chunk.head.len()).map_err(|_| invalid("chunk over 4 GiB"))?;
        meta.len = u32::try_from(chunk.head.len() + chunk.body.len())
            .map_err(|_| invalid("chunk over 4 GiB"))?;
        meta.head_crc = crc32c::crc32c(&chunk.head);
        meta.crc = crc32c::crc32c(&chunk.body);
        self.write(meta, &[&chunk.head, &chunk.body])
    }

    /// Appends a chunk as another file holds it (`compressed`: its head and body, checked by
    /// [`read_compressed`]), with its metadata but for where it is.
    pub fn copy(&mut self, meta: &ChunkMeta, compressed: &[u8]) -> io::Result<()> {
        self.write(meta.clone(), &[compressed])
    }

    /// How many chunks it holds so far.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    fn write(&mut self, mut meta: ChunkMeta, parts: &[&[u8]]) -> io::Result<()> {
        let out = self.out.as_mut().expect("open until finished");
        for part in parts {
            out.write_all(part)?;
        }
        meta.offset = self.offset;
        self.offset += u64::from(meta.len);
        self.chunks.push(meta);
        Ok(())
    }

    /// Writes the footer (`footer`'s chunks are the ones pushed), syncs the file and renames
    /// it to its name.
    pub fn finish(mut self, mut footer: FileFooter) -> io::Result<FileFooter> {
        footer.chunks = std::mem::take(&mut self.chunks);
        let mut out = self.out.take().expect("open until finished");
        let encoded = postcard::to_stdvec(&footer).map_err(|e| invalid(&e.to_string()))?;
        out.write_all(&encoded)?;
        out.write_all(&(encoded.len() as u32).to_le_bytes())?;
        out.write_all(&crc32c::crc32c(&encoded).to_le_bytes())?;
        out.write_all(MAGIC)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.tmp.clear();
        Ok(footer)
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `<path>.tmp`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads and checks a chunk file's footer.
pub(crate) fn read_footer(file: &File) -> io::Result<FileFooter> {
    let len = file.metadata()?.len();
    if len < (MAGIC.len() + TRAILER_LEN) as u64 {
        return Err(invalid("too short to be a chunk file"));
    }
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, 0)?;
    let mut trailer = [0u8; TRAILER_LEN];
    file.read_exact_at(&mut trailer, len - TRAILER_LEN as u64)?;
    if &head != MAGIC || &trailer[8..] != MAGIC {
        return Err(invalid("not a chunk file of a known version (bad magic)"));
    }
    let footer_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes")) as usize;
    let footer_crc = u32::from_le_bytes(trailer[4..8].try_into().expect("4 bytes"));
    let footer_end = len - TRAILER_LEN as u64;
    if footer_len > MAX_FOOTER || footer_len as u64 > footer_end - MAGIC.len() as u64 {
        return Err(invalid("footer length out of range"));
    }
    let mut encoded = vec![0u8; footer_len];
    file.read_exact_at(&mut encoded, footer_end - footer_len as u64)?;
    if crc32c::crc32c(&encoded) != footer_crc {
        return Err(invalid("footer checksum mismatch"));
    }
    postcard::from_bytes(&encoded).map_err(|e| invalid(&format!("footer: {e}")))
}

/// Reads, checks and decompresses chunks, with one decompression context and one read buffer
/// kept from chunk to chunk.
pub(crate) struct ChunkDecoder {
    zstd: zstd::bulk::Decompressor<'static>,
    compressed: Vec<u8>,
}

impl ChunkDecoder {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            zstd: zstd::bulk::Decompressor::new()?,
            compressed: Vec::new(),
        })
    }

    /// Reads one chunk of `file`: its head only (`with_body` false) or whole.
    pub fn read(&mut self, file: &File, meta: &ChunkMeta, with_body: bool) -> io::Result<Block> {
        if meta.raw_len as usize > MAX_BLOCK
            || meta.head_len > meta.len
            || meta.head_raw_len > meta.raw_len
        {
            return Err(invalid("chunk sizes out of range"));
        }
        let read_len = if with_body { meta.len } else { meta.head_len } as usize;
        // Grown (and zeroed) only past its largest chunk so far.
        if self.compressed.len() < read_len {
            self.compressed.resize(read_len, 0);
        }
        let compressed = &mut self.compressed[..read_len];
        file.read_exact_at(compressed, meta.offset)?;
        let (head, body) = compressed.split_at(meta.head_len as usize);
        let head = decompress(&mut self.zstd, head, meta.head_crc, meta.head_raw_len)?;
        let body = if with_body {
            Some(decompress(
                &mut self.zstd,
                body,
                meta.crc,
                meta.raw_len - meta.head_raw_len,
            )?)
        } else {
            None
        };
        Block::decode(head, body, meta.first.0)
    }
}

/// Reads one chunk's compressed head and body as they are, checked against their CRC32Cs.
pub(crate) fn read_compressed(file: &File, meta: &ChunkMeta) -> io::Result<Vec<u8>> {
    if meta.head_len > meta.len {
        return Err(invalid("chunk sizes out of range"));
    }
    let mut compressed = vec![0u8; meta.len as usize];
    file.read_exact_at(&mut compressed, meta.offset)?;
    let (head, body) = compressed.split_at(meta.head_len as usize);
    if crc32c::crc32c(head) != meta.head_crc || crc32c::crc32c(body) != meta.crc {
        return Err(invalid("chunk checksum mismatch"));
    }
    Ok(compressed)
}

/// Checks and decompresses one part of a chunk.
fn decompress(
    zstd: &mut zstd::bulk::Decompressor<'static>,
    compressed: &[u8],
    crc: u32,
    raw_len: u32,
) -> io::Result<Vec<u8>> {
    if crc32c::crc32c(compressed) != crc {
        return Err(invalid("chunk checksum mismatch"));
    }
    let raw = zstd.decompress(compressed, raw_len as usize)?;
    if raw.len() != raw_len as usize {
        return Err(invalid("chunk decompressed to an unexpected length"));
    }
    Ok(raw)
}

/// One event as stored, borrowed from a decompressed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Its place in the log.
    pub position: EventPosition,
    /// Its time, Unix nanoseconds.
    pub time_ns: u64,
    /// Its tag.
    pub tag: &'a str,
    /// The Forward v1.5 metadata map, when the sender sent one.
    pub metadata: Option<&'a [u8]>,
    /// The record, msgpack, as received.
    pub record: &'a [u8],
}

/// Collects one stream's events and encodes them as a chunk block.
#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    tags: Vec<String>,
    positions: Vec<u8>,
    times: Vec<u8>,
    tag_numbers: Vec<u8>,
    metadata_lens: Vec<u8>,
    record_lens: Vec<u8>,
    metadata: Vec<u8>,
    records: Vec<u8>,
    count: u32,
    last_position: Option<EventPosition>,
    last_time: u64,
}

impl BlockBuilder {
    /// Empties it for the stream's next chunk, keeping its buffers (a stream's chunks are
    /// much alike in size, and fresh buffers cost page faults).
    pub fn clear(&mut self) {
        for buffer in [
            &mut self.positions,
            &mut self.times,
            &mut self.tag_numbers,
            &mut self.metadata_lens,
            &mut self.record_lens,
            &mut self.metadata,
            &mut self.records,
        ] {
            buffer.clear();
        }
        self.tags.clear();
        self.count = 0;
        self.last_position = None;
        self.last_time = 0;
    }

    /// Adds an event; events must come in log order.
    pub fn push(&mut self, event: &EventRef<'_>) {
        let base = self
            .last_position
            .map_or(event.position.record.get(), |p| p.record.get());
        write_varint(&mut self.positions, event.position.record.get() - base);
        write_varint(&mut self.positions, u64::from(event.position.index));
        write_varint(
            &mut self.times,
            zigzag(event.time_ns.wrapping_sub(self.last_time) as i64),
        );
        let tag = match self.tags.iter().position(|t| t == event.tag) {
            Some(i) => i,
            None => {
                self.tags.push(event.tag.to_owned());
                self.tags.len() - 1
            }
        };
        write_varint(&mut self.tag_numbers, tag as u64);
        match event.metadata {
            Some(m) => {
                write_varint(&mut self.metadata_lens, m.len() as u64 + 1);
                self.metadata.extend_from_slice(m);
            }
            None => write_varint(&mut self.metadata_lens, 0),
        }
        write_varint(&mut self.record_lens, event.record.len() as u64);
        self.records.extend_from_slice(event.record);
        self.count += 1;
        self.last_position = Some(event.position);
        self.last_time = event.time_ns;
    }

    /// How many events it holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// About how many bytes the block will be before compression.
    pub fn raw_len(&self) -> usize {
        self.positions.len()
            + self.times.len()
            + self.tag_numbers.len()
            + self.metadata_lens.len()
            + self.record_lens.len()
            + self.metadata.len()
            + self.records.len()
            + self.tags.iter().map(|t| t.len() + 2).sum::<usize>()
            + 8
    }

    /// The chunk's head and body, uncompressed.
    #[cfg(test)]
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let (mut head, mut body) = (Vec::new(), Vec::new());
        self.encode_into(&mut head, &mut body);
        (head, body)
    }

    /// Writes the chunk's head and body, uncompressed, into `head` and `body` (emptied first).
    pub fn encode_into(&self, head: &mut Vec<u8>, body: &mut Vec<u8>) {
        self.encode_head(head);
        body.clear();
        body.extend_from_slice(&self.metadata);
        body.extend_from_slice(&self.records);
    }

    /// The chunk's body as it is held, without a copy, when it is all records (no event has
    /// Forward metadata, as is usual).
    pub fn records_only_body(&self) -> Option<&[u8]> {
        self.metadata.is_empty().then_some(&self.records[..])
    }

    /// Writes the chunk's head, uncompressed, into `head` (emptied first).
    pub fn encode_head(&self, head: &mut Vec<u8>) {
        head.clear();
        write_varint(head, u64::from(self.count));
        write_varint(head, self.tags.len() as u64);
        for tag in &self.tags {
            write_varint(head, tag.len() as u64);
            head.extend_from_slice(tag.as_bytes());
        }
        head.extend_from_slice(&self.times);
        head.extend_from_slice(&self.record_lens);
        head.extend_from_slice(&self.positions);
        if self.tags.len() > 1 {
            head.extend_from_slice(&self.tag_numbers);
        }
        head.extend_from_slice(&self.metadata_lens);
    }

    /// The log record of the last event pushed, if any.
    pub fn last_record(&self) -> Option<u64> {
        self.last_position.map(|p| p.record.get())
    }
}

/// A decoded chunk: the events of one stream, in log order; their records only when the body
/// was read.
#[derive(Debug)]
pub(crate) struct Block {
    head: Vec<u8>,
    body: Vec<u8>,
    tags: Vec<(usize, usize)>,
    events: Vec<EventSlot>,
}

/// Where one event's parts are in a block.
#[derive(Debug, Clone, Copy)]
struct EventSlot {
    position: EventPosition,
    time_ns: u64,
    tag: u32,
    metadata: Option<(usize, usize)>,
    record: (usize, usize),
}

impl Block {
    /// Decodes a chunk's head and, when given, its body, checking every length against their
    /// sizes.
    pub fn decode(head: Vec<u8>, body: Option<Vec<u8>>, first_record: u64) -> io::Result<Self> {
        let bytes = head;
        let mut r = VarintReader {
            bytes: &bytes,
            pos: 0,
        };
        let count = r.usize()?;
        if count > bytes.len() {
            return Err(invalid("event count larger than the block"));
        }
        let tag_count = r.usize()?;
        if tag_count > count.max(1) {
            return Err(invalid("more tags than events"));
        }
        let mut tags = Vec::with_capacity(tag_count);
        for _ in 0..tag_count {
            let len = r.usize()?;
            let start = r.pos;
            r.skip(len)?;
            std::str::from_utf8(&bytes[start..start + len])
                .map_err(|_| invalid("a tag is not UTF-8"))?;
            tags.push((start, len));
        }
        if tags.is_empty() && count > 0 {
            return Err(invalid("events without a tag table"));
        }
        // Times and record sizes come first: they are all that counting needs.
        let mut events = Vec::with_capacity(count);
        let mut time = 0u64;
        for _ in 0..count {
            time = time.wrapping_add(unzigzag(r.u64()?) as u64);
            events.push(EventSlot {
                position: EventPosition::default(),
                time_ns: time,
                tag: 0,
                metadata: None,
                record: (0, 0),
            });
        }
        let mut record_lens = Vec::with_capacity(count);
        for _ in 0..count {
            record_lens.push(r.usize()?);
        }
        let Some(body) = body else {
            // A head alone: times and sizes; positions, tags and places are not read.
            for (slot, len) in events.iter_mut().zip(record_lens) {
                slot.record = (0, len);
            }
            return Ok(Self {
                head: bytes,
                body: Vec::new(),
                tags,
                events,
            });
        };
        let mut record = first_record;
        for slot in &mut events {
            record = record
                .checked_add(r.u64()?)
                .ok_or_else(|| invalid("position overflow"))?;
            let index = u32::try_from(r.u64()?).map_err(|_| invalid("index overflow"))?;
            slot.position = EventPosition::new(Position::new(record), index);
        }
        if tags.len() > 1 {
            for slot in &mut events {
                slot.tag = u32::try_from(r.u64()?)
                    .ok()
                    .filter(|&t| (t as usize) < tags.len())
                    .ok_or_else(|| invalid("tag number out of range"))?;
            }
        }
        let mut metadata_lens = Vec::with_capacity(count);
        for _ in 0..count {
            metadata_lens.push(r.usize()?);
        }
        let mut r = VarintReader {
            bytes: &body,
            pos: 0,
        };
        for (slot, len) in events.iter_mut().zip(metadata_lens) {
            if len > 0 {
                let start = r.pos;
                r.skip(len - 1)?;
                slot.metadata = Some((start, len - 1));
            }
        }
        for (slot, len) in events.iter_mut().zip(record_lens) {
            let start = r.pos;
            r.skip(len)?;
            slot.record = (start, len);
        }
        Ok(Self {
            head: bytes,
            body,
            tags,
            events,
        })
    }

    /// Event `i`'s time, Unix nanoseconds.
    pub fn time(&self, i: usize) -> u64 {
        self.events[i].time_ns
    }

    /// Event `i`'s record size in bytes (known from the head alone).
    pub fn record_len(&self, i: usize) -> usize {
        self.events[i].record.1
    }

    /// The body as decompressed (every metadata map and record); empty for a head alone.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Event `i`, in log order; only for a chunk read with its body.
    pub fn get(&self, i: usize) -> EventRef<'_> {
        let slot = self.events[i];
        let (tag_start, tag_len) = self.tags[slot.tag as usize];
        // A head-only chunk has no records: empty ones (callers read the body to see them).
        let slice = |(start, len): (usize, usize)| self.body.get(start..start + len).unwrap_or(&[]);
        EventRef {
            position: slot.position,
            time_ns: slot.time_ns,
            tag: std::str::from_utf8(&self.head[tag_start..tag_start + tag_len])
                .expect("checked in decode"),
            metadata: slot.metadata.map(slice),
            record: slice(slot.record),
        }
    }
}

struct VarintReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl VarintReader<'_> {
    fn u64(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| invalid("block ends inside a number"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid("number longer than 64 bits"))
    }

    fn usize(&mut self) -> io::Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| invalid("length overflow"))
    }

    fn skip(&mut self, len: usize) -> io::Result<()> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| invalid("length past the end of the block"))?;
        self.pos = end;
        Ok(())
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(record: u64, index: u32, time_ns: u64, tag: &'static str) -> EventRef<'static> {
        EventRef {
            position: EventPosition::new(Position::new(record), index),
            time_ns,
            tag,
            metadata: (index % 2 == 1).then_some(&b"\x80"[..]),
            record: b"\x81\xa1a\x01",
        }
    }

    #[test]
    fn a_block_gives_back_every_event_as_pushed() {
        let events = [
            event(10, 0, 5_000, "a"),
            event(10, 1, 4_000, "b"),
            event(12, 0, u64::MAX, "a"),
            event(900, 7, 0, "c"),
        ];
        let mut builder = BlockBuilder::default();
        for e in &events {
            builder.push(e);
        }
        let (head, body) = builder.encode();
        let block = Block::decode(head, Some(body), 10).unwrap();
        assert_eq!(block.len(), events.len());
        for (i, e) in events.iter().enumerate() {
            assert_eq!(block.get(i), *e);
        }
    }

    #[test]
    fn a_truncated_or_garbled_block_is_an_error_not_a_panic() {
        let mut builder = BlockBuilder::default();
        builder.push(&event(1, 0, 1, "t"));
        builder.push(&event(2, 1, 2, "u"));
        let (head, body) = builder.encode();
        let mut bytes = head.clone();
        bytes.extend_from_slice(&body);
        // Every cut and every flipped byte of head and body: an error or events, never a panic.
        let split = head.len();
        for cut in 0..bytes.len() {
            let (h, b) = bytes[..cut].split_at(split.min(cut));
            let _ = Block::decode(h.to_vec(), Some(b.to_vec()), 1);
            // A head read alone (counting) gets the same checks.
            let _ = Block::decode(h.to_vec(), None, 1);
        }
        for i in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[i] ^= 0xff;
            let (h, b) = garbled.split_at(split);
            if let Ok(block) = Block::decode(h.to_vec(), Some(b.to_vec()), 1) {
                for j in 0..block.len() {
                    let _ = block.get(j);
                }
            }
            if let Ok(block) = Block::decode(h.to_vec(), None, 1) {
                for j in 0..block.len() {
                    let _ = (block.time(j), block.record_len(j));
                }
            }
        }
    }

    #[test]
    fn partition_names_are_utc_hours() {
        assert_eq!(partition_dir_name(0), "1970-01-01T00");
        // 2026-12-03T12:00:00Z = 1796299200.
        assert_eq!(partition_dir_name(1_796_299_200 / 3600), "2026-12-03T12");
        assert_eq!(partition_dir_name(11_016 * 24 + 23), "2000-02-29T23");
    }

    #[test]
    fn tenant_directory_names_are_safe() {
        assert_eq!(tenant_dir_name("default"), "default");
        assert_eq!(tenant_dir_name("../x"), "x-2e2e2f78");
        assert_eq!(tenant_dir_name(""), "x-");
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("42.chunks"), None);
        assert_eq!(parse_file_name("00000000000000000042.chunks.tmp"), None);
    }
}
