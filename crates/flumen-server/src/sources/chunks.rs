//! The chunk ledger: remembers Forward `chunk` ids so that a resent chunk is acknowledged
//! without being stored twice.
//!
//! A sender that did not get its `{"ack": chunk}` in time — because the connection broke, or
//! flumen restarted — sends the same chunk again with the same id, possibly on another
//! connection. The ledger maps each recent id to the outcome of its first append: a resend of a
//! durable chunk is acknowledged at once; a resend of a chunk still on its way to disk waits for
//! that first append and shares its acknowledgement; a resend of a chunk whose append failed is
//! appended anew.
//!
//! A chunk is known by its id *and its contents* (length and CRC32C of its entries): a resend
//! carries the very same bytes, while ids alone are not unique in practice — Debian's
//! fluent-logger-golang, built with Go 1.19, draws them from an unseeded generator, so every
//! process sends the same sequence of ids. Two chunks with the same id and different events are
//! both stored.
//!
//! The ledger is bounded (oldest ids are forgotten first) and survives restarts: chunk ids are
//! stored in every batch's header in the log, and [`ChunkLedger::rebuild`] reads them back (with
//! the entries they are checked against) from the newest segments on start.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use flumen_event::batch::FINGERPRINT_LEN;
use flumen_wal::{Wal, WalError};
use tokio::sync::watch;

/// What became of a chunk's first append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Appended, not durable yet.
    Pending,
    /// Durable: acknowledge.
    Durable,
    /// The append failed: do not acknowledge; a resend is appended anew.
    Failed,
}

/// Waits for a chunk's outcome: resolves to true when it may be acknowledged.
#[derive(Debug, Clone)]
pub struct ChunkAck(watch::Receiver<ChunkState>);

impl ChunkAck {
    /// Follows the outcome `sender` will publish.
    pub fn of(sender: &watch::Sender<ChunkState>) -> Self {
        Self(sender.subscribe())
    }

    /// Waits for the first append's outcome; true if durable.
    pub async fn durable(&mut self) -> bool {
        match self.0.wait_for(|state| *state != ChunkState::Pending).await {
            Ok(state) => *state == ChunkState::Durable,
            // The first append's watcher is gone without an outcome: do not acknowledge.
            Err(_) => false,
        }
    }
}

/// Whether a chunk id is new.
#[derive(Debug)]
pub enum Claim {
    /// First time (or the first attempt failed): append it, then publish its outcome here.
    New(watch::Sender<ChunkState>),
    /// Seen before: wait on this instead of appending.
    Seen(ChunkAck),
}

#[derive(Debug, Default)]
struct Ids {
    by_id: HashMap<Box<[u8]>, watch::Receiver<ChunkState>>,
    order: VecDeque<Box<[u8]>>,
}

/// Recent chunk ids per tenant and what became of them.
#[derive(Debug)]
pub struct ChunkLedger {
    ids: Mutex<Ids>,
    capacity: usize,
}

impl ChunkLedger {
    /// A ledger remembering the `capacity` most recent ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: Mutex::new(Ids::default()),
            capacity: capacity.max(1),
        }
    }

    /// A ledger holding the chunk ids of the log's two newest segments.
    pub fn rebuild(wal: &Wal, capacity: usize) -> Result<Self, WalError> {
        let ledger = Self::new(capacity);
        {
            let mut ids = ledger.ids.lock().expect("ledger lock");
            super::each_recent_batch(wal, 2, |_, batch| {
                if batch.chunk_id.is_empty() {
                    return;
                }
                let fingerprint = match batch.received_fingerprint {
                    Some(stored) => stored.try_into().expect("the batch format's length"),
                    None => fingerprint(batch.entries),
                };
                ids.insert(
                    key(batch.tenant, batch.chunk_id, &fingerprint),
                    watch::channel(ChunkState::Durable).1,
                    ledger.capacity,
                );
            })?;
        }
        Ok(ledger)
    }

    /// How many ids the ledger holds.
    pub fn len(&self) -> usize {
        self.ids.lock().expect("ledger lock").by_id.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a chunk up by id and contents, claiming it if it is new.
    pub fn claim(&self, tenant: &str, chunk: &[u8], entries: &[u8]) -> Claim {
        let key = key(tenant, chunk, &fingerprint(entries));
        // One lock for the look-up and the claim, so that two copies of a chunk arriving at
        // once on two connections are not both new.
        let mut ids = self.ids.lock().expect("ledger lock");
        if let Some(state) = ids.by_id.get(&key) {
            let usable = match *state.borrow() {
                ChunkState::Durable => true,
                // Still pending with nobody left to report its outcome: the append failed
                // before it reached the log.
                ChunkState::Pending => state.has_changed().is_ok(),
                ChunkState::Failed => false,
            };
            if usable {
                return Claim::Seen(ChunkAck(state.clone()));
            }
        }
        let (sender, receiver) = watch::channel(ChunkState::Pending);
        ids.insert(key, receiver, self.capacity);
        Claim::New(sender)
    }
}

impl Ids {
    /// Remembers `key`, forgetting the oldest ids past `capacity`.
    fn insert(&mut self, key: Box<[u8]>, state: watch::Receiver<ChunkState>, capacity: usize) {
        if self.by_id.insert(key.clone(), state).is_none() {
            self.order.push_back(key);
        }
        while self.by_id.len() > capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
    }
}

/// A chunk's identity: tenant (ids are the senders'), id, and a fingerprint of its entries.
fn key(tenant: &str, chunk: &[u8], fingerprint: &[u8; FINGERPRINT_LEN]) -> Box<[u8]> {
    let mut key = Vec::with_capacity(tenant.len() + 1 + FINGERPRINT_LEN + chunk.len());
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(fingerprint);
    key.extend_from_slice(chunk);
    key.into_boxed_slice()
}

/// What tells two chunks with the same id apart: the length and CRC32C of their entries as
/// sent. Batches whose entries processing changed keep it in their header.
pub fn fingerprint(entries: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let mut out = [0u8; FINGERPRINT_LEN];
    out[..8].copy_from_slice(&(entries.len() as u64).to_le_bytes());
    out[8..].copy_from_slice(&crc32c::crc32c(entries).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resend_waits_for_the_first_append_and_shares_its_outcome() {
        let ledger = ChunkLedger::new(10);
        let Claim::New(first) = ledger.claim("default", b"c1", b"entries") else {
            panic!("new id")
        };
        let Claim::Seen(mut resend) = ledger.claim("default", b"c1", b"entries") else {
            panic!("seen id")
        };
        assert!(matches!(
            ledger.claim("other-tenant", b"c1", b"entries"),
            Claim::New(_)
        ));
        first.send_replace(ChunkState::Durable);
        assert!(resend.durable().await);
    }

    #[tokio::test]
    async fn a_failed_chunk_is_claimed_again() {
        let ledger = ChunkLedger::new(10);
        let Claim::New(first) = ledger.claim("default", b"c1", b"entries") else {
            panic!("new id")
        };
        let Claim::Seen(mut waiting) = ledger.claim("default", b"c1", b"entries") else {
            panic!("seen id")
        };
        first.send_replace(ChunkState::Failed);
        assert!(!waiting.durable().await);
        assert!(matches!(
            ledger.claim("default", b"c1", b"entries"),
            Claim::New(_)
        ));
    }

    #[test]
    fn the_same_id_with_other_events_is_a_new_chunk() {
        let ledger = ChunkLedger::new(10);
        let Claim::New(_first) = ledger.claim("default", b"c1", b"one") else {
            panic!("new")
        };
        assert!(matches!(
            ledger.claim("default", b"c1", b"one"),
            Claim::Seen(_)
        ));
        assert!(matches!(
            ledger.claim("default", b"c1", b"two"),
            Claim::New(_)
        ));
    }

    #[test]
    fn a_claim_abandoned_before_the_log_is_claimed_again() {
        let ledger = ChunkLedger::new(10);
        let Claim::New(first) = ledger.claim("default", b"c1", b"entries") else {
            panic!("new id")
        };
        drop(first);
        assert!(matches!(
            ledger.claim("default", b"c1", b"entries"),
            Claim::New(_)
        ));
    }

    #[test]
    fn the_oldest_ids_are_forgotten_first() {
        let ledger = ChunkLedger::new(2);
        let mut claims = Vec::new();
        for id in [b"a", b"b", b"c"] {
            let Claim::New(claim) = ledger.claim("t", id, b"entries") else {
                panic!("new id")
            };
            claims.push(claim);
        }
        assert_eq!(ledger.len(), 2);
        assert!(matches!(
            ledger.claim("t", b"c", b"entries"),
            Claim::Seen(_)
        ));
        assert!(matches!(ledger.claim("t", b"a", b"entries"), Claim::New(_)));
    }
}
