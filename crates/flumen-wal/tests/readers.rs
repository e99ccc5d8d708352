//! Readers that are not outputs: detached readers opened at a position, told what was removed
//! before they read it, waiting at the end for what comes next.

use std::path::Path;
use std::time::Duration;

use flumen_wal::{Persistence, Position, Read, Wal, WalConfig, WalReader};

/// A log of small segments, a few records each.
fn small_segments(dir: &Path) -> WalConfig {
    WalConfig {
        persistence: Persistence::Os,
        segment_size: 1024,
        max_size: 1 << 20,
        ..WalConfig::new(dir)
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i:04} ").repeat(20).into_bytes()
}

async fn append(wal: &Wal, records: std::ops::Range<u64>) {
    for i in records {
        let ticket = wal.append(payload(i)).await.unwrap();
        let position = ticket.durable().await.unwrap();
        assert_eq!(position, Position::new(i));
    }
}

/// The first position of every segment on disk, oldest first.
fn segment_starts(dir: &Path) -> Vec<u64> {
    let mut starts: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    starts.sort_unstable();
    starts
}

/// What a reader reads up to the durable end, as plain numbers: `Ok(record)` per record
/// (checking its payload), `Err((from, to))` per removal reported.
async fn read_to_end(reader: &mut WalReader) -> Vec<Result<u64, (u64, u64)>> {
    let mut seen = Vec::new();
    loop {
        let read = reader.read(3, usize::MAX).await.unwrap();
        if read == Read::Records(Vec::new()) {
            return seen;
        }
        note(reader, read, &mut seen);
    }
}

/// Adds what `read` found to `seen` (see [`read_to_end`]).
fn note(reader: &WalReader, read: Read, seen: &mut Vec<Result<u64, (u64, u64)>>) {
    match read {
        Read::Records(records) => {
            for record in records {
                let at = record.position.get();
                assert_eq!(record.payload, payload(at), "record {at}");
                seen.push(Ok(at));
            }
        }
        Read::Removed { from, to } => {
            assert_eq!(
                reader.position(),
                to,
                "the reader goes on after the removal"
            );
            seen.push(Err((from.get(), to.get())));
        }
    }
}

fn records(range: std::ops::Range<u64>) -> Vec<Result<u64, (u64, u64)>> {
    range.map(Ok).collect()
}

#[tokio::test]
async fn a_reader_at_a_position_reads_exactly_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path())).unwrap();
    append(&wal, 0..30).await;
    assert!(
        segment_starts(dir.path()).len() > 3,
        "records span segments"
    );
    for start in [0, 7, 29, 30] {
        let mut reader = wal.reader_at(Position::new(start));
        assert_eq!(reader.position(), Position::new(start));
        assert_eq!(read_to_end(&mut reader).await, records(start..30));
    }
    assert_eq!(wal.durable_end(), Position::new(30));
}

#[tokio::test]
async fn a_reader_whose_next_segment_was_removed_is_told_what_and_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path())).unwrap();
    let mut output = wal.reader("out").unwrap();
    append(&wal, 0..30).await;
    let starts = segment_starts(dir.path());
    let mut detached = wal.reader_at(Position::START);
    let Read::Records(first) = detached.read(1, usize::MAX).await.unwrap() else {
        panic!("nothing removed yet");
    };
    assert_eq!(first[0].position, Position::START);
    // The output is past the first two segments: they go, under the detached reader.
    output.commit(Position::new(starts[2])).await.unwrap();
    assert_eq!(segment_starts(dir.path())[0], starts[2]);

    // It still reads the segment it has open, is told the next one is gone, and reads on.
    let mut expected = records(1..starts[1]);
    expected.push(Err((starts[1], starts[2])));
    expected.extend(records(starts[2]..30));
    assert_eq!(read_to_end(&mut detached).await, expected);

    // A reader opened at a position no longer in the log learns that on its first read.
    let mut late = wal.reader_at(Position::new(1));
    let mut expected = vec![Err((1, starts[2]))];
    expected.extend(records(starts[2]..30));
    assert_eq!(read_to_end(&mut late).await, expected);
}

#[tokio::test]
async fn an_output_whose_cursor_is_before_the_oldest_record_is_told_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let wal = Wal::open(small_segments(dir.path())).unwrap();
        let mut output = wal.reader("out").unwrap();
        append(&wal, 0..30).await;
        output.commit(Position::new(30)).await.unwrap();
        wal.shutdown().await;
        segment_starts(dir.path())[0]
    };
    assert!(first > 0, "the old segments are gone");
    // A cursor left behind by an earlier installation, say.
    std::fs::write(dir.path().join("cursors/old.cursor"), "4\n").unwrap();
    let wal = Wal::open(small_segments(dir.path())).unwrap();
    let mut old = wal.reader("old").unwrap();
    assert_eq!(old.position(), Position::new(4));
    let mut expected = vec![Err((4, first))];
    expected.extend(records(first..30));
    assert_eq!(read_to_end(&mut old).await, expected);
}

#[tokio::test]
async fn a_reader_at_the_end_waits_and_sees_what_is_appended_later() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path())).unwrap();
    append(&wal, 0..5).await;
    let mut live = wal.reader_at(wal.durable_end());
    // A position not reached yet is where a reader starts once the log gets there.
    let mut ahead = wal.reader_at(wal.durable_end().after(3));
    assert_eq!(read_to_end(&mut live).await, []);
    assert_eq!(read_to_end(&mut ahead).await, []);

    let waiting = tokio::spawn(async move {
        live.wait().await.unwrap();
        live
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "nothing new yet");
    append(&wal, 5..6).await;
    let mut live = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the append wakes the reader")
        .unwrap();
    assert_eq!(read_to_end(&mut live).await, records(5..6));

    append(&wal, 6..12).await;
    assert_eq!(read_to_end(&mut live).await, records(6..12));
    assert_eq!(read_to_end(&mut ahead).await, records(8..12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_given_up_on_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_segments(dir.path())).unwrap();
    append(&wal, 0..20).await;
    let mut reader = wal.reader_at(Position::START);
    let mut seen = Vec::new();
    for _ in 0..3 {
        // Polled once, then dropped unless it is done: its file read may or may not have run.
        let once = tokio::time::timeout(Duration::ZERO, reader.read(4, usize::MAX)).await;
        if let Ok(read) = once {
            note(&reader, read.unwrap(), &mut seen);
        }
    }
    seen.extend(read_to_end(&mut reader).await);
    assert_eq!(seen, records(0..20));
}

#[test]
fn a_position_round_trips_through_its_text() {
    for n in [0, 1, 42, u64::MAX] {
        let position = Position::new(n);
        assert_eq!(position.to_string(), n.to_string());
        assert_eq!(position.to_string().parse::<Position>(), Ok(position));
    }
    for bad in [
        "",
        "+1",
        "-1",
        " 1",
        "1 ",
        "0x10",
        "18446744073709551616",
        "1.5",
    ] {
        let error = bad.parse::<Position>().unwrap_err();
        assert!(
            error.to_string().contains(&format!("{bad:?}")),
            "{bad:?}: {error}"
        );
    }
    assert!(Position::new(3) < Position::new(10));
    assert_eq!(Position::new(10).since(Position::new(3)), 7);
    assert_eq!(Position::new(3).since(Position::new(10)), 0);
}
