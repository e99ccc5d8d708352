//! Per-deployment retention on a real store: a deployment kept longer than its tenant keeps
//! its events in partitions the tenant's retention empties, one kept shorter loses its events
//! in partitions the tenant keeps, a pass that changes nothing rewrites nothing, and a restart
//! keeps the outcome and waits for the map before removing by age.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use flumen_event::TenantId;
use flumen_event::record::{Record, Value};
use flumen_store::{Direction, Retention, StoreConfig};
use flumen_wal::Position;

/// Partitions (arrival hours) the events arrive in, and events in each.
const HOURS: u64 = 6;
const PER_HOUR: u64 = 40;
/// The tenant's retention.
const TENANT_MAX_AGE: Duration = Duration::from_secs(2 * 3600);

/// Event `n`'s deployment: a quarter each of one kept longer, one kept shorter, one kept as
/// its tenant, and none.
fn deployment(n: u64) -> Option<&'static str> {
    [Some("d-long"), Some("d-short"), Some("d-other"), None][(n % 4) as usize]
}

fn encoded(n: u64) -> Vec<u8> {
    let mut fields = vec![
        ("service".to_owned(), Value::from("api")),
        ("n".to_owned(), Value::UInt(n)),
        ("message".to_owned(), Value::from(format!("event {n}"))),
    ];
    if let Some(deployment) = deployment(n) {
        fields.push(("deployment_id".to_owned(), Value::from(deployment)));
    }
    let mut raw = Vec::new();
    Record::from(fields).write_msgpack(&mut raw);
    raw
}

fn hour_of(n: u64) -> u64 {
    n / PER_HOUR
}

fn config(dir: &Path) -> StoreConfig {
    let mut config = store_config(dir);
    config.retention = Retention {
        max_age: Some(TENANT_MAX_AGE),
        max_bytes: None,
    };
    config
}

fn deployment_retention() -> HashMap<String, Duration> {
    HashMap::from([
        ("d-long".to_owned(), Duration::from_secs(24 * 3600)),
        ("d-short".to_owned(), Duration::from_secs(30 * 60)),
    ])
}

/// Appends the events of every hour, two log records an hour, arriving in the hours from
/// `first_hour` (Unix hours, in the future, so that the maintenance thread's own retention
/// passes, at the real time, leave them alone).
fn fill(harness: &Harness, first_hour: u64) {
    for hour in 0..HOURS {
        let half = PER_HOUR / 2;
        for part in 0..2 {
            let first = hour * PER_HOUR + part * half;
            let records: Vec<Vec<u8>> = (first..first + half).map(encoded).collect();
            let mut payload = batch_of(&records, first.., "app.logs");
            let arrived = (first_hour + hour) * 3600 + 60 + part;
            set_received_at(&mut payload, arrived * 1_000_000_000);
            harness.append(payload);
        }
    }
    harness.wait_stored();
}

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
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

fn all(harness: &Harness, query: &str) -> Vec<u64> {
    search_all(&harness.store, query, 100, Direction::Forward)
}

fn events(filter: impl Fn(u64) -> bool) -> Vec<u64> {
    (0..HOURS * PER_HOUR).filter(|&n| filter(n)).collect()
}

/// Which events the retention of [`deployment_retention`] keeps at [`Thinned::now`].
fn kept(n: u64) -> bool {
    match hour_of(n) {
        0..=3 => deployment(n) == Some("d-long"),
        4 => deployment(n) != Some("d-short"),
        _ => true,
    }
}

/// A store filled with every hour's events, after a retention pass.
struct Thinned {
    dir: tempfile::TempDir,
    harness: Harness,
    /// Ten minutes after the last hour ended: the tenant's two hours have passed for hours 0
    /// to 3, d-short's half hour for hours 0 to 4, d-long's day for none.
    now: SystemTime,
}

impl Thinned {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::open_with(dir.path(), config(dir.path()));
        let real_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let first_hour = real_now / 3600 + 48;
        fill(&harness, first_hour);
        assert_eq!(harness.store.stats().events, HOURS * PER_HOUR);
        harness
            .store
            .set_deployment_retention(deployment_retention());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs((first_hour + HOURS) * 3600 + 600);
        harness.store.apply_retention(now);
        Self { dir, harness, now }
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Closes the store and opens it again.
    fn reopen(self) -> Self {
        self.harness.close();
        let harness = Harness::open_with(self.dir.path(), config(self.dir.path()));
        Self { harness, ..self }
    }

    /// Searches and the live streams' figures show exactly the events [`kept`] keeps.
    fn check(&self) {
        let harness = &self.harness;
        assert_eq!(
            all(harness, r#"{deployment_id="d-long"}"#),
            events(|n| deployment(n) == Some("d-long")),
            "d-long keeps every event"
        );
        assert_eq!(
            all(harness, r#"{deployment_id="d-short"}"#),
            events(|n| deployment(n) == Some("d-short") && hour_of(n) == 5),
            "d-short keeps only its last hour"
        );
        assert_eq!(
            all(harness, r#"{deployment_id="d-other"}"#),
            events(|n| deployment(n) == Some("d-other") && hour_of(n) >= 4),
            "d-other follows its tenant"
        );
        assert_eq!(all(harness, "{}"), events(kept));
        assert_eq!(harness.store.stats().events, events(kept).len() as u64);
        // Records 0 to 9 (hours 0 to 4) lost events: the store holds every event from record
        // 10 (hour 5) on, though it still holds some before.
        let held_from = harness.store.held_from(TenantId::DEFAULT_NAME).unwrap();
        assert_eq!((held_from.record.get(), held_from.index), (10, 0));
    }
}

#[test]
fn a_deployment_kept_longer_keeps_its_events_where_its_tenants_retention_removed_the_rest() {
    let thinned = Thinned::new();
    assert_eq!(
        all(&thinned.harness, r#"{deployment_id="d-long"}"#),
        events(|n| deployment(n) == Some("d-long"))
    );
    let old_hours: Vec<u64> = all(&thinned.harness, "{}")
        .into_iter()
        .filter(|&n| hour_of(n) <= 3)
        .collect();
    assert_eq!(
        old_hours,
        events(|n| hour_of(n) <= 3 && deployment(n) == Some("d-long"))
    );
    thinned.check();

    // No longer kept longer: the hours past the tenant's retention go whole.
    let store = &thinned.harness.store;
    store.set_deployment_retention(HashMap::from([(
        "d-short".to_owned(),
        Duration::from_secs(30 * 60),
    )]));
    store.apply_retention(thinned.now);
    assert_eq!(
        all(&thinned.harness, "{}"),
        events(|n| hour_of(n) >= 4 && kept(n))
    );
    assert_eq!(chunk_files(&thinned.store_dir()).len(), 2);
    thinned.harness.close();
}

#[test]
fn a_deployment_kept_shorter_loses_its_events_where_its_retention_expired_and_the_rest_stays() {
    let thinned = Thinned::new();
    let hour_4: Vec<u64> = all(&thinned.harness, "{}")
        .into_iter()
        .filter(|&n| hour_of(n) == 4)
        .collect();
    assert_eq!(
        hour_4,
        events(|n| hour_of(n) == 4 && deployment(n) != Some("d-short"))
    );
    thinned.check();
    // A live stream's gap over hours 0 to 4 loses at most all their 200 events: those
    // retention removed, and those it left before `held_from`.
    let events_at_most = thinned.harness.store.removed_events(
        TenantId::DEFAULT_NAME,
        Position::new(0),
        Position::new(10),
    );
    assert_eq!(events_at_most, Some(5 * PER_HOUR));
    thinned.harness.close();
}

#[test]
fn a_pass_that_changes_nothing_rewrites_nothing_and_a_restart_keeps_the_outcome() {
    let thinned = Thinned::new();
    let files = chunk_files(&thinned.store_dir());
    assert_eq!(files.len(), HOURS as usize, "one file an hour: {files:?}");
    let store = &thinned.harness.store;
    store.apply_retention(thinned.now);
    // Time that makes no retention expire changes nothing either.
    store.apply_retention(thinned.now + Duration::from_secs(60));
    assert_eq!(chunk_files(&thinned.store_dir()), files);
    thinned.check();

    let thinned = thinned.reopen();
    thinned.check();
    // Until the map is set again, retention by age waits: with no map, d-long's old hours
    // would go whole.
    let store = &thinned.harness.store;
    store.await_deployment_retention();
    store.apply_retention(thinned.now);
    assert_eq!(chunk_files(&thinned.store_dir()), files);
    thinned.check();
    // The map set again after the restart: each thinned partition is read once more, and not
    // written.
    store.set_deployment_retention(deployment_retention());
    store.apply_retention(thinned.now);
    assert_eq!(chunk_files(&thinned.store_dir()), files);
    thinned.check();
    thinned.harness.close();
}
