//! A log, a store on it, and events to put in: what the store's tests share.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::batch::BatchBuilder;
use flumen_event::record::{Record, Value};
use flumen_event::{EventTime, TenantId, entry};
use flumen_select::Selector;
use flumen_store::{
    Direction, FoundEvent, LOG_READER, SearchRequest, SearchResult, Store, StoreConfig,
};
use flumen_wal::{Persistence, Wal, WalConfig};
use tokio::sync::watch;

/// The first event time of the tests: 2026-12-03T00:00:00Z.
pub const T0: u64 = 1_796_256_000;

pub fn wal_config(dir: &Path) -> WalConfig {
    WalConfig {
        persistence: Persistence::Always,
        segment_size: 256 * 1024,
        ..WalConfig::new(dir.join("wal"))
    }
}

pub fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        flush_interval: Duration::from_millis(50),
        ..StoreConfig::new(dir.join("store"))
    }
}

/// Event `n`: a service, a level, a deployment, a request id and a message, all derived from
/// `n`, at `T0 + n` seconds.
pub fn record(n: u64) -> Record {
    let services = ["api", "web", "billing", "search"];
    let levels = ["info", "info", "info", "warn", "error"];
    Record::from(vec![
        (
            "service".to_owned(),
            Value::from(services[(n % 4) as usize]),
        ),
        ("level".to_owned(), Value::from(levels[(n % 5) as usize])),
        (
            "deployment_id".to_owned(),
            Value::from(format!("d-{}", n % 50)),
        ),
        ("request_id".to_owned(), Value::from(format!("req-{n}"))),
        ("n".to_owned(), Value::UInt(n)),
        (
            "message".to_owned(),
            Value::from(if n.is_multiple_of(97) {
                format!("upstream timeout after {n} ms")
            } else {
                format!("GET /items/{n} 200")
            }),
        ),
    ])
}

pub fn event_time(n: u64) -> EventTime {
    EventTime::new(T0 + n, (n % 1000) as u32)
}

/// The batch of events `range`, as the log stores it.
pub fn batch(range: std::ops::Range<u64>, tag: &str) -> Vec<u8> {
    let records: Vec<Vec<u8>> = range
        .clone()
        .map(|n| {
            let mut raw = Vec::new();
            record(n).write_msgpack(&mut raw);
            raw
        })
        .collect();
    batch_of(&records, range.start.., tag)
}

/// A batch of `records` (msgpack), at the times of events `first`, `first + 1`, ...
pub fn batch_of(records: &[Vec<u8>], first: std::ops::RangeFrom<u64>, tag: &str) -> Vec<u8> {
    let mut entries = Vec::new();
    for (record, n) in records.iter().zip(first) {
        entry::write_entry(&mut entries, event_time(n), record);
    }
    BatchBuilder::new(TenantId::default_tenant(), "")
        .unwrap()
        .encode(tag, b"", records.len() as u32, &entries)
        .unwrap()
}

/// Sets when flumen accepted a batch (Unix nanoseconds; bytes 2..10 of the batch format).
pub fn set_received_at(payload: &mut [u8], unix_nanos: u64) {
    payload[2..10].copy_from_slice(&unix_nanos.to_le_bytes());
}

/// `n` of a found event.
pub fn n_of(event: &FoundEvent) -> u64 {
    let record = Record::decode(&event.record).unwrap();
    match record.get("n") {
        Some(Value::UInt(n)) => *n,
        other => panic!("no n in {other:?}"),
    }
}

/// A log and a store writing from it, on a runtime.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub wal: Arc<Wal>,
    pub store: Arc<Store>,
    stop: watch::Sender<Option<Instant>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Harness {
    pub fn open(dir: &Path) -> Self {
        Self::open_with(dir, store_config(dir))
    }

    pub fn open_with(dir: &Path, config: StoreConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let wal = Arc::new(Wal::open(wal_config(dir)).unwrap());
        let store = Store::open(config).unwrap();
        let reader = wal.reader(LOG_READER).unwrap();
        let (stop, stopped) = watch::channel(None);
        let writer = store
            .spawn_writer(reader, runtime.handle().clone(), stopped)
            .unwrap();
        Self {
            runtime,
            wal,
            store,
            stop,
            writer: Some(writer),
        }
    }

    /// Appends a batch and waits until it is durable in the log.
    pub fn append(&self, payload: Vec<u8>) {
        self.runtime.block_on(async {
            self.wal
                .append(payload)
                .await
                .unwrap()
                .durable()
                .await
                .unwrap();
        });
    }

    /// Waits (bounded) until the store has everything the log has.
    pub fn wait_stored(&self) {
        let end = self.wal.durable_end();
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), self.store.wait_stored(end))
                .await
                .expect("the store catches up with the log within 20 s");
        });
    }

    /// Waits (bounded) until merges have brought the store down to `files` files or fewer.
    pub fn wait_files(&self, files: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.store.stats().files > files {
            assert!(
                Instant::now() < deadline,
                "still {} files after 20 s",
                self.store.stats().files
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn search(&self, query: &str, limit: usize, direction: Direction) -> SearchResult {
        self.store.search(&request(query, limit, direction))
    }

    /// Stops the writer, which flushes first.
    pub fn close(mut self) {
        let _ = self
            .stop
            .send(Some(Instant::now() + Duration::from_secs(10)));
        if let Some(writer) = self.writer.take() {
            writer.join().unwrap();
        }
        self.runtime.block_on(self.wal.shutdown());
    }
}

/// A search of every event time the tests use.
pub fn request(query: &str, limit: usize, direction: Direction) -> SearchRequest {
    SearchRequest {
        tenant: TenantId::DEFAULT_NAME.to_owned(),
        query: Selector::parse(query).unwrap(),
        start_ns: 0,
        end_ns: u64::MAX,
        limit,
        direction,
        after: None,
    }
}

/// Every event the query finds, page by page with the cursor.
pub fn search_all(store: &Store, query: &str, page: usize, direction: Direction) -> Vec<u64> {
    let mut request = request(query, page, direction);
    let mut found = Vec::new();
    loop {
        let result = store.search(&request);
        assert!(result.truncated.is_none());
        found.extend(result.events.iter().map(n_of));
        match result.next {
            Some(next) => request.after = Some(next),
            None => return found,
        }
    }
}
