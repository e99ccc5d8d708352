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
//! A chunk is known by its sender, its id *and its contents* (length and CRC32C of its
//! entries): a resend carries the very same bytes, while ids alone are not unique in practice —
//! Debian's fluent-logger-golang, built with Go 1.19, draws them from an unseeded generator, so
//! every process sends the same sequence of ids, and with whole-second times two replicas' first
//! chunks can be identical to the byte. The sender is its IP address (not its port: a resend
//! comes on a new connection), so two hosts never share a chunk while a host's resends after a
//! reconnect are still recognised. Two chunks with the same id and different events are both
//! stored.
//!
//! The ledger is bounded in entries and in bytes: a chunk is remembered by a keyed 128-bit
//! digest of what identifies it, never by the sender's id bytes (sources refuse ids over
//! [`MAX_CHUNK_ID_LEN`] bytes before they get here), and a claim whose chunk was refused is
//! forgotten. The oldest chunks are forgotten first. The ledger survives restarts: chunk ids and
//! origins are stored in every batch's header in the log, and [`ChunkLedger::rebuild`] reads
//! them back (with the entries they are checked against) from as many of the newest segments as
//! it takes to fill it, up to [`MAX_REBUILD_SEGMENTS`].
//!
//! Every chunk of every connection is claimed here, so a large ledger is split in up to
//! [`SHARDS`] shards by key, each with its own lock and its own share of the capacity, oldest
//! forgotten first within the shard: connections claiming chunks at once rarely wait for each
//! other, and both copies of a chunk still meet in one shard under one lock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use flumen_event::batch::FINGERPRINT_LEN;
use flumen_wal::{AppendTicket, SyncRequest, Wal, WalError};
use futures_util::FutureExt;
use futures_util::future::Shared;
use tokio::sync::watch;

/// The longest chunk id a sender may use. Fluentd's and Fluent Bit's ids are 16 random bytes
/// sent as 24 Base64 characters; the Go and Java loggers' are as long or shorter.
pub const MAX_CHUNK_ID_LEN: usize = 128;

/// The most segments a rebuild reads, newest first, to fill the ledger: bounds the start-up
/// time of a log of many segments with few chunk ids.
pub const MAX_REBUILD_SEGMENTS: usize = 64;

/// The most shards a ledger is split in.
pub const SHARDS: usize = 16;

/// The fewest chunks a shard remembers: a small ledger is one shard, whose oldest chunk is the
/// oldest of all.
const MIN_SHARE: usize = 1024;

/// What became of a chunk's first append.
#[derive(Debug, Clone)]
pub enum ChunkState {
    /// Not in the log yet (or its events are held by a joining filter).
    Pending,
    /// In the log: durable once this append is.
    Appended(AppendOutcome),
    /// Durable (or nothing of it was to be stored): acknowledge.
    Durable,
    /// The append failed: do not acknowledge; a resend is appended anew.
    Failed,
}

/// The outcome of one append, shared by every input whose events it carries (and by their
/// resends). Whoever waits for it first polls the log's ticket, the others are woken with its
/// result: settling an acknowledgement needs no task of its own.
#[derive(Clone)]
pub struct AppendOutcome {
    settled: Shared<Settled>,
    /// Asks the log for the append's sync before anyone awaits it.
    sync: Option<SyncRequest>,
}

impl AppendOutcome {
    /// The outcome of the append `ticket` stands for.
    pub fn of(ticket: AppendTicket) -> Self {
        Self {
            sync: ticket.sync_request(),
            settled: Settled(ticket).shared(),
        }
    }

    /// Waits until the append is durable; true if its inputs may be acknowledged.
    pub async fn durable(self) -> bool {
        self.settled.await
    }

    /// True once the append is known to have failed (without waiting).
    fn failed(&self) -> bool {
        self.settled.clone().now_or_never() == Some(false)
    }

    /// Asks a log with interval persistence to sync the append now.
    fn start_sync(&self) {
        if let Some(sync) = &self.sync {
            sync.ask();
        }
    }
}

impl std::fmt::Debug for AppendOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AppendOutcome")
            .field(&self.settled.peek())
            .finish()
    }
}

/// An append's ticket, resolving to whether its inputs may be acknowledged.
#[derive(Debug)]
struct Settled(AppendTicket);

impl Future for Settled {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        Pin::new(&mut self.0).poll(cx).map(|stored| match stored {
            // Dropped by the operator's `when_full = "drop_newest"`: acknowledged, counted.
            Ok(_) | Err(WalError::Dropped) => true,
            Err(_) => false,
        })
    }
}

/// Waits for a chunk's outcome: resolves to true when it may be acknowledged.
#[derive(Debug, Clone)]
pub struct ChunkAck(watch::Receiver<ChunkState>);

impl ChunkAck {
    /// Follows the outcome `sender` will publish.
    pub fn of(sender: &watch::Sender<ChunkState>) -> Self {
        Self(sender.subscribe())
    }

    /// Asks the log to make the append that carries this chunk durable now rather than at its
    /// next interval, because its sender waits for the acknowledgement: waiting only when the
    /// connection comes to this acknowledgement would leave the disk idle meanwhile. A chunk
    /// still held by a joining filter is in no append yet, and asks nothing.
    pub fn start_sync(&self) {
        let append = match &*self.0.borrow() {
            ChunkState::Appended(append) => append.clone(),
            _ => return,
        };
        append.start_sync();
    }

    /// Waits for the first append's outcome; true if durable.
    pub async fn durable(&mut self) -> bool {
        let state = match self
            .0
            .wait_for(|state| !matches!(state, ChunkState::Pending))
            .await
        {
            Ok(state) => state.clone(),
            // The first append's watcher is gone without an outcome: do not acknowledge.
            Err(_) => return false,
        };
        match state {
            ChunkState::Appended(append) => append.durable().await,
            ChunkState::Durable => true,
            ChunkState::Pending | ChunkState::Failed => false,
        }
    }
}

/// The chunks a connection has taken whose senders wait for their acknowledgement, oldest
/// first, bounded in bytes: a connection stops reading new frames while the queue
/// [`AckQueue::is_full`], so that a sender whose acks are held back (a joining filter holds a
/// line, the log syncs slowly) cannot grow it without end.
#[derive(Debug, Default)]
pub struct AckQueue {
    acks: VecDeque<(Vec<u8>, ChunkAck)>,
    bytes: usize,
}

impl AckQueue {
    /// The most bytes of waiting acknowledgements one connection keeps before it stops reading.
    pub const MAX_BYTES: usize = 8 * 1024 * 1024;
    /// What one waiting acknowledgement costs besides its chunk id (the queue's slot, the
    /// outcome channel).
    const ACK_COST: usize = 160;

    /// Queues the acknowledgement of `chunk`, due once `ack` resolves.
    pub fn push_back(&mut self, (chunk, ack): (Vec<u8>, ChunkAck)) {
        self.bytes += chunk.len() + Self::ACK_COST;
        self.acks.push_back((chunk, ack));
    }

    /// The oldest waiting acknowledgement.
    pub fn front_mut(&mut self) -> Option<&mut (Vec<u8>, ChunkAck)> {
        self.acks.front_mut()
    }

    /// Takes the oldest waiting acknowledgement.
    pub fn pop_front(&mut self) -> Option<(Vec<u8>, ChunkAck)> {
        let oldest = self.acks.pop_front()?;
        self.bytes -= oldest.0.len() + Self::ACK_COST;
        Some(oldest)
    }

    /// True when no acknowledgement waits.
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// True when the queue holds [`AckQueue::MAX_BYTES`] or more: read no more frames until
    /// acknowledgements go out.
    pub fn is_full(&self) -> bool {
        self.bytes >= Self::MAX_BYTES
    }
}

/// What identifies a chunk in the ledger: a digest of its tenant, origin, id and fingerprint.
pub type ChunkKey = u128;

/// What a chunk is: everything its key is made of.
#[derive(Debug, Clone, Copy)]
pub struct ChunkIdentity<'a> {
    /// The tenant (ids are the senders').
    pub tenant: &'a str,
    /// The sender's address as batches store it (empty when unknown).
    pub origin: &'a [u8],
    /// The sender's chunk id.
    pub id: &'a [u8],
}

/// Whether a chunk is new.
#[derive(Debug)]
pub enum Claim {
    /// First time (or the first attempt failed): append it, then publish its outcome here.
    New(Claimed),
    /// Seen before: wait on this instead of appending.
    Seen(ChunkAck),
}

/// A chunk claimed for appending.
#[derive(Debug)]
pub struct Claimed {
    /// Where the outcome of its append is published.
    pub outcome: watch::Sender<ChunkState>,
    /// Its key, to [`ChunkLedger::forget`] it if it is refused.
    pub key: ChunkKey,
    /// The fingerprint of its entries, computed for the key, for a batch header that keeps it.
    pub fingerprint: [u8; FINGERPRINT_LEN],
}

/// One shard of the ledger: its chunks, oldest forgotten first past its capacity.
#[derive(Debug, Default)]
struct Ids {
    /// Each chunk's outcome and when it was remembered.
    by_key: HashMap<ChunkKey, (u64, watch::Receiver<ChunkState>)>,
    /// Keys in the order they were remembered; an entry whose generation is no longer the
    /// key's in `by_key` is stale (forgotten or remembered again since).
    order: VecDeque<(ChunkKey, u64)>,
    generation: u64,
    /// The most chunks this shard remembers.
    capacity: usize,
}

/// Recent chunks per tenant and sender, and what became of them.
#[derive(Debug)]
pub struct ChunkLedger {
    /// The chunks, by key; each shard holds its share of the capacity.
    shards: Box<[Mutex<Ids>]>,
    capacity: usize,
    /// Two independently keyed SipHash instances make a 128-bit digest that senders cannot
    /// steer into collisions (their keys are random per process).
    digests: [RandomState; 2],
}

impl ChunkLedger {
    /// A ledger remembering up to `capacity` recent chunks: one shard of them all below
    /// 2,048, otherwise up to [`SHARDS`] shards of an equal share, each remembering its most
    /// recent chunks.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = (capacity / MIN_SHARE).clamp(1, SHARDS);
        let shards = (0..shards)
            .map(|shard| {
                // The remainder goes to the first shards, so that the shares add up.
                let share = capacity / shards + usize::from(shard < capacity % shards);
                Mutex::new(Ids {
                    capacity: share,
                    ..Ids::default()
                })
            })
            .collect();
        Self {
            shards,
            capacity,
            digests: [RandomState::new(), RandomState::new()],
        }
    }

    /// The shard that holds `key`. Keys are keyed digests, so their low bits spread chunks
    /// evenly over the shards.
    fn shard(&self, key: ChunkKey) -> std::sync::MutexGuard<'_, Ids> {
        let index = (key as u64 % self.shards.len() as u64) as usize;
        self.shards[index].lock().expect("ledger lock")
    }

    /// A ledger holding the chunks of the log's newest segments: two, then twice as many
    /// until it is full, the log has no more, or [`MAX_REBUILD_SEGMENTS`] were read — so that
    /// after a restart as many resends are recognised as before it.
    pub fn rebuild(wal: &Wal, capacity: usize) -> Result<Self, WalError> {
        let mut segments = 2;
        loop {
            let ledger = Self::from_segments(wal, segments, capacity)?;
            let deepest = segments >= MAX_REBUILD_SEGMENTS || segments >= wal.stats().segments;
            if deepest || ledger.len() >= ledger.capacity {
                return Ok(ledger);
            }
            segments = (segments * 2).min(MAX_REBUILD_SEGMENTS);
        }
    }

    /// A ledger holding the chunks of the log's `segments` newest segments.
    fn from_segments(wal: &Wal, segments: usize, capacity: usize) -> Result<Self, WalError> {
        let ledger = Self::new(capacity);
        // Stored chunks are durable: one receiver serves them all.
        let durable = watch::channel(ChunkState::Durable).1;
        crate::each_recent_batch(wal, segments, |_, batch| {
            if batch.chunk_id.is_empty() {
                return;
            }
            let fingerprint = match batch.received_fingerprint {
                Some(stored) => stored.try_into().expect("the batch format's length"),
                None => fingerprint(batch.entries),
            };
            let identity = ChunkIdentity {
                tenant: batch.tenant,
                origin: batch.origin,
                id: batch.chunk_id,
            };
            let key = ledger.key(&identity, &fingerprint);
            ledger.shard(key).insert(key, durable.clone());
        })?;
        Ok(ledger)
    }

    /// How many chunks the ledger holds.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().expect("ledger lock").by_key.len())
            .sum()
    }

    /// True when no chunk is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a chunk up by identity and contents, claiming it if it is new.
    pub fn claim(&self, chunk: &ChunkIdentity<'_>, entries: &[u8]) -> Claim {
        let fingerprint = fingerprint(entries);
        let key = self.key(chunk, &fingerprint);
        // One lock for the look-up and the claim, so that two copies of a chunk arriving at
        // once on two connections are not both new (the same key is always in the same shard).
        let mut ids = self.shard(key);
        if let Some((_, state)) = ids.by_key.get(&key)
            && usable(state)
        {
            return Claim::Seen(ChunkAck(state.clone()));
        }
        let (outcome, receiver) = watch::channel(ChunkState::Pending);
        ids.insert(key, receiver);
        Claim::New(Claimed {
            outcome,
            key,
            fingerprint,
        })
    }

    /// Forgets the chunk `key` unless it is durable or on its way (a refused chunk's claim,
    /// whose outcome sender is gone): what a sender sent that was not taken does not stay.
    pub fn forget(&self, key: ChunkKey) {
        let mut ids = self.shard(key);
        if ids
            .by_key
            .get(&key)
            .is_some_and(|(_, state)| !usable(state))
        {
            ids.by_key.remove(&key);
            ids.drop_stale_order();
        }
    }

    /// The key of `chunk` whose entries have `fingerprint`.
    fn key(&self, chunk: &ChunkIdentity<'_>, fingerprint: &[u8; FINGERPRINT_LEN]) -> ChunkKey {
        let [high, low] = self.digests.each_ref().map(|digest| {
            let mut hasher = digest.build_hasher();
            // Each field after its length, so that no two identities hash the same bytes.
            for field in [chunk.tenant.as_bytes(), chunk.origin, chunk.id, fingerprint] {
                hasher.write_usize(field.len());
                hasher.write(field);
            }
            hasher.finish()
        });
        (u128::from(high) << 64) | u128::from(low)
    }
}

/// True when a remembered chunk's outcome can stand for a resend's.
fn usable(state: &watch::Receiver<ChunkState>) -> bool {
    match &*state.borrow() {
        ChunkState::Durable => true,
        // Still pending with nobody left to report its outcome: the append failed before it
        // reached the log.
        ChunkState::Pending => state.has_changed().is_ok(),
        // An append nobody has waited for yet may have failed unseen: then the resend waits,
        // is not acknowledged, and its next resend finds the failure and is appended anew.
        ChunkState::Appended(append) => !append.failed(),
        ChunkState::Failed => false,
    }
}

impl Ids {
    /// Remembers `key`, forgetting the oldest keys past the shard's capacity.
    fn insert(&mut self, key: ChunkKey, state: watch::Receiver<ChunkState>) {
        self.generation += 1;
        self.by_key.insert(key, (self.generation, state));
        self.order.push_back((key, self.generation));
        while self.by_key.len() > self.capacity {
            let Some((oldest, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .by_key
                .get(&oldest)
                .is_some_and(|(g, _)| *g == generation)
            {
                self.by_key.remove(&oldest);
            }
        }
        self.drop_stale_order();
    }

    /// Drops the order's stale entries once they are as many as the live ones, so that keys
    /// remembered again or forgotten do not grow it without bound.
    fn drop_stale_order(&mut self) {
        if self.order.len() > 2 * self.capacity.max(self.by_key.len()) {
            let by_key = &self.by_key;
            self.order
                .retain(|(key, generation)| by_key.get(key).is_some_and(|(g, _)| g == generation));
        }
    }
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

    fn id(id: &'static [u8]) -> ChunkIdentity<'static> {
        ChunkIdentity {
            tenant: "default",
            origin: &[127, 0, 0, 1],
            id,
        }
    }

    fn new_claim(ledger: &ChunkLedger, chunk: ChunkIdentity<'_>, entries: &[u8]) -> Claimed {
        match ledger.claim(&chunk, entries) {
            Claim::New(claimed) => claimed,
            Claim::Seen(_) => panic!("a new chunk was taken for a resend"),
        }
    }

    fn is_seen(ledger: &ChunkLedger, chunk: ChunkIdentity<'_>, entries: &[u8]) -> bool {
        matches!(ledger.claim(&chunk, entries), Claim::Seen(_))
    }

    #[tokio::test]
    async fn a_resend_waits_for_the_first_append_and_shares_its_outcome() {
        let ledger = ChunkLedger::new(10);
        let first = new_claim(&ledger, id(b"c1"), b"entries");
        let Claim::Seen(mut resend) = ledger.claim(&id(b"c1"), b"entries") else {
            panic!("seen id")
        };
        let other_tenant = ChunkIdentity {
            tenant: "other-tenant",
            ..id(b"c1")
        };
        assert!(!is_seen(&ledger, other_tenant, b"entries"));
        first.outcome.send_replace(ChunkState::Durable);
        assert!(resend.durable().await);
    }

    #[tokio::test]
    async fn a_failed_chunk_is_claimed_again() {
        let ledger = ChunkLedger::new(10);
        let first = new_claim(&ledger, id(b"c1"), b"entries");
        let Claim::Seen(mut waiting) = ledger.claim(&id(b"c1"), b"entries") else {
            panic!("seen id")
        };
        first.outcome.send_replace(ChunkState::Failed);
        assert!(!waiting.durable().await);
        assert!(!is_seen(&ledger, id(b"c1"), b"entries"));
    }

    #[test]
    fn the_same_id_with_other_events_is_a_new_chunk() {
        let ledger = ChunkLedger::new(10);
        let _first = new_claim(&ledger, id(b"c1"), b"one");
        assert!(is_seen(&ledger, id(b"c1"), b"one"));
        assert!(!is_seen(&ledger, id(b"c1"), b"two"));
    }

    #[test]
    fn two_senders_identical_chunks_are_two_chunks() {
        let ledger = ChunkLedger::new(10);
        let _first = new_claim(&ledger, id(b"c1"), b"same");
        let other_host = ChunkIdentity {
            origin: &[127, 0, 0, 2],
            ..id(b"c1")
        };
        let _second = new_claim(&ledger, other_host, b"same");
        assert!(is_seen(&ledger, other_host, b"same"));
        assert!(is_seen(&ledger, id(b"c1"), b"same"));
    }

    #[test]
    fn a_claim_abandoned_before_the_log_is_claimed_again() {
        let ledger = ChunkLedger::new(10);
        drop(new_claim(&ledger, id(b"c1"), b"entries"));
        assert!(!is_seen(&ledger, id(b"c1"), b"entries"));
    }

    #[test]
    fn the_oldest_ids_are_forgotten_first() {
        let ledger = ChunkLedger::new(2);
        let claims: Vec<_> = [b"a", b"b", b"c"]
            .map(|chunk| new_claim(&ledger, id(chunk), b"entries"))
            .into_iter()
            .collect();
        assert_eq!(ledger.len(), 2);
        assert!(is_seen(&ledger, id(b"c"), b"entries"));
        assert!(!is_seen(&ledger, id(b"a"), b"entries"));
        drop(claims);
    }

    /// A log of 1 KiB segments holding `count` chunks from 127.0.0.1, about two per segment.
    async fn log_of_chunks(dir: &std::path::Path, count: usize) -> Wal {
        let wal = Wal::open(flumen_wal::WalConfig {
            segment_size: 1024,
            persistence: flumen_wal::Persistence::Os,
            ..flumen_wal::WalConfig::new(dir)
        })
        .unwrap();
        let builder = flumen_event::BatchBuilder::new(flumen_event::TenantId::default_tenant(), "")
            .unwrap()
            .from_origin([127, 0, 0, 1].into());
        for n in 0..count {
            let payload = builder
                .encode("t", format!("c{n}").as_bytes(), 1, &[b'e'; 400])
                .unwrap();
            wal.append(payload).await.unwrap().durable().await.unwrap();
        }
        wal
    }

    fn remembers(ledger: &ChunkLedger, n: usize) -> bool {
        let chunk_id = format!("c{n}");
        let identity = ChunkIdentity {
            id: chunk_id.as_bytes(),
            ..id(b"")
        };
        matches!(ledger.claim(&identity, &[b'e'; 400]), Claim::Seen(_))
    }

    #[tokio::test]
    async fn after_a_restart_the_ledger_remembers_as_many_chunks_as_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = log_of_chunks(dir.path(), 40).await;
        assert!(
            wal.stats().segments > 8,
            "{} segments",
            wal.stats().segments
        );
        let ledger = ChunkLedger::rebuild(&wal, 1000).unwrap();
        assert_eq!(ledger.len(), 40, "every chunk of the log");
        assert!((0..40).all(|n| remembers(&ledger, n)));
        // With room for fewer, the newest are remembered.
        let ledger = ChunkLedger::rebuild(&wal, 10).unwrap();
        assert_eq!(ledger.len(), 10);
        assert!((30..40).all(|n| remembers(&ledger, n)));
        wal.shutdown().await;
    }

    #[test]
    fn refused_chunks_leave_nothing_in_the_ledger() {
        let ledger = ChunkLedger::new(100);
        let kept = new_claim(&ledger, id(b"kept"), b"entries");
        for n in 0..10_000u32 {
            let chunk_id = format!("refused-{n}");
            let chunk = ChunkIdentity {
                id: chunk_id.as_bytes(),
                ..id(b"")
            };
            let Claimed { outcome, key, .. } = new_claim(&ledger, chunk, b"entries");
            drop(outcome);
            ledger.forget(key);
        }
        assert_eq!(ledger.len(), 1);
        let ids = ledger.shards[0].lock().unwrap();
        assert!(
            ids.order.len() <= 2 * 100,
            "{} keys in order",
            ids.order.len()
        );
        drop(ids);
        // A chunk on its way is not forgotten.
        ledger.forget(kept.key);
        assert!(is_seen(&ledger, id(b"kept"), b"entries"));
    }

    /// Claims the chunk `c<n>` from 127.0.0.1.
    fn claim_nth(ledger: &ChunkLedger, n: usize) -> Claim {
        let chunk_id = format!("c{n}");
        let identity = ChunkIdentity {
            id: chunk_id.as_bytes(),
            ..id(b"")
        };
        ledger.claim(&identity, b"entries")
    }

    #[test]
    fn a_large_ledger_in_shards_holds_its_capacity_and_its_newest_chunks() {
        let capacity = SHARDS * MIN_SHARE + 5;
        let ledger = ChunkLedger::new(capacity);
        assert_eq!(ledger.shards.len(), SHARDS);
        let claims: Vec<_> = (0..3 * capacity).map(|n| claim_nth(&ledger, n)).collect();
        for claim in &claims {
            if let Claim::New(claimed) = claim {
                claimed.outcome.send_replace(ChunkState::Durable);
            }
        }
        assert_eq!(ledger.len(), capacity, "every shard holds its share");
        // The newest half spread over the shards with room to spare: all remembered.
        let newest = 3 * capacity - capacity / 2..3 * capacity;
        assert!(
            newest
                .into_iter()
                .all(|n| matches!(claim_nth(&ledger, n), Claim::Seen(_)))
        );
        assert!(
            matches!(claim_nth(&ledger, 0), Claim::New(_)),
            "the oldest are forgotten"
        );
    }

    #[test]
    fn copies_of_a_chunk_claimed_at_once_on_many_connections_are_stored_once() {
        let ledger = ChunkLedger::new(64 * 1024);
        assert_eq!(ledger.shards.len(), SHARDS);
        let chunks = 2_000;
        // Claims stay on their way until every connection is done, as appends would.
        let new_claims: Vec<Vec<Claimed>> = std::thread::scope(|scope| {
            let connections: Vec<_> = (0..8)
                .map(|connection| {
                    let ledger = &ledger;
                    scope.spawn(move || {
                        let mut claimed = Vec::new();
                        // Each connection in its own order.
                        for n in (0..chunks).map(|n| (n * 7 + connection * 251) % chunks) {
                            if let Claim::New(claim) = claim_nth(ledger, n) {
                                claimed.push(claim);
                            }
                        }
                        claimed
                    })
                })
                .collect();
            connections.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let new_claims: usize = new_claims.iter().map(Vec::len).sum();
        assert_eq!(
            new_claims, chunks,
            "each chunk is new on exactly one connection"
        );
        assert_eq!(ledger.len(), chunks);
    }

    #[test]
    fn a_connections_waiting_acks_are_bounded_in_bytes() {
        let mut queue = AckQueue::default();
        let pending = ChunkAck(watch::channel(ChunkState::Pending).1);
        let mut queued = 0;
        while !queue.is_full() {
            queue.push_back((vec![b'i'; MAX_CHUNK_ID_LEN], pending.clone()));
            queued += 1;
        }
        assert!(queued * MAX_CHUNK_ID_LEN <= AckQueue::MAX_BYTES);
        queue.pop_front().unwrap();
        assert!(!queue.is_full(), "one ack sent: reading goes on");
        while queue.pop_front().is_some() {}
        assert!(queue.is_empty());
        assert_eq!(queue.bytes, 0);
    }
}
