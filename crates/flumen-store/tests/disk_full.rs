//! A full disk pauses the store, never flumen: the store stops where it is, the log keeps the
//! events, and once there is room again the store resumes by itself and stores every event
//! once.
//!
//! The store's directory is a real, small tmpfs (so the writes really fail with `ENOSPC`),
//! which takes root to mount; without it the test says so and passes without checking.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use flumen_event::batch::BatchBuilder;
use flumen_event::record::{Record, Value};
use flumen_event::{TenantId, entry};
use flumen_store::Direction;

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        mounted.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A batch of events whose messages are random hex: they compress about two to one.
fn noisy_batch(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count = 0;
    for n in range {
        let message: String = (0..400)
            .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap())
            .collect();
        let record = Record::from(vec![
            ("service".to_owned(), Value::from("api")),
            ("n".to_owned(), Value::UInt(n)),
            ("message".to_owned(), Value::from(message)),
        ]);
        let mut raw = Vec::new();
        record.write_msgpack(&mut raw);
        entry::write_entry(&mut entries, event_time(n), &raw);
        count += 1;
    }
    BatchBuilder::new(TenantId::default_tenant(), "")
        .unwrap()
        .encode("app.noise", b"", count, &entries)
        .unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_pauses_the_store_and_it_resumes_by_itself_with_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let Some(_tmpfs) = Tmpfs::mount(&store_dir, "8m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // Most of the small disk is taken.
    let ballast = store_dir.join("ballast");
    std::fs::write(&ballast, vec![1u8; 7 << 20]).unwrap();

    let harness = Harness::open(dir.path());
    let events = 10_000;
    for start in (0..events).step_by(500) {
        harness.append(noisy_batch(start..start + 500));
    }
    wait_until("the store pauses", Duration::from_secs(20), || {
        harness.store.paused().is_some()
    });
    let why = harness.store.paused().unwrap();
    assert!(why.contains("space"), "{why}");
    assert!(harness.store.stored_up_to() < harness.wal.durable_end());
    // Nothing half-written is left behind.
    let leftovers = walk(&store_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0);

    std::fs::remove_file(&ballast).unwrap();
    harness.wait_stored();
    assert!(harness.store.paused().is_none());
    let found = search_all(&harness.store, "{}", 5_000, Direction::Forward);
    assert_eq!(found, (0..events).collect::<Vec<_>>());
    harness.close();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
