//! Sources: the ways events enter flumen.
//!
//! Each source owns its listeners and turns what senders send into batches (see
//! `flumen_event::batch`) appended to the durable log through an [`Ingest`]. A source never
//! talks to an output: the log is the only way through. Adding a source means a module here, a
//! variant of `config::SourceConfig` and one of [`BoundSource`].

pub mod chunks;
pub mod forward;
pub mod http;

use std::sync::Arc;

use flumen_event::{BatchBuilder, TenantId};
use flumen_wal::{AppendTicket, Wal, WalError};
use metrics::Counter;

use crate::config::SourceConfig;
use crate::routing::{RouteCache, RouteTable};

/// A source whose listeners are bound: binding happens at start-up, so that a port in use stops
/// flumen before it reports ready.
#[derive(Debug)]
pub enum BoundSource {
    /// The Forward protocol.
    Forward(forward::ForwardSource),
    /// Fluentd's `in_http`.
    Http(http::HttpSource),
}

impl BoundSource {
    /// Binds the listeners `config` asks for.
    pub async fn bind(name: &str, config: &SourceConfig) -> std::io::Result<Self> {
        Ok(match config {
            SourceConfig::Forward(c) => Self::Forward(forward::ForwardSource::bind(name, c).await?),
            SourceConfig::Http(c) => Self::Http(http::HttpSource::bind(name, c).await?),
        })
    }

    /// The bound address (for port 0 in the configuration).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Self::Forward(source) => source.local_addr(),
            Self::Http(source) => source.local_addr(),
        }
    }

    /// Takes events until `stop` turns true, then finishes what it read.
    pub async fn run(self, shared: SourceShared, stop: tokio::sync::watch::Receiver<bool>) {
        match self {
            Self::Forward(source) => source.run(shared, stop).await,
            Self::Http(source) => source.run(shared, stop).await,
        }
    }
}

/// What every source shares: the log, the routes, the chunk ledger.
#[derive(Debug, Clone)]
pub struct SourceShared {
    /// The durable log.
    pub wal: Arc<Wal>,
    /// The compiled routes.
    pub routes: Arc<RouteTable>,
    /// Recent Forward chunk ids.
    pub chunks: Arc<chunks::ChunkLedger>,
}

/// Appends a source's events to the log, counting them.
#[derive(Debug)]
pub struct Ingest {
    wal: Arc<Wal>,
    chunks: Arc<chunks::ChunkLedger>,
    tenant: TenantId,
    builder: BatchBuilder,
    label: String,
    routes: RouteCache,
    events: Counter,
    bytes: Counter,
    unrouted: Counter,
    duplicates: Counter,
}

impl Ingest {
    /// An ingest for the source `name`, whose events carry `label`.
    pub fn new(name: &str, label: &str, shared: &SourceShared) -> Self {
        let source = name.to_owned();
        let tenant = TenantId::default_tenant();
        Self {
            wal: shared.wal.clone(),
            chunks: shared.chunks.clone(),
            builder: BatchBuilder::new(tenant.clone(), label).expect("labels are validated"),
            tenant,
            label: label.to_owned(),
            routes: RouteCache::new(shared.routes.clone()),
            events: metrics::counter!("flumen_source_events_total", "source" => source.clone()),
            bytes: metrics::counter!("flumen_source_bytes_total", "source" => source.clone()),
            unrouted: metrics::counter!("flumen_source_unrouted_events_total", "source" => source.clone()),
            duplicates: metrics::counter!("flumen_source_duplicate_events_total", "source" => source),
        }
    }

    /// The log, for sources that check whether it is full before taking a request.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Appends `count` validated entries under `tag`. Waits while the log's queue is full.
    /// Returns `None` when no route wants the tag: the events are counted as unrouted and
    /// dropped, as Fluentd does with events no `<match>` matches.
    pub async fn append(
        &mut self,
        tag: &str,
        chunk: &[u8],
        count: u32,
        entries: &[u8],
    ) -> Result<Option<AppendTicket>, IngestError> {
        if self.routes.outputs_for(&self.label, tag).is_empty() {
            self.unrouted.increment(u64::from(count));
            tracing::debug!(
                message = "No route matches the tag; dropping events.",
                tag,
                count
            );
            return Ok(None);
        }
        let payload = self
            .builder
            .encode(tag, chunk, count, entries)
            .map_err(|e| IngestError::Rejected(e.to_string()))?;
        self.bytes.increment(entries.len() as u64);
        let ticket = self.wal.append(payload).await?;
        self.events.increment(u64::from(count));
        Ok(Some(ticket))
    }
}

impl Ingest {
    /// Appends a Forward chunk that carries a `chunk` id, unless the id was seen before (a
    /// resend): then the chunk is not stored again and is acknowledged with the first copy.
    pub async fn append_chunk(
        &mut self,
        tag: &str,
        chunk: &[u8],
        count: u32,
        entries: &[u8],
    ) -> Result<chunks::ChunkAck, IngestError> {
        let claim = match self.chunks.claim(self.tenant.as_str(), chunk, entries) {
            chunks::Claim::Seen(ack) => {
                self.duplicates.increment(u64::from(count));
                tracing::debug!(
                    message = "A resent chunk was already taken; not storing it again.",
                    tag,
                    count
                );
                return Ok(ack);
            }
            chunks::Claim::New(claim) => claim,
        };
        match self.append(tag, chunk, count, entries).await? {
            Some(ticket) => Ok(chunks::ChunkLedger::track(claim, ticket)),
            None => {
                claim.send_replace(chunks::ChunkState::Durable);
                Ok(chunks::ChunkAck::immediate())
            }
        }
    }
}

/// Why events could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The events themselves cannot be stored (for example a tag over 64 KiB).
    #[error("{0}")]
    Rejected(String),
    /// The log cannot take them: it failed or is closing.
    #[error(transparent)]
    Log(#[from] WalError),
}
