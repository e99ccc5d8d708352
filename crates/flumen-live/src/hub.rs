//! The hub: one reader of the log for every subscriber that has caught up with it.
//!
//! A subscription reads the log by itself until it reaches the durable end, then joins the
//! hub. The hub reads each durable record once, decodes each event once, looks up in the
//! [`SubscriptionIndex`] which queries can want it, runs those, renders the event once per
//! query and format, and hands the same bytes to every subscriber of that query. Each
//! subscriber has a bounded queue; the hub never waits for one. A subscriber whose queue is
//! full is let go: its queue closes, and it reads the log (or the store) by itself from its
//! last event until it has caught up and joins again. So a slow client holds back only itself
//! and loses nothing.
//!
//! The hub keeps the records it read last (the window), so that a subscription that caught up
//! a moment ago joins without a gap: the hub replays to it what it read since. With nobody
//! joined, the hub reads nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use flumen_event::Entry;
use flumen_event::TenantId;
use flumen_event::batch::BatchRef;
use flumen_event::record::Record;
use flumen_select::{Processed, Selector};
use flumen_store::{EventPosition, LabelReader, RawPrefilter, Store};
use flumen_wal::{Position, Read, Wal, WalReader, WalRecord};
use tokio::sync::{mpsc, oneshot, watch};

use crate::index::{Filed, QueryId, SubscriptionIndex};
use crate::render::{EventView, Format};
use crate::subscription::{Start, Subscription};

/// How much of the log one read takes at most.
pub(crate) const READ_RECORDS: usize = 256;
pub(crate) const READ_BYTES: usize = 4 << 20;

/// Limits of live streams.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Streams open at once; more are refused ([`TooManyStreams`]).
    pub max_streams: usize,
    /// Batches (each the events of one read of the log its query selects) queued for one
    /// subscriber before the hub lets it go to catch up by itself.
    pub queue: usize,
    /// Records the hub keeps for subscriptions joining it, and at most this many bytes of them.
    pub window_records: usize,
    pub window_bytes: usize,
    /// The labels events are shown with (the store's `labels`).
    pub labels: Vec<String>,
    /// Subscriptions reading the log by themselves at once (catching up, or about to join);
    /// the others wait their turn, so that many falling behind at once cost the CPU of this
    /// many, not of all of them.
    pub concurrent_reads: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            max_streams: 20_000,
            queue: 64,
            window_records: 4096,
            window_bytes: 32 << 20,
            labels: flumen_store::StoreConfig::new("").labels,
            concurrent_reads: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// A stream refused because [`LiveConfig::max_streams`] are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many live streams: {0} are open, the most this flumen serves")]
pub struct TooManyStreams(pub usize);

/// The events of one read of the log that one query selects, in log order: what the hub
/// queues for each of that query's subscribers at once (one wake-up, and one write to the
/// client, for all of them).
pub(crate) type Batch = Arc<Vec<Arc<Rendered>>>;

/// One event rendered for a client, shared by every subscriber it goes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The event's log position.
    pub position: EventPosition,
    /// The event's time, Unix nanoseconds.
    pub time_ns: u64,
    /// The event in its subscription's [`Format`].
    pub body: Bytes,
}

impl Rendered {
    /// `event` rendered in `format`.
    pub(crate) fn new(format: Format, event: &EventView<'_>) -> Self {
        Self {
            position: event.position,
            time_ns: event.time_ns,
            body: Bytes::from(format.render(event)),
        }
    }
}

/// The live streams of one flumen: where subscriptions are made, and the handle to the hub.
#[derive(Debug)]
pub struct LiveHub {
    pub(crate) wal: Arc<Wal>,
    pub(crate) store: Option<Arc<Store>>,
    pub(crate) labels: Arc<LabelReader>,
    pub(crate) closing: watch::Receiver<bool>,
    pub(crate) config: LiveConfig,
    /// Permits to read the log by oneself (see [`LiveConfig::concurrent_reads`]).
    pub(crate) own_reads: Arc<tokio::sync::Semaphore>,
    commands: mpsc::UnboundedSender<Command>,
    /// How many streams are open; watched to wait for them to end at shutdown.
    streams: watch::Sender<usize>,
    /// Every log record before this one has been read by the hub, and what its queries
    /// selected of them queued for their members.
    pub(crate) read_through: watch::Sender<Position>,
    /// Subscribers the hub let go because their queue was full.
    let_go: Arc<AtomicU64>,
    next_id: AtomicU64,
}

impl LiveHub {
    /// Starts the hub on the current tokio runtime. It stops when `closing` turns true; every
    /// stream then ends with [`Message::Closing`](crate::Message::Closing).
    pub fn start(
        wal: Arc<Wal>,
        store: Option<Arc<Store>>,
        closing: watch::Receiver<bool>,
        config: LiveConfig,
    ) -> Arc<Self> {
        let labels = Arc::new(LabelReader::new(&config.labels));
        let (commands, receiver) = mpsc::unbounded_channel();
        let let_go = Arc::new(AtomicU64::new(0));
        let read_through = watch::Sender::new(wal.durable_end());
        let task = HubTask {
            let_go: let_go.clone(),
            read_through: read_through.clone(),
            wal: wal.clone(),
            labels: labels.clone(),
            config: config.clone(),
            commands: receiver,
            closing: closing.clone(),
            queries: HashMap::new(),
            query_ids: HashMap::new(),
            members: HashMap::new(),
            index: SubscriptionIndex::default(),
            reader: None,
            window: VecDeque::new(),
            window_bytes: 0,
            next_query: 0,
            candidates: Vec::new(),
            selecting: Vec::new(),
            released: Vec::new(),
        };
        tokio::spawn(task.run());
        Arc::new(Self {
            wal,
            store,
            labels,
            closing,
            own_reads: Arc::new(tokio::sync::Semaphore::new(config.concurrent_reads.max(1))),
            config,
            commands,
            streams: watch::Sender::new(0),
            read_through,
            let_go,
            next_id: AtomicU64::new(0),
        })
    }

    /// Opens a stream of the events `query` selects, rendered in `format`, from `start` on.
    pub fn subscribe(
        self: &Arc<Self>,
        query: Selector,
        format: Format,
        start: Start,
    ) -> Result<Subscription, TooManyStreams> {
        let max = self.config.max_streams;
        let counted = self.streams.send_if_modified(|open| {
            let room = *open < max;
            *open += usize::from(room);
            room
        });
        if !counted {
            metrics::counter!("flumen_live_streams_refused_total").increment(1);
            return Err(TooManyStreams(max));
        }
        metrics::gauge!("flumen_live_streams").increment(1.0);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription::new(self.clone(), id, query, format, start))
    }

    /// How many times a subscriber was let go to catch up by itself, its queue full.
    pub fn subscribers_let_go(&self) -> u64 {
        self.let_go.load(Ordering::Relaxed)
    }

    /// How many streams are open.
    pub fn streams(&self) -> usize {
        *self.streams.borrow()
    }

    /// Waits until every stream has ended (each sends its closing message first, once flumen
    /// is closing), or until `deadline`; true if they all did. Streams over WebSocket are not
    /// the HTTP server's to wait for: the server forgets a connection once it is upgraded.
    pub async fn wait_closed(&self, deadline: std::time::Instant) -> bool {
        let mut streams = self.streams.subscribe();
        tokio::time::timeout_at(deadline.into(), streams.wait_for(|open| *open == 0))
            .await
            .is_ok()
    }

    /// Called when a subscription ends: the hub forgets it.
    pub(crate) fn leave(&self, id: u64) {
        self.streams.send_modify(|open| *open -= 1);
        metrics::gauge!("flumen_live_streams").decrement(1.0);
        let _ = self.commands.send(Command::Leave(id));
    }

    /// Asks the hub to feed subscription `id` with the events `query` selects of the records
    /// from `from` on (the subscription has read those before by itself). `None` when the hub
    /// is past `from` already, or stopped: the subscription goes on reading by itself.
    pub(crate) async fn join(
        &self,
        id: u64,
        query: &Selector,
        format: Format,
        from: Position,
    ) -> Option<mpsc::Receiver<Batch>> {
        let (queue, receiver) = mpsc::channel(self.config.queue);
        let (reply, joined) = oneshot::channel();
        let join = Join {
            member: Member { id, queue },
            query: query.clone(),
            format,
            from,
            reply,
        };
        self.commands.send(Command::Join(join)).ok()?;
        joined.await.ok()?.then_some(receiver)
    }
}

enum Command {
    Join(Join),
    Leave(u64),
}

struct Join {
    member: Member,
    query: Selector,
    format: Format,
    from: Position,
    /// True once the member is fed by the hub.
    reply: oneshot::Sender<bool>,
}

struct Member {
    id: u64,
    queue: mpsc::Sender<Batch>,
}

/// The subscribers sharing one query and format: each event is run through the query and
/// rendered once for all of them.
struct SharedQuery {
    query: Selector,
    format: Format,
    filed: Filed,
    members: Vec<Member>,
    /// What it selected of the read under way.
    selected: Vec<Arc<Rendered>>,
}

impl SharedQuery {
    /// Queues what it selected of the read just done for every member; those whose queue is
    /// full or gone are let go and their ids added to `released`.
    fn send(&mut self, released: &mut Vec<u64>, let_go: &AtomicU64) {
        if self.selected.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.selected));
        self.members.retain(|member| {
            match member.queue.try_send(batch.clone()) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("flumen_live_subscribers_behind_total").increment(1);
                    let_go.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
            released.push(member.id);
            false
        });
    }
}

struct HubTask {
    wal: Arc<Wal>,
    let_go: Arc<AtomicU64>,
    read_through: watch::Sender<Position>,
    labels: Arc<LabelReader>,
    config: LiveConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    closing: watch::Receiver<bool>,
    queries: HashMap<QueryId, SharedQuery>,
    query_ids: HashMap<(Format, String), QueryId>,
    /// Member id → its query.
    members: HashMap<u64, QueryId>,
    index: SubscriptionIndex,
    /// `None` while nobody is joined.
    reader: Option<WalReader>,
    /// The records read last, oldest first, for subscriptions joining.
    window: VecDeque<WalRecord>,
    window_bytes: usize,
    next_query: QueryId,
    /// Scratch space: the queries an event is tested against, and members let go.
    candidates: Vec<QueryId>,
    /// The queries that selected something of the read under way.
    selecting: Vec<QueryId>,
    released: Vec<u64>,
}

enum Woke {
    Command(Option<Command>),
    Log(Result<(), flumen_wal::WalError>),
    Closing,
}

impl HubTask {
    async fn run(mut self) {
        loop {
            let woke = match self.reader.as_mut() {
                None => tokio::select! {
                    biased;
                    _ = self.closing.wait_for(|c| *c) => Woke::Closing,
                    command = self.commands.recv() => Woke::Command(command),
                },
                Some(reader) => tokio::select! {
                    biased;
                    _ = self.closing.wait_for(|c| *c) => Woke::Closing,
                    command = self.commands.recv() => Woke::Command(command),
                    waited = reader.wait() => Woke::Log(waited),
                },
            };
            match woke {
                Woke::Command(Some(Command::Join(join))) => self.join(join),
                Woke::Command(Some(Command::Leave(id))) => self.leave(id),
                Woke::Log(Ok(())) => self.read().await,
                // Dropping the queues tells every member; each sees flumen closing.
                Woke::Command(None) | Woke::Log(Err(_)) | Woke::Closing => return,
            }
        }
    }

    async fn read(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        match reader.read(READ_RECORDS, READ_BYTES).await {
            Ok(Read::Records(records)) => {
                for record in records {
                    self.select(&record);
                    self.remember(record);
                }
                self.send();
                self.read_through
                    .send_replace(reader_position(&self.reader));
            }
            Ok(Read::Removed { from, to }) => {
                // The hub itself fell behind the log: every member catches up by itself.
                tracing::warn!(
                    message = "Live streams fell behind the log; each catches up on its own.",
                    from = from.get(),
                    to = to.get()
                );
                self.let_everyone_go();
            }
            Err(error) => {
                tracing::warn!(message = "Live streams could not read the log.", %error);
                self.let_everyone_go();
            }
        }
    }

    /// Queues what each query selected of the read just done for its members.
    fn send(&mut self) {
        // Only the queries that selected something: with ten thousand queries, most did not.
        for id in std::mem::take(&mut self.selecting) {
            if let Some(shared) = self.queries.get_mut(&id) {
                shared.send(&mut self.released, &self.let_go);
            }
        }
        for id in std::mem::take(&mut self.released) {
            self.leave(id);
        }
    }

    /// Adds every event of `record` to what the queries that select it selected.
    fn select(&mut self, record: &WalRecord) {
        let mut candidates = std::mem::take(&mut self.candidates);
        for (position, tag, entry) in logged_events(record) {
            let known = self
                .index
                .candidates_raw(tag, entry.record, &mut candidates);
            if known && candidates.is_empty() {
                // Nobody can want it: not even decoded.
                continue;
            }
            let Ok(decoded) = Record::decode(entry.record) else {
                continue;
            };
            if !known {
                self.index.candidates(tag, &decoded, &mut candidates);
            }
            let mut labels = None;
            for id in &candidates {
                let Some(shared) = self.queries.get_mut(id) else {
                    continue;
                };
                let Some(processed) = shared.query.process(tag, &decoded) else {
                    continue;
                };
                let labels = labels.get_or_insert_with(|| self.labels.read(tag, entry.record));
                let view = event_view(position, tag, &entry, labels, &processed);
                if shared.selected.is_empty() {
                    self.selecting.push(*id);
                }
                shared
                    .selected
                    .push(Arc::new(Rendered::new(shared.format, &view)));
            }
        }
        self.candidates = candidates;
    }

    /// Keeps `record` in the window, dropping the oldest beyond its limits.
    fn remember(&mut self, record: WalRecord) {
        self.window_bytes += record.payload.len();
        self.window.push_back(record);
        while self.window.len() > self.config.window_records
            || self.window_bytes > self.config.window_bytes
        {
            let Some(oldest) = self.window.pop_front() else {
                break;
            };
            self.window_bytes -= oldest.payload.len();
        }
    }

    /// The first record the hub can replay.
    fn window_start(&self) -> Option<Position> {
        let reader = self.reader.as_ref()?;
        Some(
            self.window
                .front()
                .map_or(reader.position(), |r| r.position),
        )
    }

    fn join(&mut self, join: Join) {
        match self.window_start() {
            None => {
                // Nobody was joined: the hub starts reading where this subscription is.
                self.reader = Some(self.wal.reader_at(join.from));
                self.window.clear();
                self.window_bytes = 0;
            }
            Some(start) if join.from < start => {
                let _ = join.reply.send(false);
                return;
            }
            Some(_) => {}
        }
        // What the hub read since `from`, for this member alone.
        let missed: Vec<Arc<Rendered>> = self
            .window
            .iter()
            .filter(|r| r.position >= join.from)
            .flat_map(|record| {
                RecordSelector::new(&join.query, join.format, &self.labels).select(record)
            })
            .map(Arc::new)
            .collect();
        if !missed.is_empty() && join.member.queue.try_send(Arc::new(missed)).is_err() {
            let _ = join.reply.send(false);
            self.idle_if_alone();
            return;
        }
        let key = (join.format, join.query.as_str().to_owned());
        let id = match self.query_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.next_query;
                self.next_query += 1;
                let filed = self.index.insert(id, &join.query);
                self.queries.insert(
                    id,
                    SharedQuery {
                        query: join.query,
                        format: join.format,
                        filed,
                        members: Vec::new(),
                        selected: Vec::new(),
                    },
                );
                self.query_ids.insert(key, id);
                id
            }
        };
        self.members.insert(join.member.id, id);
        self.queries
            .get_mut(&id)
            .expect("just found or made")
            .members
            .push(join.member);
        let _ = join.reply.send(true);
    }

    /// Forgets member `id` (gone, or let go), and its query once nobody shares it.
    fn leave(&mut self, id: u64) {
        let Some(query_id) = self.members.remove(&id) else {
            return;
        };
        let Some(shared) = self.queries.get_mut(&query_id) else {
            return;
        };
        shared.members.retain(|m| m.id != id);
        if shared.members.is_empty() {
            let shared = self.queries.remove(&query_id).expect("just found");
            self.index.remove(query_id, &shared.filed);
            self.query_ids
                .remove(&(shared.format, shared.query.as_str().to_owned()));
        }
        self.idle_if_alone();
    }

    /// Lets every member go (their queues close), to read by themselves.
    fn let_everyone_go(&mut self) {
        self.queries.clear();
        self.query_ids.clear();
        self.members.clear();
        self.index = SubscriptionIndex::default();
        self.idle_if_alone();
    }

    /// With nobody joined, stops reading the log.
    fn idle_if_alone(&mut self) {
        if self.members.is_empty() {
            self.reader = None;
            self.window.clear();
            self.window_bytes = 0;
        }
    }
}

/// One query's reading of log records by itself: for a subscription reading the log on its
/// own, and for the hub's replay to one joining. Events whose bytes already rule them out
/// (a field an equality matcher wants differs, a required literal is missing) are not decoded:
/// a thousand subscriptions catching up at once each read everything.
pub(crate) struct RecordSelector<'q> {
    query: &'q Selector,
    prefilter: RawPrefilter<'q>,
    format: Format,
    labels: &'q LabelReader,
}

impl<'q> RecordSelector<'q> {
    pub(crate) fn new(query: &'q Selector, format: Format, labels: &'q LabelReader) -> Self {
        Self {
            query,
            prefilter: RawPrefilter::new(query),
            format,
            labels,
        }
    }

    /// The events of `record` the query selects, rendered, in order.
    pub(crate) fn select(&self, record: &WalRecord) -> Vec<Rendered> {
        let mut selected = Vec::new();
        for (position, tag, entry) in logged_events(record) {
            if self.prefilter.rejects(entry.record) {
                continue;
            }
            let Ok(decoded) = Record::decode(entry.record) else {
                continue;
            };
            let Some(processed) = self.query.process(tag, &decoded) else {
                continue;
            };
            let labels = self.labels.read(tag, entry.record);
            let view = event_view(position, tag, &entry, &labels, &processed);
            selected.push(Rendered::new(self.format, &view));
        }
        selected
    }
}

fn reader_position(reader: &Option<WalReader>) -> Position {
    reader
        .as_ref()
        .map_or(Position::new(0), WalReader::position)
}

/// The events of log record `record` that live streams show (the default tenant's), with
/// their positions and tag, in order. A record that is not a batch shows nothing, and a
/// batch shows nothing after an entry that does not read.
fn logged_events(record: &WalRecord) -> impl Iterator<Item = (EventPosition, &str, Entry<'_>)> {
    let batch = BatchRef::parse(&record.payload)
        .ok()
        .filter(|batch| batch.tenant == TenantId::DEFAULT_NAME);
    batch.into_iter().flat_map(move |batch| {
        let tag = batch.tag;
        batch
            .iter()
            .map_while(Result::ok)
            .enumerate()
            .map(move |(index, entry)| {
                (
                    EventPosition::new(record.position, index as u32),
                    tag,
                    entry,
                )
            })
    })
}

/// What a client is shown of an event a query selected (`processed`).
fn event_view<'a>(
    position: EventPosition,
    tag: &'a str,
    entry: &Entry<'a>,
    labels: &'a [(String, String)],
    processed: &'a Processed<'_>,
) -> EventView<'a> {
    EventView {
        position,
        time_ns: u64::try_from(entry.time.as_unix_nanos()).unwrap_or(0),
        tag,
        record: entry.record,
        labels,
        line: &processed.line,
        extracted: &processed.labels,
    }
}
