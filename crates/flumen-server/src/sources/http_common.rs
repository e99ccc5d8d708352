//! What the sources that answer requests (HTTP, OTLP) share: one [`Ingest`] behind a mutex for
//! all their connections, a request stored whole or refused, and, beside the listeners, a loop
//! that releases the events their filters held back.

use std::future::Future;
use std::time::{Duration, Instant};

use flumen_wal::WalError;
use tokio::sync::{Mutex, watch};

use super::{Ingest, IngestError, stopped};

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
}

/// Appends one request's `count` events (`entries`) under `tag` if the log has room for them,
/// and waits until they are durable.
pub(crate) async fn store_request(
    ingest: &Mutex<Ingest>,
    tag: &str,
    count: u32,
    entries: &[u8],
) -> Result<(), StoreError> {
    let mut ack = {
        let mut ingest = ingest.lock().await;
        // Batch header and tag on top of the entries; a little over is harmless.
        if !ingest.wal().has_room(entries.len() + tag.len() + 512) {
            return Err(StoreError::Full);
        }
        match ingest.append(tag, None, count, entries).await {
            Ok(ack) => ack,
            Err(IngestError::Rejected(reason)) => return Err(StoreError::Rejected(reason)),
            Err(IngestError::Log(error)) => return Err(StoreError::Log(error)),
        }
    };
    if ack.durable().await {
        Ok(())
    } else {
        Err(StoreError::NotDurable)
    }
}

/// How often the source looks for held events (multiline groups) whose timeout has passed.
const FLUSH_TICK: Duration = Duration::from_millis(50);

/// Runs `serve` (the listeners, until `stop` turns true) beside the release of held events, then
/// stores every event the filters of `source` still hold.
pub(crate) async fn serve_and_flush(
    source: &str,
    ingest: &Mutex<Ingest>,
    stop: watch::Receiver<bool>,
    serve: impl Future<Output = ()>,
) {
    tokio::join!(flush_held_events(source, ingest, stop), serve);
    if let Err(error) = ingest.lock().await.flush_all().await {
        tracing::error!(message = "Held events could not be stored at shutdown.", source = %source, %error);
    }
}

/// Releases the events the filters of `source` held back in `ingest` once their timeout passes,
/// until `stop` turns true; requests that wait for them are answered then.
async fn flush_held_events(source: &str, ingest: &Mutex<Ingest>, mut stop: watch::Receiver<bool>) {
    if !ingest.lock().await.may_hold() {
        // No filter joins events: nothing is ever due, so do not wake up for it.
        return stopped(&mut stop).await;
    }
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(FLUSH_TICK) => {}
        }
        let mut ingest = ingest.lock().await;
        if ingest.next_flush().is_some_and(|due| due <= Instant::now())
            && let Err(error) = ingest.flush_due().await
        {
            tracing::error!(message = "Held events could not be stored.", source = %source, %error);
        }
    }
}
