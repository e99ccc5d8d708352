//! A record larger than the log could ever hold is refused at once: waiting for room would
//! wait for ever, however far outputs catch up.

use std::path::Path;
use std::time::Duration;

use flumen_wal::{Persistence, Wal, WalConfig, WalError};

/// A 16 KiB log of 4 KiB segments: the largest record it can take is just under 8 KiB.
fn small_log(dir: &Path) -> WalConfig {
    WalConfig {
        persistence: Persistence::Always,
        segment_size: 4096,
        max_size: 16384,
        ..WalConfig::new(dir)
    }
}

#[tokio::test]
async fn a_record_that_could_never_fit_is_refused_instead_of_waiting_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_log(dir.path());
    let largest = config.largest_record();
    assert!(largest > 8000 && largest < 8192, "{largest}");
    let wal = Wal::open(config).unwrap();
    let appended = tokio::time::timeout(
        Duration::from_secs(10),
        wal.append(vec![1u8; largest as usize + 1]),
    )
    .await
    .expect("refused at once, not waited for");
    assert!(
        matches!(appended, Err(WalError::NeverFits { size, largest: l }) if size == largest as usize + 1 && l == largest),
        "{appended:?}"
    );
    // The largest record that can fit is stored, twice in a row (each beside the other's
    // segment).
    for _ in 0..2 {
        let ticket = wal.append(vec![2u8; largest as usize]).await.unwrap();
        let mut reader = wal.reader("out").unwrap();
        tokio::time::timeout(Duration::from_secs(10), ticket.durable())
            .await
            .expect("stored")
            .unwrap();
        drop(reader.read(1, usize::MAX).await.unwrap());
    }
}

#[tokio::test]
async fn a_request_of_many_records_larger_than_the_log_is_not_told_to_retry_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_log(dir.path());
    let largest = config.largest_record() as usize;
    let wal = Wal::open(config).unwrap();
    // An empty log: room for all it can ever take at once, so a request of many small records
    // totalling more (an HTTP body split into batches) goes ahead and waits record by record.
    assert!(wal.has_room(largest));
    assert!(wal.has_room(4 * largest));
    // A full one still says "retry later" (it holds two of the largest records).
    for _ in 0..2 {
        let ticket = wal.append(vec![3u8; largest]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), ticket.durable())
            .await
            .expect("stored")
            .unwrap();
    }
    assert!(!wal.has_room(largest));
    assert!(!wal.has_room(4 * largest));
}
