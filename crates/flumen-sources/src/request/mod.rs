//! What the sources that answer requests (HTTP, OTLP) share: a request stored whole or refused,
//! and, beside the listeners, a loop that releases the events their filters held back.

pub(crate) mod clients;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flumen_codec::batches::Batches;
use flumen_wal::WalError;
use tokio::sync::watch;

use crate::ingest::chunks::ChunkAck;
use crate::{Ingest, IngestError, stopped};
use clients::{ClientSessions, RequestIngest, TooManyClients};

/// Why a request's events were not stored.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// The log has no room for them: to be retried.
    Full,
    /// The events themselves cannot be stored: not to be retried.
    Rejected(String),
    /// The log failed or is closing: to be retried.
    Log(WalError),
    /// They were taken but did not become durable: to be retried.
    NotDurable,
    /// Every client session is serving a request: to be retried.
    Busy(TooManyClients),
}

impl StoreError {
    /// The HTTP answer: 400 for events that cannot be stored, otherwise 503 with `Retry-After`.
    pub(crate) fn into_response(self) -> Response {
        match self {
            Self::Rejected(reason) => {
                (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
            }
            Self::Full => retry_later("the log is full; retry later\n"),
            Self::Log(error) => retry_later(&format!("{error}\n")),
            Self::NotDurable => retry_later("the events could not be stored; retry later\n"),
            Self::Busy(error) => retry_later(&format!("{error}\n")),
        }
    }
}

/// A 503 with `Retry-After: 1` and `message`: the request may succeed if sent again.
pub(crate) fn retry_later(message: &str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, message.to_owned()).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

impl From<TooManyClients> for StoreError {
    fn from(error: TooManyClients) -> Self {
        Self::Busy(error)
    }
}

impl From<IngestError> for StoreError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Rejected(reason) => Self::Rejected(reason),
            IngestError::Log(error) => Self::Log(error),
        }
    }
}

/// Appends one request's `count` events (`entries`) under `tag` if the log has room for them,
/// and waits until they are durable.
pub(crate) async fn store_request(
    ingest: &mut RequestIngest,
    tag: &str,
    count: u32,
    entries: &[u8],
) -> Result<(), StoreError> {
    store_batches(ingest, tag, entries.len(), [(count, entries)]).await
}

/// Appends one request's events under `tag`, as `batches` of (count, entries) that take `size`
/// bytes in all, if the log has room for all of them; waits until all are durable.
///
/// Each batch is a record of its own in the log, so that no request makes one record larger
/// than a batch. A batch that cannot be appended fails the request; the batches before it
/// may be stored, and the sender's retry stores them again (duplicates, never loss).
///
/// A client's filter session is locked only while its batches go through the filters and into
/// the log's queue, never while they become durable; a request no filter applies to locks
/// nothing.
pub(crate) async fn store_batches<'a>(
    ingest: &mut RequestIngest,
    tag: &str,
    size: usize,
    batches: impl IntoIterator<Item = (u32, &'a [u8]), IntoIter: ExactSizeIterator>,
) -> Result<(), StoreError> {
    let acks = append_through(ingest, tag, size, batches).await?;
    all_durable(acks).await
}

/// Appends the events of one request from `client` that come under several tags, each tag's
/// [`Batches`] through what [`ClientSessions::ingest_for`] gives it, if the log has room for
/// all of them; waits until all are durable (see [`store_batches`]).
pub(crate) async fn store_tagged(
    clients: &ClientSessions,
    client: IpAddr,
    groups: &[(&str, &Batches)],
) -> Result<(), StoreError> {
    let size: usize = groups.iter().map(|(_, b)| b.entries.len()).sum();
    // Checked for the whole request first, so that a full log refuses it before any tag is
    // stored.
    if !clients.has_room(size) {
        return Err(StoreError::Full);
    }
    let mut acks = Vec::new();
    for &(tag, batches) in groups {
        let mut ingest = clients.ingest_for(client, tag).await?;
        let appended =
            append_through(&mut ingest, tag, batches.entries.len(), batches.batches()).await?;
        acks.extend(appended);
    }
    all_durable(acks).await
}

/// Appends batches through `ingest`, locking a client's session only while they go through
/// the filters and into the log's queue.
async fn append_through<'a>(
    ingest: &mut RequestIngest,
    tag: &str,
    size: usize,
    batches: impl IntoIterator<Item = (u32, &'a [u8]), IntoIter: ExactSizeIterator>,
) -> Result<Vec<ChunkAck>, StoreError> {
    match ingest {
        RequestIngest::Session(session) => {
            append_batches(&mut *session.lock().await, tag, size, batches).await
        }
        RequestIngest::Own(ingest) => append_batches(ingest, tag, size, batches).await,
    }
}

/// Waits until every acknowledgement says durable.
async fn all_durable(acks: Vec<ChunkAck>) -> Result<(), StoreError> {
    for mut ack in acks {
        if !ack.durable().await {
            return Err(StoreError::NotDurable);
        }
    }
    Ok(())
}

/// Appends one request's batches (see [`store_batches`]) if the log has room for all of them;
/// their acknowledgements, in order.
async fn append_batches<'a>(
    ingest: &mut Ingest,
    tag: &str,
    size: usize,
    batches: impl IntoIterator<Item = (u32, &'a [u8]), IntoIter: ExactSizeIterator>,
) -> Result<Vec<ChunkAck>, StoreError> {
    let batches = batches.into_iter();
    // A batch header and the tag on top of each batch's entries; a little over is harmless.
    if !ingest
        .wal()
        .has_room(size + batches.len() * (tag.len() + 512))
    {
        return Err(StoreError::Full);
    }
    let mut acks = Vec::with_capacity(batches.len());
    for (count, entries) in batches {
        acks.push(ingest.append(tag, None, count, entries).await?);
    }
    Ok(acks)
}

/// How often a source looks for held events (multiline groups) whose timeout has passed.
pub(crate) const FLUSH_TICK: Duration = Duration::from_millis(50);

/// Where a source keeps the filter sessions whose held events [`serve_and_flush`] releases.
pub(crate) trait HeldEvents {
    /// How often to look for held events that are due; never with `None`.
    async fn tick(&self) -> Option<Duration>;

    /// Stores the held events whose timeout has passed; failures are logged for `source`.
    async fn flush_due(&self, source: &str);

    /// Stores every held event (the source is stopping); failures are logged for `source`.
    async fn flush_all(&self, source: &str);
}

/// Runs `serve` (the listeners, until `stop` turns true) beside the release of held events, then
/// stores every event the filters of `source` still hold in `sessions`.
pub(crate) async fn serve_and_flush(
    source: &str,
    sessions: &impl HeldEvents,
    stop: watch::Receiver<bool>,
    serve: impl Future<Output = ()>,
) {
    tokio::join!(flush_held_events(source, sessions, stop), serve);
    sessions.flush_all(source).await;
}

/// Releases the events the filters of `source` held back in `sessions` once their timeout
/// passes, until `stop` turns true; requests that wait for them are answered then.
async fn flush_held_events(
    source: &str,
    sessions: &impl HeldEvents,
    mut stop: watch::Receiver<bool>,
) {
    let Some(tick) = sessions.tick().await else {
        return stopped(&mut stop).await;
    };
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        sessions.flush_due(source).await;
    }
}
