//! The writer thread: recovery on open, appends, group commit, segment rolling, the size cap.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{IoSlice, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::segment::{self, CorruptSpan, Format, HEADER_LEN, Scanned, SegmentScanner};
use crate::{Command, Durable, Persistence, Shared, WalError, WhenFull, open_segment_for_append};

/// What recovery found on disk.
pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, u64>,
    pub active: File,
    pub active_first_seq: u64,
    pub active_len: u64,
    pub next_seq: u64,
    /// Corrupt spans found: the segment's first sequence number, the span, the records lost.
    pub corrupt: Vec<(u64, CorruptSpan, u64)>,
}

/// Lists the segments, mends the newest one's header if it is damaged, checks every record of
/// every one, cuts a torn tail off the newest, and opens it (or, if it is in an earlier
/// version's format, a new one) for appending.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, WalError> {
    let mut segments = list_segments(dir)?;
    remove_torn_newest(dir, &mut segments)?;
    let mut corrupt = Vec::new();
    mend_newest_header(dir, &mut segments, &mut corrupt)?;
    let Some((&active_first, _)) = segments.last_key_value() else {
        let active = open_segment_for_append(dir, 0)?;
        segments.insert(0, HEADER_LEN);
        return Ok(Recovered {
            segments,
            active,
            active_first_seq: 0,
            active_len: HEADER_LEN,
            next_seq: 0,
            corrupt,
        });
    };
    let firsts: Vec<u64> = segments.keys().copied().collect();
    for pair in firsts.windows(2) {
        check_sealed(dir, pair[0], segments[&pair[0]], pair[1], &mut corrupt)?;
    }
    let newest = check_newest(dir, active_first, &mut corrupt)?;
    let path = segment::segment_path(dir, active_first);
    let active = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    let on_disk = segments[&active_first];
    if on_disk > newest.valid_end {
        tracing::warn!(
            message = "Cut a torn tail off the log.",
            path = %path.display(),
            bytes = on_disk - newest.valid_end,
            records_kept = newest.next_seq - active_first,
        );
        active
            .set_len(newest.valid_end)
            .and_then(|()| active.sync_all())
            .map_err(|e| WalError::io(&path, e))?;
    }
    segments.insert(active_first, newest.valid_end);
    let recovered = Recovered {
        segments,
        active,
        active_first_seq: active_first,
        active_len: newest.valid_end,
        next_seq: newest.next_seq,
        corrupt,
    };
    if newest.format == Format::V1 {
        return continue_in_current_format(dir, recovered);
    }
    Ok(recovered)
}

/// Every segment in `dir`: first sequence number → size in bytes.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, u64>, WalError> {
    let mut segments = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let entry = entry.map_err(|e| WalError::io(dir, e))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_name)
        {
            let path = entry.path();
            let len = fs::metadata(&path)
                .map_err(|e| WalError::io(&path, e))?
                .len();
            segments.insert(first, len);
        }
    }
    Ok(segments)
}

/// The newest segment may have been torn by a crash while it was being created: one whose
/// header never fully reached the disk holds no record and is removed.
fn remove_torn_newest(dir: &Path, segments: &mut BTreeMap<u64, u64>) -> Result<(), WalError> {
    while let Some((&first, &len)) = segments.last_key_value() {
        if len >= HEADER_LEN {
            return Ok(());
        }
        let path = segment::segment_path(dir, first);
        tracing::warn!(message = "Removing a log segment whose header was torn by a crash.", path = %path.display());
        fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
        segment::sync_dir(dir)?;
        segments.remove(&first);
    }
    Ok(())
}

/// A damaged header of the newest segment must not stop the log from starting. If valid
/// records follow it, numbered from the first sequence number the file's name gives, the
/// header is written again and only its bytes are lost. Otherwise the segment is set aside,
/// its bytes kept for inspection, and a new one started: see [`start_after_set_aside`].
fn mend_newest_header(
    dir: &Path,
    segments: &mut BTreeMap<u64, u64>,
    corrupt: &mut Vec<(u64, CorruptSpan, u64)>,
) -> Result<(), WalError> {
    let Some((&first, &len)) = segments.last_key_value() else {
        return Ok(());
    };
    match SegmentScanner::open(dir, first) {
        Err(WalError::Corrupt { .. }) => {}
        Ok(_) => return Ok(()),
        Err(other) => return Err(other),
    }
    let path = segment::segment_path(dir, first);
    let mut scanner = SegmentScanner::open_despite_header(dir, first)?;
    // A corrupt span is reported only when a valid record follows it.
    let holds_records = matches!(
        scanner.next(u64::MAX)?,
        Some(Scanned::Record { .. } | Scanned::Corrupt { .. })
    );
    if holds_records {
        segment::rewrite_header(&path, scanner.format(), first)?;
        tracing::warn!(
            message = "The newest log segment's header was corrupt; valid records follow it, so the header was written again and they are kept.",
            path = %path.display(),
        );
        let header = CorruptSpan {
            offset: 0,
            bytes: HEADER_LEN,
        };
        corrupt.push((first, header, 0));
        return Ok(());
    }
    let next = start_after_set_aside(dir, first)?;
    segments.remove(&first);
    segments.insert(next, HEADER_LEN);
    let whole = CorruptSpan {
        offset: 0,
        bytes: len,
    };
    // How many records it held is unknown; the numbers skipped are at least lost to readers.
    corrupt.push((first, whole, next - first));
    Ok(())
}

/// Sets the segment starting at `first` aside, as `<name>.corrupt`, and starts a new one at a
/// sequence number never handed out before: at least `first` and every reader's cursor, so
/// that no reader takes a new record for one it has seen. Returns that number.
fn start_after_set_aside(dir: &Path, first: u64) -> Result<u64, WalError> {
    let path = segment::segment_path(dir, first);
    let kept = free_name_beside(&path, "corrupt");
    fs::rename(&path, &kept).map_err(|e| WalError::io(&path, e))?;
    segment::sync_dir(dir)?;
    let cursors = crate::cursor::load_all(&dir.join("cursors"))?;
    let next = cursors
        .into_iter()
        .map(|(_, seq)| seq)
        .fold(first, u64::max);
    drop(open_segment_for_append(dir, next)?);
    tracing::warn!(
        message = "The newest log segment's header was corrupt and no valid record follows it; it was set aside and a new segment started.",
        path = %path.display(),
        kept_as = %kept.display(),
        next_seq = next,
    );
    Ok(next)
}

/// `<path>.<suffix>`, or `<path>.<suffix>.<n>` if that exists already: a set-aside file never
/// replaces an earlier one.
fn free_name_beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    (0u32..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{suffix}"));
            if n > 0 {
                name.push(format!(".{n}"));
            }
            std::path::PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .expect("a free name")
}

/// Checks every record of a sealed segment, which holds records `first` to `next_first - 1`,
/// and collects its corrupt spans. A sealed segment is never cut: its good records stay
/// readable, whatever lies between them.
fn check_sealed(
    dir: &Path,
    first: u64,
    len: u64,
    next_first: u64,
    corrupt: &mut Vec<(u64, CorruptSpan, u64)>,
) -> Result<(), WalError> {
    let mut scanner = match SegmentScanner::open(dir, first) {
        Ok(scanner) => scanner,
        Err(WalError::Corrupt { .. }) => {
            // Readers skip a segment whose header is bad; all its records are lost.
            let whole = CorruptSpan {
                offset: 0,
                bytes: len,
            };
            corrupt.push((first, whole, next_first - first));
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    while let Some(found) = scanner.next(u64::MAX)? {
        match found {
            Scanned::Record { .. } => {}
            Scanned::Corrupt { span, records } => corrupt.push((first, span, records)),
            Scanned::CorruptTail(span) => {
                // Torn by a power loss before the segment's last sync, or damaged since.
                let records = next_first.saturating_sub(scanner.next_seq());
                corrupt.push((first, span, records));
            }
        }
    }
    Ok(())
}

/// What the newest segment holds.
struct Newest {
    format: Format,
    /// The offset just past its last valid record.
    valid_end: u64,
    next_seq: u64,
}

/// Checks every record of the newest segment, collecting corrupt spans that valid records
/// follow; corrupt bytes that no valid record follows are a torn tail, to be cut.
fn check_newest(
    dir: &Path,
    first: u64,
    corrupt: &mut Vec<(u64, CorruptSpan, u64)>,
) -> Result<Newest, WalError> {
    let mut scanner = SegmentScanner::open(dir, first)?;
    let mut valid_end = HEADER_LEN;
    while let Some(found) = scanner.next(u64::MAX)? {
        match found {
            Scanned::Record { .. } => valid_end = scanner.offset(),
            Scanned::Corrupt { span, records } => corrupt.push((first, span, records)),
            Scanned::CorruptTail(_) => break,
        }
    }
    Ok(Newest {
        format: scanner.format(),
        valid_end,
        next_seq: scanner.next_seq(),
    })
}

/// Seals a newest segment written in an earlier version's format and starts one in the
/// current format: records of two formats never share a segment.
fn continue_in_current_format(dir: &Path, mut recovered: Recovered) -> Result<Recovered, WalError> {
    let first = recovered.next_seq;
    if first == recovered.active_first_seq {
        // It holds no record: replace it.
        let path = segment::segment_path(dir, first);
        fs::remove_file(&path).map_err(|e| WalError::io(&path, e))?;
        recovered.segments.remove(&first);
    }
    recovered.active = open_segment_for_append(dir, first)?;
    recovered.active_first_seq = first;
    recovered.active_len = HEADER_LEN;
    recovered.segments.insert(first, HEADER_LEN);
    Ok(recovered)
}

/// How much the writer takes from its queue before writing.
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// Acknowledgements waiting for a sync: the sender and the record's sequence number.
type Waiting = Vec<(oneshot::Sender<Result<u64, WalError>>, u64)>;

/// Work for the sync thread: make `file` durable, then publish `durable` and resolve `acks`.
struct SyncJob {
    file: Arc<File>,
    durable: Durable,
    acks: Waiting,
}

struct Writer {
    shared: Arc<Shared>,
    active: Arc<File>,
    active_first: u64,
    active_len: u64,
    /// Set when a write to the active segment failed part way and the torn record it left
    /// (from `active_len` on) is not cut off yet: nothing more is written to the segment until
    /// it is.
    torn: bool,
    next_seq: u64,
    /// Records taken from the queue and not yet written: header and payload, written with one
    /// vectored write rather than copied into a buffer first.
    queued: Vec<([u8; segment::RECORD_HEADER_LEN], Vec<u8>)>,
    queued_bytes: u64,
    /// Acknowledgements waiting for the next sync.
    waiting: Waiting,
    /// Records written since the last sync was requested.
    unsynced: bool,
    last_sync: Instant,
    /// Set when a ticket is awaited before its record is durable (interval policy only).
    sync_wanted: Arc<AtomicBool>,
    /// The sync thread's queue; `None` with `Persistence::Os`, which never syncs.
    syncer: Option<std::sync::mpsc::Sender<SyncJob>>,
}

pub(crate) fn run(
    shared: Arc<Shared>,
    active: File,
    queue: flume::Receiver<Command>,
    sync_wanted: Arc<AtomicBool>,
) {
    let durable = *shared.durable.borrow();
    // fdatasync runs on its own thread so that appends keep being written while a sync is in
    // flight; syncs requested meanwhile are coalesced into the next one (group commit).
    let (syncer, sync_thread) = if shared.config.persistence == Persistence::Os {
        (None, None)
    } else {
        let (jobs, queue) = std::sync::mpsc::channel();
        let sync_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("flumen-wal-sync".into())
            .spawn(move || run_syncer(&sync_shared, &queue))
            .expect("spawning the log's sync thread");
        (Some(jobs), Some(thread))
    };
    let mut w = Writer {
        shared,
        active: Arc::new(active),
        active_first: durable.segment,
        active_len: durable.offset,
        torn: false,
        next_seq: durable.next_seq,
        queued: Vec::new(),
        queued_bytes: 0,
        waiting: Vec::new(),
        unsynced: false,
        last_sync: Instant::now(),
        sync_wanted,
        syncer,
    };
    let stopped = w.write_until_shutdown(&queue);
    w.sync();
    drop(w.syncer.take());
    if let Some(thread) = sync_thread {
        let _ = thread.join();
    }
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

/// Makes files durable in the order the writer asked, then publishes and acknowledges.
fn run_syncer(shared: &Shared, jobs: &std::sync::mpsc::Receiver<SyncJob>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let mut result = shared.check_poisoned();
        let mut synced: Vec<*const File> = Vec::new();
        for job in &batch {
            if result.is_err() || synced.contains(&Arc::as_ptr(&job.file)) {
                continue;
            }
            synced.push(Arc::as_ptr(&job.file));
            if let Err(e) = shared.sync_segment(&job.file) {
                let error = WalError::io(
                    &segment::segment_path(&shared.config.dir, job.durable.segment),
                    e,
                );
                shared.poison(&error);
                result = Err(WalError::Poisoned(error.to_string()));
            }
        }
        let last = batch.last().expect("non-empty").durable;
        if result.is_ok() {
            shared.durable.send_replace(last);
        }
        for job in batch {
            for (done, seq) in job.acks {
                let _ = done.send(result.clone().map(|()| seq));
            }
        }
    }
}

impl Writer {
    /// Takes commands until a shutdown (returned) or until every sender is gone.
    fn write_until_shutdown(
        &mut self,
        queue: &flume::Receiver<Command>,
    ) -> Option<oneshot::Sender<()>> {
        loop {
            let first = match self.sync_deadline() {
                None => queue.recv().ok(),
                Some(deadline) => match queue.recv_deadline(deadline) {
                    Ok(cmd) => Some(cmd),
                    Err(flume::RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => None,
                },
            };
            let first = first?;
            let mut group = vec![first];
            let mut bytes = 0;
            while bytes < MAX_GROUP_BYTES {
                match queue.try_recv() {
                    Ok(cmd) => {
                        if let Command::Append { payload, .. } = &cmd {
                            bytes += payload.len();
                        }
                        group.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            let mut shutdown = None;
            let mut sync_asked = false;
            for cmd in group {
                match cmd {
                    Command::Append {
                        payload_crc,
                        payload,
                        done,
                        ..
                    } => self.append(payload_crc, payload, done),
                    Command::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                    // Queued after the append whose ticket asked, so that append is written
                    // by now even if an earlier group took the flag.
                    Command::Sync => sync_asked = true,
                }
            }
            self.flush_buf();
            if shutdown.is_some() {
                return shutdown;
            }
            if self.sync_due(sync_asked) {
                self.sync();
            }
        }
    }

    /// Whether what was just written is to be synced now. With an interval, that is when the
    /// interval is up, or when someone awaits a ticket whose record is written and not synced
    /// yet. The sync thread runs one `fdatasync` at a time and each covers everything written
    /// before it started, so syncs asked for while one runs are served together by the next:
    /// the disk's sync latency, not the interval, bounds how long an awaited ticket waits.
    /// `asked` is a `Command::Sync` in the group just written. While a live stream follows the
    /// log closely ([`Wal::follow_closely`](crate::Wal::follow_closely)), every group is.
    fn sync_due(&mut self, asked: bool) -> bool {
        match self.shared.config.persistence {
            Persistence::Interval(every) => {
                let followed = self.shared.close_followers.load(Ordering::Acquire) > 0;
                let awaited = (self.sync_wanted.swap(false, Ordering::AcqRel) | asked | followed)
                    && (self.unsynced || !self.waiting.is_empty());
                awaited || self.last_sync.elapsed() >= every
            }
            Persistence::Always | Persistence::Os => true,
        }
    }

    /// When the writer must wake up to sync, if anything is waiting for it.
    fn sync_deadline(&self) -> Option<Instant> {
        match self.shared.config.persistence {
            Persistence::Interval(every) if self.unsynced => Some(self.last_sync + every),
            _ => None,
        }
    }

    fn append(
        &mut self,
        payload_crc: u32,
        payload: Vec<u8>,
        done: Option<oneshot::Sender<Result<u64, WalError>>>,
    ) {
        let refuse = |done: Option<oneshot::Sender<_>>, error| {
            if let Some(done) = done {
                let _ = done.send(Err(error));
            }
        };
        if let Err(error) = self.shared.check_poisoned() {
            return refuse(done, error);
        }
        let len = (segment::RECORD_HEADER_LEN + payload.len()) as u64;
        let filled = self.active_len + self.queued_bytes;
        let roll = filled + len > self.shared.config.segment_size && filled > HEADER_LEN;
        let needed = len + if roll { HEADER_LEN } else { 0 };
        if let Err(refused) = self.make_room(needed) {
            return refuse(done, refused);
        }
        if roll {
            self.flush_buf();
            self.roll();
            // A failed write or roll poisoned the log: the record has no segment to go to.
            if let Err(error) = self.shared.check_poisoned() {
                return refuse(done, error);
            }
        }
        let seq = self.next_seq;
        let header = segment::record_header(payload.len(), payload_crc, seq);
        self.queued_bytes += len;
        self.queued.push((header, payload));
        self.next_seq += 1;
        if let Some(done) = done {
            self.waiting.push((done, seq));
        }
    }

    /// Makes room for `len` more bytes under the cap, as the `WhenFull` policy says: wait,
    /// refuse the record, or remove the oldest segment.
    fn make_room(&mut self, len: u64) -> Result<(), WalError> {
        let cap = self.shared.config.max_size;
        let over = |w: &Self| w.shared.size_bytes() + w.queued_bytes + len > cap;
        if !over(self) {
            return Ok(());
        }
        match self.shared.config.when_full {
            WhenFull::Block => self.wait_for_space(len),
            WhenFull::DropNewest => {
                if self
                    .shared
                    .dropped_records
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(10_000)
                {
                    tracing::warn!(
                        message =
                            "The log is full; dropping new records (when_full = drop_newest)."
                    );
                }
                Err(WalError::Dropped)
            }
            WhenFull::DropOldest => {
                while over(self) {
                    match self.shared.drop_oldest_segment() {
                        Ok(true) => {}
                        // Only the active segment is left: it holds at most half the cap.
                        Ok(false) => break,
                        Err(error) => return Err(error),
                    }
                }
                Ok(())
            }
        }
    }

    /// Blocks while the log is at its cap, after making everything written so far readable so
    /// that outputs can move on and free segments. Fails if the log shuts down meanwhile.
    fn wait_for_space(&mut self, len: u64) -> Result<(), WalError> {
        if self.shared.closing.load(Ordering::Relaxed) {
            // Appends refused by a stop fail at once, without a sync and a warning each.
            return Err(WalError::Closed);
        }
        let cap = self.shared.config.max_size;
        self.flush_buf();
        self.sync();
        self.shared.full.store(true, Ordering::Relaxed);
        tracing::warn!(
            message = "The log is full; holding back inputs until outputs catch up.",
            max_size = cap
        );
        let (lock, freed) = &self.shared.space_freed;
        let mut guard = lock.lock().expect("space lock");
        while self.shared.size_bytes() + len > cap {
            if self.shared.closing.load(Ordering::Relaxed) {
                return Err(WalError::Closed);
            }
            guard = freed
                .wait_timeout(guard, Duration::from_millis(100))
                .expect("space lock")
                .0;
        }
        drop(guard);
        self.shared.full.store(false, Ordering::Relaxed);
        tracing::info!(message = "The log has room again; inputs resume.");
        Ok(())
    }

    fn flush_buf(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.queued);
        let written = std::mem::take(&mut self.queued_bytes);
        let path = self.active_path();
        let result = self.until_disk_has_room(|w| {
            // A record never follows a torn one: what a failed write left is cut off first,
            // and while that fails too, nothing is written.
            w.cut_torn_write().map_err(|e| WalError::io(&path, e))?;
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(queued.len() * 2);
            for (header, payload) in &queued {
                slices.push(IoSlice::new(header));
                slices.push(IoSlice::new(payload));
            }
            write_all_vectored(&w.active, &mut slices).map_err(|e| {
                // Part of the group may have been written.
                w.torn = true;
                WalError::io(&path, e)
            })
        });
        match result {
            Ok(()) => {
                self.active_len += written;
                self.shared
                    .segments
                    .lock()
                    .expect("segments lock")
                    .set_size(self.active_first, self.active_len);
                self.unsynced = true;
            }
            Err(error) => self.fail(error),
        }
    }

    /// Cuts the active segment back to its last whole record if a failed write tore it.
    fn cut_torn_write(&mut self) -> std::io::Result<()> {
        if self.torn {
            self.shared.cut_segment(&self.active, self.active_len)?;
            self.torn = false;
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds. A full disk is waited out — inputs are held back and
    /// the log reports itself full and not ready meanwhile — any other error is returned, as is
    /// a shutdown while waiting.
    fn until_disk_has_room<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Self) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let mut stalled = false;
        loop {
            let error = match attempt(self) {
                Ok(value) => {
                    if stalled {
                        self.shared.disk_full.store(false, Ordering::Relaxed);
                        self.shared.full.store(false, Ordering::Relaxed);
                        tracing::info!(message = "The disk has room again; the log resumes.");
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            let disk_full = matches!(
                &error,
                WalError::Io { kind, .. } if matches!(kind, std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            );
            if !disk_full {
                return Err(error);
            }
            if !stalled {
                stalled = true;
                self.shared.disk_full.store(true, Ordering::Relaxed);
                self.shared.full.store(true, Ordering::Relaxed);
                tracing::error!(
                    message = "The disk is full; holding back inputs until there is room. Nothing acknowledged is lost.",
                    %error,
                );
            }
            if self.shared.closing.load(Ordering::Relaxed) {
                return Err(WalError::Closed);
            }
            let (lock, freed) = &self.shared.space_freed;
            let guard = lock.lock().expect("space lock");
            let _ = freed
                .wait_timeout(guard, Duration::from_millis(500))
                .expect("space lock");
        }
    }

    fn active_path(&self) -> std::path::PathBuf {
        segment::segment_path(&self.shared.config.dir, self.active_first)
    }

    /// Makes everything written so far durable (per the policy), then readable and
    /// acknowledged: at once with `Persistence::Os`, otherwise by the sync thread.
    fn sync(&mut self) {
        if let Err(error) = self.shared.check_poisoned() {
            // Nothing written since the last sync can be vouched for any more.
            self.refuse_waiting(&error);
            return;
        }
        self.last_sync = Instant::now();
        let durable = Durable {
            next_seq: self.next_seq,
            segment: self.active_first,
            offset: self.active_len,
        };
        let acks = std::mem::take(&mut self.waiting);
        self.unsynced = false;
        match &self.syncer {
            Some(syncer) => {
                let job = SyncJob {
                    file: self.active.clone(),
                    durable,
                    acks,
                };
                if let Err(unsent) = syncer.send(job) {
                    for (done, _) in unsent.0.acks {
                        let _ = done.send(Err(WalError::Closed));
                    }
                }
            }
            None => {
                self.shared.durable.send_replace(durable);
                for (done, seq) in acks {
                    let _ = done.send(Ok(seq));
                }
            }
        }
    }

    /// Seals the active segment and starts a new one at the next sequence number. The sealed
    /// segment is made durable before the next one exists, unless the policy never syncs:
    /// recovery looks for a torn tail in the newest segment only.
    fn roll(&mut self) {
        if self.shared.check_poisoned().is_err() {
            // No segment follows one that a failed write may have left torn: recovery looks
            // for a torn tail in the newest segment.
            return;
        }
        if self.syncer.is_some()
            && let Err(e) = self.shared.sync_segment(&self.active)
        {
            return self.fail(WalError::io(&self.active_path(), e));
        }
        self.sync();
        let (dir, first) = (self.shared.config.dir.clone(), self.next_seq);
        let opened = self.until_disk_has_room(|_| {
            open_segment_for_append(&dir, first).inspect_err(|_| {
                // A segment created without its whole header is removed before trying again.
                let _ = std::fs::remove_file(segment::segment_path(&dir, first));
            })
        });
        match opened {
            Ok(file) => {
                self.active = Arc::new(file);
                self.active_first = first;
                self.active_len = HEADER_LEN;
                self.shared
                    .segments
                    .lock()
                    .expect("segments lock")
                    .set_size(self.active_first, HEADER_LEN);
            }
            Err(error) => self.fail(error),
        }
    }

    /// Poisons the log: nothing written since the last sync is acknowledged.
    fn fail(&mut self, error: WalError) {
        self.shared.poison(&error);
        self.refuse_waiting(&WalError::Poisoned(error.to_string()));
    }

    /// Fails every acknowledgement waiting for a sync.
    fn refuse_waiting(&mut self, error: &WalError) {
        for (done, _) in self.waiting.drain(..) {
            let _ = done.send(Err(error.clone()));
        }
    }
}

/// Writes every slice, in as few system calls as the kernel allows (at most 1024 slices each).
fn write_all_vectored(mut file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        let batch = slices.len().min(1024);
        match file.write_vectored(&slices[..batch]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// File operations that tests make fail on cue.
impl Shared {
    /// `fdatasync` of a segment.
    fn sync_segment(&self, file: &File) -> std::io::Result<()> {
        #[cfg(test)]
        crate::tests::Faults::check(&self.faults.syncs, std::io::ErrorKind::Other)?;
        file.sync_data()
    }

    /// Cuts a segment back to `len` bytes.
    fn cut_segment(&self, file: &File, len: u64) -> std::io::Result<()> {
        #[cfg(test)]
        crate::tests::Faults::check(&self.faults.cuts, std::io::ErrorKind::StorageFull)?;
        file.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Persistence, Read, Wal, WalConfig};

    /// A log whose interval never comes during a test: any sync is an early one.
    fn hourly(dir: &std::path::Path) -> WalConfig {
        WalConfig {
            persistence: Persistence::Interval(Duration::from_secs(3600)),
            ..WalConfig::new(dir)
        }
    }

    #[tokio::test]
    async fn an_awaited_ticket_is_synced_without_waiting_for_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(hourly(dir.path())).unwrap();
        let mut reader = wal.reader("out").unwrap();
        // One record at a time, each awaited before the next is appended: the round trips of
        // a sender that waits for every acknowledgement.
        for expected in 0..20 {
            let ticket = wal.append(vec![7; 100]).await.unwrap();
            let seq = tokio::time::timeout(Duration::from_secs(10), ticket.durable())
                .await
                .expect("an awaited ticket waits for the hourly sync")
                .unwrap();
            assert_eq!(seq.get(), expected);
        }
        let Read::Records(records) = reader.read(100, 1 << 20).await.unwrap() else {
            panic!("nothing was removed")
        };
        assert_eq!(records.len(), 20);
    }

    #[tokio::test]
    async fn an_early_sync_that_fails_refuses_the_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(hourly(dir.path())).unwrap();
        wal.shared
            .faults
            .syncs
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let ticket = wal.append(vec![7; 100]).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), ticket.durable())
            .await
            .expect("the early sync runs");
        assert!(
            outcome.is_err(),
            "acknowledged without an fsync: {outcome:?}"
        );
        assert!(wal.poisoned().is_some());
    }
}
