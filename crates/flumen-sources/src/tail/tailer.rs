//! The running tail source: one task that finds files, reads them, appends their lines and
//! keeps their positions.
//!
//! One task owns every file, so discovery, rotation and positions need no locks: files are
//! read in turns (up to [`PASS_BUDGET`] bytes each), reads are short page-cache reads on the
//! task's thread, and acknowledgements come back through a channel from one small waiter task
//! per appended chunk. A file is read when inotify reports a change in its directory, and by
//! every `poll_interval` in any case.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flumen_event::EventTime;
use metrics::{Counter, Gauge};
use tokio::sync::{mpsc, watch};

use super::lines::{EntryFormat, Splitter, looks_binary};
use super::positions::{self, ContentCheck, FINGERPRINT_MAX, FileKey, Positions, Saved};
use super::{ReadFrom, Settings};
use crate::{Ingest, IngestError, SourceShared, far_future, stopped};

/// The most bytes read from a file at once.
const BLOCK: usize = 256 * 1024;
/// The most bytes read from one file before the others get their turn.
const PASS_BUDGET: u64 = 1024 * 1024;
/// How many first bytes decide whether a new file is binary.
const BINARY_PROBE: usize = 8 * 1024;
/// Without a [`ContentCheck`] of what was read, a copy is only recognised by a fingerprint of
/// at least this many bytes.
const MIN_COPY_FINGERPRINT: u16 = 64;
/// How long a position is kept for a file no longer seen.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The longest shutdown waits for appended chunks to become durable.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// At shutdown, chunks still not durable this long after the last acknowledgement are held by
/// a joining filter: they are left to be read again.
const SHUTDOWN_QUIET: Duration = Duration::from_millis(500);

type FileId = u64;
type Inode = (u64, u64);

/// An acknowledgement from a chunk's waiter task.
#[derive(Debug)]
struct Ack {
    file: FileId,
    n: u64,
    durable: bool,
}

/// A chunk appended and not yet committed.
#[derive(Debug)]
struct Pending {
    /// Its last bytes, as read, and the offset after its last line (`check.end`).
    check: ContentCheck,
    /// No batch holding it has a lower sequence number in the log.
    low_seq: u64,
    durable: bool,
}

/// One file's content being followed: usually a file on disk, open; after copytruncate, its
/// copy; after it is closed, only its chunks waiting for durability.
#[derive(Debug)]
struct Tracked {
    /// The file, while it is open.
    file: Option<File>,
    inode: Inode,
    /// Where it is now (for messages and the position file).
    path: PathBuf,
    /// A matched path leads to it: false once it was renamed away, deleted, or is a copy.
    following: bool,
    /// Its identity, once it has bytes.
    key: Option<FileKey>,
    /// The next byte to read.
    read_pos: u64,
    /// A partial line: the bytes just before `read_pos`.
    carry: Vec<u8>,
    splitter: Splitter,
    ingest: Ingest,
    tag: String,
    format: EntryFormat,
    /// Chunks appended, oldest first; `first_n` numbers the front one.
    in_flight: VecDeque<Pending>,
    first_n: u64,
    /// Every line before it is durable.
    committed: u64,
    /// The last bytes of the last chunk appended (or of the position restored): what a copy
    /// must hold to be this content's.
    check: Option<ContentCheck>,
    /// When it last grew.
    last_growth: Instant,
    /// Read to its end on the last pass.
    at_end: bool,
    /// In the queue of files to read.
    queued: bool,
    /// Deleted: forget its position once its chunks are durable.
    forget: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ignored {
    /// Unchanged for longer than `ignore_older`, with this modification time.
    Old(SystemTime),
    /// Not text.
    Binary,
    /// Its lines cannot be stored (say, a tag too long).
    Rejected,
}

struct Metrics {
    files: Gauge,
    read_bytes: Counter,
    moved: Counter,
    truncated: Counter,
    long_lines: Counter,
    invalid_utf8: Counter,
}

/// Why the loop ends early.
enum Stop {
    /// The server is stopping.
    Requested,
    /// The log failed: nothing more can be stored.
    LogFailed,
}

struct Tailer {
    name: Arc<str>,
    settings: Arc<Settings>,
    shared: SourceShared,
    stop: watch::Receiver<bool>,
    source_hash: u32,
    position_path: PathBuf,
    positions: Positions,
    /// No position file at start: `read_from` applies to the files found now.
    first_start: bool,
    /// The last position save failed (reported once).
    save_failing: bool,
    files: HashMap<FileId, Tracked>,
    by_inode: HashMap<Inode, FileId>,
    by_path: HashMap<PathBuf, FileId>,
    ignored: HashMap<Inode, Ignored>,
    /// Paths reported as unusable, with the reason, so each is reported once.
    warned: HashMap<PathBuf, &'static str>,
    queue: VecDeque<FileId>,
    /// Files whose filters hold lines (multiline).
    held: HashSet<FileId>,
    next_id: FileId,
    acks: mpsc::UnboundedSender<Ack>,
    buf: Vec<u8>,
    entries: Vec<u8>,
    metrics: Metrics,
}

pub(super) async fn run(
    name: Arc<str>,
    settings: Arc<Settings>,
    shared: SourceShared,
    stop: watch::Receiver<bool>,
) {
    let position_path = settings
        .position_file
        .clone()
        .unwrap_or_else(|| shared.data_dir.join("tail").join(format!("{name}.pos")));
    let (acks, mut ack_rx) = mpsc::unbounded_channel();
    let source = name.to_string();
    let mut tailer = Tailer {
        source_hash: crc32c::crc32c(name.as_bytes()),
        metrics: Metrics {
            files: metrics::gauge!("flumen_tail_files", "source" => source.clone()),
            read_bytes: metrics::counter!("flumen_tail_read_bytes_total", "source" => source.clone()),
            moved: metrics::counter!("flumen_tail_rotations_total", "source" => source.clone(), "kind" => "moved"),
            truncated: metrics::counter!("flumen_tail_rotations_total", "source" => source.clone(), "kind" => "truncated"),
            long_lines: metrics::counter!("flumen_tail_long_lines_total", "source" => source.clone()),
            invalid_utf8: metrics::counter!("flumen_tail_invalid_utf8_lines_total", "source" => source),
        },
        name,
        settings,
        shared,
        stop,
        position_path,
        positions: Positions::default(),
        first_start: false,
        save_failing: false,
        files: HashMap::new(),
        by_inode: HashMap::new(),
        by_path: HashMap::new(),
        ignored: HashMap::new(),
        warned: HashMap::new(),
        queue: VecDeque::new(),
        held: HashSet::new(),
        next_id: 0,
        acks,
        buf: Vec::new(),
        entries: Vec::new(),
    };
    tailer.restore().await;
    let (events_tx, mut events) = mpsc::channel(8192);
    let mut watcher = tailer.watcher(events_tx);
    let mut unwatched = tailer.settings.watch_dirs.clone();
    if let Some(w) = watcher.as_mut() {
        watch_dirs(w, &mut unwatched);
    }
    tailer.rescan(true);
    tailer.find_lost();
    tailer.prune();
    tracing::info!(
        message = "Tailing files.",
        source = %tailer.name,
        files = tailer.files.len(),
        inotify = watcher.is_some(),
        position_file = %tailer.position_path.display()
    );

    let mut poll = tokio::time::interval(tailer.settings.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    let mut save_at = Instant::now() + tailer.settings.position_interval;
    let far = far_future();
    let outcome = loop {
        let flush_at = tailer.next_flush().unwrap_or(far);
        let work = !tailer.queue.is_empty();
        let mut stop = tailer.stop.clone();
        // Not biased: reading a backlog, a stream of inotify events and the timers all get
        // their turns.
        let step = tokio::select! {
            _ = stopped(&mut stop) => Err(Stop::Requested),
            Some(ack) = ack_rx.recv() => tailer.acknowledged(ack),
            Some(event) = events.recv() => {
                tailer.changed(event, &mut unwatched);
                Ok(())
            }
            _ = poll.tick() => {
                if let Some(w) = watcher.as_mut() {
                    watch_dirs(w, &mut unwatched);
                }
                tailer.rescan(false);
                tailer.queue_all();
                Ok(())
            }
            _ = tokio::time::sleep_until(save_at.into()) => {
                save_at = Instant::now() + tailer.settings.position_interval;
                if tailer.positions.changed {
                    tailer.save().await;
                }
                Ok(())
            }
            _ = tokio::time::sleep_until(flush_at.into()) => tailer.flush_due().await,
            _ = std::future::ready(()), if work => tailer.work().await,
        };
        if let Err(stop) = step {
            break stop;
        }
    };
    drop(watcher);
    if let Stop::LogFailed = outcome {
        tracing::error!(message = "The log failed; the tail source stops reading.", source = %tailer.name);
        stopped(&mut tailer.stop).await;
    }
    tailer.finish(&mut ack_rx).await;
}

/// Adds watches for the directories not watched yet (a directory that does not exist yet is
/// tried again on the next poll).
fn watch_dirs(watcher: &mut notify::RecommendedWatcher, unwatched: &mut Vec<(PathBuf, bool)>) {
    use notify::Watcher;
    unwatched.retain(|(dir, recursive)| {
        let mode = if *recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        watcher.watch(dir, mode).is_err()
    });
}

/// Runs blocking file work (an fsync) off the runtime's scheduling where the runtime allows.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads up to `len` first bytes of `file`.
fn read_prefix(file: &File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut prefix = vec![0; len];
    let filled = read_full(file, &mut prefix, 0)?;
    prefix.truncate(filled);
    Ok(prefix)
}

/// Removes `id` from the indexes by inode and by path where it is still what they name.
fn unindex(
    by_inode: &mut HashMap<Inode, FileId>,
    by_path: &mut HashMap<PathBuf, FileId>,
    id: FileId,
    inode: Inode,
    path: &Path,
) {
    if by_inode.get(&inode) == Some(&id) {
        by_inode.remove(&inode);
    }
    if by_path.get(path) == Some(&id) {
        by_path.remove(path);
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// True if `file`, which starts with `prefix`, is a copy of the content `key` names as far as
/// it was read: the same first bytes, and the bytes `check` sampled where it sampled them.
/// Without a check (nothing of it durable yet, or a position file from before checks), first
/// bytes shorter than [`MIN_COPY_FINGERPRINT`] are too common to go by.
fn is_copy(key: &FileKey, check: Option<&ContentCheck>, file: &File, prefix: &[u8]) -> bool {
    key.fp.matches(prefix)
        && match check {
            Some(check) => check.holds(file),
            None => key.fp.len >= MIN_COPY_FINGERPRINT,
        }
}

impl Tailer {
    fn error(&self, kind: &'static str) {
        metrics::counter!("flumen_tail_errors_total", "source" => self.name.to_string(), "kind" => kind)
            .increment(1);
    }

    /// Reports a problem with `path` once (until the path is fine again).
    fn warn_path(&mut self, path: &Path, kind: &'static str, message: &str) {
        if self.warned.get(path) == Some(&kind) {
            return;
        }
        self.warned.insert(path.to_path_buf(), kind);
        self.error(kind);
        tracing::warn!(message = "Not tailing a file.", source = %self.name, path = %path.display(), reason = message);
    }

    /// Loads the position file and completes it with what the log holds.
    async fn restore(&mut self) {
        let path = self.position_path.clone();
        let loaded = match positions::load(&path) {
            Ok(loaded) => loaded,
            Err(reason) => {
                self.error("position_file");
                let aside = path.with_extension("pos.corrupt");
                let _ = std::fs::rename(&path, &aside);
                tracing::warn!(
                    message = "The position file cannot be read; starting over as if there were none (files are read per read_from, except what the log shows was stored). It was moved aside.",
                    source = %self.name, path = %path.display(), moved_to = %aside.display(), %reason
                );
                None
            }
        };
        let (from_seq, had_file) = match loaded {
            Some((positions, log_seq)) => {
                self.positions = positions;
                (Some(log_seq), true)
            }
            None => (None, false),
        };
        self.first_start = !had_file;
        let wal = self.shared.wal.clone();
        let wal_dir = self.shared.data_dir.join("wal");
        let source = self.source_hash;
        let scanned = tokio::task::spawn_blocking(move || {
            positions::scan_log(&wal, &wal_dir, from_seq, source)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let ends = match scanned {
            Ok(ends) => ends,
            Err(reason) => {
                tracing::warn!(message = "Cannot read the log back for this source's last chunks; lines stored since the last position save may be read again.", source = %self.name, %reason);
                HashMap::new()
            }
        };
        let now = unix_now();
        let mut advanced = 0;
        for (key, last) in &ends {
            if self.positions.get(key).is_none() {
                self.positions.insert(
                    *key,
                    Saved {
                        offset: last.end,
                        path: PathBuf::new(),
                        seen: now,
                        check: last.check,
                    },
                );
                advanced += 1;
            } else if self.positions.advance(key, last.end, last.check) {
                advanced += 1;
            }
        }
        // Positions of files not seen for long are kept from now on, not from when flumen
        // stopped.
        self.positions.all_seen(now);
        if !had_file && (self.shared.wal.stats().durable_end.get() > 0 || !ends.is_empty()) {
            tracing::warn!(
                message = "No position file: first start of this source, or the file was deleted. Files found now are read per read_from, except where the log shows what was stored.",
                source = %self.name, path = %path.display(), read_from = ?self.settings.read_from, files_in_log = ends.len()
            );
        }
        tracing::info!(message = "Tail positions restored.", source = %self.name, files = self.positions.len(), from_log = advanced);
    }

    fn watcher(&self, events: mpsc::Sender<notify::Event>) -> Option<notify::RecommendedWatcher> {
        if !self.settings.inotify {
            return None;
        }
        let handler = move |event: notify::Result<notify::Event>| {
            let event = event.unwrap_or_else(|_| {
                notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan)
            });
            // A full queue loses nothing: the next poll reads every file and matches every
            // pattern.
            let _ = events.try_send(event);
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(message = "inotify is not available; polling files instead.", source = %self.name, %error);
                None
            }
        }
    }

    /// An inotify event in a watched directory.
    fn changed(&mut self, event: notify::Event, unwatched: &mut Vec<(PathBuf, bool)>) {
        use notify::EventKind;
        use notify::event::ModifyKind;
        if event.need_rescan() {
            self.rescan(false);
            self.queue_all();
            return;
        }
        let structural = match event.kind {
            EventKind::Access(_) => return,
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_)) => false,
            _ => true,
        };
        for path in &event.paths {
            if let Some(&id) = self.by_path.get(path) {
                self.enqueue(id);
                if structural {
                    self.discover(path, false);
                }
            } else if structural
                && let Some(watched) = self.settings.watch_dirs.iter().find(|(d, _)| d == path)
            {
                // A watched directory went away: watch it again once it is back.
                if !path.exists() && !unwatched.iter().any(|(d, _)| d == path) {
                    unwatched.push(watched.clone());
                }
            } else if self.settings.matches(path) {
                self.discover(path, false);
            }
        }
    }

    /// Matches every pattern; follows new files, notices files no longer at a matched path.
    fn rescan(&mut self, initial: bool) {
        let mut found = HashSet::new();
        let settings = self.settings.clone();
        for pattern in &settings.patterns {
            let Ok(paths) = glob::glob_with(pattern.as_str(), super::MATCH) else {
                continue;
            };
            for path in paths.flatten() {
                if self.settings.excluded(&path) {
                    continue;
                }
                if let Some(inode) = self.discover(&path, initial) {
                    found.insert(inode);
                }
            }
        }
        let lost: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| t.following && t.file.is_some() && !found.contains(&t.inode))
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.unfollow(id);
        }
    }

    /// Looks at a matched path: follows a new file there, notices that a followed file is no
    /// longer there. Returns the inode followed at `path`.
    fn discover(&mut self, path: &Path, initial: bool) -> Option<Inode> {
        let previous = self.by_path.get(path).copied();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) => {
                if let Some(id) = previous {
                    self.unfollow(id);
                }
                if error.kind() != std::io::ErrorKind::NotFound {
                    self.warn_path(path, "open", &error.to_string());
                }
                return None;
            }
        };
        let inode = (meta.dev(), meta.ino());
        if let Some(id) = previous
            && self.files.get(&id).is_some_and(|t| t.inode != inode)
        {
            self.unfollow(id);
        }
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "it is a directory, not a file"
            } else {
                "it is not a regular file"
            };
            self.warn_path(path, "not_a_file", what);
            return None;
        }
        if self.settings.excluded(path) {
            return None;
        }
        if let Some(&id) = self.by_inode.get(&inode) {
            self.warned.remove(path);
            let t = self.files.get_mut(&id).expect("indexed files exist");
            if !t.following {
                tracing::info!(message = "Following a file again at a matched path.", source = %self.name, path = %path.display());
            }
            t.following = true;
            if t.path != path {
                if self.by_path.get(&t.path) == Some(&id) {
                    self.by_path.remove(&t.path);
                }
                t.path = path.to_path_buf();
            }
            self.by_path.insert(path.to_path_buf(), id);
            return Some(inode);
        }
        match self.ignored.get(&inode) {
            Some(Ignored::Old(mtime)) => {
                if meta.modified().ok() == Some(*mtime) {
                    return None;
                }
                self.ignored.remove(&inode);
            }
            Some(_) => return None,
            None => {}
        }
        self.open(path, initial)
    }

    /// Opens a file found at a matched path for the first time (in this run).
    fn open(&mut self, path: &Path, initial: bool) -> Option<Inode> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::NotFound {
                    self.warn_path(path, "open", &error.to_string());
                }
                return None;
            }
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(error) => {
                self.warn_path(path, "open", &error.to_string());
                return None;
            }
        };
        let inode = (meta.dev(), meta.ino());
        if self.by_inode.contains_key(&inode) {
            // Renamed between the look and the open: the next event or poll sorts it out.
            return None;
        }
        let size = meta.len();
        let prefix = match read_prefix(&file, (size as usize).min(BINARY_PROBE)) {
            Ok(prefix) => prefix,
            Err(error) => {
                self.error("read");
                self.warn_path(path, "read", &error.to_string());
                return None;
            }
        };
        self.warned.remove(path);
        let known = self.positions.current(inode.0, inode.1, &prefix);
        let mut start = 0;
        let mut key = None;
        if let Some(known) = known {
            let offset = self.positions.get(&known).map_or(0, |s| s.offset);
            if size < offset {
                self.metrics.truncated.increment(1);
                tracing::info!(message = "A file is shorter than where it was read up to: it was truncated while flumen was stopped; reading it from its beginning.", source = %self.name, path = %path.display(), offset, size);
            } else {
                start = offset;
                key = Some(known);
            }
        }
        if key.is_none() && !prefix.is_empty() {
            if let Some(age) = self.settings.ignore_older
                && let Ok(mtime) = meta.modified()
                && mtime.elapsed().is_ok_and(|elapsed| elapsed > age)
            {
                // Not read now; if it changes, from where it ended.
                let key = self.positions.fresh(inode.0, inode.1, &prefix);
                let saved = Saved {
                    offset: size,
                    path: path.to_path_buf(),
                    seen: unix_now(),
                    check: None,
                };
                self.positions.insert(key, saved);
                self.ignored.insert(inode, Ignored::Old(mtime));
                tracing::debug!(message = "Not reading a file unchanged for longer than ignore_older.", source = %self.name, path = %path.display());
                return None;
            }
            if looks_binary(&prefix) {
                self.binary(path, inode);
                return None;
            }
            let from_end = known.is_none()
                && initial
                && self.first_start
                && self.settings.read_from == ReadFrom::End;
            start = if from_end { size } else { 0 };
            let new = self.positions.fresh(inode.0, inode.1, &prefix);
            let saved = Saved {
                offset: start,
                path: path.to_path_buf(),
                seen: unix_now(),
                check: None,
            };
            self.positions.insert(new, saved);
            key = Some(new);
        }
        let id = self.track(file, inode, path, path, key, start, true);
        if initial {
            tracing::debug!(message = "Following a file.", source = %self.name, path = %path.display(), offset = start);
        } else {
            tracing::info!(message = "Following a file.", source = %self.name, path = %path.display(), offset = start);
        }
        self.by_path.insert(path.to_path_buf(), id);
        Some(inode)
    }

    fn binary(&mut self, path: &Path, inode: Inode) {
        self.ignored.insert(inode, Ignored::Binary);
        self.error("binary");
        tracing::error!(message = "Not tailing a binary file (NUL bytes in its first bytes, which are not UTF-8). Add it to `exclude` to silence this.", source = %self.name, path = %path.display());
    }

    /// Starts following `file` from `start`; `origin` names it in its events.
    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        file: File,
        inode: Inode,
        path: &Path,
        origin: &Path,
        key: Option<FileKey>,
        start: u64,
        following: bool,
    ) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        let check = key.and_then(|key| self.positions.get(&key)?.check);
        let settings = &self.settings;
        let tracked = Tracked {
            file: Some(file),
            inode,
            path: path.to_path_buf(),
            following,
            key,
            read_pos: start,
            carry: Vec::new(),
            splitter: Splitter::new(settings.max_line, settings.long_lines),
            ingest: Ingest::new(&self.name, &settings.label, &self.shared),
            tag: settings.tag_of(origin),
            format: EntryFormat::new(
                &settings.field,
                &settings.path_field,
                &origin.to_string_lossy(),
            ),
            in_flight: VecDeque::new(),
            first_n: 0,
            committed: start,
            check,
            last_growth: Instant::now(),
            at_end: false,
            queued: false,
            forget: false,
        };
        self.files.insert(id, tracked);
        self.by_inode.insert(inode, id);
        self.metrics.files.increment(1.0);
        self.enqueue(id);
        id
    }

    /// A followed file is no longer at a matched path: read what is left, then close it.
    fn unfollow(&mut self, id: FileId) {
        let Some(t) = self.files.get_mut(&id) else {
            return;
        };
        if self.by_path.get(&t.path) == Some(&id) {
            self.by_path.remove(&t.path);
        }
        if t.following {
            t.following = false;
            t.last_growth = Instant::now();
            self.metrics.moved.increment(1);
            tracing::info!(message = "A file is no longer at its path (renamed or deleted): reading it to its end, closing it after rotate_wait.", source = %self.name, path = %t.path.display());
        }
        self.enqueue(id);
    }

    /// After a restart: reads the unread end of files renamed away or copied and truncated
    /// while flumen was stopped, found by inode and fingerprint where they were and in the
    /// patterns' directories.
    fn find_lost(&mut self) {
        let bound: HashSet<FileKey> = self.files.values().filter_map(|t| t.key).collect();
        let wanted: Vec<(FileKey, Saved)> = self
            .positions
            .keys()
            .filter(|key| !bound.contains(key))
            .filter_map(|key| Some((*key, self.positions.get(key)?.clone())))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, saved) in &wanted {
            if let Some(parent) = saved.path.parent()
                && !parent.as_os_str().is_empty()
                && !dirs.iter().any(|d| d == parent)
            {
                dirs.push(parent.to_path_buf());
            }
        }
        for (dir, _) in &self.settings.watch_dirs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        // The files there that no pattern picks up and that are not followed.
        let mut candidates: Vec<(PathBuf, Inode, u64, Vec<u8>)> = Vec::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if self.settings.matches(&path) || self.settings.excluded(&path) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let inode = (meta.dev(), meta.ino());
                if !meta.is_file() || self.by_inode.contains_key(&inode) {
                    continue;
                }
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let Ok(prefix) = read_prefix(&file, FINGERPRINT_MAX) else {
                    continue;
                };
                candidates.push((path, inode, meta.len(), prefix));
            }
        }
        for (key, saved) in wanted {
            let (offset, origin) = (saved.offset, saved.path);
            let found = candidates.iter().position(|(path, inode, size, prefix)| {
                if *size <= offset {
                    return false;
                }
                if *inode == (key.dev, key.ino) {
                    // Not an older generation of what the file holds now.
                    key.fp.matches(prefix)
                        && self.positions.current(key.dev, key.ino, prefix) == Some(key)
                } else {
                    File::open(path)
                        .is_ok_and(|file| is_copy(&key, saved.check.as_ref(), &file, prefix))
                }
            });
            let Some(index) = found else {
                continue;
            };
            let (path, inode, _, _) = candidates.swap_remove(index);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let origin = if origin.as_os_str().is_empty() {
                path.clone()
            } else {
                origin
            };
            let kind = if inode == (key.dev, key.ino) {
                "renamed"
            } else {
                "copied"
            };
            tracing::info!(message = "Reading the unread end of a file from where it went.", source = %self.name, file = %origin.display(), found_at = %path.display(), how = kind, offset);
            self.track(file, inode, &path, &origin, Some(key), offset, false);
        }
    }

    /// Forgets positions of files not seen for long.
    fn prune(&mut self) {
        let bound: HashSet<FileKey> = self.files.values().filter_map(|t| t.key).collect();
        let now = unix_now();
        let old: Vec<FileKey> = self
            .positions
            .keys()
            .filter(|key| !bound.contains(key))
            .filter(|key| {
                self.positions
                    .get(key)
                    .is_some_and(|s| s.seen + FORGET_AFTER.as_secs() < now)
            })
            .copied()
            .collect();
        for key in old {
            self.positions.remove(&key);
        }
    }

    fn enqueue(&mut self, id: FileId) {
        if let Some(t) = self.files.get_mut(&id)
            && !t.queued
            && t.file.is_some()
        {
            t.queued = true;
            self.queue.push_back(id);
        }
    }

    fn queue_all(&mut self) {
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            self.enqueue(id);
        }
    }

    /// Reads the next queued file.
    async fn work(&mut self) -> Result<(), Stop> {
        let Some(id) = self.queue.pop_front() else {
            return Ok(());
        };
        if let Some(t) = self.files.get_mut(&id) {
            t.queued = false;
        }
        self.pass(id).await
    }

    /// Reads one file: checks that it is still the same content, reads up to the pass budget,
    /// and closes it if it was rotated away and is done.
    async fn pass(&mut self, id: FileId) -> Result<(), Stop> {
        let Some(t) = self.files.get(&id) else {
            return Ok(());
        };
        let Some(file) = t.file.as_ref() else {
            return Ok(());
        };
        let size = match file.metadata() {
            Ok(meta) => meta.len(),
            Err(error) => {
                tracing::warn!(message = "Cannot look at a file; closing it.", source = %self.name, path = %t.path.display(), %error);
                self.error("read");
                return self.close(id, false).await;
            }
        };
        let truncated = size < t.read_pos
            || t.key.is_some_and(|key| {
                read_prefix(file, usize::from(key.fp.len)).map_or(true, |p| !key.fp.matches(&p))
            });
        if truncated {
            return self.truncated(id, size).await;
        }
        if t.key.is_none() && size > 0 {
            // The first bytes of a file that was empty: its identity, and is it text?
            let Ok(prefix) = read_prefix(file, (size as usize).min(BINARY_PROBE)) else {
                return Ok(());
            };
            if t.read_pos == 0 && looks_binary(&prefix) {
                let (path, inode) = (t.path.clone(), t.inode);
                self.close(id, false).await?;
                self.binary(&path, inode);
                return Ok(());
            }
            let key = self.positions.fresh(t.inode.0, t.inode.1, &prefix);
            let saved = Saved {
                offset: t.read_pos,
                path: t.path.clone(),
                seen: unix_now(),
                check: None,
            };
            self.positions.insert(key, saved);
            self.files.get_mut(&id).expect("tracked").key = Some(key);
        }
        let mut budget = PASS_BUDGET;
        while budget > 0 {
            let t = self.files.get_mut(&id).expect("tracked");
            if t.read_pos >= size {
                break;
            }
            let file = t.file.as_ref().expect("open");
            let want = (size - t.read_pos).min(BLOCK as u64) as usize;
            let buf = &mut self.buf;
            buf.clear();
            buf.extend_from_slice(&t.carry);
            let carried = buf.len();
            buf.resize(carried + want, 0);
            let read = match read_full(file, &mut buf[carried..], t.read_pos) {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(message = "Cannot read a file; trying again later.", source = %self.name, path = %t.path.display(), %error);
                    self.error("read");
                    break;
                }
            };
            if read == 0 {
                break;
            }
            buf.truncate(carried + read);
            t.read_pos += read as u64;
            t.last_growth = Instant::now();
            budget = budget.saturating_sub(read as u64);
            let start = t.read_pos - buf.len() as u64;
            let mut time = Vec::with_capacity(10);
            EventTime::now().write_msgpack(&mut time);
            let mut entries = std::mem::take(&mut self.entries);
            entries.clear();
            let taken = t.splitter.take(buf, false, &t.format, &time, &mut entries);
            let check =
                ContentCheck::ending_at(start + taken.consumed as u64, &buf[..taken.consumed]);
            t.carry.clear();
            t.carry.extend_from_slice(&buf[taken.consumed..]);
            self.metrics.read_bytes.increment(read as u64);
            self.count(taken);
            if taken.consumed > 0 {
                let appended = self.append(id, start, check, taken.entries, &entries).await;
                self.entries = entries;
                appended?;
                if self.files.get(&id).is_none_or(|t| t.file.is_none()) {
                    return Ok(());
                }
            } else {
                self.entries = entries;
            }
        }
        let rotate_wait = self.settings.rotate_wait;
        let t = self.files.get_mut(&id).expect("tracked");
        t.at_end = t.read_pos >= size;
        if !t.at_end {
            self.enqueue(id);
        } else if !t.following && t.last_growth.elapsed() >= rotate_wait {
            return self.close(id, true).await;
        }
        Ok(())
    }

    fn count(&self, taken: super::lines::Taken) {
        if taken.long > 0 {
            self.metrics.long_lines.increment(u64::from(taken.long));
        }
        if taken.invalid_utf8 > 0 {
            self.metrics
                .invalid_utf8
                .increment(u64::from(taken.invalid_utf8));
        }
    }

    /// Appends the lines at bytes `start..check.end` of a file (`count` entries; none when the
    /// range held only skipped bytes); `check` samples its last bytes.
    async fn append(
        &mut self,
        id: FileId,
        start: u64,
        check: ContentCheck,
        count: u32,
        entries: &[u8],
    ) -> Result<(), Stop> {
        let low_seq = self.shared.wal.stats().durable_end.get();
        let t = self.files.get_mut(&id).expect("tracked");
        let key = t.key.expect("a file with bytes has a key");
        let n = t.first_n + t.in_flight.len() as u64;
        t.check = Some(check);
        t.in_flight.push_back(Pending {
            check,
            low_seq,
            durable: count == 0,
        });
        if count == 0 {
            return self.acknowledged(Ack {
                file: id,
                n,
                durable: true,
            });
        }
        let chunk = key.chunk_id(self.source_hash, start, &check);
        let mut stop = self.stop.clone();
        let appended = tokio::select! {
            appended = t.ingest.append_unclaimed(&t.tag, chunk.as_bytes(), count, entries) => appended,
            _ = stopped(&mut stop) => return Err(Stop::Requested),
        };
        if t.ingest.next_flush().is_some() {
            self.held.insert(id);
        } else {
            self.held.remove(&id);
        }
        match appended {
            Ok(mut ack) => {
                let acks = self.acks.clone();
                tokio::spawn(async move {
                    let durable = ack.durable().await;
                    let _ = acks.send(Ack {
                        file: id,
                        n,
                        durable,
                    });
                });
                Ok(())
            }
            Err(IngestError::Log(error)) => {
                tracing::error!(message = "Cannot append to the log.", source = %self.name, %error);
                Err(Stop::LogFailed)
            }
            Err(IngestError::Rejected(reason)) => {
                let (path, inode) = (t.path.clone(), t.inode);
                t.in_flight.pop_back();
                self.error("rejected");
                tracing::error!(message = "The lines of a file cannot be stored; no longer tailing it.", source = %self.name, path = %path.display(), %reason);
                self.ignored.insert(inode, Ignored::Rejected);
                if let Some(t) = self.files.get_mut(&id)
                    && t.file.take().is_some()
                {
                    self.metrics.files.decrement(1.0);
                }
                unindex(&mut self.by_inode, &mut self.by_path, id, inode, &path);
                self.held.remove(&id);
                if self.files.get(&id).is_some_and(|t| t.in_flight.is_empty()) {
                    self.forget(id);
                }
                Ok(())
            }
        }
    }

    /// A chunk is durable (or failed): commits the offsets of the chunks durable in order.
    fn acknowledged(&mut self, ack: Ack) -> Result<(), Stop> {
        if !ack.durable {
            tracing::error!(message = "Lines could not be made durable.", source = %self.name);
            return Err(Stop::LogFailed);
        }
        let Some(t) = self.files.get_mut(&ack.file) else {
            return Ok(());
        };
        if let Some(pending) = ack
            .n
            .checked_sub(t.first_n)
            .and_then(|i| t.in_flight.get_mut(i as usize))
        {
            pending.durable = true;
        }
        let mut last_done = None;
        while t.in_flight.front().is_some_and(|p| p.durable) {
            let done = t.in_flight.pop_front().expect("non-empty");
            t.first_n += 1;
            t.committed = done.check.end;
            last_done = Some(done.check);
        }
        if let Some(check) = last_done
            && let Some(key) = t.key
        {
            self.positions.advance(&key, t.committed, Some(check));
        }
        if t.file.is_none() && t.in_flight.is_empty() {
            self.forget(ack.file);
        }
        Ok(())
    }

    /// The content followed by `id` is gone from its file: follow it to its copy if there is
    /// one, else close it; the file's new content is followed from its beginning.
    async fn truncated(&mut self, id: FileId, size: u64) -> Result<(), Stop> {
        let t = self.files.get_mut(&id).expect("tracked");
        self.metrics.truncated.increment(1);
        tracing::info!(message = "A file was truncated; reading it again from its beginning.", source = %self.name, path = %t.path.display(), read_up_to = t.read_pos, size);
        let (inode, path, following, key, check, read_pos) = (
            t.inode,
            t.path.clone(),
            t.following,
            t.key,
            t.check,
            t.read_pos,
        );
        // The file's descriptor goes to its new content; this content goes to its copy, if any.
        let file = t.file.take().expect("open");
        self.metrics.files.decrement(1.0);
        unindex(&mut self.by_inode, &mut self.by_path, id, inode, &path);
        let copy = key.and_then(|key| self.find_copy(&key, check.as_ref(), read_pos, &path, inode));
        match copy {
            Some((copy_file, copy_inode, copy_path)) => {
                tracing::info!(message = "Reading the rest of the truncated file from its copy.", source = %self.name, path = %path.display(), copy = %copy_path.display(), offset = read_pos);
                let t = self.files.get_mut(&id).expect("tracked");
                t.file = Some(copy_file);
                t.inode = copy_inode;
                t.path = copy_path;
                t.following = false;
                t.last_growth = Instant::now();
                self.by_inode.insert(copy_inode, id);
                self.metrics.files.increment(1.0);
                self.enqueue(id);
            }
            None => {
                // What was not read went with the old content.
                let t = self.files.get_mut(&id).expect("tracked");
                t.carry.clear();
                t.forget = true;
                self.close(id, false).await?;
            }
        }
        let new = self.track(file, inode, &path, &path, None, 0, following);
        if following {
            self.by_path.insert(path, new);
        }
        Ok(())
    }

    /// Looks for a copy of a truncated file beside it: at least `read_pos` long, another inode,
    /// not matched by the patterns, holding what was read ([`is_copy`]).
    fn find_copy(
        &mut self,
        key: &FileKey,
        check: Option<&ContentCheck>,
        read_pos: u64,
        path: &Path,
        inode: Inode,
    ) -> Option<(File, Inode, PathBuf)> {
        let dir = path.parent()?;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let candidate = entry.path();
            if candidate == path
                || self.settings.matches(&candidate)
                || self.settings.excluded(&candidate)
            {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&candidate) else {
                continue;
            };
            let candidate_inode = (meta.dev(), meta.ino());
            if !meta.is_file()
                || candidate_inode == inode
                || meta.len() < read_pos
                || self.by_inode.contains_key(&candidate_inode)
            {
                continue;
            }
            let Ok(file) = File::open(&candidate) else {
                continue;
            };
            if read_prefix(&file, usize::from(key.fp.len))
                .is_ok_and(|prefix| is_copy(key, check, &file, &prefix))
            {
                return Some((file, candidate_inode, candidate));
            }
        }
        None
    }

    /// Stops reading a file: with `finished`, its last line without a newline is taken too.
    /// Lines its filters hold are stored. It is forgotten once its chunks are durable.
    async fn close(&mut self, id: FileId, finished: bool) -> Result<(), Stop> {
        let Some(t) = self.files.get_mut(&id) else {
            return Ok(());
        };
        if finished && !t.carry.is_empty() {
            let start = t.read_pos - t.carry.len() as u64;
            let check = ContentCheck::ending_at(t.read_pos, &t.carry);
            let mut time = Vec::with_capacity(10);
            EventTime::now().write_msgpack(&mut time);
            let mut entries = Vec::new();
            let carry = std::mem::take(&mut t.carry);
            let taken = t
                .splitter
                .take(&carry, true, &t.format, &time, &mut entries);
            self.count(taken);
            self.append(id, start, check, taken.entries, &entries)
                .await?;
        }
        let Some(t) = self.files.get_mut(&id) else {
            return Ok(());
        };
        t.carry.clear();
        let flushed = t.ingest.flush_all().await;
        self.held.remove(&id);
        if let Err(IngestError::Log(error)) = flushed {
            tracing::error!(message = "Cannot append to the log.", source = %self.name, %error);
            return Err(Stop::LogFailed);
        }
        if let Some(file) = t.file.take() {
            t.forget |= file.metadata().is_ok_and(|m| m.nlink() == 0);
            drop(file);
            self.metrics.files.decrement(1.0);
            tracing::info!(message = "Closed a file.", source = %self.name, path = %t.path.display(), read_up_to = t.read_pos);
        }
        unindex(&mut self.by_inode, &mut self.by_path, id, t.inode, &t.path);
        if let Some(key) = t.key {
            self.positions.seen(&key, &t.path, unix_now());
        }
        if self.files.get(&id).is_some_and(|t| t.in_flight.is_empty()) {
            self.forget(id);
        }
        Ok(())
    }

    /// Drops a closed file whose chunks are all durable.
    fn forget(&mut self, id: FileId) {
        if let Some(t) = self.files.remove(&id)
            && t.forget
            && let Some(key) = t.key
        {
            self.positions.remove(&key);
        }
    }

    /// When the first lines held by a filter are due.
    fn next_flush(&self) -> Option<Instant> {
        self.held
            .iter()
            .filter_map(|id| self.files.get(id)?.ingest.next_flush())
            .min()
    }

    /// Stores lines held by filters past their timeout.
    async fn flush_due(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let due: Vec<FileId> = self
            .held
            .iter()
            .copied()
            .filter(|id| {
                self.files
                    .get(id)
                    .and_then(|t| t.ingest.next_flush())
                    .is_some_and(|at| at <= now)
            })
            .collect();
        for id in due {
            let Some(t) = self.files.get_mut(&id) else {
                self.held.remove(&id);
                continue;
            };
            if let Err(IngestError::Log(error)) = t.ingest.flush_due().await {
                tracing::error!(message = "Cannot append to the log.", source = %self.name, %error);
                return Err(Stop::LogFailed);
            }
            if t.ingest.next_flush().is_none() {
                self.held.remove(&id);
            }
        }
        Ok(())
    }

    /// Writes the position file.
    async fn save(&mut self) {
        let now = unix_now();
        for t in self.files.values().filter(|t| t.file.is_some()) {
            if let Some(key) = t.key {
                self.positions.seen(&key, &t.path, now);
            }
        }
        self.prune();
        // Every chunk not committed yet was appended after `log_seq`.
        let log_seq = self
            .files
            .values()
            .flat_map(|t| t.in_flight.iter().map(|p| p.low_seq))
            .fold(self.shared.wal.stats().durable_end.get(), u64::min);
        self.positions.changed = false;
        let path = self.position_path.clone();
        let positions = &self.positions;
        let saved = blocking(|| positions::save(&path, positions, log_seq));
        match saved {
            Ok(()) => self.save_failing = false,
            Err(error) => {
                self.positions.changed = true;
                self.error("position_file");
                if !std::mem::replace(&mut self.save_failing, true) {
                    tracing::warn!(message = "Cannot write the position file; trying again every position_interval.", source = %self.name, path = %path.display(), %error);
                }
            }
        }
    }

    /// At shutdown: waits (bounded) for appended chunks to be durable, then saves positions.
    /// Lines a filter still holds are not stored: they are read again at the next start.
    async fn finish(&mut self, acks: &mut mpsc::UnboundedReceiver<Ack>) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut quiet_at = Instant::now() + SHUTDOWN_QUIET;
        while self.files.values().any(|t| !t.in_flight.is_empty()) {
            let until = deadline.min(quiet_at);
            tokio::select! {
                Some(ack) = acks.recv() => {
                    if self.acknowledged(ack).is_err() {
                        break;
                    }
                    quiet_at = Instant::now() + SHUTDOWN_QUIET;
                }
                _ = tokio::time::sleep_until(until.into()) => break,
            }
        }
        self.save().await;
        tracing::info!(message = "Tail source stopped.", source = %self.name, files = self.files.values().filter(|t| t.file.is_some()).count());
    }
}
