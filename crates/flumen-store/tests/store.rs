//! The store end to end on a real log: what is appended is found, once, by the queries a user
//! writes; restarts, damage and retention.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

use common::*;
use flumen_event::TenantId;
use flumen_event::record::{Record, Value};
use flumen_select::Selector;
use flumen_store::{Direction, LogOrderRequest, Retention};

fn fill(harness: &Harness, events: u64, per_batch: u64) {
    let mut n = 0;
    while n < events {
        let end = (n + per_batch).min(events);
        harness.append(batch(n..end, "app.logs"));
        n = end;
    }
}

#[test]
fn every_event_is_found_once_newest_first_and_oldest_first_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    fill(&harness, 2_000, 100);
    harness.wait_stored();

    let newest_first = search_all(&harness.store, "{}", 300, Direction::Backward);
    assert_eq!(newest_first, (0..2_000).rev().collect::<Vec<_>>());
    let oldest_first = search_all(&harness.store, "{}", 7, Direction::Forward);
    assert_eq!(oldest_first, (0..2_000).collect::<Vec<_>>());
    harness.close();
}

#[test]
fn queries_find_what_they_say_and_carry_positions_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    fill(&harness, 1_000, 50);
    harness.wait_stored();

    let timeouts = search_all(
        &harness.store,
        r#"{service="api"} |= "timeout""#,
        100,
        Direction::Forward,
    );
    let expected: Vec<u64> = (0..1_000).filter(|n| n % 4 == 0 && n % 97 == 0).collect();
    assert_eq!(timeouts, expected);

    let result = harness.search(r#"{level="error", service="web"}"#, 1, Direction::Backward);
    let event = &result.events[0];
    // The newest error of `web`: n % 5 == 4 and n % 4 == 1.
    assert_eq!(n_of(event), 989);
    assert_eq!(event.tag, "app.logs");
    assert_eq!(event.time_ns, (T0 + 989) * 1_000_000_000 + 989);
    assert!(
        event
            .labels
            .contains(&("service".to_owned(), "web".to_owned()))
    );
    assert!(
        event
            .labels
            .contains(&("level".to_owned(), "error".to_owned()))
    );
    assert!(
        event
            .labels
            .contains(&("tag".to_owned(), "app.logs".to_owned()))
    );
    // Batches of 50 events: event 989 is the 40th of the 20th record.
    assert_eq!(event.position.to_string(), "19.39");

    let numbers = search_all(&harness.store, r#"{} | n >= 990"#, 100, Direction::Forward);
    assert_eq!(numbers, (990..1_000).collect::<Vec<_>>());
    harness.close();
}

#[test]
fn an_indexed_field_opens_only_the_chunks_that_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    // One batch per flush-sized step keeps many chunks around.
    for step in 0..40 {
        harness.append(batch(
            step * 100..(step + 1) * 100,
            &format!("app.part{step}"),
        ));
    }
    harness.wait_stored();

    let all = harness.search("{}", 5_000, Direction::Forward);
    assert_eq!(all.events.len(), 4_000);
    let total_chunks = all.stats.chunks_read;

    let result = harness.search(r#"{request_id="req-1234"}"#, 10, Direction::Forward);
    assert_eq!(
        result.events.iter().map(n_of).collect::<Vec<_>>(),
        vec![1234]
    );
    assert!(
        result.stats.chunks_read * 10 < total_chunks,
        "read {} of {} chunks for one request id",
        result.stats.chunks_read,
        total_chunks
    );
    let deployment = search_all(
        &harness.store,
        r#"{deployment_id="d-7"}"#,
        1000,
        Direction::Forward,
    );
    assert_eq!(
        deployment,
        (0..4_000).filter(|n| n % 50 == 7).collect::<Vec<_>>()
    );
    harness.close();
}

#[test]
fn a_restart_stores_what_came_after_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    fill(&harness, 500, 10);
    harness.wait_stored();
    harness.close();

    let harness = Harness::open(dir.path());
    harness.append(batch(500..600, "app.logs"));
    harness.wait_stored();
    assert_eq!(
        search_all(&harness.store, "{}", 1000, Direction::Forward),
        (0..600).collect::<Vec<_>>()
    );
    harness.close();
}

#[test]
fn many_small_flushes_are_merged_by_tiers_and_every_event_stays_findable_once() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    for n in 0..30u64 {
        harness.append(batch(n * 10..(n + 1) * 10, "app.logs"));
        harness.wait_stored();
    }
    // Merges run beside the writer: every 8 flush files become one of tier 1, so 30 flushes
    // settle as 3 merged files and the 6 latest flushes.
    harness.wait_files(9);
    let stats = harness.store.stats();
    assert_eq!(stats.events, 300);
    assert_eq!(
        search_all(&harness.store, "{}", 1000, Direction::Forward),
        (0..300).collect::<Vec<_>>()
    );
    harness.close();

    let harness = Harness::open(dir.path());
    assert_eq!(harness.store.stats().events, 300);
    harness.close();
}

#[test]
fn a_partition_whose_hour_is_over_is_merged_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    // Batches that arrived three hours ago (a restart reading an old log does this), each
    // its own flush.
    let long_ago = (SystemTime::now() - Duration::from_secs(3 * 3600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for n in 0..5u64 {
        let mut payload = batch(n * 40..(n + 1) * 40, "app.logs");
        set_received_at(&mut payload, long_ago);
        harness.append(payload);
        harness.wait_stored();
    }
    harness.wait_files(1);
    assert_eq!(
        search_all(&harness.store, "{}", 1000, Direction::Forward),
        (0..200).collect::<Vec<_>>()
    );
    // One chunk per stream: each service and level of the 200 events.
    let streams: std::collections::BTreeSet<_> = (0..200)
        .map(|n| {
            let record = record(n);
            (record.get("service").cloned(), record.get("level").cloned())
        })
        .map(|(service, level)| format!("{service:?}/{level:?}"))
        .collect();
    let stats = harness.store.stats();
    assert_eq!(
        (stats.files, stats.chunks, stats.events),
        (1, streams.len(), 200),
        "{stats:?}"
    );
    harness.close();
    assert_eq!(chunk_files(&dir.path().join("store")).len(), 1);
}

#[test]
fn a_merge_copies_big_chunks_as_they_are_and_keeps_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    // One stream (one service and level: every 20th event) with ~700 KiB per flush: its
    // chunks are big enough to be copied, not decoded, when 8 flushes are merged.
    let padding = "x".repeat(1500);
    for flush in 0..8u64 {
        let events: Vec<Vec<u8>> = (0..500)
            .map(|i| {
                let n = (flush * 500 + i) * 20;
                let mut record = record(n);
                record.insert("padding", padding.as_str());
                let mut raw = Vec::new();
                record.write_msgpack(&mut raw);
                raw
            })
            .collect();
        harness.append(batch_of(&events, flush * 500 * 20.., "app.logs"));
        harness.wait_stored();
    }
    harness.wait_files(1);
    let stats = harness.store.stats();
    assert_eq!((stats.chunks, stats.events), (8, 4000), "{stats:?}");
    assert_eq!(
        search_all(&harness.store, "{}", 1000, Direction::Forward),
        (0..4000).map(|i| i * 20).collect::<Vec<_>>()
    );
    harness.close();
}

#[test]
fn a_damaged_chunk_is_skipped_and_counted_and_the_rest_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    harness.append(batch(0..100, "app.a"));
    harness.append(batch(100..200, "app.b"));
    harness.wait_stored();
    harness.close();

    // One file holds every stream's chunk; damage a byte of the first (just past the magic).
    let file = chunk_files(&dir.path().join("store"))
        .into_iter()
        .next()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(20)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(20)).unwrap();
    f.write_all(&[byte[0] ^ 0x55]).unwrap();
    drop(f);

    let harness = Harness::open(dir.path());
    let result = harness.search("{}", 1000, Direction::Forward);
    assert_eq!(result.stats.corrupt_chunks, 1);
    // The damaged chunk's stream (one tag, service and level) is lost; every other event is
    // found, once.
    let found: Vec<u64> = result.events.iter().map(n_of).collect();
    let lost: Vec<u64> = (0..200).filter(|n| !found.contains(n)).collect();
    let stream = |n: u64| {
        let record = record(n);
        (
            n < 100,
            record.get("service").cloned(),
            record.get("level").cloned(),
        )
    };
    let first_stream = stream(lost[0]);
    let whole_stream: Vec<u64> = (0..200).filter(|&n| stream(n) == first_stream).collect();
    assert_eq!(lost, whole_stream);
    let mut unique = found.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), found.len());
    harness.close();
}

#[test]
fn a_file_from_a_flush_that_did_not_finish_is_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    harness.append(batch(0..10, "app.logs"));
    harness.wait_stored();
    harness.close();

    let file = chunk_files(&dir.path().join("store")).pop().unwrap();
    // A copy numbered after the checkpoint, as a crash between a file and the checkpoint
    // leaves it, and a temporary file.
    let later = file.with_file_name("00000000000000009999.chunks");
    std::fs::copy(&file, &later).unwrap();
    std::fs::write(file.with_file_name("x.chunks.tmp"), b"partial").unwrap();

    let harness = Harness::open(dir.path());
    assert!(!later.exists());
    assert_eq!(harness.store.stats().events, 10);
    harness.close();
}

#[test]
fn retention_removes_whole_old_partitions_by_age_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = store_config(dir.path());
    config.retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_bytes: None,
    };
    let harness = Harness::open_with(dir.path(), config);
    fill(&harness, 100, 10);
    harness.wait_stored();
    assert!(harness.store.stats().files > 0);

    // An hour from now nothing is old yet; three hours from now everything is.
    harness
        .store
        .apply_retention(SystemTime::now() + Duration::from_secs(1800));
    assert_eq!(harness.store.stats().events, 100);
    harness
        .store
        .apply_retention(SystemTime::now() + Duration::from_secs(3 * 3600));
    assert_eq!(harness.store.stats().files, 0);
    assert!(
        harness
            .search("{}", 10, Direction::Forward)
            .events
            .is_empty()
    );
    harness.close();
    assert!(
        chunk_files(&dir.path().join("store")).is_empty(),
        "files are removed from disk"
    );
}

fn chunk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for tenant in std::fs::read_dir(dir).unwrap().flatten() {
        if !tenant.path().is_dir() {
            continue;
        }
        for partition in std::fs::read_dir(tenant.path()).unwrap().flatten() {
            for file in std::fs::read_dir(partition.path()).unwrap().flatten() {
                if file.path().extension().is_some_and(|e| e == "chunks") {
                    files.push(file.path());
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_metric_query_counts_every_matching_event_in_its_windows() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    // Events n = 0..600 at T0 + n seconds: ten minutes, one event a second.
    fill(&harness, 600, 100);
    harness.wait_stored();

    let query = flumen_select::MetricQuery::parse(
        r#"sum by (level) (count_over_time({service="api"}[1m]))"#,
    )
    .unwrap();
    let minute = 60 * 1_000_000_000;
    let start = T0 * 1_000_000_000 + minute; // the window (T0, T0 + 1m]
    let result = harness
        .store
        .metric(&flumen_store::MetricRequest {
            tenant: "default".to_owned(),
            query,
            start_ns: start,
            end_ns: start + 8 * minute,
            step_ns: minute,
        })
        .unwrap();
    // Per level, the api events (n % 4 == 0) whose time falls in each step's window.
    let level = |n: u64| ["info", "info", "info", "warn", "error"][(n % 5) as usize];
    for series in &result.series {
        let wanted = series.labels["level"].clone();
        for &(t, value) in &series.points {
            let t = t as u64;
            let expected = (0..600u64)
                .filter(|&n| n % 4 == 0 && level(n) == wanted)
                .filter(|&n| {
                    let time = event_time(n).as_unix_nanos() as u64;
                    time > t - minute && time <= t
                })
                .count() as f64;
            assert_eq!(value, expected, "{wanted} at {t}");
        }
    }
    let levels: Vec<&str> = result
        .series
        .iter()
        .map(|s| s.labels["level"].as_str())
        .collect();
    assert_eq!(levels, ["error", "info", "warn"]);

    // With a line filter the records are read: the same windows, fewer events.
    let query = flumen_select::MetricQuery::parse(r#"sum(count_over_time({} |= "timeout" [10m]))"#)
        .unwrap();
    let result = harness
        .store
        .metric(&flumen_store::MetricRequest {
            tenant: "default".to_owned(),
            query,
            start_ns: start + 9 * minute,
            end_ns: start + 9 * minute,
            step_ns: minute,
        })
        .unwrap();
    // The window is (T0, T0 + 10m]: event 0, at T0, is just outside it.
    let timeouts = (1..600u64).filter(|n| n.is_multiple_of(97)).count() as f64;
    assert_eq!(result.series.len(), 1);
    assert_eq!(result.series[0].points.last().unwrap().1, timeouts);
    harness.close();
}

#[test]
fn the_catalog_tells_streams_events_and_bytes_without_reading_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    fill(&harness, 400, 100);
    harness.wait_stored();
    let selector = flumen_select::Selector::parse(r#"{service="web"}"#).unwrap();
    let streams = harness.store.streams("default", &selector, 0, u64::MAX);
    // web is n % 4 == 1; its levels are info, warn and error.
    assert_eq!(streams.len(), 3);
    assert_eq!(streams.iter().map(|s| s.events).sum::<u64>(), 100);
    assert!(streams.iter().all(|s| s.bytes > 0 && s.chunks > 0));
    assert!(
        streams
            .iter()
            .all(|s| s.labels.contains(&("service".to_owned(), "web".to_owned())))
    );
    harness.close();
}

#[test]
fn a_line_filter_skips_chunks_without_its_text_yet_finds_it_in_lines_rendered_from_records() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    let encode = |record: Record| {
        let mut raw = Vec::new();
        record.write_msgpack(&mut raw);
        raw
    };
    // Stream "app.text": every line a string, none with "503". Stream "app.numbers": no line
    // field, so the line is the record rendered, where the number 503 (not the text "503" in
    // its bytes) appears.
    let text: Vec<Vec<u8>> = (0..50)
        .map(|n| {
            encode(Record::from(vec![(
                "message".to_owned(),
                format!("ok {n}").into(),
            )]))
        })
        .collect();
    let numbers = vec![encode(Record::from(vec![(
        "status".to_owned(),
        Value::UInt(503),
    )]))];
    harness.append(batch_of(&text, 0.., "app.text"));
    harness.append(batch_of(&numbers, 100.., "app.numbers"));
    harness.wait_stored();
    let result = harness.search(r#"{} |= "503""#, 100, Direction::Forward);
    assert_eq!(result.events.len(), 1, "{:?}", result.events);
    assert_eq!(result.events[0].tag, "app.numbers");
    // The text chunk was read and ruled out whole: none of its 50 events was looked at one
    // by one.
    assert_eq!(result.stats.chunks_read, 2);
    assert_eq!(result.stats.events_scanned, 1);
    harness.close();
}

#[test]
fn compact_now_merges_the_current_hour_into_one_file_and_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    for n in 0..5u64 {
        harness.append(batch(n * 40..(n + 1) * 40, "app.logs"));
        harness.wait_stored();
    }
    assert!(harness.store.stats().files > 1);
    harness.store.compact_now().unwrap();
    let stats = harness.store.stats();
    assert_eq!((stats.files, stats.events), (1, 200), "{stats:?}");
    assert_eq!(
        search_all(&harness.store, "{}", 1000, Direction::Forward),
        (0..200).collect::<Vec<_>>()
    );
    harness.close();
}

#[test]
fn a_scan_in_log_order_pages_through_every_stream_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(dir.path());
    // Events of many streams (services and levels), 10 to a log record.
    fill(&harness, 300, 10);
    harness.wait_stored();
    let scan = |query: &str, after, before_record, limit| {
        harness.store.scan_log_order(&LogOrderRequest {
            tenant: TenantId::DEFAULT_NAME.to_owned(),
            query: Selector::parse(query).unwrap(),
            after,
            before_record,
            limit,
        })
    };
    // Page by page, 7 at a time: every event once, in log order.
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = scan("{}", after, u64::MAX, 7);
        let positions: Vec<_> = page.events.iter().map(|e| e.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        seen.extend(page.events.iter().map(n_of));
        match page.events.last() {
            Some(last) if page.next.is_some() => after = Some(last.position),
            _ => break,
        }
    }
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
    // A query, and a bound on the log records: the events of the records before it.
    let all = scan("{}", None, u64::MAX, 1000);
    let bound = all.events[95].position.record.get();
    let page = scan(r#"{service="api"}"#, None, bound, 1000);
    let expected: Vec<u64> = all
        .events
        .iter()
        .filter(|e| e.position.record.get() < bound)
        .map(n_of)
        .filter(|n| n % 4 == 0)
        .collect();
    assert_eq!(page.events.iter().map(n_of).collect::<Vec<_>>(), expected);
    assert!(!expected.is_empty());
    harness.close();
}
