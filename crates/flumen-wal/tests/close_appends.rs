//! A stop must not wait for room that a full log will never get: once appends are closed,
//! appends waiting on the full log fail, and the log still shuts down cleanly.

use std::sync::Arc;
use std::time::Duration;

use flumen_wal::{Persistence, Read, Wal, WalConfig, WalError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waiting_on_a_full_log_fails_once_appends_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(WalConfig {
            persistence: Persistence::Always,
            segment_size: 2048,
            max_size: 8192,
            ..WalConfig::new(dir.path())
        })
        .unwrap(),
    );
    // A reader that never commits holds every segment, as an output whose destination is down.
    let mut reader = wal.reader("stuck").unwrap();
    let appender = {
        let wal = wal.clone();
        tokio::spawn(async move {
            let mut stored = 0;
            loop {
                let appended = match wal.append(vec![7u8; 500]).await {
                    Ok(ticket) => ticket.durable().await,
                    Err(error) => Err(error),
                };
                match appended {
                    Ok(_) => stored += 1,
                    Err(error) => return (stored, error),
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !wal.is_full() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the log reports full");

    wal.close_appends();
    let (stored, error) = tokio::time::timeout(Duration::from_secs(10), appender)
        .await
        .expect("the waiting append gives up once appends are closed")
        .unwrap();
    assert!(matches!(error, WalError::Closed), "{error}");
    assert!(matches!(
        wal.append(b"late".to_vec()).await,
        Err(WalError::Closed)
    ));
    tokio::time::timeout(Duration::from_secs(10), wal.shutdown())
        .await
        .expect("the log shuts down");
    // What was acknowledged before the close is all there.
    let mut read = 0;
    loop {
        let Read::Records(records) = reader.read(100, usize::MAX).await.unwrap() else {
            panic!("nothing is removed from this log");
        };
        if records.is_empty() {
            break;
        }
        read += records.len();
    }
    assert_eq!(read, stored);
}
