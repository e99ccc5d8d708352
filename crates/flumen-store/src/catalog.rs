//! The catalog: every chunk file's footer, in memory, by tenant.
//!
//! Queries take a snapshot (an `Arc` of the catalog as it is) and read the files in it while
//! flushes, compaction and retention publish new catalogs. A file that compaction or retention
//! removes is marked obsolete and unlinked when the last snapshot holding it is dropped, so a
//! query never finds a file gone under it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::checkpoint::Checkpoint;
use crate::format::{self, FileFooter};

/// One chunk file.
#[derive(Debug)]
pub(crate) struct FileEntry {
    pub path: PathBuf,
    pub footer: FileFooter,
    /// Its size on disk.
    pub size: u64,
    /// The earliest and latest event time in it.
    pub min_time: u64,
    pub max_time: u64,
    /// Set when the file is withdrawn: the files still to unlink, which it leaves once it is.
    withdrawn: OnceLock<Arc<Withdrawn>>,
}

/// The numbers of files withdrawn from the catalog and not yet unlinked: the checkpoint lists
/// them, so that a crash cannot bring one back.
#[derive(Debug, Default)]
pub(crate) struct Withdrawn(Mutex<BTreeSet<u64>>);

impl Withdrawn {
    /// The files still to unlink.
    pub fn list(&self) -> Vec<u64> {
        self.0
            .lock()
            .expect("withdrawn lock")
            .iter()
            .copied()
            .collect()
    }
}

impl FileEntry {
    pub fn new(path: PathBuf, footer: FileFooter, size: u64) -> Self {
        let min_time = footer.chunks.iter().map(|c| c.min_time).min().unwrap_or(0);
        let max_time = footer.chunks.iter().map(|c| c.max_time).max().unwrap_or(0);
        Self {
            path,
            footer,
            size,
            min_time,
            max_time,
            withdrawn: OnceLock::new(),
        }
    }

    /// Opens the file to read chunks.
    pub fn open(&self) -> io::Result<File> {
        File::open(&self.path)
    }

    /// Removes the file once no snapshot holds it any more.
    fn withdraw(&self, withdrawn: &Arc<Withdrawn>) {
        withdrawn
            .0
            .lock()
            .expect("withdrawn lock")
            .insert(self.footer.seq);
        let _ = self.withdrawn.set(withdrawn.clone());
    }

    /// True when events in `[start, end)` may be in this file.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.min_time < end && self.max_time >= start
    }
}

impl Drop for FileEntry {
    fn drop(&mut self) {
        if let Some(withdrawn) = self.withdrawn.get() {
            match std::fs::remove_file(&self.path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(message = "Could not remove a store file; it is removed at the next start.", path = %self.path.display(), %error);
                }
                _ => {
                    withdrawn
                        .0
                        .lock()
                        .expect("withdrawn lock")
                        .remove(&self.footer.seq);
                }
            }
            // Removes the partition's directory once it is empty; fails harmlessly otherwise.
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The files of every tenant, each tenant's in (hour, seq) order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Catalog {
    pub tenants: BTreeMap<String, Vec<Arc<FileEntry>>>,
}

impl Catalog {
    /// The files of `tenant`, oldest partition first.
    pub fn files(&self, tenant: &str) -> &[Arc<FileEntry>] {
        self.tenants.get(tenant).map_or(&[], Vec::as_slice)
    }

    /// Every file.
    pub fn all(&self) -> impl Iterator<Item = &Arc<FileEntry>> {
        self.tenants.values().flatten()
    }

    /// The bytes on disk.
    pub fn size(&self) -> u64 {
        self.all().map(|f| f.size).sum()
    }

    fn sort(files: &mut [Arc<FileEntry>]) {
        files.sort_by_key(|f| (f.footer.hour, f.footer.seq));
    }
}

/// The published catalog.
#[derive(Debug, Default)]
pub(crate) struct SharedCatalog {
    current: RwLock<Arc<Catalog>>,
    withdrawn: Arc<Withdrawn>,
}

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            current: RwLock::new(Arc::new(catalog)),
            withdrawn: Arc::default(),
        }
    }

    /// The catalog as it is now.
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.read().expect("catalog lock").clone()
    }

    /// Files withdrawn and maybe still on disk.
    pub fn withdrawn(&self) -> Vec<u64> {
        self.withdrawn.list()
    }

    /// Publishes `added` and withdraws the files numbered in `removed` (which are unlinked
    /// once no snapshot holds them).
    pub fn publish(&self, added: Vec<Arc<FileEntry>>, removed: &BTreeSet<u64>) {
        let mut slot = self.current.write().expect("catalog lock");
        let mut next = Catalog::clone(&slot);
        if !removed.is_empty() {
            for files in next.tenants.values_mut() {
                files.retain(|f| {
                    let gone = removed.contains(&f.footer.seq);
                    if gone {
                        f.withdraw(&self.withdrawn);
                    }
                    !gone
                });
            }
            next.tenants.retain(|_, files| !files.is_empty());
        }
        for file in added {
            next.tenants
                .entry(file.footer.tenant.clone())
                .or_default()
                .push(file);
        }
        for files in next.tenants.values_mut() {
            Catalog::sort(files);
        }
        *slot = Arc::new(next);
    }
}

/// What opening the store's files found.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub catalog: Catalog,
    /// Files that could not be read and were set aside.
    pub corrupt: usize,
    /// The highest position stored in any file, for a store whose checkpoint is lost.
    pub last_record: Option<u64>,
}

/// Reads every chunk file under `dir`: removes temporary files, files of a flush that did not
/// finish (numbered `next_seq` or more), files a finished compaction replaced and files the
/// checkpoint lists as withdrawn (`removing`); sets aside (renames to `.corrupt`) files whose
/// footer does not check out.
pub(crate) fn load(dir: &Path, checkpoint: Option<&Checkpoint>) -> io::Result<Loaded> {
    let next_seq = checkpoint.map(|c| c.next_seq);
    let removing: BTreeSet<u64> =
        checkpoint.map_or_else(BTreeSet::new, |c| c.removing.iter().copied().collect());
    let mut found = Vec::new();
    for tenant in read_dirs(dir)? {
        for partition in read_dirs(&tenant)? {
            for entry in std::fs::read_dir(&partition)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".tmp") {
                    remove(&path)?;
                } else if let Some(seq) = format::parse_file_name(name) {
                    found.push((seq, path));
                }
            }
        }
    }
    let mut loaded = Loaded::default();
    let mut entries = Vec::new();
    for (seq, path) in found {
        if next_seq.is_some_and(|next| seq >= next) {
            tracing::info!(message = "Removing a store file of a flush that did not finish.", path = %path.display());
            remove(&path)?;
            continue;
        }
        if removing.contains(&seq) {
            remove(&path)?;
            continue;
        }
        let read = File::open(&path).and_then(|file| {
            let footer = format::read_footer(&file)?;
            Ok((footer, file.metadata()?.len()))
        });
        match read {
            Ok((footer, size)) if footer.seq == seq => {
                entries.push(FileEntry::new(path, footer, size))
            }
            Ok(_) | Err(_) => {
                let why = read
                    .err()
                    .map_or("its footer names another file".to_owned(), |e| {
                        e.to_string()
                    });
                tracing::error!(message = "A store file is damaged; set aside, its events are not searchable.", path = %path.display(), error = %why);
                metrics::counter!("flumen_store_corrupt_files_total").increment(1);
                loaded.corrupt += 1;
                let mut aside = path.clone().into_os_string();
                aside.push(".corrupt");
                std::fs::rename(&path, aside)?;
            }
        }
    }
    let replaced: BTreeSet<u64> = entries
        .iter()
        .flat_map(|e| e.footer.replaces.iter().copied())
        .collect();
    for entry in entries {
        if replaced.contains(&entry.footer.seq) {
            remove(&entry.path)?;
            continue;
        }
        let last = entry.footer.chunks.iter().map(|c| c.last.0).max();
        loaded.last_record = loaded.last_record.max(last);
        loaded
            .catalog
            .tenants
            .entry(entry.footer.tenant.clone())
            .or_default()
            .push(Arc::new(entry));
    }
    for files in loaded.catalog.tenants.values_mut() {
        Catalog::sort(files);
    }
    Ok(loaded)
}

fn read_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ChunkMeta, FileFooter};

    /// Writes an empty-chunked file numbered `seq` into `dir`, replacing `replaces`.
    fn write(dir: &Path, seq: u64, replaces: Vec<u64>) -> PathBuf {
        let partition = dir.join("default").join(format::partition_dir_name(0));
        std::fs::create_dir_all(&partition).unwrap();
        let path = partition.join(format::file_name(seq));
        let chunk = ChunkMeta {
            labels: Vec::new(),
            min_time: 1,
            max_time: 2,
            first: (seq, 0),
            last: (seq, 0),
            count: 1,
            offset: 0,
            head_len: 0,
            len: 0,
            head_raw_len: 0,
            raw_len: 0,
            head_crc: 0,
            crc: 0,
            filter: None,
            string_lines: true,
        };
        let footer = FileFooter {
            tenant: "default".into(),
            hour: 0,
            seq,
            tier: 0,
            replaces,
            chunks: Vec::new(),
        };
        let mut file = format::FileWriter::create(&path).unwrap();
        file.push(chunk, &format::SealedChunk::default()).unwrap();
        file.finish(footer).unwrap();
        path
    }

    fn seqs(loaded: &Loaded) -> Vec<u64> {
        loaded.catalog.all().map(|f| f.footer.seq).collect()
    }

    #[test]
    fn a_file_withdrawn_while_a_search_held_it_is_removed_after_a_crash_even_two_compactions_later()
    {
        let dir = tempfile::tempdir().unwrap();
        // A search held file 0 while compaction 1 replaced it, and compaction 2 replaced 1;
        // then the process died: 0 is still on disk, and no file on disk names it.
        let held = write(dir.path(), 0, Vec::new());
        write(dir.path(), 2, vec![1]);
        let checkpoint = Checkpoint::new(1, 3, vec![0]);
        let loaded = load(dir.path(), Some(&checkpoint)).unwrap();
        assert_eq!(seqs(&loaded), vec![2]);
        assert!(!held.exists());
    }

    #[test]
    fn a_withdrawn_file_stays_listed_until_the_last_snapshot_holding_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0, Vec::new());
        let catalog = SharedCatalog::new(load(dir.path(), None).unwrap().catalog);
        let snapshot = catalog.snapshot();
        catalog.publish(Vec::new(), &BTreeSet::from([0]));
        assert_eq!(catalog.withdrawn(), vec![0]);
        assert!(path.exists(), "a search still reads it");
        drop(snapshot);
        assert!(!path.exists());
        assert!(catalog.withdrawn().is_empty());
    }
}
