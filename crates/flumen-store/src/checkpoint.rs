//! The checkpoint: how far the store has stored the log, and the next file number.
//!
//! A flush writes its chunk files first and the checkpoint last, so the checkpoint is the
//! commit point: every event of the log records before `stored_up_to` is in a file numbered
//! below `next_seq`, and none after it is. At start, files numbered `next_seq` or more are
//! from a flush that did not finish and are removed; the store reads the log again from
//! `stored_up_to`. So a crash at any point neither loses an event nor stores one twice.
//!
//! It also lists the files compaction or retention withdrew that may still be on disk (a
//! search was reading them), so that a start after a crash removes them even when the file
//! that replaced them was itself replaced since; and, by tenant, the last event retention
//! removed, so that after a restart the store still knows from where it holds every event
//! (`Store::held_from`) though a deployment's retention left older events in place.
//!
//! The file is JSON (`{"version":1,"stored_up_to":…,"next_seq":…,"removing":[…],
//! "removed_through":{tenant:[record,index]}}`; a checkpoint without `removed_through`, as
//! earlier versions wrote, reads as none removed, and earlier versions ignore it), replaced
//! atomically: written to `checkpoint.tmp`, synced, renamed, and the directory synced. A new
//! store writes one at once, so that a crash during its first flush leaves nothing unaccounted
//! for.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use flumen_wal::Position;
use serde::{Deserialize, Serialize};

use crate::position::EventPosition;

const FILE: &str = "checkpoint";
const VERSION: u32 = 1;

/// The store's commit point.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    version: u32,
    /// The first log record not yet stored.
    pub stored_up_to: u64,
    /// The sequence number the next chunk file gets.
    pub next_seq: u64,
    /// Files withdrawn from the catalog that may still be on disk.
    #[serde(default)]
    pub removing: Vec<u64>,
    /// By tenant, the position (record, index) of the last event retention removed.
    #[serde(default)]
    pub removed_through: BTreeMap<String, (u64, u32)>,
}

impl Checkpoint {
    pub fn new(stored_up_to: u64, next_seq: u64, removing: Vec<u64>) -> Self {
        Self {
            version: VERSION,
            stored_up_to,
            next_seq,
            removing,
            removed_through: BTreeMap::new(),
        }
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The checkpoint in `dir`; `Ok(None)` when there is none yet (a new store).
    pub fn load(dir: &Path) -> io::Result<Option<Self>> {
        let text = match std::fs::read(Self::path(dir)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let checkpoint: Self = serde_json::from_slice(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("checkpoint: {e}")))?;
        if checkpoint.version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("checkpoint version {} is not known", checkpoint.version),
            ));
        }
        Ok(Some(checkpoint))
    }

    /// Replaces the checkpoint in `dir`, durably.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let path = Self::path(dir);
        let tmp = crate::format::tmp_path(&path);
        let text = serde_json::to_vec(self).expect("a checkpoint serializes");
        let file = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut &file, &text)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir)
    }
}

/// The checkpoint as last saved and the file numbers handed out, shared by the writer's
/// flushes and the maintenance thread's compactions, which save checkpoints one at a time.
#[derive(Debug)]
pub(crate) struct Commits {
    saved: Mutex<Checkpoint>,
    next_seq: AtomicU64,
    /// What the next checkpoint says retention removed: apart from `saved`, whose lock a flush
    /// holds while it writes, so that reading it never waits for a flush.
    removed_through: Mutex<BTreeMap<String, (u64, u32)>>,
}

impl Commits {
    pub fn new(checkpoint: Checkpoint) -> Self {
        Self {
            next_seq: AtomicU64::new(checkpoint.next_seq),
            removed_through: Mutex::new(checkpoint.removed_through.clone()),
            saved: Mutex::new(checkpoint),
        }
    }

    /// The last event of `tenant`'s that retention removed, as far as the store knows.
    pub fn removed_through(&self, tenant: &str) -> Option<EventPosition> {
        let removed = self.removed_through.lock().expect("removed lock");
        let &(record, index) = removed.get(tenant)?;
        Some(EventPosition::new(Position::new(record), index))
    }

    /// Notes that retention removed `tenant`'s event at `position`; every checkpoint saved from
    /// now on says so. Noted before the checkpoint that withdraws the event's file is saved.
    pub fn note_removed(&self, tenant: &str, position: EventPosition) {
        let mut removed = self.removed_through.lock().expect("removed lock");
        let noted = (position.record.get(), position.index);
        let through = removed.entry(tenant.to_owned()).or_insert(noted);
        *through = (*through).max(noted);
    }

    /// A new file number.
    pub fn file_number(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Takes the right to save. A flush holds it from numbering its files to saving the
    /// checkpoint that covers them, so that no other save can make its files look finished
    /// before its `stored_up_to` is saved with them.
    pub fn lock(&self) -> CommitGuard<'_> {
        CommitGuard {
            next_seq: &self.next_seq,
            removed_through: &self.removed_through,
            saved: self.saved.lock().expect("checkpoint lock"),
        }
    }
}

/// The right to save the checkpoint (see [`Commits::lock`]).
pub(crate) struct CommitGuard<'a> {
    next_seq: &'a AtomicU64,
    removed_through: &'a Mutex<BTreeMap<String, (u64, u32)>>,
    saved: MutexGuard<'a, Checkpoint>,
}

impl CommitGuard<'_> {
    /// The checkpoint as last saved.
    pub fn saved(&self) -> &Checkpoint {
        &self.saved
    }

    /// Saves a checkpoint in `dir`: `stored_up_to`, every file number handed out so far, the
    /// withdrawn files in `removing`, and what retention removed as noted so far.
    pub fn save(&mut self, dir: &Path, stored_up_to: u64, removing: Vec<u64>) -> io::Result<()> {
        let mut next =
            Checkpoint::new(stored_up_to, self.next_seq.load(Ordering::SeqCst), removing);
        next.removed_through = self.removed_through.lock().expect("removed lock").clone();
        next.save(dir)?;
        *self.saved = next;
        Ok(())
    }
}

/// Makes the names in `dir` (files created, renamed or removed) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
