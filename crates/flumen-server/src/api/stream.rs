//! Live streams: `GET /api/v1/stream`, as Server-Sent Events.
//!
//! A stream first sends what the store holds (the newest `limit` events in the range, by
//! default the last hour, oldest first), then follows the log: each event once it is durable,
//! so that a position is never shown and then lost in a crash. Every event goes out with its
//! log position as the SSE `id`; a client that reconnects with `Last-Event-ID` (or
//! `?after=POSITION`, which a browser cannot send on its first connection) gets every event
//! after it and none twice, across a restart of flumen too: from the log while the log holds
//! it, else from the store in log order (`Store::scan_log_order`).
//!
//! Each stream reads the log with its own detached reader, at its own pace: a client that
//! reads slowly holds back only itself, and catches up from the log or the store. A stream
//! that sent nothing for [`HEARTBEAT`] (idle, or its query selecting nothing of what flows)
//! sends a comment line, so proxies keep it open. When flumen stops,
//! every stream gets `event: close` with `{"reason":"shutting down","reconnect":true}`; a bad
//! query is answered 400 before the stream starts.
//!
//! Not built yet: the WebSocket endpoint and Loki's `tail`, an index of subscriptions by their
//! equality matchers (each stream tests every event itself), and tenants.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flumen_event::TenantId;
use flumen_event::batch::BatchRef;
use flumen_event::record::Record;
use flumen_select::Selector;
use flumen_store::{
    Direction, EventPosition, FoundEvent, LabelReader, LogOrderRequest, SearchRequest, Store,
    StoreConfig,
};
use flumen_wal::{Position, Read, Wal};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::query::{RangeParams, checked_limit, event_json, required_query};
use super::{ApiError, ApiState};

/// How often an idle stream sends a comment line.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);
/// The backfill's size when the request names none (as Loki's `tail`); 0 is none.
const DEFAULT_BACKFILL: usize = 100;
/// Messages rendered ahead of what the client has taken.
const QUEUE: usize = 64;
/// How much of the log one read takes at most.
const READ_RECORDS: usize = 256;
const READ_BYTES: usize = 4 << 20;
/// Events per page when catching up from the store.
const CATCH_UP_PAGE: usize = 1000;

/// The parameters of `GET /api/v1/stream`.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    query: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

pub(crate) async fn stream(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = required_query(params.query.as_deref())?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let after = params
        .after
        .as_deref()
        .or(last_event_id)
        .map(str::parse::<EventPosition>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("after: {e}")))?;
    // Without a store, its defaults: the labels events carry, the largest backfill.
    let store_config = state
        .store
        .as_ref()
        .map_or_else(|| StoreConfig::new(""), |s| s.config().clone());
    // `limit=0`: no backfill, only what comes next (as `tail -n 0 -f`).
    let limit = match params.limit.unwrap_or(DEFAULT_BACKFILL) {
        0 => 0,
        limit => checked_limit(limit, store_config.max_limit)?,
    };
    let range = params.range.resolve(SystemTime::now())?;
    let labels = LabelReader::new(&store_config.labels);
    let (send, receive) = mpsc::channel(QUEUE);
    let subscriber = Subscriber {
        wal: state.wal.clone(),
        store: state.store.clone(),
        query,
        labels,
        send,
        closing: state.closing.subscribe(),
        last_sent: Instant::now(),
    };
    let start = match after {
        Some(after) => Start::After(after),
        None => Start::Backfill { limit, range },
    };
    tokio::spawn(subscriber.run(start));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receive));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// Where a stream starts.
enum Start {
    /// The newest `limit` stored events in `range` (Unix nanoseconds), then what follows.
    Backfill { limit: usize, range: (u64, u64) },
    /// The events after this one.
    After(EventPosition),
}

/// Why a stream stopped sending.
enum Ended {
    /// The client went away.
    Gone,
    /// flumen is stopping: the client is told to reconnect.
    Closing,
    /// The stream cannot go on; the client was told why.
    Failed,
}

/// One client's stream.
struct Subscriber {
    wal: Arc<Wal>,
    store: Option<Arc<Store>>,
    query: Selector,
    labels: LabelReader,
    send: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
    closing: watch::Receiver<bool>,
    /// When the client was last sent something (a heartbeat is due [`HEARTBEAT`] after).
    last_sent: Instant,
}

impl Subscriber {
    async fn run(mut self, start: Start) {
        let ended = self.follow(start).await;
        if let Err(Ended::Closing) = ended {
            let close = json!({ "reason": "shutting down", "reconnect": true });
            let message = format!("event: close\ndata: {close}\n\n");
            // The client may be gone already; nothing else to do.
            let _ = self.send.try_send(Ok(Bytes::from(message)));
        }
    }

    async fn follow(&mut self, start: Start) -> Result<(), Ended> {
        self.send_raw(format!("retry: {}\n\n", 2000)).await?;
        let mut after = match start {
            Start::After(after) => Some(after),
            Start::Backfill { limit, range } => self.backfill(limit, range).await?,
        };
        // The log from the record of the last event sent (its later events are not sent yet).
        let first = after.map_or(0, |a| a.record.get());
        let mut reader = self.wal.reader_at(Position::new(first));
        loop {
            // Also while events flow that the query does not select.
            if self.last_sent.elapsed() >= HEARTBEAT {
                self.send_raw(": heartbeat\n\n".to_owned()).await?;
            }
            let read = tokio::select! {
                read = reader.read(READ_RECORDS, READ_BYTES) => read,
                _ = self.closing.wait_for(|c| *c) => return Err(Ended::Closing),
            };
            match read {
                Ok(Read::Records(records)) if records.is_empty() => {
                    let heartbeat_due = self.last_sent + HEARTBEAT;
                    tokio::select! {
                        _ = reader.wait() => {}
                        _ = tokio::time::sleep_until(heartbeat_due.into()) => {}
                        _ = self.closing.wait_for(|c| *c) => return Err(Ended::Closing),
                    }
                }
                Ok(Read::Records(records)) => {
                    for record in records {
                        self.send_record(record.position, &record.payload, &mut after)
                            .await?;
                    }
                }
                Ok(Read::Removed { to, .. }) => {
                    // Gone from the log: the store has them (every reader of the log, the
                    // store's among them, had read them).
                    after = self.catch_up(after, to.get()).await?;
                }
                Err(error) => return Err(self.fail(error.to_string()).await),
            }
        }
    }

    /// Sends the newest `limit` stored events in `range`, oldest first; returns where the log
    /// takes over: after the last log record the store held.
    async fn backfill(
        &mut self,
        limit: usize,
        (start_ns, end_ns): (u64, u64),
    ) -> Result<Option<EventPosition>, Ended> {
        let Some(store) = self.store.clone() else {
            // No store: from what the log receives from now on.
            let end = self.wal.durable_end().get();
            return Ok(end.checked_sub(1).map(last_event_of));
        };
        let stored = store.stored_up_to().get();
        if limit == 0 {
            return Ok(stored.checked_sub(1).map(last_event_of));
        }
        let request = SearchRequest {
            tenant: TenantId::DEFAULT_NAME.to_owned(),
            query: self.query.clone(),
            start_ns,
            end_ns,
            limit,
            direction: Direction::Backward,
            after: None,
        };
        let found = match tokio::task::spawn_blocking(move || store.search(&request)).await {
            Ok(result) => result.events,
            Err(error) => return Err(self.fail(format!("the search failed: {error}")).await),
        };
        // Events the store took after `stored` was read come from the log instead.
        for event in found
            .iter()
            .rev()
            .filter(|e| e.position.record.get() < stored)
        {
            self.send_event(event).await?;
        }
        Ok(stored.checked_sub(1).map(last_event_of))
    }

    /// Sends the stored events after `after` of log records before `before`, in log order.
    async fn catch_up(
        &mut self,
        mut after: Option<EventPosition>,
        before: u64,
    ) -> Result<Option<EventPosition>, Ended> {
        let Some(store) = self.store.clone() else {
            let gap = json!({ "before_record": before, "reason": "the log no longer holds these events and the store is off" });
            self.send_raw(format!("event: gap\ndata: {gap}\n\n"))
                .await?;
            return Ok(before.checked_sub(1).map(last_event_of));
        };
        loop {
            let request = LogOrderRequest {
                tenant: TenantId::DEFAULT_NAME.to_owned(),
                query: self.query.clone(),
                after,
                before_record: before,
                limit: CATCH_UP_PAGE,
            };
            let store = store.clone();
            let page = match tokio::task::spawn_blocking(move || store.scan_log_order(&request))
                .await
            {
                Ok(page) => page,
                Err(error) => return Err(self.fail(format!("the catch-up failed: {error}")).await),
            };
            for event in &page.events {
                self.send_event(event).await?;
                after = Some(event.position);
            }
            if page.next.is_none() {
                return Ok(before.checked_sub(1).map(last_event_of).max(after));
            }
        }
    }

    /// Sends the events of one log record that the query selects and that come after
    /// `after`, moving `after` past the record.
    async fn send_record(
        &mut self,
        position: Position,
        payload: &[u8],
        after: &mut Option<EventPosition>,
    ) -> Result<(), Ended> {
        let Ok(batch) = BatchRef::parse(payload) else {
            return Ok(());
        };
        if batch.tenant != TenantId::DEFAULT_NAME {
            return Ok(());
        }
        for (index, entry) in batch.iter().enumerate() {
            let Ok(entry) = entry else { break };
            let event_position = EventPosition::new(position, index as u32);
            if after.is_some_and(|a| event_position <= a) {
                continue;
            }
            *after = Some(event_position);
            let Ok(record) = Record::decode(entry.record) else {
                continue;
            };
            let Some(processed) = self.query.process(batch.tag, &record) else {
                continue;
            };
            let event = FoundEvent {
                position: event_position,
                time_ns: u64::try_from(entry.time.as_unix_nanos()).unwrap_or(0),
                tag: batch.tag.to_owned(),
                record: entry.record.to_vec(),
                labels: Arc::new(self.labels.read(batch.tag, entry.record)),
                line: processed.line.into_owned(),
                extracted: processed.labels,
            };
            self.send_event(&event).await?;
        }
        Ok(())
    }

    async fn send_event(&mut self, event: &FoundEvent) -> Result<(), Ended> {
        let data = event_json(event);
        self.send_raw(format!("id: {}\ndata: {data}\n\n", event.position))
            .await
    }

    /// Tells the client why its stream ends here (`event: error`), rather than going on past
    /// events it could not send.
    async fn fail(&mut self, error: String) -> Ended {
        let error = json!({ "error": error });
        match self
            .send_raw(format!("event: error\ndata: {error}\n\n"))
            .await
        {
            Ok(()) => Ended::Failed,
            Err(ended) => ended,
        }
    }

    /// Queues a message; waits while the client is behind, unless flumen stops.
    async fn send_raw(&mut self, message: String) -> Result<(), Ended> {
        tokio::select! {
            sent = self.send.send(Ok(Bytes::from(message))) => sent.map_err(|_| Ended::Gone)?,
            _ = self.closing.wait_for(|c| *c) => return Err(Ended::Closing),
        }
        self.last_sent = Instant::now();
        Ok(())
    }
}

/// A position past every event of log record `record`.
fn last_event_of(record: u64) -> EventPosition {
    EventPosition::new(Position::new(record), u32::MAX)
}
