//! The hub and subscriptions on a real log: every subscriber gets exactly what its query
//! selects, in log order, once — however many there are, and however slowly one reads.

use std::sync::Arc;
use std::time::Duration;

use flumen_event::batch::BatchBuilder;
use flumen_event::record::{Record, Value};
use flumen_event::{EventTime, TenantId, entry};
use flumen_live::{Format, LiveConfig, LiveHub, Message, Start, Subscription};
use flumen_select::Selector;
use flumen_store::{EventPosition, LOG_READER, Retention, Store, StoreConfig};
use flumen_wal::{Persistence, Position, Wal, WalConfig};
use tokio::sync::watch;

const EVENTS_PER_BATCH: u64 = 20;

fn record(n: u64) -> Record {
    let services = ["api", "web", "billing", "search"];
    let levels = ["info", "info", "warn", "error", "info"];
    Record::from(vec![
        (
            "service".to_owned(),
            Value::from(services[(n % 4) as usize]),
        ),
        ("level".to_owned(), Value::from(levels[(n % 5) as usize])),
        (
            "deployment_id".to_owned(),
            Value::from(format!("d-{}", n % 30)),
        ),
        (
            "message".to_owned(),
            Value::from(if n.is_multiple_of(7) {
                format!("upstream timeout after {n} ms")
            } else {
                format!("GET /items/{n} 200")
            }),
        ),
    ])
}

/// Events `range` as one log record.
fn batch(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut entries = Vec::new();
    for n in range.clone() {
        let mut raw = Vec::new();
        record(n).write_msgpack(&mut raw);
        entry::write_entry(&mut entries, EventTime::new(1_796_256_000 + n, 0), &raw);
    }
    BatchBuilder::new(TenantId::default(), "")
        .unwrap()
        .encode("app", b"", (range.end - range.start) as u32, &entries)
        .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    wal: Arc<Wal>,
    hub: Arc<LiveHub>,
    _closing: watch::Sender<bool>,
}

/// A log that syncs only once an hour unless followed closely, and a hub on it.
fn setup(config: LiveConfig, segment_size: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(WalConfig {
            persistence: Persistence::Interval(Duration::from_secs(3600)),
            segment_size,
            max_size: 64 * segment_size.max(1 << 20),
            ..WalConfig::new(dir.path().join("wal"))
        })
        .unwrap(),
    );
    let closing = watch::Sender::new(false);
    let hub = LiveHub::start(wal.clone(), None, closing.subscribe(), config);
    Setup {
        _dir: dir,
        wal,
        hub,
        _closing: closing,
    }
}

/// Appends events `0..count`, in batches, without waiting for them to be durable.
async fn append(wal: &Wal, events: std::ops::Range<u64>) {
    let mut n = events.start;
    while n < events.end {
        let end = (n + EVENTS_PER_BATCH).min(events.end);
        drop(wal.append(batch(n..end)).await.unwrap());
        n = end;
    }
}

/// The positions of events `0..count` (appended from an empty log) that `query` selects.
fn expected(query: &Selector, count: u64) -> Vec<EventPosition> {
    (0..count)
        .filter(|&n| query.matches("app", &record(n)))
        .map(|n| {
            EventPosition::new(
                Position::new(n / EVENTS_PER_BATCH),
                (n % EVENTS_PER_BATCH) as u32,
            )
        })
        .collect()
}

/// The positions of the next `count` events, failing on anything but events and heartbeats.
async fn receive(subscription: &mut Subscription, count: usize) -> Vec<EventPosition> {
    let mut positions = Vec::new();
    while positions.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(20), subscription.next())
            .await
            .unwrap_or_else(|_| panic!("stuck after {} of {count} events", positions.len()));
        match message {
            Some(Message::Event(event)) => positions.push(event.position),
            Some(Message::Heartbeat) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    positions
}

fn subscribe(hub: &Arc<LiveHub>, query: &str) -> Subscription {
    let start = Start::Backfill {
        limit: 0,
        range: (0, u64::MAX),
    };
    hub.subscribe(query.parse().unwrap(), Format::Event, start)
        .unwrap()
}

/// A stream of every event after the log's very first.
fn from_the_first_event(hub: &Arc<LiveHub>) -> Subscription {
    let first = EventPosition::new(Position::new(0), 0);
    hub.subscribe(Selector::match_all(), Format::Event, Start::After(first))
        .unwrap()
}

/// The stream's next message, within 10 s.
async fn next_message(stream: &mut Subscription) -> Option<Message> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
}

/// Lets every subscription reach the end of the (empty) log and join the hub.
async fn settle(subscriptions: &mut [Subscription]) {
    for subscription in subscriptions {
        let _ = tokio::time::timeout(Duration::from_millis(20), subscription.next()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_each_get_exactly_what_their_query_selects() {
    let setup = setup(LiveConfig::default(), 64 << 20);
    let queries: Vec<String> = (0..30)
        .map(|d| format!(r#"{{deployment_id="d-{d}"}}"#))
        .chain(["api", "web", "billing"].map(|s| format!(r#"{{service="{s}"}}"#)))
        .chain([
            r#"{level=~"warn|error"}"#.to_owned(),
            r#"{} |= "timeout""#.to_owned(),
            r#"{service="api", level="error"}"#.to_owned(),
            "{}".to_owned(),
        ])
        .collect();
    // Several subscribers per query: they share its rendering.
    let mut subscriptions: Vec<(Selector, Subscription)> = queries
        .iter()
        .cycle()
        .take(queries.len() * 3)
        .map(|q| (q.parse().unwrap(), subscribe(&setup.hub, q)))
        .collect();
    for (_, subscription) in &mut subscriptions {
        settle(std::slice::from_mut(subscription)).await;
    }
    let count = 2_000;
    append(&setup.wal, 0..count).await;
    let mut receiving = tokio::task::JoinSet::new();
    for (query, mut subscription) in subscriptions {
        receiving.spawn(async move {
            let want = expected(&query, count);
            let got = receive(&mut subscription, want.len()).await;
            (query.as_str().to_owned(), want, got)
        });
    }
    while let Some(done) = receiving.join_next().await {
        let (query, want, got) = done.unwrap();
        assert_eq!(got, want, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_catches_up_by_itself_and_loses_nothing() {
    let config = LiveConfig {
        queue: 1,
        window_records: 4,
        ..LiveConfig::default()
    };
    let setup = setup(config, 64 << 20);
    let mut slow = subscribe(&setup.hub, "{}");
    let mut fast = subscribe(&setup.hub, r#"{service="api"}"#);
    settle(std::slice::from_mut(&mut slow)).await;
    settle(std::slice::from_mut(&mut fast)).await;
    let count = 5_000;
    let fast_query: Selector = r#"{service="api"}"#.parse().unwrap();
    let want_fast = expected(&fast_query, count);
    let fast_reader = tokio::spawn(async move { receive(&mut fast, want_fast.len()).await });
    // In rounds, so that the hub reads (and queues) them in many batches.
    for round in 0..50 {
        append(&setup.wal, round * 100..(round + 1) * 100).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The slow one has not read a thing yet: its queue overflowed long ago.
    tokio::time::timeout(Duration::from_secs(10), async {
        while setup.hub.subscribers_let_go() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the hub lets the slow subscriber go");
    let got = receive(&mut slow, count as usize).await;
    assert_eq!(got, expected(&Selector::match_all(), count));
    assert_eq!(
        fast_reader.await.unwrap(),
        expected(&fast_query, count),
        "the fast subscriber is not held back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_after_a_position_with_no_gap_and_no_repeat() {
    let setup = setup(LiveConfig::default(), 64 << 20);
    append(&setup.wal, 0..100).await;
    let query: Selector = r#"{service="web"}"#.parse().unwrap();
    let all = expected(&query, 200);
    let after = all[7];
    let mut resumed = setup
        .hub
        .subscribe(query.clone(), Format::Event, Start::After(after))
        .unwrap();
    append(&setup.wal, 100..200).await;
    assert_eq!(receive(&mut resumed, all.len() - 8).await, all[8..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_records_gone_from_the_log_are_a_gap() {
    let setup = setup(LiveConfig::default(), 4096);
    // An output that has delivered everything lets the log remove its sealed segments.
    let mut output = setup.wal.reader("out").unwrap();
    let _follow = setup.wal.follow_closely();
    append(&setup.wal, 0..400).await;
    let end = Position::new(400 / EVENTS_PER_BATCH);
    while setup.wal.durable_end() < end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    output.commit(end).await.unwrap();
    let first = setup.wal.stats().first;
    assert!(first.get() > 0, "segments were removed");
    let mut stream = from_the_first_event(&setup.hub);
    let message = next_message(&mut stream).await;
    assert_eq!(
        message,
        Some(Message::Gap {
            from: Position::new(0),
            to: first,
            events_at_most: None
        })
    );
    let next = receive(&mut stream, 1).await;
    assert_eq!(next, [EventPosition::new(first, 0)]);
}

#[tokio::test]
async fn streams_over_the_limit_are_refused_and_closing_ends_every_stream() {
    let setup = setup(
        LiveConfig {
            max_streams: 2,
            ..LiveConfig::default()
        },
        64 << 20,
    );
    let mut one = subscribe(&setup.hub, "{}");
    let _two = subscribe(&setup.hub, "{}");
    let refused = setup.hub.subscribe(
        Selector::match_all(),
        Format::Event,
        Start::After(EventPosition::default()),
    );
    assert!(refused.is_err());
    drop(_two);
    tokio::task::yield_now().await;
    let mut three = subscribe(&setup.hub, "{}");
    settle(std::slice::from_mut(&mut one)).await;
    setup._closing.send_replace(true);
    for stream in [&mut one, &mut three] {
        assert_eq!(next_message(stream).await, Some(Message::Closing));
        assert_eq!(stream.next().await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_back_after_the_stores_retention_is_told_of_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(WalConfig {
            persistence: Persistence::Always,
            segment_size: 4096,
            max_size: 64 << 20,
            ..WalConfig::new(dir.path().join("wal"))
        })
        .unwrap(),
    );
    let store = Store::open(StoreConfig {
        flush_interval: Duration::from_millis(20),
        retention: Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        },
        ..StoreConfig::new(dir.path().join("store"))
    })
    .unwrap();
    let (stop, stopped) = watch::channel(None);
    let writer = store
        .spawn_writer(
            wal.reader(LOG_READER).unwrap(),
            tokio::runtime::Handle::current(),
            stopped,
        )
        .unwrap();
    append(&wal, 0..400).await;
    let end = Position::new(400 / EVENTS_PER_BATCH);
    tokio::time::timeout(Duration::from_secs(20), store.wait_stored(end))
        .await
        .expect("stored");
    // Everything stored is hours past its retention; the log lets go of what the store took
    // (all of it once the writer has stopped and committed its cursor).
    store.apply_retention(std::time::SystemTime::now() + Duration::from_secs(3 * 3600));
    assert_eq!(store.held_from(TenantId::DEFAULT_NAME), None);
    stop.send_replace(Some(std::time::Instant::now() + Duration::from_secs(5)));
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let first = wal.stats().first;
    assert!(first.get() > 0, "the log kept its segments");
    let closing = watch::Sender::new(false);
    let hub = LiveHub::start(
        wal.clone(),
        Some(store.clone()),
        closing.subscribe(),
        LiveConfig::default(),
    );
    let mut stream = from_the_first_event(&hub);
    let message = next_message(&mut stream).await;
    let Some(Message::Gap {
        from,
        to,
        events_at_most: Some(at_most),
    }) = message
    else {
        panic!("a gap with a count, not {message:?}");
    };
    assert_eq!((from, to), (Position::new(0), first));
    // Whole files are counted: at least what was lost, at most what retention removed.
    let lost = first.get() * EVENTS_PER_BATCH;
    assert!(
        (lost..=400).contains(&at_most),
        "{at_most} not in {lost}..=400"
    );
    // Then what the log still holds, from its first record on.
    assert_eq!(
        receive(&mut stream, 1).await,
        [EventPosition::new(first, 0)]
    );
}

/// The stream's messages until it ends, failing if that takes over 10 s.
async fn until_end(stream: &mut Subscription) -> (Vec<EventPosition>, Option<String>) {
    let mut positions = Vec::new();
    loop {
        match next_message(stream).await {
            Some(Message::Event(event)) => positions.push(event.position),
            Some(Message::Heartbeat) => {}
            Some(Message::End(message)) => {
                assert!(
                    next_message(stream).await.is_none(),
                    "nothing after the end"
                );
                return (positions, Some(message));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_an_end_sends_everything_through_it_then_ends() {
    let setup = setup(LiveConfig::default(), 64 << 20);
    let (end_tx, end_rx) = watch::channel(None);
    // Joined to the hub before anything is logged: one that selects events, one that selects
    // none (only the hub's progress tells it where it is); and one reading by itself.
    let mut joined = subscribe(&setup.hub, r#"{deployment_id="d-3"}"#);
    let mut selecting_nothing = subscribe(&setup.hub, r#"{deployment_id="d-3", level="none"}"#);
    settle(std::slice::from_mut(&mut joined)).await;
    settle(std::slice::from_mut(&mut selecting_nothing)).await;
    append(&setup.wal, 0..100).await;
    let mut reading = from_the_first_event(&setup.hub);
    for stream in [&mut joined, &mut selecting_nothing, &mut reading] {
        stream.end_when(end_rx.clone());
    }
    // The end is the fifth record (events 80..100); what is logged after it is not sent.
    end_tx.send_replace(Some(flumen_live::StreamEnd {
        through: Position::new(4),
        message: "finished".into(),
    }));
    append(&setup.wal, 100..300).await;

    let d3: Selector = r#"{deployment_id="d-3"}"#.parse().unwrap();
    let (events, end) = until_end(&mut joined).await;
    assert_eq!(events, expected(&d3, 100));
    assert_eq!(end.as_deref(), Some("finished"));
    let (events, end) = until_end(&mut selecting_nothing).await;
    assert!(events.is_empty());
    assert_eq!(end.as_deref(), Some("finished"));
    let (events, _) = until_end(&mut reading).await;
    let all_after_first = expected(&Selector::match_all(), 100).split_off(1);
    assert_eq!(events, all_after_first);
}
