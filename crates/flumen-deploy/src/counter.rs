//! Counting events towards deployments: a reader of the durable log that reads each event's
//! `deployment_id` and level straight from its msgpack bytes and, for the deployments it
//! knows, adds them up by level with the first and last event's time.
//!
//! Counts go to the catalogue about once a second, in one transaction with how far the log
//! was read (per node), so a restart counts every event once. While the database is away the
//! counter goes on reading and keeps its sums in memory — the log is never held back by it —
//! and writes them when the database is back. Sums not yet written are shown by
//! [`DeploymentCounter::pending`], so the API's figures are live.
//!
//! The counter reads the log without a cursor of its own: if flumen stops while the database
//! is away for longer than the log keeps its records, the events that left the log meanwhile
//! are not counted (a warning says how many records).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use flumen_event::{BatchRef, TenantId};
use flumen_parse::Level;
use flumen_store::raw_fields::{scalar_text, scan_raw_fields};
use flumen_wal::{Position, Read, Wal, WalRecord};
use tokio::sync::watch;

use crate::Catalogue;
use crate::model::EventCounts;

/// The tag of the events flumen itself logs when a deployment starts and finishes; they are
/// not counted towards it.
pub const MARKER_TAG: &str = "flumen.deployment";

/// How often counts are written to the catalogue.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait before trying an unavailable database again.
const RETRY: Duration = Duration::from_secs(2);
const READ_RECORDS: usize = 256;
const READ_BYTES: usize = 4 << 20;

/// A level's name in counts: lower case, as most senders and Loki write levels.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
        Level::Fatal => "fatal",
    }
}

/// The field that names an event's deployment.
pub const DEPLOYMENT_FIELD: &str = "deployment_id";

/// The counter's shared state: the deployments that count, and sums not written yet.
#[derive(Debug)]
pub struct DeploymentCounter {
    known: RwLock<HashSet<String>>,
    pending: Mutex<HashMap<String, EventCounts>>,
    field_finder: memchr::memmem::Finder<'static>,
}

impl Default for DeploymentCounter {
    fn default() -> Self {
        Self {
            known: RwLock::default(),
            pending: Mutex::default(),
            field_finder: memchr::memmem::Finder::new(DEPLOYMENT_FIELD.as_bytes()),
        }
    }
}

impl DeploymentCounter {
    /// Events naming `id` count from now on.
    pub fn know(&self, id: &str) {
        self.known
            .write()
            .expect("known deployments lock")
            .insert(id.to_owned());
    }

    /// The deployments that count are exactly `ids`.
    pub fn know_only(&self, ids: HashSet<String>) {
        *self.known.write().expect("known deployments lock") = ids;
    }

    /// What was counted towards `id` and not written to the catalogue yet.
    pub fn pending(&self, id: &str) -> Option<EventCounts> {
        self.pending
            .lock()
            .expect("pending counts lock")
            .get(id)
            .cloned()
    }

    /// Counts the events of `record` towards the deployments they name.
    fn count(&self, record: &WalRecord) {
        let Ok(batch) = BatchRef::parse(&record.payload) else {
            return;
        };
        if batch.tenant != TenantId::DEFAULT_NAME || batch.tag == MARKER_TAG {
            return;
        }
        let known = self.known.read().expect("known deployments lock");
        // Most records name no deployment: one search of the bytes rules them out.
        if known.is_empty() || self.field_finder.find(&record.payload).is_none() {
            return;
        }
        let names = [DEPLOYMENT_FIELD.to_owned(), "level".to_owned()];
        let mut counted: Vec<(String, &'static str, u64)> = Vec::new();
        for entry in batch.iter().map_while(Result::ok) {
            let (mut id, mut level) = (None, "");
            scan_raw_fields(entry.record, &names, |index, value| {
                let Some(text) = scalar_text(value) else {
                    return;
                };
                if index == 0 {
                    id = Some(text);
                } else {
                    level = Level::parse(&text).map_or("", level_name);
                }
            });
            if let Some(id) = id.filter(|id| known.contains(id.as_ref())) {
                let time = u64::try_from(entry.time.as_unix_nanos()).unwrap_or(u64::MAX);
                counted.push((id.into_owned(), level, time));
            }
        }
        drop(known);
        if counted.is_empty() {
            return;
        }
        metrics::counter!("flumen_deployment_events_counted_total").increment(counted.len() as u64);
        let mut pending = self.pending.lock().expect("pending counts lock");
        for (id, level, time) in counted {
            pending.entry(id).or_default().add(level, 1, time, time);
        }
    }

    fn take_pending(&self) -> HashMap<String, EventCounts> {
        std::mem::take(&mut *self.pending.lock().expect("pending counts lock"))
    }

    /// Puts back sums that could not be written.
    fn restore(&self, unwritten: HashMap<String, EventCounts>) {
        let mut pending = self.pending.lock().expect("pending counts lock");
        for (id, counts) in unwritten {
            pending.entry(id).or_default().merge(&counts);
        }
    }

    /// Reads the log and counts until `stop` turns true; writes what it counted last.
    pub async fn run(
        self: Arc<Self>,
        catalogue: Arc<Catalogue>,
        wal: Arc<Wal>,
        node: String,
        mut stop: watch::Receiver<bool>,
    ) {
        // Where this node stopped counting; the log's end the first time.
        let start = loop {
            match catalogue.counted_up_to(&node).await {
                Ok(next) => break next.map_or_else(|| wal.durable_end(), Position::new),
                Err(error) => {
                    tracing::warn!(message = "Cannot count deployments' events yet.", %error);
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        let mut reader = wal.reader_at(start);
        let mut committed = start;
        let mut commit_due = tokio::time::Instant::now() + COMMIT_INTERVAL;
        loop {
            let stopping = *stop.borrow();
            if stopping || tokio::time::Instant::now() >= commit_due {
                let next = reader.position();
                if next > committed {
                    let counted = self.take_pending();
                    match catalogue.add_counts(&node, next.get(), &counted).await {
                        Ok(()) => committed = next,
                        Err(error) => {
                            tracing::debug!(message = "Deployment counts not written yet.", %error);
                            self.restore(counted);
                        }
                    }
                }
                commit_due = tokio::time::Instant::now()
                    + if next > committed {
                        RETRY
                    } else {
                        COMMIT_INTERVAL
                    };
                if stopping {
                    return;
                }
            }
            match reader.read(READ_RECORDS, READ_BYTES).await {
                Ok(Read::Records(records)) if records.is_empty() => {
                    tokio::select! {
                        _ = reader.wait() => {}
                        _ = tokio::time::sleep_until(commit_due) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
                Ok(Read::Records(records)) => records.iter().for_each(|r| self.count(r)),
                Ok(Read::Removed { from, to }) => tracing::warn!(
                    message = "Log records left the log before their events were counted towards deployments.",
                    records = to.get().saturating_sub(from.get())
                ),
                Err(error) => {
                    tracing::warn!(message = "Deployment counting cannot read the log.", %error);
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            }
        }
    }
}
