//! One client's stream: what it has been sent, and where the next events come from.
//!
//! A subscription goes through these phases, and back to reading when it falls behind:
//!
//! 1. **Backfill**: the newest `limit` stored events in a time range, oldest first (or, with
//!    a position to resume after, nothing).
//! 2. **Reading** the log by itself, from the first record the store had not taken (or the
//!    record of the position resumed after).
//! 3. **Catching up** from the store, when the log no longer holds what it was to read next:
//!    the store has every event the log dropped, in log order. With the store off, a
//!    [`Message::Gap`] says which records were missed.
//! 4. **Joined**: once it reads nothing new, the hub feeds it. If its queue fills, the hub
//!    lets it go, and it reads by itself again from its last event.
//!
//! Every event carries its log position, and the subscription never sends a position at or
//! before the last one it sent, so the phases join with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::TenantId;
use flumen_select::Selector;
use flumen_store::{Direction, EventPosition, LogOrderRequest, SearchRequest};
use flumen_wal::{CloseFollower, Position, Read, WalReader};
use tokio::sync::{mpsc, watch};

use crate::hub::{Batch, LiveHub, RecordSelector, Rendered};
use crate::render::{EventView, Format};

/// How long a stream may go without sending anything before it sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How much of the log one read of a subscription's own takes at most: a thousand
/// subscriptions may be reading at once.
const READ_RECORDS: usize = 64;
const READ_BYTES: usize = 512 << 10;
/// Events per page when catching up from the store.
const CATCH_UP_PAGE: usize = 1000;

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The newest `limit` stored events whose time is in `range` (Unix nanoseconds, end
    /// excluded), then what follows them. `limit` 0: only what follows.
    Backfill { limit: usize, range: (u64, u64) },
    /// The events after this one.
    After(EventPosition),
}

/// What a stream sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An event the query selects, rendered in the subscription's format.
    Event(Arc<Rendered>),
    /// The events of log records `from..to` are lost to this stream: they left the log before
    /// it read them, and the store is off or its retention removed them too.
    /// `events_at_most` bounds how many events they were, when known: the events of the store
    /// files retention removed there since flumen started (whole files, so a file the stream
    /// had partly read counts whole).
    Gap {
        from: Position,
        to: Position,
        events_at_most: Option<u64>,
    },
    /// Nothing was sent for [`HEARTBEAT`]: a sign of life for proxies.
    Heartbeat,
    /// The stream cannot go on, for this reason; the last message.
    Error(String),
    /// flumen is stopping: reconnect, resuming after the last event. The last message.
    Closing,
    /// The stream is complete ([`Subscription::end_when`]): this message, then nothing.
    End(String),
}

/// When a stream is complete: once every log record up to and including `through` has been
/// read for it (a deployment's stream, through its finish marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnd {
    /// The last log record the stream reads.
    pub through: Position,
    /// What the stream says last ([`Message::End`]).
    pub message: String,
}

enum Phase {
    Backfill {
        limit: usize,
        range: (u64, u64),
    },
    Reading(WalReader),
    /// The log lost what comes next: read the store up to this log record (after checking
    /// that the store's retention has not removed it too).
    CatchingUp {
        before: Position,
        checked: bool,
    },
    Joined(mpsc::Receiver<Batch>),
}

/// One client's stream of events; see the [module documentation](self). Call
/// [`next`](Self::next) until it returns `None`.
pub struct Subscription {
    hub: Arc<LiveHub>,
    id: u64,
    query: Arc<Selector>,
    format: Format,
    /// The last event sent: nothing at or before it is sent again.
    after: Option<EventPosition>,
    /// Every log record before this one has been read for this stream (by it or the hub).
    read_to: Position,
    phase: Phase,
    pending: VecDeque<Message>,
    closing: watch::Receiver<bool>,
    last_sent: Instant,
    ended: bool,
    /// Where the stream ends by itself, once that is known; with the hub's progress, which
    /// tells a joined stream that the hub read past it.
    ends: Option<(
        watch::Receiver<Option<StreamEnd>>,
        watch::Receiver<Position>,
    )>,
    /// The last record of a stream whose end is known: nothing after it is sent.
    through: Option<Position>,
    /// Makes the log sync at once while the stream is open, so events show without delay.
    _close_follower: CloseFollower,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("query", &self.query.as_str())
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

impl Subscription {
    pub(crate) fn new(
        hub: Arc<LiveHub>,
        id: u64,
        query: Selector,
        format: Format,
        start: Start,
    ) -> Self {
        let (after, read_to, phase) = match start {
            Start::Backfill { limit, range } => {
                (None, Position::new(0), Phase::Backfill { limit, range })
            }
            Start::After(after) => (
                Some(after),
                after.record,
                Phase::Reading(hub.wal.reader_at(after.record)),
            ),
        };
        Self {
            _close_follower: hub.wal.follow_closely(),
            closing: hub.closing.clone(),
            hub,
            id,
            query: Arc::new(query),
            format,
            after,
            read_to,
            phase,
            pending: VecDeque::new(),
            last_sent: Instant::now(),
            ended: false,
            ends: None,
            through: None,
        }
    }

    /// Ends the stream with [`Message::End`] once `ends` holds a [`StreamEnd`] and every
    /// log record through it has been read for the stream (and its events sent).
    pub fn end_when(&mut self, ends: watch::Receiver<Option<StreamEnd>>) {
        self.ends = Some((ends, self.hub.read_through.subscribe()));
    }

    /// The next message; `None` once the stream has ended (after [`Message::Error`],
    /// [`Message::Closing`] or [`Message::End`]). Cancel-safe: a call dropped before it
    /// returns loses nothing.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(message) = self.take_pending() {
                return Some(message);
            }
            if self.ended {
                return None;
            }
            if *self.closing.borrow() {
                self.ended = true;
                return Some(Message::Closing);
            }
            if self.reached_end() {
                continue;
            }
            self.step().await;
        }
    }

    /// True (and the end queued after what is pending) once the stream has read through its
    /// end.
    fn reached_end(&mut self) -> bool {
        let Some(end) = self
            .ends
            .as_ref()
            .and_then(|(ends, _)| ends.borrow().clone())
        else {
            return false;
        };
        if self.through.is_none() {
            // Events past the end may have been queued before it was known.
            self.through = Some(end.through);
            self.pending.retain(
                |message| !matches!(message, Message::Event(e) if e.position.record > end.through),
            );
        }
        let mut read_to = self.read_to;
        if let Phase::Joined(queue) = &mut self.phase {
            // The hub queues what it selected of a read before it says it has read it: once
            // the queue is drained, every record before `hub_at` has been sent.
            let hub_at = self.ends.as_ref().map_or(read_to, |(_, hub)| *hub.borrow());
            let mut batches = Vec::new();
            while let Ok(batch) = queue.try_recv() {
                batches.push(batch);
            }
            batches.iter().for_each(|batch| self.push_batch(batch));
            read_to = read_to.max(hub_at);
        }
        if read_to <= end.through {
            return false;
        }
        self.pending.push_back(Message::End(end.message));
        self.ended = true;
        true
    }

    /// The next message if one is ready now, without waiting: for writing several at once.
    pub fn try_next(&mut self) -> Option<Message> {
        if let Some(message) = self.take_pending() {
            return Some(message);
        }
        while let Phase::Joined(queue) = &mut self.phase
            && let Ok(batch) = queue.try_recv()
        {
            self.push_batch(&batch);
            if let Some(message) = self.take_pending() {
                return Some(message);
            }
        }
        None
    }

    /// Queues the events of a batch from the hub that are new to this stream.
    fn push_batch(&mut self, batch: &Batch) {
        for event in batch.iter() {
            if self.accept(event.position) {
                self.pending.push_back(Message::Event(event.clone()));
            }
        }
    }

    fn take_pending(&mut self) -> Option<Message> {
        let message = self.pending.pop_front()?;
        self.last_sent = Instant::now();
        Some(message)
    }

    /// True (and `after` moved) when the event at `position` is new to this stream.
    fn accept(&mut self, position: EventPosition) -> bool {
        if self.after.is_some_and(|after| position <= after)
            || self
                .through
                .is_some_and(|through| position.record > through)
        {
            return false;
        }
        self.after = Some(position);
        self.read_to = self.read_to.max(position.record);
        true
    }

    fn push_event(&mut self, event: Rendered) {
        if self.accept(event.position) {
            self.pending.push_back(Message::Event(Arc::new(event)));
        }
    }

    fn fail(&mut self, reason: String) {
        self.pending.push_back(Message::Error(reason));
        self.ended = true;
    }

    /// Moves the stream on: queues messages, or changes phase, or waits for either.
    async fn step(&mut self) {
        let heartbeat_due = tokio::time::Instant::from_std(self.last_sent + HEARTBEAT);
        if heartbeat_due <= tokio::time::Instant::now() {
            // Also while reading a long stretch of the log that the query selects nothing of.
            self.pending.push_back(Message::Heartbeat);
            return;
        }
        match &mut self.phase {
            Phase::Backfill { limit, range } => {
                let (limit, range) = (*limit, *range);
                self.backfill(limit, range).await;
            }
            Phase::CatchingUp { before, checked } => {
                let before = *before;
                if !std::mem::replace(checked, true) {
                    self.check_retention(before);
                }
                let Some(_turn) = own_turn(&self.hub, &mut self.closing).await else {
                    return;
                };
                self.catch_up(before).await;
            }
            Phase::Reading(reader) => {
                // Held while reading and selecting, not while waiting for the log to grow.
                let Some(turn) = own_turn(&self.hub, &mut self.closing).await else {
                    return;
                };
                let read = tokio::select! {
                    read = reader.read(READ_RECORDS, READ_BYTES) => read,
                    _ = self.closing.wait_for(|c| *c) => return,
                };
                match read {
                    Ok(Read::Records(records)) if records.is_empty() => {
                        drop(turn);
                        self.join_or_wait(heartbeat_due).await;
                    }
                    Ok(Read::Records(records)) => {
                        let (query, labels) = (self.query.clone(), self.hub.labels.clone());
                        let selector = RecordSelector::new(&query, self.format, &labels);
                        for record in &records {
                            for event in selector.select(record) {
                                self.push_event(event);
                            }
                            self.read_to = record.position.next();
                        }
                    }
                    Ok(Read::Removed { from, to }) => match self.hub.store {
                        Some(_) => {
                            self.phase = Phase::CatchingUp {
                                before: to,
                                checked: false,
                            };
                        }
                        None => {
                            self.pending.push_back(Message::Gap {
                                from,
                                to,
                                events_at_most: None,
                            });
                            self.read_to = to;
                        }
                    },
                    Err(error) => self.fail(format!("reading the log failed: {error}")),
                }
            }
            Phase::Joined(queue) => {
                let received = tokio::select! {
                    received = queue.recv() => received,
                    _ = end_news(&mut self.ends) => return,
                    _ = tokio::time::sleep_until(heartbeat_due) => {
                        self.pending.push_back(Message::Heartbeat);
                        return;
                    }
                    _ = self.closing.wait_for(|c| *c) => return,
                };
                match received {
                    Some(batch) => self.push_batch(&batch),
                    // The hub let go (this stream fell behind, or flumen is stopping): read
                    // by itself from the last event on.
                    None => self.phase = Phase::Reading(self.hub.wal.reader_at(self.read_to)),
                }
            }
        }
    }

    /// Caught up with the log: joins the hub, or waits for the log to grow.
    async fn join_or_wait(&mut self, heartbeat_due: tokio::time::Instant) {
        if let Some(queue) = self
            .hub
            .join(self.id, &self.query, self.format, self.read_to)
            .await
        {
            self.phase = Phase::Joined(queue);
            return;
        }
        let Phase::Reading(reader) = &mut self.phase else {
            return;
        };
        tokio::select! {
            _ = reader.wait() => {}
            _ = end_news(&mut self.ends) => {}
            _ = tokio::time::sleep_until(heartbeat_due) => self.pending.push_back(Message::Heartbeat),
            _ = self.closing.wait_for(|c| *c) => {}
        }
    }

    /// Sends the newest `limit` events in `range` as of now, oldest first: those of the log
    /// the store has not taken yet (the last seconds), and before them the store's. The log
    /// is then read from its durable end as it was.
    async fn backfill(&mut self, limit: usize, range: (u64, u64)) {
        let end = self.hub.wal.durable_end();
        let Some(store) = self.hub.store.clone().filter(|_| limit > 0) else {
            // No backfill (or no store to take it from): what the log receives from now on.
            return self.read_from(end);
        };
        let stored = store.stored_up_to().min(end);
        let newest = match self.newest_in_log(stored, end, limit, range).await {
            Ok(newest) => newest,
            Err(error) => return self.fail(format!("reading the log failed: {error}")),
        };
        if newest.len() < limit {
            let request = SearchRequest {
                tenant: TenantId::DEFAULT_NAME.to_owned(),
                query: Selector::clone(&self.query),
                start_ns: range.0,
                end_ns: range.1,
                limit: limit - newest.len(),
                direction: Direction::Backward,
                after: None,
            };
            let found = match tokio::task::spawn_blocking(move || store.search(&request)).await {
                Ok(result) => result.events,
                Err(error) => return self.fail(format!("the search failed: {error}")),
            };
            // Events the store took after `stored` was read are among the log's.
            for event in found.iter().rev().filter(|e| e.position.record < stored) {
                self.push_event(Rendered::new(self.format, &EventView::from(event)));
            }
        }
        for event in newest {
            self.push_event(event);
        }
        self.read_from(end);
    }

    /// The newest `limit` events in `range` of log records `from..to`, oldest first.
    async fn newest_in_log(
        &self,
        from: Position,
        to: Position,
        limit: usize,
        (start_ns, end_ns): (u64, u64),
    ) -> Result<VecDeque<Rendered>, flumen_wal::WalError> {
        let mut newest = VecDeque::new();
        let selector = RecordSelector::new(&self.query, self.format, &self.hub.labels);
        let mut reader = self.hub.wal.reader_at(from);
        while reader.position() < to {
            let records = match reader.read(READ_RECORDS, READ_BYTES).await? {
                Read::Records(records) if records.is_empty() => break,
                Read::Records(records) => records,
                // Only a log dropping its oldest records when full removes what the store has
                // not taken: those are gone.
                Read::Removed { .. } => continue,
            };
            for record in records.iter().filter(|r| r.position < to) {
                for event in selector.select(record) {
                    if (start_ns..end_ns).contains(&event.time_ns) {
                        newest.push_back(event);
                        if newest.len() > limit {
                            newest.pop_front();
                        }
                    }
                }
            }
        }
        Ok(newest)
    }

    /// Before catching up from the store on log records before `before`: if retention has
    /// removed the oldest of those too, says so with a gap, and goes on after it.
    fn check_retention(&mut self, before: Position) {
        let Some(store) = &self.hub.store else {
            return;
        };
        let from = match self.after {
            // The rest of that record is still wanted.
            Some(after) if after.record >= self.read_to => after.record,
            _ => self.read_to,
        };
        let tenant = TenantId::DEFAULT_NAME;
        let to = store
            .held_from(tenant)
            .map_or(before, |held| held.record.min(before));
        if to > from {
            let events_at_most = store.removed_events(tenant, from, to);
            self.pending.push_back(Message::Gap {
                from,
                to,
                events_at_most,
            });
            self.read_to = to;
        }
    }

    /// Sends a page of the stored events after the last one sent, of log records before
    /// `before`, in log order; reads the log from `before` once there are no more.
    async fn catch_up(&mut self, before: Position) {
        let Some(store) = self.hub.store.clone() else {
            return self.read_from(before);
        };
        // Records before `read_to` were read for this stream already.
        let read = self.read_to.get().checked_sub(1).map(last_event_of);
        let request = LogOrderRequest {
            tenant: TenantId::DEFAULT_NAME.to_owned(),
            query: Selector::clone(&self.query),
            after: self.after.max(read),
            before_record: before.get(),
            limit: CATCH_UP_PAGE,
        };
        let page = match tokio::task::spawn_blocking(move || store.scan_log_order(&request)).await {
            Ok(page) => page,
            Err(error) => return self.fail(format!("the catch-up failed: {error}")),
        };
        for event in &page.events {
            self.push_event(Rendered::new(self.format, &EventView::from(event)));
        }
        if page.next.is_none() {
            self.read_from(before);
        }
    }

    fn read_from(&mut self, record: Position) {
        self.read_to = self.read_to.max(record);
        self.phase = Phase::Reading(self.hub.wal.reader_at(self.read_to));
    }
}

/// Waits for a turn to read the log or the store by oneself (see
/// `LiveConfig::concurrent_reads`); `None` when flumen is closing.
async fn own_turn(
    hub: &LiveHub,
    closing: &mut watch::Receiver<bool>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        turn = hub.own_reads.clone().acquire_owned() => turn.ok(),
        _ = closing.wait_for(|c| *c) => None,
    }
}

/// Waits until the stream's end becomes known, or, once it is, until the hub has read more;
/// forever for a stream without an end.
async fn end_news(
    ends: &mut Option<(
        watch::Receiver<Option<StreamEnd>>,
        watch::Receiver<Position>,
    )>,
) {
    let Some((ends, hub)) = ends else {
        return std::future::pending().await;
    };
    let known = ends.borrow_and_update().is_some();
    let changed = if known {
        hub.changed().await
    } else {
        ends.changed().await
    };
    if changed.is_err() {
        // The hub or the end's sender is gone: nothing more will come from it.
        std::future::pending::<()>().await;
    }
}

/// A position past every event of log record `record`.
fn last_event_of(record: u64) -> EventPosition {
    EventPosition::new(Position::new(record), u32::MAX)
}
