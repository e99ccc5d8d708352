//! Crash test, like the log's (`flumen-wal/tests/crash.rs`): kill a process that appends to
//! the log while the store writes from it with `SIGKILL` at a random moment, reopen both, let
//! the store catch up with the log, and check that it holds every event of the log, once.
//!
//! The test binary runs itself as the child: [`crash_child`] does nothing unless
//! `FLUMEN_STORE_CRASH_CHILD` names a directory. The child opens the log there (the reader
//! `check`, never committed by the child, pins what the parent has not verified yet), opens
//! the store with a flush every 5–20 ms and the smallest `flush_size`, so that flushes and
//! compactions (after 8 small files in a partition) happen all the time, runs the store's
//! writer on the reader `@store`, and appends batches of 1–64 numbered events (the record of
//! event `n` carries `n`; four services, three levels and three tags make 36 streams) as fast
//! as it can with 8 batches in flight. Before each append it prints `sent <last n>`, and once
//! the batch is durable in the log `ack <last n>`. A third thread searches the store all the
//! time with a query that decodes every event, so that files replaced by a compaction are
//! often removed late, when the last search holding them ends, and kills land meanwhile.
//!
//! The parent kills the child 5–150 ms after it reported ready (every eighth time, 1–15 ms
//! after it was spawned, often while it opens the log and the store), then opens the log and
//! the store itself, appends nothing, runs the store's writer until the store has stored
//! everything the log holds (which also finishes or undoes what the child left half done), and
//! searches everything (`{}`, oldest first, in 2–5 pages with the cursor). It reads the log's
//! new records through `check` to know exactly which events the log holds, and checks:
//!
//! - every acknowledged event is in the log (the log's own promise, which the rest rests on);
//! - every event the log holds was sent (no garbage);
//! - the store holds exactly the events of the log: none missing, **none twice**, none that
//!   is not in the log;
//! - the store's `stats().events` is the number of events found.
//!
//! Then it commits `check` and runs the next child on the same directory, with the next
//! numbers; every tenth round starts afresh in a new directory, so that the store the parent
//! searches whole after every kill stays small (and a store's first flushes, before it has a
//! checkpoint, are crashed too). The child's log is at random `Persistence::Always` or
//! `Persistence::Interval(10ms)`.
//!
//! 20 rounds by default (about 10 s), 200 with `FLUMEN_SLOW_TESTS=1` (CI sets it; about
//! 65 s). The seed is printed; `FLUMEN_STORE_CRASH_SEED` replays one (the kill moments still
//! vary). A failing round keeps its directory and says where it is.

mod common;

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::{batch, n_of, request};
use flumen_event::batch::BatchRef;
use flumen_event::record::{Record, Value};
use flumen_store::{Direction, LOG_READER, Store, StoreConfig};
use flumen_wal::{AppendTicket, Persistence, Read, Wal, WalConfig};
use tokio::sync::watch;

/// Set in the child's environment to the directory of the log and the store.
const CHILD_DIR_ENV: &str = "FLUMEN_STORE_CRASH_CHILD";
/// Set in the child's environment to the log's persistence: `always` or `interval`.
const CHILD_PERSISTENCE_ENV: &str = "FLUMEN_STORE_CRASH_PERSISTENCE";
/// Set in the child's environment to the first event number it appends.
const CHILD_FIRST_ENV: &str = "FLUMEN_STORE_CRASH_FIRST";
/// Set in the child's environment to the seed of its batch sizes, tags and flush interval.
const CHILD_SEED_ENV: &str = "FLUMEN_STORE_CRASH_SEED_CHILD";
/// The child gives up on its own after this long, in case the parent died without killing it.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
/// The log reader the parent verifies through; the child opens it and never commits it.
const CHECK_READER: &str = "check";
/// The tags of the batches (the tag is a label: more streams).
const TAGS: [&str; 3] = ["app.a", "app.b", "sys.c"];
/// The rounds run on one directory before the next starts afresh: every search reads the
/// whole store, which must stay small enough for that.
const ROUNDS_PER_DIR: usize = 10;
/// The most events one page of the parent's search holds.
const MAX_PAGE: usize = 50_000;
/// How long the parent gives the store to catch up with the log, and the writer to stop.
const CATCH_UP: Duration = Duration::from_secs(20);

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

fn wal_config(dir: &Path, persistence: Persistence) -> WalConfig {
    WalConfig {
        persistence,
        segment_size: 256 * 1024,
        max_size: 1 << 30,
        ..WalConfig::new(dir.join("wal"))
    }
}

fn store_config(dir: &Path, flush_interval: Duration) -> StoreConfig {
    let config = StoreConfig {
        flush_interval,
        flush_size: 64 << 10,
        ..StoreConfig::new(dir.join("store"))
    };
    config.validate().expect("a valid store configuration");
    config
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How many events the next batch holds: mostly a few, now and then a few hundred.
fn batch_size(rng: &mut u64) -> u64 {
    let h = splitmix64(rng);
    if h.is_multiple_of(10) {
        1 + (h >> 8) % 64
    } else {
        1 + (h >> 8) % 8
    }
}

/// Writes one line on stdout, flushed; exits if the parent is gone.
fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(2);
    }
}

/// The child: appends until it is killed. Does nothing in an ordinary test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("child: no {name}"));
    let persistence = persistence(&env(CHILD_PERSISTENCE_ENV));
    let first: u64 = env(CHILD_FIRST_ENV)
        .parse()
        .expect("child: the first number");
    let mut rng: u64 = env(CHILD_SEED_ENV).parse().expect("child: the seed");
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        eprintln!("child: never killed; giving up");
        std::process::exit(2);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wal = Arc::new(Wal::open(wal_config(&dir, persistence)).expect("child: open the log"));
    let _check = wal.reader(CHECK_READER).expect("child: open `check`");
    let flush_interval = Duration::from_millis(5 + splitmix64(&mut rng) % 16);
    let store = Store::open(store_config(&dir, flush_interval)).expect("child: open the store");
    let reader = wal.reader(LOG_READER).expect("child: open `@store`");
    let (_stop, stopped) = watch::channel(None);
    let _writer = store
        .spawn_writer(reader, runtime.handle().clone(), stopped)
        .expect("child: start the store's writer");
    std::thread::spawn(move || search_forever(&store));
    // The test harness may have printed half a line already.
    say(format_args!("\nready {first}"));
    runtime.block_on(async {
        // A few batches in flight: enough for appends to share syncs, few enough that the
        // store stays small for the parent to search whole after every kill.
        let (tickets, mut acks) = tokio::sync::mpsc::channel::<(u64, AppendTicket)>(8);
        let appender = {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut n = first;
                loop {
                    let size = batch_size(&mut rng);
                    let tag = TAGS[(splitmix64(&mut rng) % TAGS.len() as u64) as usize];
                    let payload = batch(n..n + size, tag);
                    let last = n + size - 1;
                    say(format_args!("sent {last}"));
                    let ticket = wal.append(payload).await.expect("child: append");
                    if tickets.send((last, ticket)).await.is_err() {
                        return;
                    }
                    n += size;
                }
            })
        };
        while let Some((last, ticket)) = acks.recv().await {
            ticket.durable().await.expect("child: durable");
            say(format_args!("ack {last}"));
        }
        appender.await.unwrap();
    });
}

/// The child's searcher: a query that decodes and parses every event and keeps none, so each
/// search holds a snapshot of the catalog, and the files in it, as long as a search can; files
/// that compactions replace meanwhile are removed only when it ends.
fn search_forever(store: &Store) {
    let everything = request(
        r#"{} | json | line_format "{{.message}} {{.request_id}}" | logfmt | n > 1000000000000"#,
        10,
        Direction::Forward,
    );
    let newest = request("{}", 100, Direction::Backward);
    loop {
        let found = store.search(&everything);
        if !found.events.is_empty() {
            eprintln!("child: a search found what no event holds");
            std::process::exit(3);
        }
        store.search(&newest);
    }
}

/// What one child printed before it died.
#[derive(Debug, Default)]
struct ChildReport {
    /// The first number it appends, once it is ready.
    first: Option<u64>,
    /// The last number of the last batch it was about to append.
    sent: Option<u64>,
    /// The last number of each batch acknowledged, in the order printed.
    acked: Vec<u64>,
    stderr: String,
}

fn parse(line: &str, report: &mut ChildReport) {
    let number = |text: &str| text.parse::<u64>().expect("a number");
    if let Some(n) = line.strip_prefix("ack ") {
        report.acked.push(number(n));
    } else if let Some(n) = line.strip_prefix("sent ") {
        report.sent = Some(number(n));
    } else if let Some(n) = line.strip_prefix("ready ") {
        report.first = Some(number(n));
    }
}

/// One round's child.
struct Child<'a> {
    dir: &'a Path,
    persistence: &'a str,
    first: u64,
    seed: u64,
    delay: Duration,
    /// Count `delay` from the spawn rather than from "ready".
    from_spawn: bool,
}

/// Runs the child and kills it after its delay.
fn run_child(child: &Child<'_>) -> ChildReport {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, child.dir)
        .env(CHILD_PERSISTENCE_ENV, child.persistence)
        .env(CHILD_FIRST_ENV, child.first.to_string())
        .env(CHILD_SEED_ENV, child.seed.to_string())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let spawned = Instant::now();
    let stdout = process.stdout.take().unwrap();
    let mut stderr = process.stderr.take().unwrap();
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
    if child.from_spawn {
        std::thread::sleep(child.delay.saturating_sub(spawned.elapsed()));
    } else {
        // Wait for the child to be ready (or to die trying), then give it `delay`.
        let deadline = spawned + Duration::from_secs(20);
        while report.first.is_none() {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => parse(&line, &mut report),
                Err(_) => break,
            }
        }
        std::thread::sleep(child.delay);
    }
    let _ = process.kill();
    let status = process.wait().expect("waiting for the child");
    stdout_thread.join().unwrap();
    for line in lines.try_iter() {
        parse(&line, &mut report);
    }
    report.stderr = stderr_thread.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended on its own ({status}) instead of being killed; its stderr:\n{}",
        report.stderr
    );
    if let Some(first) = report.first {
        assert_eq!(first, child.first, "the child started at another number");
    }
    report
}

/// The events of one log record, by their `n`.
fn numbers_of(payload: &[u8]) -> Result<Vec<u64>, String> {
    let batch = BatchRef::parse(payload).map_err(|e| format!("not a batch: {e}"))?;
    let mut out = Vec::new();
    for entry in batch.iter() {
        let entry = entry.map_err(|e| format!("a bad entry: {e}"))?;
        let record = Record::decode(entry.record).map_err(|e| format!("a bad record: {e}"))?;
        match record.get("n") {
            Some(Value::UInt(n)) => out.push(*n),
            other => return Err(format!("an event without n: {other:?}")),
        }
    }
    Ok(out)
}

/// What the parent knows across rounds.
#[derive(Debug, Default)]
struct Known {
    /// Every event the log holds, by number: increasing, as they were appended.
    logged: Vec<u64>,
    /// The first number not sent yet.
    next: u64,
}

/// What one verification saw.
struct Verified {
    /// Records the log gained this round.
    records: u64,
    /// Events of those records.
    events: usize,
    /// Files in the store after catching up.
    files: usize,
    /// How long catching up took.
    catch_up: Duration,
}

/// Opens the log and the store after a crash, lets the store catch up with the log, and
/// checks the store against the log and what the child acknowledged.
fn verify(
    dir: &Path,
    known: &mut Known,
    report: &ChildReport,
    pages: usize,
) -> Result<Verified, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wal = Wal::open(wal_config(dir, Persistence::Always))
        .map_err(|e| format!("reopening the log: {e}"))?;
    let mut check = wal.reader(CHECK_READER).map_err(|e| e.to_string())?;
    let config = StoreConfig {
        max_limit: MAX_PAGE,
        ..store_config(dir, Duration::from_millis(10))
    };
    let store = Store::open(config).map_err(|e| format!("reopening the store: {e}"))?;
    let end = wal.durable_end();
    let opened_at = store.stored_up_to();
    if opened_at > end {
        return Err(format!(
            "the store says it stored the log up to {opened_at}, but the log ends at {end}"
        ));
    }
    let reader = wal.reader(LOG_READER).map_err(|e| e.to_string())?;
    let (stop, stopped) = watch::channel(None);
    let writer = store
        .spawn_writer(reader, runtime.handle().clone(), stopped)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();

    // What the log gained: every record after the last verified one, up to its end.
    let logged_before = known.logged.len();
    let mut records = 0;
    let mut at = check.position();
    while at < end {
        let batch = match runtime.block_on(check.read(1024, 4 << 20)) {
            Ok(Read::Records(batch)) => batch,
            Ok(Read::Removed { from, to }) => {
                return Err(format!(
                    "the log removed records {from}..{to} before `check`"
                ));
            }
            Err(e) => return Err(format!("reading the log at {at}: {e}")),
        };
        if batch.is_empty() {
            return Err(format!("the log ends at {end} but reading stops at {at}"));
        }
        for r in batch {
            let numbers =
                numbers_of(&r.payload).map_err(|e| format!("record {}: {e}", r.position))?;
            for n in numbers {
                if known.logged.last().is_some_and(|&last| n <= last)
                    || n >= known.next.max(report.sent.map_or(0, |s| s + 1))
                {
                    return Err(format!(
                        "record {} holds event {n}, which was not sent or not in order \
                         (last logged {:?}, sent up to {:?})",
                        r.position,
                        known.logged.last(),
                        report.sent
                    ));
                }
                known.logged.push(n);
            }
            records += 1;
            at = r.position.next();
        }
    }
    // The log kept every acknowledged event: those of this child are the consecutive
    // numbers from its first up to its last acknowledgement.
    if let (Some(first), Some(&last)) = (report.first, report.acked.last()) {
        let new = &known.logged[logged_before..];
        let kept = new.iter().take_while(|&&n| n <= last).count() as u64;
        if new.first() != Some(&first) || kept != last - first + 1 {
            return Err(format!(
                "the log lost acknowledged events: {first}..={last} were acknowledged, the log \
                 gained {} events from {:?}",
                new.len(),
                new.first()
            ));
        }
    }

    runtime
        .block_on(async { tokio::time::timeout(CATCH_UP, store.wait_stored(end)).await })
        .map_err(|_| {
            format!(
                "the store did not catch up with the log within {CATCH_UP:?}: stored up to {}, \
                 the log ends at {end}",
                store.stored_up_to()
            )
        })?;
    let catch_up = started.elapsed();

    // The writer stops before the search, so that a failure's report shows the files as
    // they were searched.
    let _ = stop.send(Some(Instant::now() + CATCH_UP));
    let (joined_tx, joined) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = joined_tx.send(writer.join().is_ok());
    });
    match joined.recv_timeout(CATCH_UP + Duration::from_secs(5)) {
        Ok(true) => {}
        Ok(false) => return Err("the store's writer panicked".into()),
        Err(_) => return Err("the store's writer did not stop".into()),
    }
    // A few pages: each page reads every chunk that may hold events after the cursor, and
    // after a compaction each stream's chunk spans the whole partition.
    let page = (known.logged.len() / pages).clamp(500, MAX_PAGE);
    let found = search_everything(&store, page)?;
    let stats = store.stats();
    let problems = compare(&known.logged, &found);
    if !problems.is_empty() || stats.events != found.len() as u64 {
        return Err(format!(
            "the store does not hold the log's events once each: {problems}; it holds {} events \
             by its stats, searching by pages of {page} found {} ({} in the log); it opened at \
             {opened_at}, the log ends at {end}; {stats:?}",
            stats.events,
            found.len(),
            known.logged.len(),
        ));
    }

    runtime
        .block_on(check.commit(end))
        .map_err(|e| format!("committing `check`: {e}"))?;
    runtime.block_on(wal.shutdown());
    Ok(Verified {
        records,
        events: known.logged.len() - logged_before,
        files: stats.files,
        catch_up,
    })
}

/// Every event of the store, oldest first, page by page with the cursor.
fn search_everything(store: &Store, page: usize) -> Result<Vec<u64>, String> {
    let mut request = request("{}", page, Direction::Forward);
    let mut found = Vec::new();
    loop {
        let result = store.search(&request);
        if result.truncated.is_some() {
            return Err(format!("a search timed out after {} events", found.len()));
        }
        found.extend(result.events.iter().map(n_of));
        let Some(next) = result.next else {
            return Ok(found);
        };
        if let Some(after) = request.after
            && next <= after
        {
            return Err(format!(
                "the search cursor went from {after} back to {next}"
            ));
        }
        request.after = Some(next);
    }
}

/// What is wrong with `found` (the store's events, oldest first) against `logged` (the log's,
/// in order): events twice, missing, or not in the log. Empty when nothing.
fn compare(logged: &[u64], found: &[u64]) -> String {
    let mut twice = Vec::new();
    let mut unordered = Vec::new();
    for pair in found.windows(2) {
        if pair[0] == pair[1] {
            twice.push(pair[0]);
        } else if pair[0] > pair[1] {
            unordered.push(pair[1]);
        }
    }
    let mut distinct = found.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < logged.len() || j < distinct.len() {
        match (logged.get(i), distinct.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(&a), b) if b.is_none_or(|&b| a < b) => {
                missing.push(a);
                i += 1;
            }
            (_, Some(&b)) => {
                extra.push(b);
                j += 1;
            }
            (_, None) => unreachable!("both lists are done"),
        }
    }
    let mut problems = Vec::new();
    for (what, list) in [
        ("found twice", &twice),
        ("missing", &missing),
        ("not in the log", &extra),
        ("out of order", &unordered),
    ] {
        if !list.is_empty() {
            problems.push(format!("{} {what} ({})", list.len(), ranges(list)));
        }
    }
    problems.join(", ")
}

/// `1..=3, 7, 9..=12`: a list of numbers, shortened.
fn ranges(numbers: &[u64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}..={end}")
        });
    }
    if out.len() > 20 {
        let more = out.len() - 20;
        out.truncate(20);
        out.push(format!("and {more} more"));
    }
    out.join(", ")
}

/// The store's files and their sizes, and its checkpoint: for a failure's report.
fn store_listing(dir: &Path) -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let size = entry.metadata().map_or(0, |m| m.len());
                out.push_str(&format!("  {} ({size} bytes)\n", path.display()));
            }
        }
    }
    let mut out = String::new();
    walk(&dir.join("store"), &mut out);
    if let Ok(text) = std::fs::read_to_string(dir.join("store").join("checkpoint")) {
        out.push_str(&format!("  checkpoint: {text}\n"));
    }
    out
}

#[test]
fn crash_store() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let rounds = if slow() { 200 } else { 20 };
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    if let Ok(s) = std::env::var("FLUMEN_STORE_CRASH_SEED") {
        seed = s.parse().expect("FLUMEN_STORE_CRASH_SEED is a number");
    }
    eprintln!("store crash test: seed {seed}");
    let mut rng = seed;
    let started = Instant::now();
    let mut dir = tempfile::tempdir().unwrap();
    let mut known = Known::default();
    let mut stored = 0;
    let (mut acked, mut records, mut early_kills, mut unacked_survivors) = (0, 0, 0, 0);
    let mut slowest_catch_up = Duration::ZERO;
    let mut files = 0;
    for round in 0..rounds {
        if round > 0 && round % ROUNDS_PER_DIR == 0 {
            stored += known.logged.len();
            dir = tempfile::tempdir().unwrap();
            known = Known::default();
        }
        let from_spawn = round % 8 == 7;
        let delay = Duration::from_millis(if from_spawn {
            1 + splitmix64(&mut rng) % 15
        } else {
            5 + splitmix64(&mut rng) % 146
        });
        let persistence = if splitmix64(&mut rng).is_multiple_of(2) {
            "always"
        } else {
            "interval"
        };
        let child = Child {
            dir: dir.path(),
            persistence,
            first: known.next,
            seed: splitmix64(&mut rng),
            delay,
            from_spawn,
        };
        let report = run_child(&child);
        if report.first.is_none() {
            early_kills += 1;
        }
        let pages = 2 + (splitmix64(&mut rng) % 4) as usize;
        let first = child.first;
        let verified = match verify(dir.path(), &mut known, &report, pages) {
            Ok(verified) => verified,
            Err(problem) => {
                let listing = store_listing(dir.path());
                let kept = dir.keep();
                panic!(
                    "round {round} (seed {seed}; {persistence}, killed {delay:?} after {}, \
                     first event {first}, last sent {:?}, last acknowledged {:?}): {problem}\nthe directory is kept: {}\nthe store:\n\
                     {listing}the child's stderr:\n{}",
                    if from_spawn { "its spawn" } else { "ready" },
                    report.sent,
                    report.acked.last(),
                    kept.display(),
                    report.stderr,
                )
            }
        };
        acked += report.acked.len();
        records += verified.records;
        let acked_events = match (report.first, report.acked.last()) {
            (Some(first), Some(&last)) => (last + 1 - first) as usize,
            _ => 0,
        };
        unacked_survivors += verified.events - acked_events;
        slowest_catch_up = slowest_catch_up.max(verified.catch_up);
        files = verified.files;
        known.next = known.next.max(report.sent.map_or(0, |s| s + 1));
    }
    eprintln!(
        "store crash test: {rounds} rounds in {:.1?}: {acked} batches acknowledged, {records} \
         log records, {} events stored once each ({unacked_survivors} of them not acknowledged \
         before the kill), {files} files at the end, {early_kills} children killed before they \
         were ready, slowest catch-up {slowest_catch_up:.1?}",
        started.elapsed(),
        stored + known.logged.len(),
    );
    assert!(
        acked > 0,
        "no child acknowledged anything: the test proves nothing"
    );
}
