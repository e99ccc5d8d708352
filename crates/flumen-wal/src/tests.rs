use std::io::Write;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::*;

/// Failures of file operations that real disks do not produce on cue, injected by tests: each
/// counter says how many of the next such operations fail.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Cutting off a write that failed part way fails as on a full disk.
    pub(crate) cuts: AtomicU32,
    /// `fdatasync` of a segment fails.
    pub(crate) syncs: AtomicU32,
}

impl Faults {
    /// Fails with `kind` if `counter` asks for one more failure.
    pub(crate) fn check(counter: &AtomicU32, kind: io::ErrorKind) -> io::Result<()> {
        match counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
            Ok(_) => Err(io::Error::new(kind, "injected by a test")),
            Err(_) => Ok(()),
        }
    }
}

fn config(dir: &Path) -> WalConfig {
    WalConfig {
        persistence: Persistence::Always,
        segment_size: 4096,
        max_size: 64 * 1024,
        ..WalConfig::new(dir)
    }
}

async fn append_all(wal: &Wal, payloads: impl IntoIterator<Item = Vec<u8>>) -> Vec<u64> {
    let mut tickets = Vec::new();
    for p in payloads {
        tickets.push(wal.append(p).await.unwrap());
    }
    let mut seqs = Vec::new();
    for t in tickets {
        seqs.push(t.durable().await.unwrap().get());
    }
    seqs
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i:05}-")
        .repeat(1 + (i as usize % 7))
        .into_bytes()
}

/// The records of `read`, which must not report removed records.
fn records(read: Read) -> Vec<WalRecord> {
    match read {
        Read::Records(records) => records,
        Read::Removed { from, to } => panic!("records {from}..{to} reported removed"),
    }
}

/// Reads `reader` to the durable end: what it reads, and the removals it reports.
fn read_to_end(reader: &mut WalReader) -> (Vec<WalRecord>, Vec<(u64, u64)>) {
    let mut out = Vec::new();
    let mut removed = Vec::new();
    loop {
        match reader.read_blocking(17, 1 << 20).unwrap() {
            Read::Records(batch) if batch.is_empty() => return (out, removed),
            Read::Records(batch) => out.extend(batch),
            Read::Removed { from, to } => removed.push((from.get(), to.get())),
        }
    }
}

/// Reads `reader` to the durable end; nothing may have been removed under it.
fn read_all(reader: &mut WalReader) -> Vec<WalRecord> {
    let (records, removed) = read_to_end(reader);
    assert_eq!(removed, [], "no records are removed under this reader");
    records
}

#[tokio::test]
async fn appends_are_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    let mut reader = wal.reader("out").unwrap();
    let seqs = append_all(&wal, (0..200).map(payload)).await;
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    assert!(wal.stats().segments >= 3, "{:?}", wal.stats());
    let records = read_all(&mut reader);
    assert_eq!(records.len(), 200);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.position.get(), i as u64);
        assert_eq!(r.payload, payload(i as u64));
    }
}

#[tokio::test]
async fn reopen_resumes_each_reader_at_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(config(dir.path())).unwrap();
        let mut fast = wal.reader("fast").unwrap();
        let _slow = wal.reader("slow").unwrap();
        append_all(&wal, (0..50).map(payload)).await;
        let read = records(fast.read_blocking(30, usize::MAX).unwrap());
        fast.commit_blocking(Position::new(read.last().unwrap().position.get() + 1))
            .unwrap();
        wal.shutdown().await;
    }
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 50);
    let mut fast = wal.reader("fast").unwrap();
    let mut slow = wal.reader("slow").unwrap();
    assert_eq!(read_all(&mut fast).first().unwrap().position.get(), 30);
    assert_eq!(read_all(&mut slow).first().unwrap().position.get(), 0);
    append_all(&wal, [b"after".to_vec()]).await;
    assert_eq!(read_all(&mut fast).last().unwrap().payload, &b"after"[..]);
}

#[tokio::test]
async fn segments_go_once_every_reader_is_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    let mut a = wal.reader("a").unwrap();
    let mut b = wal.reader("b").unwrap();
    append_all(&wal, (0..200).map(payload)).await;
    let before = wal.stats();
    let end = read_all(&mut a).last().unwrap().position.get() + 1;
    a.commit_blocking(Position::new(end)).unwrap();
    assert_eq!(wal.stats().segments, before.segments, "b still needs them");
    read_all(&mut b);
    b.commit_blocking(Position::new(end)).unwrap();
    let after = wal.stats();
    assert_eq!(after.segments, 1, "{after:?}");
    assert!(after.size_bytes < before.size_bytes);
    let on_disk = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("wal".as_ref()))
        .count();
    assert_eq!(on_disk, 1);
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(WalConfig {
            segment_size: 1 << 20,
            max_size: 4 << 20,
            ..config(dir.path())
        })
        .unwrap();
        let _r = wal.reader("out").unwrap();
        append_all(&wal, (0..10).map(payload)).await;
        wal.shutdown().await;
    }
    let seg = segment::segment_path(dir.path(), 0);
    // A crash in the middle of a write: half a record, then a record with a bad checksum.
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(f);
    let len_with_garbage = fs::metadata(&seg).unwrap().len();
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 10);
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_with_garbage - 9);
    let mut r = wal.reader("out").unwrap();
    append_all(&wal, [b"new".to_vec()]).await;
    let all = read_all(&mut r);
    assert_eq!(all.len(), 11);
    assert_eq!(all[10].payload, &b"new"[..]);
}

/// Writes `count` records and closes the log; returns the segments' first sequence numbers.
async fn write_closed_log(dir: &Path, config: WalConfig, count: u64) -> Vec<u64> {
    let wal = Wal::open(config).unwrap();
    let _r = wal.reader("out").unwrap();
    append_all(&wal, (0..count).map(payload)).await;
    wal.shutdown().await;
    let mut firsts: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_segment_name(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    firsts.sort_unstable();
    firsts
}

/// Flips one byte inside the payload of the `nth` record of the segment starting at `first`.
fn flip_a_payload_byte(dir: &Path, first: u64, nth: usize) {
    let path = segment::segment_path(dir, first);
    let mut bytes = fs::read(&path).unwrap();
    let mut offset = segment::HEADER_LEN as usize;
    for _ in 0..nth {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += segment::RECORD_HEADER_LEN + len;
    }
    bytes[offset + segment::RECORD_HEADER_LEN + 3] ^= 0x40;
    fs::write(&path, bytes).unwrap();
}

/// The bytes record `seq` of [`payload`] takes in a segment.
fn record_size(seq: u64) -> u64 {
    (segment::RECORD_HEADER_LEN + payload(seq).len()) as u64
}

fn seqs(records: &[WalRecord]) -> Vec<u64> {
    records.iter().map(|r| r.position.get()).collect()
}

#[tokio::test]
async fn one_flipped_byte_in_the_first_record_of_the_newest_segment_keeps_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let big_segments = WalConfig {
        segment_size: 1 << 20,
        max_size: 4 << 20,
        ..config(dir.path())
    };
    let firsts = write_closed_log(dir.path(), big_segments.clone(), 14).await;
    assert_eq!(firsts, vec![0]);
    flip_a_payload_byte(dir.path(), 0, 0);
    let wal = Wal::open(big_segments).unwrap();
    let stats = wal.stats();
    assert_eq!(stats.durable_end.get(), 14);
    assert_eq!(stats.corrupt_records, 1);
    assert_eq!(stats.corrupt_bytes, record_size(0));
    let mut reader = wal.reader("out").unwrap();
    let records = read_all(&mut reader);
    assert_eq!(seqs(&records), (1..14).collect::<Vec<_>>());
    for r in &records {
        assert_eq!(r.payload, payload(r.position.get()));
    }
    append_all(&wal, [b"after".to_vec()]).await;
    let after = read_all(&mut reader);
    assert_eq!(seqs(&after), vec![14]);
    assert_eq!(after[0].payload, &b"after"[..]);
}

#[tokio::test]
async fn a_bad_record_in_a_sealed_segment_is_skipped_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let firsts = write_closed_log(dir.path(), config(dir.path()), 200).await;
    assert!(firsts.len() >= 3, "{firsts:?}");
    let second_newest = firsts[firsts.len() - 2];
    flip_a_payload_byte(dir.path(), second_newest, 2);
    let lost = second_newest + 2;
    let wal = Wal::open(config(dir.path())).unwrap();
    let stats = wal.stats();
    assert_eq!(stats.durable_end.get(), 200);
    assert_eq!(stats.corrupt_records, 1);
    assert_eq!(stats.corrupt_bytes, record_size(lost));
    let expected: Vec<u64> = (0..200).filter(|&s| s != lost).collect();
    let mut reader = wal.reader("out").unwrap();
    let records = read_all(&mut reader);
    assert_eq!(seqs(&records), expected);
    for r in &records {
        assert_eq!(r.payload, payload(r.position.get()));
    }
    // Looking back at recent records (the chunk ledger's rebuild) reads past it too.
    let mut recent = wal.recent(2);
    let recent = read_all(&mut recent);
    assert!(!recent.is_empty() && !seqs(&recent).contains(&lost));
    assert_eq!(recent.last().unwrap().position.get(), 199);
    assert_eq!(
        wal.stats().corrupt_records,
        1,
        "counted once, however often read"
    );
}

#[tokio::test]
async fn a_record_corrupted_while_the_log_is_open_is_skipped_by_readers_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    let mut reader = wal.reader("out").unwrap();
    append_all(&wal, (0..100).map(payload)).await;
    flip_a_payload_byte(dir.path(), 0, 1);
    let records = read_all(&mut reader);
    assert_eq!(
        seqs(&records),
        (0..100).filter(|&s| s != 1).collect::<Vec<_>>()
    );
    let stats = wal.stats();
    assert_eq!(
        (stats.corrupt_records, stats.corrupt_bytes),
        (1, record_size(1))
    );
}

#[test]
fn zeros_are_never_a_record() {
    // The checksum of a zero-length record covers its zero length and sequence number.
    assert_ne!(crc32c::crc32c(&[0u8; 12]), 0);
    let header = segment::record_header(0, segment::payload_crc(&[]), 0);
    assert_ne!(&header[4..8], &[0u8; 4]);
}

#[tokio::test]
async fn segments_written_by_earlier_versions_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    // Two segments in the first format: records 0-4 and 5-9.
    for first in [0u64, 5] {
        let mut bytes = b"FLUMWAL1".to_vec();
        bytes.extend_from_slice(&first.to_le_bytes());
        for seq in first..first + 5 {
            let p = payload(seq);
            bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
            bytes.extend_from_slice(&p);
        }
        fs::write(segment::segment_path(dir.path(), first), bytes).unwrap();
    }
    // An output that had read none of them.
    fs::create_dir_all(dir.path().join("cursors")).unwrap();
    cursor::store(&dir.path().join("cursors"), "out", 0).unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 10);
    let mut reader = wal.reader("out").unwrap();
    append_all(&wal, (10..12).map(payload)).await;
    let records = read_all(&mut reader);
    assert_eq!(seqs(&records), (0..12).collect::<Vec<_>>());
    for r in &records {
        assert_eq!(r.payload, payload(r.position.get()));
    }
    // New records went to a new segment in the current format.
    let newest = fs::read(segment::segment_path(dir.path(), 10)).unwrap();
    assert_eq!(&newest[..8], segment::MAGIC);
}

#[tokio::test]
async fn a_zeroed_tail_of_a_segment_written_by_an_earlier_version_yields_no_fake_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"FLUMWAL1".to_vec();
    bytes.extend_from_slice(&0u64.to_le_bytes());
    for seq in 0..5 {
        let p = payload(seq);
        bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
        bytes.extend_from_slice(&p);
    }
    // A power loss zeroed the block after the last record.
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(segment::segment_path(dir.path(), 0), bytes).unwrap();
    fs::create_dir_all(dir.path().join("cursors")).unwrap();
    cursor::store(&dir.path().join("cursors"), "out", 0).unwrap();
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 5);
    let mut reader = wal.reader("out").unwrap();
    assert_eq!(seqs(&read_all(&mut reader)), (0..5).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_zero_filled_tail_is_cut_and_yields_no_fake_records() {
    let dir = tempfile::tempdir().unwrap();
    let big_segments = WalConfig {
        segment_size: 1 << 20,
        max_size: 4 << 20,
        ..config(dir.path())
    };
    write_closed_log(dir.path(), big_segments.clone(), 10).await;
    let seg = segment::segment_path(dir.path(), 0);
    let len_before = fs::metadata(&seg).unwrap().len();
    // A power loss after the file grew but before its blocks were written: zeros.
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 8192]).unwrap();
    drop(f);
    let wal = Wal::open(big_segments).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 10);
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_before);
    assert_eq!(
        wal.stats().corrupt_records,
        0,
        "a torn tail is not corruption"
    );
    let mut reader = wal.reader("out").unwrap();
    append_all(&wal, [b"new".to_vec()]).await;
    let records = read_all(&mut reader);
    assert_eq!(seqs(&records), (0..11).collect::<Vec<_>>());
    assert_eq!(records[10].payload, &b"new"[..]);
}

#[tokio::test]
async fn a_log_that_starts_with_zeros_yields_no_fake_records() {
    let dir = tempfile::tempdir().unwrap();
    write_closed_log(dir.path(), config(dir.path()), 0).await;
    let seg = segment::segment_path(dir.path(), 0);
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let wal = Wal::open(config(dir.path())).unwrap();
    assert_eq!(wal.stats().durable_end.get(), 0);
    assert_eq!(fs::metadata(&seg).unwrap().len(), segment::HEADER_LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_holds_appends_until_readers_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(WalConfig {
            segment_size: 2048,
            max_size: 8192,
            ..config(dir.path())
        })
        .unwrap(),
    );
    let mut reader = wal.reader("out").unwrap();
    let record = vec![7u8; 500];
    let writer = {
        let wal = wal.clone();
        let record = record.clone();
        tokio::spawn(async move { append_all(&wal, std::iter::repeat_n(record, 100)).await })
    };
    // The writer must stop at the cap...
    tokio::time::timeout(Duration::from_secs(5), async {
        while !wal.is_full() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the log reports full");
    assert!(wal.stats().size_bytes <= 8192);
    assert!(!writer.is_finished());
    // ...and finish once the reader drains it.
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while seen < 100 {
            let batch = records(reader.read_blocking(100, usize::MAX).unwrap());
            if let Some(last) = batch.last() {
                seen += batch.len();
                reader
                    .commit_blocking(Position::new(last.position.get() + 1))
                    .unwrap();
            } else {
                reader.wait().await.unwrap();
            }
        }
    })
    .await
    .expect("the reader drains every record");
    assert_eq!(writer.await.unwrap().len(), 100);
    assert!(!wal.is_full());
}

#[tokio::test]
async fn interval_persistence_acknowledges_after_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Interval(Duration::from_millis(50)),
        ..config(dir.path())
    })
    .unwrap();
    let mut reader = wal.reader("out").unwrap();
    let seqs = append_all(&wal, (0..5).map(payload)).await;
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(read_all(&mut reader).len(), 5);
}

#[tokio::test]
async fn a_close_follower_sees_records_nobody_awaits_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Interval(Duration::from_secs(3600)),
        ..config(dir.path())
    })
    .unwrap();
    let mut reader = wal.reader_at(wal.durable_end());
    let follower = wal.follow_closely();
    // Nobody awaits the ticket: only the follower makes the record durable before the hour.
    drop(wal.append(payload(0)).await.unwrap());
    tokio::time::timeout(Duration::from_secs(10), reader.wait())
        .await
        .expect("a followed record is durable at once")
        .unwrap();
    drop(follower);
    drop(wal.append(payload(1)).await.unwrap());
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        reader.read(10, 1 << 20).await.unwrap();
        reader.wait().await
    })
    .await;
    assert!(
        waited.is_err(),
        "without a follower the interval applies again"
    );
}

#[test]
fn bad_reader_names_and_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        Wal::open(WalConfig {
            max_size: 4096,
            ..config(dir.path())
        })
        .is_err()
    );
    let wal = Wal::open(config(dir.path())).unwrap();
    assert!(wal.reader("../etc").is_err());
    assert!(wal.reader("ok_name-1.x").is_ok());
}

/// A small tmpfs mounted on a temporary directory and unmounted on drop, to run the log out of
/// disk space for real. Mounting needs root, which CI has.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let uid = std::process::Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        if !mounted.success() {
            eprintln!("mounting a tmpfs failed");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_appends_and_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("not run: mounting a small filesystem needs root and permission to mount");
        return;
    };
    let filler = disk.path().join("filler");
    fs::write(&filler, vec![0u8; 700 * 1024]).unwrap();
    let wal = Arc::new(
        Wal::open(WalConfig {
            segment_size: 64 * 1024,
            max_size: 64 * 1024 * 1024,
            ..config(&disk.path().join("wal"))
        })
        .unwrap(),
    );
    let mut reader = wal.reader("out").unwrap();
    let record = |i: u64| {
        let mut p = i.to_le_bytes().to_vec();
        p.resize(8 * 1024, (i % 251) as u8);
        p
    };
    let appender = {
        let wal = wal.clone();
        tokio::spawn(async move { append_all(&wal, (0..100).map(record)).await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !wal.disk_full() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the log notices the full disk");
    assert!(wal.is_full());
    assert!(
        !appender.is_finished(),
        "appends wait while the disk is full"
    );
    assert!(
        wal.poisoned().is_none(),
        "a full disk does not poison the log"
    );

    fs::remove_file(&filler).unwrap();
    let seqs = tokio::time::timeout(Duration::from_secs(10), appender)
        .await
        .expect("appends resume once there is room")
        .unwrap();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    assert!(!wal.disk_full());
    let records = read_all(&mut reader);
    assert_eq!(records.len(), 100);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.payload, record(i as u64), "record {i}");
    }
    drop(reader);
    Arc::try_unwrap(wal).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_refuses_records_at_the_cap_and_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        segment_size: 2048,
        max_size: 8192,
        when_full: WhenFull::DropNewest,
        ..config(dir.path())
    })
    .unwrap();
    let mut reader = wal.reader("out").unwrap();
    let mut stored = Vec::new();
    for i in 0..100u64 {
        match wal
            .append(vec![i as u8; 500])
            .await
            .unwrap()
            .durable()
            .await
        {
            Ok(_) => stored.push(i),
            Err(WalError::Dropped) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        stored.len() >= 10 && stored.len() < 100,
        "{} stored",
        stored.len()
    );
    assert_eq!(
        stored,
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "the oldest are kept"
    );
    assert_eq!(wal.stats().dropped_records, 100 - stored.len() as u64);
    assert_eq!(read_all(&mut reader).len(), stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_removes_unread_segments_and_readers_skip_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        segment_size: 2048,
        max_size: 8192,
        when_full: WhenFull::DropOldest,
        ..config(dir.path())
    })
    .unwrap();
    let mut reader = wal.reader("out").unwrap();
    let appended = append_all(&wal, (0..100u64).map(|i| vec![i as u8; 500])).await;
    assert_eq!(appended.len(), 100, "no append waits");
    let stats = wal.stats();
    assert!(stats.size_bytes <= 8192, "{stats:?}");
    assert!(stats.dropped_records > 0);
    let (records, removed) = read_to_end(&mut reader);
    assert_eq!(
        records.last().unwrap().position.get(),
        99,
        "the newest are kept"
    );
    // Every record is either read or reported removed, in order; a reader that had the oldest
    // segment open when it was removed may still read it, which is no loss.
    let mut accounted: Vec<u64> = seqs(&records);
    for (from, to) in &removed {
        accounted.extend(*from..*to);
    }
    accounted.sort_unstable();
    assert_eq!(accounted, (0..100).collect::<Vec<_>>());
    let removed_records: u64 = removed.iter().map(|(from, to)| to - from).sum();
    assert!(removed_records > 0 && removed_records <= stats.dropped_records);
    assert!(records.windows(2).all(|p| p[0].position < p[1].position));
}

/// The bytes of the log's segment files in `dir`.
fn segment_bytes_on_disk(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension() == Some("wal".as_ref()))
        .map(|path| fs::metadata(path).unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_committing_at_once_never_make_the_log_look_full() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Os,
        segment_size: 1024,
        max_size: 16 * 1024,
        ..config(dir.path())
    })
    .unwrap();
    let mut readers: Vec<WalReader> = (0..4)
        .map(|r| wal.reader(&format!("out-{r}")).unwrap())
        .collect();
    // Each round writes a few segments and every reader commits past them, all at once, in
    // small steps: many removals race. Over the rounds far more than `max_size` is written,
    // so a size that drifts up wedges the appends, and one that wraps below zero too.
    for round in 0..60u64 {
        let first = round * 40;
        let appended = tokio::time::timeout(
            Duration::from_secs(10),
            append_all(&wal, (first..first + 40).map(payload)),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: appends wait for room ({:?})", wal.stats()));
        assert_eq!(appended.last(), Some(&(first + 39)));
        let barrier = std::sync::Barrier::new(readers.len());
        std::thread::scope(|threads| {
            for reader in &mut readers {
                let barrier = &barrier;
                threads.spawn(move || {
                    barrier.wait();
                    for step in (first + 5..=first + 40).step_by(5) {
                        reader.commit_blocking(Position::new(step)).unwrap();
                    }
                });
            }
        });
        let stats = wal.stats();
        assert!(!stats.full, "round {round}: {stats:?}");
        assert_eq!(
            stats.size_bytes,
            segment_bytes_on_disk(dir.path()),
            "round {round}: the size the log reports is what is on disk ({stats:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_never_follows_a_torn_write_that_could_not_be_cut() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("not run: mounting a small filesystem needs root and permission to mount");
        return;
    };
    let wal_dir = disk.path().join("wal");
    let wal = Arc::new(
        Wal::open(WalConfig {
            segment_size: 1024 * 1024,
            max_size: 64 * 1024 * 1024,
            ..config(&wal_dir)
        })
        .unwrap(),
    );
    let mut reader = wal.reader("out").unwrap();
    // Leave less room than one record needs: its write fails part way, as on a full disk.
    let free = 1024 * 1024
        - fs::metadata(segment::segment_path(&wal_dir, 0))
            .unwrap()
            .len();
    let filler = disk.path().join("filler");
    fs::write(&filler, vec![0u8; (free - 48 * 1024) as usize]).unwrap();
    // And cutting the torn write off fails too, a few times.
    wal.shared.faults.cuts.store(3, Ordering::Relaxed);
    let record = |i: u64| vec![i as u8 + 1; 64 * 1024];
    let appender = {
        let wal = wal.clone();
        tokio::spawn(async move { append_all(&wal, (0..4).map(record)).await })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !wal.disk_full() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the log notices the full disk");

    fs::remove_file(&filler).unwrap();
    let seqs = tokio::time::timeout(Duration::from_secs(20), appender)
        .await
        .expect("appends resume once there is room")
        .unwrap();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let read: Vec<_> = read_all(&mut reader)
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(read, (0..4).map(record).collect::<Vec<_>>());
    drop(reader);
    Arc::try_unwrap(wal).unwrap().shutdown().await;
}

#[tokio::test]
async fn a_segment_is_durable_before_the_next_one_is_created() {
    let dir = tempfile::tempdir().unwrap();
    // Syncs come only from rolling to a new segment, never from the interval.
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Interval(Duration::from_secs(3600)),
        segment_size: 1024,
        ..config(dir.path())
    })
    .unwrap();
    let _reader = wal.reader("out").unwrap();
    wal.shared.faults.syncs.store(1, Ordering::Relaxed);
    // The second record does not fit in the first segment: the log rolls, and the sync of the
    // first segment fails.
    let first = wal.append(vec![1; 600]).await.unwrap();
    let second = wal.append(vec![2; 600]).await.unwrap();
    for (ticket, why) in [
        (first, "the first record was never synced"),
        (second, "the log is poisoned"),
    ] {
        let outcome = tokio::time::timeout(Duration::from_secs(10), ticket.durable())
            .await
            .unwrap_or_else(|_| panic!("a ticket hangs: {why}"));
        assert!(outcome.is_err(), "{why}");
    }
    assert!(wal.poisoned().is_some());
    let segments: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().ends_with(".wal"))
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "no segment follows one whose records are not durable: {segments:?}"
    );
}

/// The first sequence number of the newest segment of a closed log, and that segment's path.
fn newest_segment(dir: &Path, firsts: &[u64]) -> (u64, PathBuf) {
    let newest = *firsts.last().expect("a segment");
    (newest, segment::segment_path(dir, newest))
}

#[tokio::test]
async fn a_corrupt_header_of_the_newest_segment_keeps_its_records_and_the_log_starts() {
    // A flipped byte in the magic, then in the first sequence number the header states.
    for damaged_byte in [3, 9] {
        let dir = tempfile::tempdir().unwrap();
        let firsts = write_closed_log(dir.path(), config(dir.path()), 200).await;
        assert!(firsts.len() >= 3, "{firsts:?}");
        let (newest, path) = newest_segment(dir.path(), &firsts);
        let mut bytes = fs::read(&path).unwrap();
        bytes[damaged_byte] ^= 0x40;
        fs::write(&path, &bytes).unwrap();

        let wal = Wal::open(config(dir.path())).expect("the log starts");
        let stats = wal.stats();
        assert_eq!(
            stats.durable_end.get(),
            200,
            "the newest segment's records are kept"
        );
        assert_eq!(
            (stats.corrupt_records, stats.corrupt_bytes),
            (0, segment::HEADER_LEN),
            "the header is counted as corrupt, and nothing else"
        );
        assert_eq!(
            fs::read(&path).unwrap()[..segment::HEADER_LEN as usize],
            segment::encode_header(newest),
            "the header is written again"
        );
        let mut reader = wal.reader("out").unwrap();
        append_all(&wal, [b"after".to_vec()]).await;
        let records = read_all(&mut reader);
        assert_eq!(seqs(&records), (0..201).collect::<Vec<_>>());
        for r in &records[..200] {
            assert_eq!(r.payload, payload(r.position.get()));
        }
        assert_eq!(records[200].payload, &b"after"[..]);
    }
}

#[tokio::test]
async fn a_newest_segment_with_nothing_valid_is_set_aside_and_the_log_starts_after_every_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let firsts = write_closed_log(dir.path(), config(dir.path()), 200).await;
    let (newest, path) = newest_segment(dir.path(), &firsts);
    // A reader that had been told of records past what the disk kept (persistence "os" and a
    // machine crash): the new segment must not hand out the numbers it already saw.
    let cursors = dir.path().join("cursors");
    cursor::store(&cursors, "ahead", 250).unwrap();
    let garbage = vec![0xA5u8; fs::metadata(&path).unwrap().len() as usize];
    fs::write(&path, &garbage).unwrap();

    let wal = Wal::open(config(dir.path())).expect("the log starts");
    let kept = dir.path().join(format!("{newest:020}.wal.corrupt"));
    assert_eq!(
        fs::read(&kept).unwrap(),
        garbage,
        "the bytes are kept for inspection"
    );
    let stats = wal.stats();
    assert_eq!(
        stats.durable_end.get(),
        250,
        "numbering resumes after every cursor"
    );
    assert_eq!(stats.corrupt_bytes, garbage.len() as u64);
    assert_eq!(stats.corrupt_records, 250 - newest);
    assert_eq!(stats.size_bytes, segment_bytes_on_disk(dir.path()));

    let mut out = wal.reader("out").unwrap();
    let mut ahead = wal.reader("ahead").unwrap();
    append_all(&wal, [b"after".to_vec()]).await;
    let (records, removed) = read_to_end(&mut out);
    let expected: Vec<u64> = (0..newest).chain([250]).collect();
    assert_eq!(seqs(&records), expected);
    assert_eq!(
        removed,
        [(newest, 250)],
        "the reader is told what it cannot read"
    );
    assert_eq!(records.last().unwrap().payload, &b"after"[..]);
    let records = read_all(&mut ahead);
    assert_eq!(
        seqs(&records),
        vec![250],
        "the reader ahead misses no new record"
    );
}
