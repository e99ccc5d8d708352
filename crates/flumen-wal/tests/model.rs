//! Model-based property test of the write-ahead log.
//!
//! Random sequences of operations (append, read, commit, several readers committing at once
//! from their own threads, reopen, wait for durability) run
//! against a real [`Wal`] in a temporary directory and against a trivial in-memory model: a
//! `Vec` of the appended payloads plus, per reader, how far it has read in this open and where
//! its cursor was last committed. After every operation the log must agree with the model:
//!
//! - every reader reads exactly the appended records, in order, each once per open; after a
//!   reopen it resumes at its committed cursor (what it read after that is read again, nothing
//!   before it is);
//! - `stats().next_seq` is the number of records appended;
//! - the segment files, parsed independently of the crate, hold exactly the model's records
//!   from the oldest segment on, with valid checksums, and never start after the slowest
//!   reader's committed cursor; once a commit has run, no segment that every reader is past is
//!   left behind;
//! - `stats().size_bytes` and `stats().segments` match the `*.wal` files in the directory, and
//!   the log, far under its size cap, never reports itself full.
//!
//! Both `Persistence::Always` and `Persistence::Os` are run, with 1–4 KiB segments and records
//! of up to 2000 bytes, sometimes several segments long. A reopen opens the readers again
//! either all at once or each on its first use, as the server does.
//!
//! Failing cases are saved in `tests/model.regressions` and replayed first; minimized ones are
//! kept as tests of their own, such as [`segments_stay_for_readers_not_opened_again_yet`].
//!
//! By default each persistence mode runs 64 cases of up to 80 operations, in a directory on
//! tmpfs (`/dev/shm`) if there is one: a few seconds. Set `FLUMEN_SLOW_TESTS=1` (CI does) for
//! 512 cases per mode of up to 300 operations, on the real file system.

use std::path::Path;
use std::time::Duration;

use flumen_wal::{AppendTicket, Persistence, Position, Read, Wal, WalConfig, WalReader};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

/// How many readers the log has; all are opened before the first append.
const READERS: usize = 3;

/// How long any single operation may take before the test calls it a hang.
const OP_TIMEOUT: Duration = Duration::from_secs(20);

fn slow() -> bool {
    std::env::var("FLUMEN_SLOW_TESTS").is_ok_and(|v| !v.is_empty() && v != "0")
}

#[derive(Debug, Clone)]
enum Op {
    /// Appends a payload of `len` bytes; the ticket is kept until `WaitDurable` or `Reopen`.
    Append { len: usize, seed: u8 },
    /// `reader.read(max, max_bytes)`.
    Read {
        reader: usize,
        max: usize,
        max_bytes: usize,
    },
    /// Commits `lag` records behind the reader's position (never behind its last commit).
    Commit { reader: usize, lag: u64 },
    /// Every reader commits at the same moment, each from its own thread, `lags[r]` records
    /// behind its position: the outputs of a server remove segments concurrently.
    CommitAtOnce { lags: [u64; READERS] },
    /// Closes the log (with `shutdown()` or just by dropping it) and opens it again. The
    /// readers are opened again at once, or, if `lazy`, each on its first use (as the server
    /// does: it starts each output as soon as its reader is open).
    Reopen { graceful: bool, lazy: bool },
    /// Waits for every outstanding append ticket.
    WaitDurable,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..2000, any::<u8>()).prop_map(|(len, seed)| Op::Append { len, seed }),
        // Larger than a segment (segments are 1–4 KiB).
        1 => (2000usize..10_000, any::<u8>()).prop_map(|(len, seed)| Op::Append { len, seed }),
        5 => (
            0..READERS,
            1usize..40,
            prop_oneof![3 => Just(usize::MAX), 1 => 1usize..6000],
        )
            .prop_map(|(reader, max, max_bytes)| Op::Read { reader, max, max_bytes }),
        3 => (0..READERS, lag_strategy()).prop_map(|(reader, lag)| Op::Commit { reader, lag }),
        2 => proptest::array::uniform3(lag_strategy()).prop_map(|lags| Op::CommitAtOnce { lags }),
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(graceful, lazy)| Op::Reopen { graceful, lazy }),
        2 => Just(Op::WaitDurable),
    ]
}

/// How far behind its position a reader commits: mostly right at it.
fn lag_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 1 => 1u64..10]
}

fn case_strategy() -> impl Strategy<Value = (u64, Vec<Op>)> {
    let max_ops = if slow() { 300 } else { 80 };
    (
        prop_oneof![Just(1024u64), Just(2048), Just(4096)],
        proptest::collection::vec(op_strategy(), 1..max_ops),
    )
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: if slow() { 512 } else { 64 },
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// The test's directory. The quick run puts it on tmpfs when there is one, where an fsync costs
/// nothing: this test is about the log's logic, and segments of 1–4 KiB mean an fsync or two
/// per append. The slow run uses the ordinary temporary directory, on a real file system.
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if !slow()
        && shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// A deterministic payload for the `index`-th append.
fn payload(index: usize, len: usize, seed: u8) -> Vec<u8> {
    let mut state = (index as u64) << 8 | u64::from(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn reader_name(r: usize) -> String {
    format!("reader-{r}")
}

/// How many records `read(max, max_bytes)` returns from `from` if records below `end` are
/// readable.
fn expected_read(model: &[Vec<u8>], from: u64, end: u64, max: usize, max_bytes: usize) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    let mut seq = from;
    while n < max && bytes < max_bytes && seq < end {
        bytes += model[seq as usize].len();
        n += 1;
        seq += 1;
    }
    n
}

/// One segment file as found on disk.
#[derive(Debug)]
struct DiskSegment {
    first_seq: u64,
    size: u64,
    records: Vec<Vec<u8>>,
}

/// Reads the segment files independently of the crate, following the format documented in
/// `flumen_wal::segment`, and checks each is whole: a header naming its first record, then
/// complete records with valid checksums up to the end of the file.
fn read_disk(dir: &Path) -> Result<Vec<DiskSegment>, TestCaseError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let Some(digits) = name.strip_suffix(".wal") else {
            continue;
        };
        let first_seq: u64 = digits.parse().unwrap();
        prop_assert_eq!(digits.len(), 20, "segment name {}", name);
        let bytes = std::fs::read(entry.path()).unwrap();
        prop_assert!(bytes.len() >= 16, "{} has no whole header", name);
        prop_assert_eq!(&bytes[..8], b"FLUMWAL2", "{} magic", name);
        prop_assert_eq!(
            u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            first_seq,
            "{} header",
            name
        );
        let mut records = Vec::new();
        let mut at = 16;
        while at < bytes.len() {
            prop_assert!(at + 16 <= bytes.len(), "{} ends in a record header", name);
            let header = &bytes[at..at + 16];
            let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
            let seq = u64::from_le_bytes(header[8..16].try_into().unwrap());
            prop_assert!(at + 16 + len <= bytes.len(), "{} ends in a record", name);
            let body = &bytes[at + 16..at + 16 + len];
            let covered = [body, &header[..4], &header[8..16]].concat();
            prop_assert_eq!(crc32c::crc32c(&covered), crc, "{} checksum at {}", name, at);
            prop_assert_eq!(
                seq,
                first_seq + records.len() as u64,
                "{} sequence number at {}",
                name,
                at
            );
            records.push(body.to_vec());
            at += 16 + len;
        }
        out.push(DiskSegment {
            first_seq,
            size: bytes.len() as u64,
            records,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

struct Harness {
    dir: tempfile::TempDir,
    config: WalConfig,
    wal: Option<Wal>,
    /// The readers, `None` until first used after a lazy reopen.
    readers: Vec<Option<WalReader>>,
    /// Every payload appended, by sequence number.
    model: Vec<Vec<u8>>,
    /// Tickets not awaited yet, with the sequence number each must resolve to.
    pending: Vec<(u64, AppendTicket)>,
    /// Records known to be durable (their tickets resolved): readers must see at least these.
    known_durable: u64,
    /// Per reader: the next record it reads in this open.
    read_pos: Vec<u64>,
    /// Per reader: its last committed cursor.
    committed: Vec<u64>,
}

impl Harness {
    fn new(persistence: Persistence, segment_size: u64) -> Self {
        let dir = temp_dir();
        let config = WalConfig {
            persistence,
            segment_size,
            // Never full: appends must not wait for space in this test.
            max_size: 1 << 30,
            ..WalConfig::new(dir.path())
        };
        let wal = Wal::open(config.clone()).unwrap();
        let readers = (0..READERS)
            .map(|r| Some(wal.reader(&reader_name(r)).unwrap()))
            .collect();
        Self {
            dir,
            config,
            wal: Some(wal),
            readers,
            model: Vec::new(),
            pending: Vec::new(),
            known_durable: 0,
            read_pos: vec![0; READERS],
            committed: vec![0; READERS],
        }
    }

    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("the log is open")
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut committed = false;
        match *op {
            Op::Append { len, seed } => {
                let bytes = payload(self.model.len(), len, seed);
                let ticket = self.wal().append(bytes.clone()).await;
                let ticket = ticket.map_err(|e| TestCaseError::fail(format!("append: {e}")))?;
                self.pending.push((self.model.len() as u64, ticket));
                self.model.push(bytes);
            }
            Op::Read {
                reader,
                max,
                max_bytes,
            } => {
                let from = self.read_pos[reader];
                let read = self
                    .reader(reader)?
                    .read(max, max_bytes)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
                let Read::Records(records) = read else {
                    return Err(TestCaseError::fail(format!(
                        "reader {reader} at {from}: nothing is removed from a blocking log, yet {read:?}"
                    )));
                };
                let count = self.model.len() as u64;
                let at_least = expected_read(&self.model, from, self.known_durable, max, max_bytes);
                let at_most = expected_read(&self.model, from, count, max, max_bytes);
                prop_assert!(
                    (at_least..=at_most).contains(&records.len()),
                    "reader {} at {} read {} records, expected {}..={} (durable >= {}, appended {})",
                    reader,
                    from,
                    records.len(),
                    at_least,
                    at_most,
                    self.known_durable,
                    count
                );
                for (i, record) in records.iter().enumerate() {
                    let seq = from + i as u64;
                    prop_assert_eq!(record.position.get(), seq, "reader {} record {}", reader, i);
                    prop_assert!(
                        record.payload[..] == self.model[seq as usize][..],
                        "reader {} record {} payload differs ({} bytes, expected {})",
                        reader,
                        seq,
                        record.payload.len(),
                        self.model[seq as usize].len()
                    );
                }
                self.read_pos[reader] = from + records.len() as u64;
                prop_assert_eq!(self.reader(reader)?.position().get(), self.read_pos[reader]);
            }
            Op::Commit { reader, lag } => {
                let at = self.commit_target(reader, lag);
                self.reader(reader)?
                    .commit(Position::new(at))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("commit: {e}")))?;
                self.committed[reader] = at;
                committed = true;
            }
            Op::CommitAtOnce { lags } => {
                self.commit_at_once(lags)?;
                committed = true;
            }
            Op::WaitDurable => self.wait_durable().await?,
            Op::Reopen { graceful, lazy } => self.reopen(graceful, lazy).await?,
        }
        if self.pending.is_empty() {
            self.check_quiescent(committed)?;
        }
        Ok(())
    }

    /// Where reader `r` commits if `lag` records behind its position: never behind its last
    /// commit.
    fn commit_target(&self, r: usize, lag: u64) -> u64 {
        self.read_pos[r].saturating_sub(lag).max(self.committed[r])
    }

    /// Every reader commits from its own thread, all released at once.
    fn commit_at_once(&mut self, lags: [u64; READERS]) -> Result<(), TestCaseError> {
        let targets: Vec<u64> = (0..READERS)
            .map(|r| self.commit_target(r, lags[r]))
            .collect();
        for r in 0..READERS {
            self.reader(r)?;
        }
        let start = std::sync::Barrier::new(READERS);
        let results: Vec<_> = std::thread::scope(|threads| {
            let commits: Vec<_> = self
                .readers
                .iter_mut()
                .zip(&targets)
                .map(|(reader, &at)| {
                    let reader = reader.as_mut().expect("opened above");
                    let start = &start;
                    threads.spawn(move || {
                        start.wait();
                        reader.commit_blocking(Position::new(at))
                    })
                })
                .collect();
            commits
                .into_iter()
                .map(|commit| commit.join().expect("a commit thread panicked"))
                .collect()
        });
        for (r, result) in results.into_iter().enumerate() {
            result.map_err(|e| TestCaseError::fail(format!("reader {r} commit: {e}")))?;
        }
        self.committed = targets;
        Ok(())
    }

    async fn wait_durable(&mut self) -> Result<(), TestCaseError> {
        for (seq, ticket) in self.pending.drain(..) {
            match ticket.durable().await {
                Ok(got) => prop_assert_eq!(got.get(), seq, "ticket sequence number"),
                Err(e) => return Err(TestCaseError::fail(format!("ticket {seq}: {e}"))),
            }
        }
        self.known_durable = self.model.len() as u64;
        prop_assert_eq!(self.wal().stats().durable_end.get(), self.known_durable);
        Ok(())
    }

    async fn reopen(&mut self, graceful: bool, lazy: bool) -> Result<(), TestCaseError> {
        let wal = self.wal.take().expect("the log is open");
        if graceful {
            wal.shutdown().await;
        }
        self.readers.clear();
        drop(wal);
        // Closing the log writes and syncs everything queued: every ticket resolves.
        for (seq, ticket) in self.pending.drain(..) {
            match ticket.durable().await {
                Ok(got) => prop_assert_eq!(got.get(), seq, "ticket sequence number"),
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "ticket {seq} after close (graceful: {graceful}): {e}"
                    )));
                }
            }
        }
        let count = self.model.len() as u64;
        self.known_durable = count;
        let wal = Wal::open(self.config.clone())
            .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        prop_assert_eq!(
            wal.stats().durable_end.get(),
            count,
            "durable_end after reopen"
        );
        self.wal = Some(wal);
        self.readers = (0..READERS).map(|_| None).collect();
        self.read_pos.clone_from(&self.committed);
        if !lazy {
            for r in 0..READERS {
                self.reader(r)?;
            }
        }
        Ok(())
    }

    /// Reader `r`, opened again first if the log was reopened since it was last used: it must
    /// resume at its committed cursor.
    fn reader(&mut self, r: usize) -> Result<&mut WalReader, TestCaseError> {
        if self.readers[r].is_none() {
            let reader = self
                .wal()
                .reader(&reader_name(r))
                .map_err(|e| TestCaseError::fail(format!("reopening reader {r}: {e}")))?;
            prop_assert_eq!(
                reader.position().get(),
                self.committed[r],
                "reader {} resumes at its committed cursor",
                r
            );
            self.readers[r] = Some(reader);
        }
        Ok(self.readers[r].as_mut().expect("just opened"))
    }

    /// With no append in flight, the log's files and stats must match the model exactly.
    fn check_quiescent(&self, after_commit: bool) -> Result<(), TestCaseError> {
        let count = self.model.len() as u64;
        let stats = self.wal().stats();
        prop_assert_eq!(stats.durable_end.get(), count, "stats().durable_end");
        prop_assert!(!stats.full, "the log reports itself full: {:?}", stats);
        let disk = read_disk(self.dir.path())?;
        let disk_bytes: u64 = disk.iter().map(|s| s.size).sum();
        prop_assert_eq!(
            stats.size_bytes,
            disk_bytes,
            "stats().size_bytes vs *.wal on disk: {:?}",
            disk.iter()
                .map(|s| (s.first_seq, s.size))
                .collect::<Vec<_>>()
        );
        prop_assert_eq!(stats.segments, disk.len(), "stats().segments");
        prop_assert!(!disk.is_empty(), "no segment on disk");
        prop_assert_eq!(stats.first.get(), disk[0].first_seq, "stats().first");
        // Consecutive segments, ending with the last record appended.
        let mut seq = disk[0].first_seq;
        for segment in &disk {
            prop_assert_eq!(segment.first_seq, seq, "segments are not contiguous");
            for record in &segment.records {
                prop_assert!(seq < count, "record {} on disk was never appended", seq);
                prop_assert!(
                    record[..] == self.model[seq as usize][..],
                    "record {} on disk differs from what was appended",
                    seq
                );
                seq += 1;
            }
        }
        prop_assert_eq!(seq, count, "records on disk end at {}", seq);
        // Nothing a reader may still need is gone...
        let slowest = *self.committed.iter().min().expect("readers");
        prop_assert!(
            disk[0].first_seq <= slowest,
            "the oldest segment starts at {} but a reader committed only {} ({:?})",
            disk[0].first_seq,
            slowest,
            self.committed
        );
        // ...and, once a commit ran, nothing every reader is past is left.
        if after_commit && disk.len() > 1 {
            prop_assert!(
                disk[1].first_seq > slowest,
                "segment {} stayed after every reader committed {} ({:?})",
                disk[0].first_seq,
                slowest,
                self.committed
            );
        }
        Ok(())
    }
}

fn run_case(persistence: Persistence, segment_size: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut harness = Harness::new(persistence, segment_size);
        for (i, op) in ops.iter().enumerate() {
            match tokio::time::timeout(OP_TIMEOUT, harness.apply(op)).await {
                Ok(result) => result.map_err(|e| match e {
                    TestCaseError::Fail(why) => {
                        TestCaseError::fail(format!("op {i} {op:?}: {why}"))
                    }
                    other => other,
                })?,
                Err(_) => {
                    return Err(TestCaseError::fail(format!("op {i} {op:?} hung")));
                }
            }
        }
        // Finally every reader drains the log from where it stands, and after a reopen from
        // its committed cursor.
        harness.wait_durable().await?;
        for graceful in [false, true] {
            for r in 0..READERS {
                harness
                    .apply(&Op::Read {
                        reader: r,
                        max: usize::MAX,
                        max_bytes: usize::MAX,
                    })
                    .await?;
                prop_assert_eq!(harness.read_pos[r], harness.model.len() as u64);
            }
            harness
                .apply(&Op::Reopen {
                    graceful,
                    lazy: false,
                })
                .await?;
        }
        harness.wal.take().expect("open").shutdown().await;
        Ok(())
    })
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn model_persistence_always((segment_size, ops) in case_strategy()) {
        run_case(Persistence::Always, segment_size, &ops)?;
    }

    #[test]
    fn model_persistence_os((segment_size, ops) in case_strategy()) {
        run_case(Persistence::Os, segment_size, &ops)?;
    }
}

/// Minimized from `model_*`: segments are removed by the cursors of the readers opened so far
/// in this process, not by every persisted cursor. After a restart, the first reader to commit
/// removes segments that a reader not opened yet still needs; when that one opens, its cursor
/// is moved up to the oldest segment left and it never sees the records in between. The server
/// opens its outputs' readers one by one and starts each output at once, so an output that
/// commits quickly can do this to the outputs after it.
#[tokio::test]
async fn segments_stay_for_readers_not_opened_again_yet() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        persistence: Persistence::Always,
        segment_size: 1024,
        max_size: 1 << 20,
        ..WalConfig::new(dir.path())
    };
    {
        let wal = Wal::open(config.clone()).unwrap();
        let mut fast = wal.reader("fast").unwrap();
        let _slow = wal.reader("slow").unwrap();
        // Two records, one per segment.
        for len in [600, 600] {
            wal.append(vec![7; len])
                .await
                .unwrap()
                .durable()
                .await
                .unwrap();
        }
        assert_eq!(wal.stats().segments, 2);
        assert!(
            matches!(fast.read(10, usize::MAX).await.unwrap(), Read::Records(r) if r.len() == 2)
        );
        fast.commit(Position::new(2)).await.unwrap();
        // `slow` has committed nothing: both segments stay.
        assert_eq!(wal.stats().segments, 2);
        wal.shutdown().await;
    }
    let wal = Wal::open(config).unwrap();
    let mut fast = wal.reader("fast").unwrap();
    // The output behind `fast` delivers nothing new and commits where it is.
    fast.commit(Position::new(2)).await.unwrap();
    let mut slow = wal.reader("slow").unwrap();
    assert_eq!(
        slow.position(),
        Position::START,
        "`slow` committed nothing, yet it resumes at {} ({:?})",
        slow.position(),
        wal.stats()
    );
    assert!(matches!(slow.read(10, usize::MAX).await.unwrap(), Read::Records(r) if r.len() == 2));
}
