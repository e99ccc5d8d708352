//! Retention: what the maintenance thread removes every half minute, by age and by size.
//!
//! A tenant's partitions are removed whole once their hour ended longer ago than the tenant's
//! `max_age`, and the oldest go while the tenant's files take more than its `max_bytes`. A
//! deployment may have a retention of its own ([`Store::set_deployment_retention`]), longer
//! or shorter than its tenant's; its events are found by their `deployment_id`. A partition
//! that it concerns is **thinned** instead: rewritten by compaction's merge without the
//! events whose retention expired for its hour.
//!
//! - Past the tenant's `max_age`, a partition whose chunk filters say it may hold events of a
//!   deployment still kept for that hour is rewritten with only those events; without any, it
//!   is removed whole, as before.
//! - Within the tenant's `max_age`, a partition whose chunk filters say it may hold events of
//!   a deployment whose own retention expired for that hour is rewritten without them.
//!
//! Filters are checked before anything is read, so that a partition no such deployment wrote
//! to costs nothing; a chunk whose filter rules out every event to leave out is taken as it
//! is, and one whose filter rules out every event to keep is not read. Each file a rewrite
//! writes, or finds it need not change, is remembered with what it was filtered by (in memory:
//! after a restart each such partition is read once more, and written only if something is to
//! go), so that passes that change nothing rewrite nothing, filters' false positives included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::catalog::{Catalog, FileEntry};
use crate::compaction::{Merger, is_interrupted, top_tier};
use crate::format::{ChunkMeta, index_key};
use crate::position::EventPosition;
use crate::{RemovedSpan, Retention, Store};

/// The field that names an event's deployment.
pub(crate) const DEPLOYMENT_FIELD: &str = "deployment_id";

/// How long after its hour each listed deployment's events are kept.
pub(crate) type DeploymentRetention = HashMap<String, Duration>;

/// Which events a retention rewrite keeps, by their deployment; also what a file it wrote, or
/// found it need not change, holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Only the events of these deployments: the partition is past its tenant's retention.
    Only(BTreeSet<String>),
    /// Every event but those of these deployments, whose own retention expired.
    AllBut(BTreeSet<String>),
}

/// Files of one partition to rewrite, and what the rewrite keeps.
type Thinning = (Vec<Arc<FileEntry>>, Keep);

/// What becomes of a chunk's (or a file's) events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// All kept.
    Kept,
    /// None kept.
    LeftOut,
    /// Each event decides, by its deployment.
    Decide,
}

impl Keep {
    /// Whether an event of `deployment` (`None`: of none) is kept.
    pub fn keeps(&self, deployment: Option<&str>) -> bool {
        match self {
            Self::Only(kept) => deployment.is_some_and(|d| kept.contains(d)),
            Self::AllBut(gone) => !deployment.is_some_and(|d| gone.contains(d)),
        }
    }

    /// What becomes of the events of a chunk; `may_hold(d)` is false when it certainly holds
    /// no event of deployment `d`.
    pub fn fate(&self, may_hold: impl Fn(&str) -> bool) -> Fate {
        match self {
            Self::Only(kept) if !kept.iter().any(|d| may_hold(d)) => Fate::LeftOut,
            Self::AllBut(gone) if !gone.iter().any(|d| may_hold(d)) => Fate::Kept,
            _ => Fate::Decide,
        }
    }

    /// True when a file this filtered holds no event of `deployment`.
    fn excludes(&self, deployment: &str) -> bool {
        match self {
            Self::Only(kept) => !kept.contains(deployment),
            Self::AllBut(gone) => gone.contains(deployment),
        }
    }
}

/// Which events of the partition of `hour` retention keeps at `now_secs`; `None` for all.
fn keep_for(
    hour: u64,
    tenant: Retention,
    deployments: &DeploymentRetention,
    now_secs: u64,
) -> Option<Keep> {
    let hour_end = (hour + 1) * 3600;
    let expired = |kept_for: Duration| hour_end.saturating_add(kept_for.as_secs()) < now_secs;
    let deployments_where = |is_expired: bool| {
        deployments
            .iter()
            .filter(|&(_, &kept_for)| expired(kept_for) == is_expired)
            .map(|(deployment, _)| deployment.clone())
            .collect::<BTreeSet<_>>()
    };
    if tenant.max_age.is_some_and(expired) {
        return Some(Keep::Only(deployments_where(false)));
    }
    let gone = deployments_where(true);
    (!gone.is_empty()).then_some(Keep::AllBut(gone))
}

impl Store {
    /// Deployments whose events are kept longer or shorter than their tenant's retention:
    /// deployment_id -> how long after its hour its events are kept. Replaces the previous map;
    /// the maintenance thread's retention pass applies it.
    ///
    /// It is not saved: whoever sets it sets it again after a restart. A longer retention
    /// keeps only what is still stored when it is set.
    pub fn set_deployment_retention(&self, retention: HashMap<String, Duration>) {
        metrics::gauge!("flumen_store_deployment_retentions").set(retention.len() as f64);
        *self
            .deployment_retention
            .lock()
            .expect("deployment retention lock") = Some(Arc::new(retention));
    }

    /// Holds retention by age back until [`Store::set_deployment_retention`] is first called;
    /// retention by size goes on. Called before the store's maintenance starts by whoever
    /// sets deployments' retention, so that a restart does not remove, before the map is
    /// known again, the partitions a deployment kept longer than its tenant still needs.
    pub fn await_deployment_retention(&self) {
        *self
            .deployment_retention
            .lock()
            .expect("deployment retention lock") = None;
    }

    /// Removes partitions past their tenant's retention, by age, then by size, oldest first;
    /// thins those that deployments' own retention concerns (see `retention.rs`).
    ///
    /// The maintenance thread does this every half minute.
    pub fn apply_retention(&self, now: SystemTime) {
        let _turn = self.maintenance_turn();
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let deployments = self
            .deployment_retention
            .lock()
            .expect("deployment retention lock")
            .clone();
        let catalog = self.catalog.snapshot();
        // Without the deployments' map, age waits: by size alone, nothing is kept longer.
        let (removed, thin) = match &deployments {
            Some(deployments) => self.past_age(&catalog, deployments, now_secs),
            None => (BTreeSet::new(), Vec::new()),
        };
        self.remove_by_retention(&catalog, &removed);
        drop(catalog);
        self.thin_partitions(thin);
        let catalog = self.catalog.snapshot();
        let removed = self.over_max_bytes(&catalog);
        self.remove_by_retention(&catalog, &removed);
        drop(catalog);
        let catalog = self.catalog.snapshot();
        self.thinned
            .lock()
            .expect("thinned lock")
            .retain(|seq, _| catalog.all().any(|f| f.footer.seq == *seq));
        metrics::gauge!("flumen_store_files").set(catalog.all().count() as f64);
        metrics::gauge!("flumen_store_disk_bytes").set(catalog.size() as f64);
    }

    /// The files retention by age removes whole, and the groups of a partition's files it
    /// thins, each with what it keeps.
    fn past_age(
        &self,
        catalog: &Catalog,
        deployments: &DeploymentRetention,
        now_secs: u64,
    ) -> (BTreeSet<u64>, Vec<Thinning>) {
        let mut removed = BTreeSet::new();
        let mut thin = Vec::new();
        for (tenant, files) in &catalog.tenants {
            let retention = self.config.retention_of(tenant);
            for partition in files.chunk_by(|a, b| a.footer.hour == b.footer.hour) {
                let hour = partition[0].footer.hour;
                let Some(keep) = keep_for(hour, retention, deployments, now_secs) else {
                    continue;
                };
                let mut rewrite = Vec::new();
                for file in partition {
                    match self.file_fate(file, &keep) {
                        Fate::Kept => {}
                        Fate::LeftOut => {
                            removed.insert(file.footer.seq);
                        }
                        Fate::Decide => rewrite.push(file.clone()),
                    }
                }
                if !rewrite.is_empty() {
                    thin.push((rewrite, keep));
                }
            }
        }
        (removed, thin)
    }

    /// What becomes of `file`'s events under `keep`, from its chunks' filters and what an
    /// earlier rewrite left in it.
    fn file_fate(&self, file: &FileEntry, keep: &Keep) -> Fate {
        let thinned = self.thinned.lock().expect("thinned lock");
        let known = thinned.get(&file.footer.seq);
        let holds = |deployment: &str| {
            !known.is_some_and(|k| k.excludes(deployment))
                && file
                    .footer
                    .chunks
                    .iter()
                    .any(|c| self.may_hold(c, deployment))
        };
        match (keep, known) {
            // Events of other deployments, or of none, cannot be ruled out by filters: only by
            // an earlier rewrite that kept no more than some deployments.
            (Keep::Only(kept), Some(Keep::Only(before))) => match keep.fate(holds) {
                Fate::Decide if before.iter().all(|d| kept.contains(d) || !holds(d)) => Fate::Kept,
                fate => fate,
            },
            (Keep::Only(_), _) => keep.fate(holds),
            (Keep::AllBut(_), _) => keep.fate(holds),
        }
    }

    /// False when the chunk certainly holds no event of `deployment` (always true when the
    /// deployment field is not indexed).
    pub(crate) fn may_hold(&self, chunk: &ChunkMeta, deployment: &str) -> bool {
        !self
            .config
            .indexed_fields
            .iter()
            .any(|f| f == DEPLOYMENT_FIELD)
            || chunk.may_contain(index_key(DEPLOYMENT_FIELD, deployment))
    }

    /// Rewrites each group of a partition's files keeping what its `Keep` keeps.
    fn thin_partitions(&self, thin: Vec<Thinning>) {
        if thin.is_empty() {
            return;
        }
        let mut merger = match Merger::new(self) {
            Ok(merger) => merger,
            Err(error) => {
                tracing::warn!(message = "Retention cannot rewrite store files now; it tries again later.", %error);
                return;
            }
        };
        for (files, keep) in thin {
            let tenant = files[0].footer.tenant.clone();
            let tier = top_tier(&files).saturating_add(1);
            let merged = match merger.merge(self, files.clone(), tier, Some(&keep)) {
                Ok(merged) => merged,
                Err(error) if is_interrupted(&error) => return,
                Err(error) => {
                    tracing::warn!(message = "Retention could not rewrite store files; it tries again later.", tenant, %error);
                    continue;
                }
            };
            let mut thinned = self.thinned.lock().expect("thinned lock");
            if merged.replaced {
                if let Some(written) = &merged.written {
                    thinned.insert(written.footer.seq, keep);
                }
            } else {
                for file in &files {
                    thinned.insert(file.footer.seq, keep.clone());
                }
            }
            drop(thinned);
            if let Some((first, last)) = merged.left_out.span {
                let events = merged.left_out.events;
                tracing::info!(
                    message = "Retention rewrote store files without events whose deployment's retention expired.",
                    tenant,
                    files = files.len(),
                    events
                );
                metrics::counter!("flumen_store_retention_rewritten_files_total")
                    .increment(files.len() as u64);
                metrics::counter!("flumen_store_retention_removed_events_total").increment(events);
                self.remember_span(
                    &tenant,
                    RemovedSpan {
                        first,
                        last,
                        events,
                    },
                );
            }
        }
    }

    /// The files of tenants over their `max_bytes`: whole partitions, oldest first.
    fn over_max_bytes(&self, catalog: &Catalog) -> BTreeSet<u64> {
        let mut removed = BTreeSet::new();
        for (tenant, files) in &catalog.tenants {
            let Some(max_bytes) = self.config.retention_of(tenant).max_bytes else {
                continue;
            };
            let mut total: u64 = files.iter().map(|f| f.size).sum();
            // Files are in hour order.
            let mut hours = files.chunk_by(|a, b| a.footer.hour == b.footer.hour);
            while total > max_bytes {
                let Some(partition) = hours.next() else { break };
                for file in partition {
                    removed.insert(file.footer.seq);
                    total -= file.size;
                }
            }
        }
        removed
    }

    /// Withdraws the files numbered in `removed`, with a checkpoint that says so saved first
    /// (as merges do), so that neither a crash brings them back nor a restart forgets from
    /// where the store holds every event (`held_from`).
    fn remove_by_retention(&self, catalog: &Catalog, removed: &BTreeSet<u64>) {
        if removed.is_empty() {
            return;
        }
        tracing::info!(
            message = "Retention removes store files.",
            files = removed.len()
        );
        metrics::counter!("flumen_store_retention_removed_files_total")
            .increment(removed.len() as u64);
        let mut last_removed: BTreeMap<&str, EventPosition> = BTreeMap::new();
        for (tenant, files) in &catalog.tenants {
            let removed_files = files.iter().filter(|f| removed.contains(&f.footer.seq));
            for chunk in removed_files.flat_map(|f| &f.footer.chunks) {
                let last = last_removed.entry(tenant).or_default();
                *last = (*last).max(chunk.last_position());
            }
        }
        let saved = {
            let mut commit = self.commits.lock();
            for (tenant, last) in last_removed {
                self.commits.note_removed(tenant, last);
            }
            let mut removing = self.catalog.withdrawn();
            removing.extend(removed);
            let stored_up_to = commit.saved().stored_up_to;
            commit.save(&self.dir, stored_up_to, removing)
        };
        if let Err(error) = saved {
            // Removed all the same, to free the disk: a crash before the next checkpoint brings
            // them back, and retention removes them again.
            tracing::warn!(message = "The store could not save its checkpoint before retention removed files.", %error);
        }
        self.remember_removed(catalog, removed);
        self.catalog.publish(Vec::new(), removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_keeps_what_each_retention_still_covers_at_its_hour() {
        let tenant = Retention {
            max_age: Some(Duration::from_secs(2 * 3600)),
            max_bytes: None,
        };
        let deployments = DeploymentRetention::from([
            ("long".to_owned(), Duration::from_secs(24 * 3600)),
            ("short".to_owned(), Duration::from_secs(1800)),
        ]);
        let names = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        // Hour 10 ended at 11 h: at 11 h 20 nothing expired; at 12 h the short deployment's
        // half hour has; at 14 h the tenant's two hours too; a day later, the long one's day.
        let at = |secs: u64| keep_for(10, tenant, &deployments, secs);
        assert_eq!(at(11 * 3600 + 1200), None);
        assert_eq!(at(12 * 3600), Some(Keep::AllBut(names(&["short"]))));
        assert_eq!(at(14 * 3600), Some(Keep::Only(names(&["long"]))));
        assert_eq!(at(36 * 3600), Some(Keep::Only(BTreeSet::new())));
        // Without a deployment, an event follows its tenant.
        let keep = Keep::Only(names(&["long"]));
        assert!(keep.keeps(Some("long")) && !keep.keeps(None) && !keep.keeps(Some("other")));
        let keep = Keep::AllBut(names(&["short"]));
        assert!(!keep.keeps(Some("short")) && keep.keeps(None) && keep.keeps(Some("other")));
    }
}
