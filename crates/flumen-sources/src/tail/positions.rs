//! How far each file was read: the position file, and what the log itself holds.
//!
//! A file is known by its [`FileKey`]: device, inode, and a [`Fingerprint`] of its first bytes
//! (so that an inode number reused by a new file, or a file truncated and written again, is not
//! taken for the old one). The position file maps keys to the offset up to which every line is
//! durable in the log.
//!
//! # The position file
//!
//! JSON, rewritten whole and atomically (a temporary file, `fsync`, `rename`, `fsync` of the
//! directory), so a crash leaves the old or the new version, never a mix:
//!
//! ```text
//! {"version": 1, "log_seq": 1234,
//!  "files": [{"dev": 2049, "ino": 393231, "fp_len": 256, "fp_crc": 3735928559,
//!             "generation": 0, "offset": 81920, "path": "/var/log/app/api.log", "seen": 1763723821,
//!             "check": {"end": 81920, "len": 256, "crc": 1234567}}]}
//! ```
//!
//! `check` (absent in files written before it existed, and until a chunk of the file is
//! durable) is a [`ContentCheck`]: a sample of the bytes read, by which a copy of the file is
//! recognised.
//!
//! `log_seq` is a sequence number of the log such that every batch of this source appended
//! after the offsets above were taken has a sequence number at least that: on start, the log is
//! read from there ([`scan_log`]) to find batches stored after the last save, whose chunk ids
//! ([`FileKey::chunk_id`]) say which file and which byte range they hold.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flumen_wal::Wal;
use serde::{Deserialize, Serialize};

/// The first bytes of a file, summarised: how many (at most [`FINGERPRINT_MAX`]) and their
/// CRC32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Fingerprint {
    pub len: u16,
    pub crc: u32,
}

/// How many first bytes of a file make its fingerprint (fewer while the file is shorter).
pub(super) const FINGERPRINT_MAX: usize = 256;

impl Fingerprint {
    pub(super) fn of(prefix: &[u8]) -> Self {
        let prefix = &prefix[..prefix.len().min(FINGERPRINT_MAX)];
        Self {
            len: prefix.len() as u16,
            crc: crc32c::crc32c(prefix),
        }
    }

    /// True if `bytes` (at least `len` first bytes of a file) start with the fingerprinted ones.
    pub(super) fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() >= usize::from(self.len)
            && crc32c::crc32c(&bytes[..usize::from(self.len)]) == self.crc
    }
}

/// How many bytes at most a [`ContentCheck`] covers.
pub(super) const CHECK_MAX: usize = 256;

/// A sample of a file's content as it was read: the CRC32C of the `len` bytes that end at
/// offset `end`. A copy is only taken for the file if it holds the same bytes there: first
/// bytes alone cannot tell a copy apart from an older copy that starts the same way (a fixed
/// header), and a first line shorter than a trustworthy fingerprint cannot tell anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ContentCheck {
    pub end: u64,
    pub len: u16,
    pub crc: u32,
}

impl ContentCheck {
    /// The check of the last bytes (at most [`CHECK_MAX`]) of `bytes`, which end at offset
    /// `end` of their file.
    pub(super) fn ending_at(end: u64, bytes: &[u8]) -> Self {
        let sample = &bytes[bytes.len().saturating_sub(CHECK_MAX)..];
        Self {
            end,
            len: sample.len() as u16,
            crc: crc32c::crc32c(sample),
        }
    }

    /// True if `file` holds the sampled bytes where they were read.
    pub(super) fn holds(&self, file: &File) -> bool {
        let Some(start) = self.end.checked_sub(u64::from(self.len)) else {
            return false;
        };
        let mut sample = vec![0; usize::from(self.len)];
        file.read_exact_at(&mut sample, start).is_ok() && crc32c::crc32c(&sample) == self.crc
    }
}

/// A file's identity: where it lives on disk, what it starts with, and which generation of
/// content with that start it is (a file truncated and written again with the same first
/// bytes is a new generation, so its offsets are never confused with the old content's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub fp: Fingerprint,
    pub generation: u32,
}

impl FileKey {
    /// The chunk id of the lines at bytes `start..check.end` of this file, read by the source
    /// whose name hashes to `source`, with the [`ContentCheck`] of their last bytes:
    /// `tail:<source>:<dev>:<ino>:<fp_len>:<fp_crc>:<generation>:<start>-<end>:<check_crc>`.
    /// The check's length is what the range holds, up to [`CHECK_MAX`].
    pub(super) fn chunk_id(&self, source: u32, start: u64, check: &ContentCheck) -> String {
        format!(
            "tail:{source:08x}:{}:{}:{}:{:08x}:{}:{start}-{}:{:08x}",
            self.dev, self.ino, self.fp.len, self.fp.crc, self.generation, check.end, check.crc
        )
    }

    /// The key, end offset and check a chunk id of source `source` names (no check in ids
    /// written before it was added).
    pub(super) fn parse_chunk_id(
        id: &[u8],
        source: u32,
    ) -> Option<(FileKey, u64, Option<ContentCheck>)> {
        let id = std::str::from_utf8(id).ok()?;
        let mut parts = id.split(':');
        if parts.next()? != "tail" || u32::from_str_radix(parts.next()?, 16).ok()? != source {
            return None;
        }
        let dev = parts.next()?.parse().ok()?;
        let ino = parts.next()?.parse().ok()?;
        let len = parts.next()?.parse().ok()?;
        let crc = u32::from_str_radix(parts.next()?, 16).ok()?;
        let generation = parts.next()?.parse().ok()?;
        let (start, end) = parts.next()?.split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        let check = match parts.next() {
            Some(check_crc) => Some(ContentCheck {
                end,
                len: end.checked_sub(start)?.min(CHECK_MAX as u64) as u16,
                crc: u32::from_str_radix(check_crc, 16).ok()?,
            }),
            None => None,
        };
        Some((
            FileKey {
                dev,
                ino,
                fp: Fingerprint { len, crc },
                generation,
            },
            end,
            check,
        ))
    }
}

/// What is remembered of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Saved {
    /// Every line before this byte is durable in the log.
    pub offset: u64,
    /// Where the file was last seen (empty when only the log knew of it).
    pub path: PathBuf,
    /// When it was last seen, Unix seconds.
    pub seen: u64,
    /// A sample of the bytes read (none until a chunk of the file is durable).
    pub check: Option<ContentCheck>,
}

/// Every file's [`Saved`] position, by key and by inode.
#[derive(Debug, Default)]
pub(super) struct Positions {
    map: HashMap<FileKey, Saved>,
    by_inode: HashMap<(u64, u64), Vec<FileKey>>,
    /// Something changed since the last save.
    pub changed: bool,
}

impl Positions {
    pub(super) fn get(&self, key: &FileKey) -> Option<&Saved> {
        self.map.get(key)
    }

    /// The keys remembered for an inode.
    pub(super) fn of_inode(&self, dev: u64, ino: u64) -> &[FileKey] {
        self.by_inode.get(&(dev, ino)).map_or(&[], Vec::as_slice)
    }

    /// The newest generation of the inode's content starting with `prefix`, if known.
    pub(super) fn current(&self, dev: u64, ino: u64, prefix: &[u8]) -> Option<FileKey> {
        self.of_inode(dev, ino)
            .iter()
            .filter(|key| key.fp.matches(prefix))
            .max_by_key(|key| key.generation)
            .copied()
    }

    /// A key for new content of an inode starting with `prefix`: a generation after every
    /// known one whose first bytes it also starts with, so that [`Positions::current`] picks
    /// it from now on.
    pub(super) fn fresh(&self, dev: u64, ino: u64, prefix: &[u8]) -> FileKey {
        let fp = Fingerprint::of(prefix);
        let generation = self
            .of_inode(dev, ino)
            .iter()
            .filter(|key| key.fp.matches(prefix))
            .map(|key| key.generation + 1)
            .max()
            .unwrap_or(0);
        FileKey {
            dev,
            ino,
            fp,
            generation,
        }
    }

    /// Marks every file as seen at `now`.
    pub(super) fn all_seen(&mut self, now: u64) {
        for saved in self.map.values_mut() {
            saved.seen = now;
        }
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &FileKey> {
        self.map.keys()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn insert(&mut self, key: FileKey, saved: Saved) {
        if self.map.insert(key, saved).is_none() {
            self.by_inode
                .entry((key.dev, key.ino))
                .or_default()
                .push(key);
        }
        self.changed = true;
    }

    /// Moves the offset of `key` forward (never back), with a newer check of what was read
    /// when there is one; true if it moved.
    pub(super) fn advance(
        &mut self,
        key: &FileKey,
        offset: u64,
        check: Option<ContentCheck>,
    ) -> bool {
        match self.map.get_mut(key) {
            Some(saved) if saved.offset < offset => {
                saved.offset = offset;
                saved.check = check.or(saved.check);
                self.changed = true;
                true
            }
            _ => false,
        }
    }

    /// Sets where `key` was last seen.
    pub(super) fn seen(&mut self, key: &FileKey, path: &Path, now: u64) {
        if let Some(saved) = self.map.get_mut(key) {
            if saved.path != path {
                saved.path = path.to_path_buf();
                self.changed = true;
            }
            saved.seen = now;
        }
    }

    pub(super) fn remove(&mut self, key: &FileKey) -> Option<Saved> {
        let saved = self.map.remove(key)?;
        if let Some(keys) = self.by_inode.get_mut(&(key.dev, key.ino)) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_inode.remove(&(key.dev, key.ino));
            }
        }
        self.changed = true;
        Some(saved)
    }
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    log_seq: u64,
    files: Vec<EntryV1>,
}

#[derive(Serialize, Deserialize)]
struct EntryV1 {
    dev: u64,
    ino: u64,
    fp_len: u16,
    fp_crc: u32,
    #[serde(default)]
    generation: u32,
    offset: u64,
    path: String,
    seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<ContentCheck>,
}

/// Reads a position file: `Ok(None)` when there is none, `Err` (the reason) when it cannot be
/// read or understood.
pub(super) fn load(path: &Path) -> Result<Option<(Positions, u64)>, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let file: FileV1 = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("unknown version {}", file.version));
    }
    let mut positions = Positions::default();
    for entry in file.files {
        positions.insert(
            FileKey {
                dev: entry.dev,
                ino: entry.ino,
                fp: Fingerprint {
                    len: entry.fp_len,
                    crc: entry.fp_crc,
                },
                generation: entry.generation,
            },
            Saved {
                offset: entry.offset,
                path: PathBuf::from(entry.path),
                seen: entry.seen,
                check: entry.check,
            },
        );
    }
    positions.changed = false;
    Ok(Some((positions, file.log_seq)))
}

/// Writes the position file atomically: a temporary file beside it, fsynced, renamed over it,
/// and the directory fsynced.
pub(super) fn save(path: &Path, positions: &Positions, log_seq: u64) -> std::io::Result<()> {
    let mut files: Vec<EntryV1> = positions
        .map
        .iter()
        .map(|(key, saved)| EntryV1 {
            dev: key.dev,
            ino: key.ino,
            fp_len: key.fp.len,
            fp_crc: key.fp.crc,
            generation: key.generation,
            offset: saved.offset,
            path: saved.path.to_string_lossy().into_owned(),
            seen: saved.seen,
            check: saved.check,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path).then(a.ino.cmp(&b.ino)));
    let text = serde_json::to_vec(&FileV1 {
        version: 1,
        log_seq,
        files,
    })
    .map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Where a file's last chunk in the log ends, and the check of its last bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Logged {
    pub end: u64,
    pub check: Option<ContentCheck>,
}

/// The last chunk, per file, of this source's batches in the log from sequence number
/// `from_seq` on (or in its two newest segments when there is no such number).
pub(super) fn scan_log(
    wal: &Wal,
    wal_dir: &Path,
    from_seq: Option<u64>,
    source: u32,
) -> Result<HashMap<FileKey, Logged>, String> {
    let segments = match from_seq {
        Some(from) => {
            let mut firsts: Vec<u64> = std::fs::read_dir(wal_dir)
                .map_err(|e| format!("{}: {e}", wal_dir.display()))?
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name();
                    let digits = name.to_str()?.strip_suffix(".wal")?.to_owned();
                    digits.parse().ok()
                })
                .collect();
            firsts.sort_unstable();
            // The segment holding `from` and every later one.
            firsts.iter().filter(|first| **first > from).count() + 1
        }
        None => 2,
    };
    let mut ends = HashMap::new();
    crate::each_recent_batch(wal, segments, |seq, batch| {
        if from_seq.is_some_and(|from| seq < from) {
            return;
        }
        if let Some((key, end, check)) = FileKey::parse_chunk_id(batch.chunk_id, source) {
            let last = ends.entry(key).or_insert(Logged { end, check });
            if end > last.end {
                *last = Logged { end, check };
            }
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 7,
            ino,
            fp: Fingerprint::of(b"first line\n"),
            generation: 0,
        }
    }

    #[test]
    fn chunk_ids_name_the_file_the_range_and_its_check() {
        let lines = vec![b'l'; 150];
        let check = ContentCheck::ending_at(250, &lines);
        assert_eq!(check.len, 150);
        let id = key(42).chunk_id(0xabc, 100, &check);
        assert_eq!(
            FileKey::parse_chunk_id(id.as_bytes(), 0xabc),
            Some((key(42), 250, Some(check)))
        );
        let without_check = id.rsplit_once(':').unwrap().0;
        assert_eq!(
            FileKey::parse_chunk_id(without_check.as_bytes(), 0xabc),
            Some((key(42), 250, None)),
            "ids written before checks existed"
        );
        assert_eq!(FileKey::parse_chunk_id(id.as_bytes(), 0xabd), None);
        assert_eq!(FileKey::parse_chunk_id(b"c-1-2", 0xabc), None);
        assert!(id.len() < 100);
    }

    #[test]
    fn the_position_file_round_trips_and_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail").join("app.pos");
        assert!(load(&path).unwrap().is_none());
        let mut positions = Positions::default();
        positions.insert(
            key(1),
            Saved {
                offset: 10,
                path: "/var/log/a.log".into(),
                seen: 5,
                check: None,
            },
        );
        positions.insert(
            key(2),
            Saved {
                offset: 20,
                path: "/var/log/b.log".into(),
                seen: 6,
                check: None,
            },
        );
        let check = ContentCheck::ending_at(15, b"0123456789abcde");
        assert!(positions.advance(&key(1), 15, Some(check)));
        assert!(!positions.advance(&key(1), 12, None));
        save(&path, &positions, 99).unwrap();
        let (loaded, log_seq) = load(&path).unwrap().unwrap();
        assert_eq!(log_seq, 99);
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.get(&key(1)).unwrap().offset, 15);
        assert_eq!(loaded.get(&key(1)).unwrap().check, Some(check));
        assert_eq!(loaded.get(&key(2)).unwrap().check, None);
        assert_eq!(loaded.of_inode(7, 2), &[key(2)]);
        let fresh = loaded.fresh(7, 2, b"first line\nand more");
        assert_eq!(fresh.generation, 1);
        assert_eq!(
            loaded.current(7, 2, b"first line\nand more"),
            Some(key(2)),
            "the newest generation known"
        );
        assert_eq!(loaded.fresh(7, 2, b"other start\n").generation, 0);
        assert!(!path.with_extension("pos.tmp").exists());

        std::fs::write(&path, b"{\"version\": 1, \"log_seq\"").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn fingerprints_cover_at_most_the_first_bytes() {
        let long = vec![b'a'; 1000];
        let fp = Fingerprint::of(&long);
        assert_eq!(usize::from(fp.len), FINGERPRINT_MAX);
        assert!(fp.matches(&long[..300]));
        assert!(!fp.matches(&long[..100]));
        let mut other = long.clone();
        other[10] = b'b';
        assert!(!fp.matches(&other));
    }

    #[test]
    fn a_check_holds_only_where_the_same_bytes_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        let check = ContentCheck::ending_at(600, &content[..600]);
        assert_eq!(usize::from(check.len), CHECK_MAX);
        assert!(check.holds(&file));
        assert!(!ContentCheck::ending_at(601, &content[..600]).holds(&file));
        assert!(
            !ContentCheck::ending_at(2000, &content[..600]).holds(&file),
            "past its end"
        );
    }
}
