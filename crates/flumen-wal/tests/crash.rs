//! Crash test, in the style of sled's: kill a process that is appending to the log with
//! `SIGKILL` at a random moment, reopen the log, and check that nothing acknowledged is lost.
//!
//! The test binary runs itself as the child: [`crash_child`] does nothing unless
//! `FLUMEN_WAL_CRASH_CHILD` names a directory. The child opens the log there, opens the reader
//! `check` (never committed by the child, so it pins everything the parent has not verified
//! yet), and appends records as fast as it can from one task, pipelining the tickets to a second
//! task that awaits each one and prints `ack <seq>` on stdout, flushed, once
//! [`AppendTicket::durable`] returned it. Record `seq` holds `seq` itself, then filler
//! derived from `seq`, with a length derived from `seq` (0–1500 bytes, now and then larger than
//! a segment), so the parent can rebuild every payload exactly.
//!
//! The parent kills the child 5–150 ms after it reported ready (every eighth time, 1–40 ms
//! after it was spawned, so that some kills land in the middle of recovery), reopens the log itself and
//! reads it through `check` to the end. Every acknowledged sequence number must be there, in
//! order, exactly once, with its exact payload, and reading on to the end of the log must
//! not fail. Then the parent commits `check` up to where the previous round's records start
//! (so every record is verified after two crashes while the log stays small) and runs the
//! next child on the same directory, which recovers a log that was recovered before.
//!
//! Between rounds the parent also damages the log as a disk or a power loss would: every
//! fourth round it flips a byte in a record of a sealed segment (that record, and only it,
//! must be missing from then on, and counted as corrupt), and every fourth round, two rounds
//! later, it appends a block of zeros to the newest segment (recovery must cut it: no fake
//! records).
//!
//! Runs with `Persistence::Always` and `Persistence::Interval(10ms)`: 20 rounds each by
//! default, 300 with `FLUMEN_SLOW_TESTS=1` (CI sets it).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use flumen_wal::{AppendTicket, Persistence, Position, Read, Wal, WalConfig, WalRecord};

/// Set in the child's environment to the log directory.
const CHILD_DIR_ENV: &str = "FLUMEN_WAL_CRASH_CHILD";
/// Set in the child's environment to the persistence policy: `always` or `interval`.
const CHILD_PERSISTENCE_ENV: &str = "FLUMEN_WAL_CRASH_PERSISTENCE";
/// The child gives up on its own after this long, in case the parent died without killing it.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn slow() -> bool {
    std::env::var("FLUMEN_SLOW_TESTS").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn persistence(name: &str) -> Persistence {
    match name {
        "always" => Persistence::Always,
        "interval" => Persistence::Interval(Duration::from_millis(10)),
        other => panic!("unknown persistence {other:?}"),
    }
}

fn config(dir: &Path, persistence: Persistence) -> WalConfig {
    WalConfig {
        persistence,
        segment_size: 64 * 1024,
        max_size: 1 << 30,
        ..WalConfig::new(dir)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The payload of record `seq`: `seq` (8 bytes, little endian), then filler; its length
/// depends on `seq` too.
fn record(seq: u64) -> Vec<u8> {
    let mut state = seq ^ 0x00c0_ffee_d00d_f00d;
    let h = splitmix64(&mut state);
    let filler = if h.is_multiple_of(100) {
        // Larger than a segment.
        (h >> 8) % (200 * 1024)
    } else {
        (h >> 8) % 1500
    } as usize;
    let mut out = Vec::with_capacity(8 + filler + 8);
    out.extend_from_slice(&seq.to_le_bytes());
    while out.len() < 8 + filler {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(8 + filler);
    out
}

/// The child: appends until it is killed. Does nothing in an ordinary test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let persistence = persistence(&std::env::var(CHILD_PERSISTENCE_ENV).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let wal = Arc::new(Wal::open(config(dir.as_ref(), persistence)).expect("child: open"));
        let _check = wal.reader("check").expect("child: open the reader");
        let follower = wal.reader("follower").expect("child: open the follower");
        let base = wal.stats().durable_end.get();
        let mut stdout = std::io::stdout();
        // The test harness may have printed half a line already.
        writeln!(stdout, "\nready {base}").unwrap();
        stdout.flush().unwrap();
        let (tickets, mut acks) = tokio::sync::mpsc::channel::<(u64, AppendTicket)>(1024);
        let appender = {
            let wal = wal.clone();
            tokio::spawn(async move {
                for seq in base.. {
                    let ticket = wal.append(record(seq)).await.expect("child: append");
                    if tickets.send((seq, ticket)).await.is_err() {
                        return;
                    }
                }
            })
        };
        tokio::spawn(follow(follower));
        let started = Instant::now();
        while let Some((seq, ticket)) = acks.recv().await {
            let acked = ticket.durable().await.expect("child: durable");
            assert_eq!(acked.get(), seq, "child: the ticket's sequence number");
            // A failed write means the parent is gone: stop.
            writeln!(stdout, "ack {seq}").unwrap();
            stdout.flush().unwrap();
            assert!(started.elapsed() < CHILD_LIFETIME, "child: never killed");
        }
        appender.await.unwrap();
    });
}

/// The child's second reader: reads what is appended while it is appended, checks it, and
/// commits, so that kills also land while cursors are written and segments removed. Exits the
/// process on a wrong record (a panic would only end the task).
async fn follow(mut follower: flumen_wal::WalReader) {
    loop {
        let batch = match follower.read(256, 1 << 20).await {
            Ok(Read::Records(batch)) => batch,
            Ok(removed) => {
                eprintln!("child: the follower found records removed: {removed:?}");
                std::process::exit(3);
            }
            Err(e) => {
                eprintln!("child: the follower failed to read: {e}");
                std::process::exit(3);
            }
        };
        let Some(last) = batch.last().map(|r| r.position) else {
            if follower.wait().await.is_err() {
                return;
            }
            continue;
        };
        for r in &batch {
            if r.payload[..] != record(r.position.get())[..] {
                eprintln!("child: the follower read a wrong record {}", r.position);
                std::process::exit(3);
            }
        }
        if let Err(e) = follower.commit(last.next()).await {
            eprintln!("child: the follower failed to commit: {e}");
            std::process::exit(3);
        }
    }
}

/// What one child printed before it died.
#[derive(Debug, Default)]
struct ChildReport {
    /// The log's `next_seq` when the child opened it, if it got that far.
    base: Option<u64>,
    /// Acknowledged sequence numbers, in the order printed.
    acked: Vec<u64>,
    stderr: String,
}

fn parse(line: String, report: &mut ChildReport) {
    if let Some(seq) = line.strip_prefix("ack ") {
        report.acked.push(seq.parse().expect("an ack line"));
    } else if let Some(base) = line.strip_prefix("ready ") {
        report.base = Some(base.parse().expect("a ready line"));
    }
}

/// Runs one child on `dir` and kills it after `delay` (counted from its "ready" line, or from
/// its start if `from_spawn`).
fn run_child(dir: &Path, persistence: &str, delay: Duration, from_spawn: bool) -> ChildReport {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_PERSISTENCE_ENV, persistence)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let spawned = Instant::now();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut report = ChildReport::default();
    if from_spawn {
        std::thread::sleep(delay.saturating_sub(spawned.elapsed()));
    } else {
        // Wait for the child to be ready (or to die trying), then give it `delay`.
        let deadline = spawned + Duration::from_secs(20);
        while report.base.is_none() {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => parse(line, &mut report),
                Err(_) => break,
            }
        }
        std::thread::sleep(delay);
    }
    let _ = child.kill();
    let status = child.wait().expect("waiting for the child");
    stdout_thread.join().unwrap();
    for line in lines.try_iter() {
        parse(line, &mut report);
    }
    report.stderr = stderr_thread.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended on its own ({status}) instead of being killed; its stderr:\n{}",
        report.stderr
    );
    report
}

/// Reopens the log after a crash and checks it against what the child acknowledged.
async fn verify(
    dir: &Path,
    persistence: Persistence,
    report: &ChildReport,
    lost: &BTreeSet<u64>,
    verified_from: u64,
    commit_at: u64,
    round: usize,
) -> Verified {
    let on_disk: u64 = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let wal = Wal::open(config(dir, persistence))
        .unwrap_or_else(|e| panic!("round {round}: reopening after the crash: {e}"));
    let stats = wal.stats();
    let cut = on_disk.saturating_sub(stats.size_bytes);
    assert_eq!(
        stats.corrupt_records,
        lost.range(stats.first.get()..).count() as u64,
        "round {round}: corrupt records counted on reopen, of {lost:?} ({stats:?})"
    );
    let mut check = wal.reader("check").unwrap();
    // Opened before anything is committed, so that its cursor holds its segments.
    let mut follower = wal.reader("follower").unwrap();
    assert_eq!(
        check.position().get(),
        verified_from,
        "round {round}: the reader `check` did not resume at its committed cursor ({stats:?})"
    );
    let mut seq = verified_from;
    loop {
        let batch = records(check.read(1024, 4 << 20).await)
            .unwrap_or_else(|e| panic!("round {round}: reading record {seq} after the crash: {e}"));
        if batch.is_empty() {
            break;
        }
        for r in batch {
            seq = skip_lost(lost, seq);
            assert_eq!(
                r.position.get(),
                seq,
                "round {round}: sequence numbers skip"
            );
            let expected = record(seq);
            if r.payload[..] != expected[..] {
                let claims = r
                    .payload
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                panic!(
                    "round {round}: record {seq} has the wrong payload: {} bytes claiming to be \
                     record {claims:?}, expected {} bytes",
                    r.payload.len(),
                    expected.len()
                );
            }
            seq += 1;
        }
    }
    let end = wal.stats().durable_end.get();
    let seq = skip_lost(lost, seq);
    assert_eq!(
        seq, end,
        "round {round}: the reader stopped at {seq} but the log ends at {end}"
    );
    assert_eq!(
        stats.durable_end.get(),
        end,
        "round {round}: the durable end moved while reading"
    );
    // Every acknowledged record is there: the acknowledgements are consecutive, from where
    // the child found the log, and all below the recovered end.
    if let Some(&last) = report.acked.last() {
        let base = report
            .base
            .unwrap_or_else(|| panic!("round {round}: acks without a ready line"));
        let expected: Vec<u64> = (base..=last).collect();
        assert_eq!(
            report.acked, expected,
            "round {round}: acknowledgements out of order"
        );
        assert!(
            last < end,
            "round {round}: record {last} was acknowledged but the recovered log ends at {end} \
             (lost {} acknowledged records)",
            last + 1 - end
        );
    }
    // The follower's committed cursor is within the log, and it reads on from it to the end.
    let mut at = follower.position().get();
    assert!(
        at <= end,
        "round {round}: the follower resumes at {at}, past the end {end}"
    );
    loop {
        let batch = records(follower.read(1024, 4 << 20).await).unwrap_or_else(|e| {
            panic!("round {round}: the follower reading record {at} after the crash: {e}")
        });
        if batch.is_empty() {
            break;
        }
        for r in batch {
            at = skip_lost(lost, at);
            assert_eq!(r.position.get(), at, "round {round}: the follower skips");
            assert!(
                r.payload[..] == record(at)[..],
                "round {round}: the follower read a wrong record {at}"
            );
            at += 1;
        }
    }
    assert_eq!(
        skip_lost(lost, at),
        end,
        "round {round}: the follower stopped early"
    );
    check.commit(Position::new(commit_at)).await.unwrap();
    wal.shutdown().await;
    Verified { end, cut }
}

/// The first sequence number from `seq` on that was not destroyed on purpose.
fn skip_lost(lost: &BTreeSet<u64>, mut seq: u64) -> u64 {
    while lost.contains(&seq) {
        seq += 1;
    }
    seq
}

/// The segment files in `dir`, by first sequence number.
fn segments(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut out: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|path| {
            let first = path
                .file_name()?
                .to_str()?
                .strip_suffix(".wal")?
                .parse()
                .ok()?;
            Some((first, path))
        })
        .collect();
    out.sort();
    out
}

/// Flips a byte in the payload of one record, at or after `from`, of a sealed segment, as
/// a disk might; returns its sequence number, or `None` if no sealed segment holds one.
/// Follows the record format documented in `flumen_wal::segment`: a 16-byte segment header,
/// then records of `len (u32) crc (u32) seq (u64) payload`.
fn corrupt_a_sealed_record(dir: &Path, from: u64, rng: &mut u64) -> Option<u64> {
    let all = segments(dir);
    let sealed = &all[..all.len().saturating_sub(1)];
    let (_, path) = sealed.iter().rev().find(|(first, _)| *first >= from)?;
    let mut bytes = std::fs::read(path).unwrap();
    let mut records = Vec::new();
    let mut at = 16;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        records.push((seq, at + 16, len));
        at += 16 + len;
    }
    let (seq, payload, len) = records[(splitmix64(rng) % records.len() as u64) as usize];
    bytes[payload + (splitmix64(rng) % len as u64) as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
    Some(seq)
}

/// Appends a block of zeros to the newest segment: blocks a power loss left unwritten.
fn append_zeros_to_the_newest_segment(dir: &Path) {
    let (_, newest) = segments(dir).pop().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(newest)
        .unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
}

/// What [`verify`] found.
struct Verified {
    /// The log's `next_seq`.
    end: u64,
    /// Bytes of torn tail (or torn segment) that recovery cut.
    cut: u64,
}

fn crash_loop(persistence_name: &str) {
    let rounds = if slow() { 300 } else { 20 };
    let persistence = persistence(persistence_name);
    let dir = tempfile::tempdir().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    if let Ok(s) = std::env::var("FLUMEN_WAL_CRASH_SEED") {
        seed = s.parse().expect("FLUMEN_WAL_CRASH_SEED is a number");
    }
    eprintln!("crash test ({persistence_name}): seed {seed}");
    let mut rng = seed;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    // The log's end after the last round, and where that round's new records started.
    let mut end = 0;
    let mut verified_from = 0;
    let (mut acked, mut unacked_survivors, mut early_kills, mut torn) = (0, 0, 0, 0);
    // Records destroyed on purpose between rounds.
    let mut lost = BTreeSet::new();
    for round in 0..rounds {
        // Every eighth child is killed early, counting from its start, most likely while it
        // opens (and recovers) the log.
        let from_spawn = round % 8 == 7;
        let delay = Duration::from_millis(if from_spawn {
            1 + splitmix64(&mut rng) % 40
        } else {
            5 + splitmix64(&mut rng) % 146
        });
        let report = run_child(dir.path(), persistence_name, delay, from_spawn);
        if let Some(base) = report.base {
            assert_eq!(
                base, end,
                "round {round}: the child found the log ending at {base}, the parent left it at {end}"
            );
        } else {
            early_kills += 1;
        }
        let Verified { end: new_end, cut } = runtime.block_on(verify(
            dir.path(),
            persistence,
            &report,
            &lost,
            verified_from,
            end,
            round,
        ));
        assert!(
            new_end >= end,
            "round {round}: the log shrank from {end} to {new_end}"
        );
        acked += report.acked.len();
        torn += usize::from(cut > 0);
        let durable_end = report.acked.last().map_or(end, |&last| last + 1);
        unacked_survivors += new_end - durable_end;
        verified_from = end;
        end = new_end;
        match round % 4 {
            // A record the next rounds read again: at or after where `check` resumes.
            1 => lost.extend(corrupt_a_sealed_record(dir.path(), verified_from, &mut rng)),
            3 => append_zeros_to_the_newest_segment(dir.path()),
            _ => {}
        }
    }
    eprintln!(
        "crash test ({persistence_name}): {rounds} rounds in {:.1?}: {acked} records acknowledged, \
         {end} in the log, {unacked_survivors} written but not acknowledged before the kill, \
         {torn} torn tails cut on reopen, {early_kills} children killed before they were ready, \
         {} records corrupted on purpose",
        started.elapsed(),
        lost.len(),
    );
    assert!(
        acked > 0,
        "no child acknowledged anything: the test proves nothing"
    );
}

#[test]
fn crash_persistence_always() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    crash_loop("always");
}

#[test]
fn crash_persistence_interval() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    crash_loop("interval");
}

/// The records of a read; a read that reports removed records is an error here, where
/// nothing is removed before every reader is past it.
fn records(read: Result<Read, flumen_wal::WalError>) -> Result<Vec<WalRecord>, String> {
    match read {
        Ok(Read::Records(records)) => Ok(records),
        Ok(Read::Removed { from, to }) => Err(format!("records {from}..{to} reported removed")),
        Err(e) => Err(e.to_string()),
    }
}
