//! Sources: the ways events enter flumen.
//!
//! Each source owns its listeners and turns what senders send into batches (see
//! `flumen_event::batch`) appended to the durable log through an [`Ingest`]. A source never
//! talks to an output: the log is the only way through.
//!
//! Every source has a folder with the same files: `mod.rs` (the bound source: listeners and
//! connections), `config.rs` (its `[sources.NAME]` settings), and what else it needs. Adding a
//! source means a folder here and a variant in [`SourceConfig`] (`config.rs`) and in
//! [`BoundSource`] (this file). A source that listens binds, accepts and speaks TLS through
//! [`net`]; a stream protocol (Forward, syslog over TCP) is a [`net::FrameProtocol`] driven by
//! the one connection loop there.

#![deny(missing_docs)]

pub mod config;
pub mod forward;
pub mod http;
pub mod ingest;
pub mod loki;
pub mod net;
pub mod otlp;
mod request;
pub mod syslog;
pub(crate) mod tag_template;
pub mod tail;

pub use config::SourceConfig;
pub use ingest::{Ingest, IngestError};

use std::sync::Arc;
use std::time::{Duration, Instant};

use flumen_event::BatchRef;
use flumen_process::Pipeline;
use flumen_routing::RouteTable;
use flumen_wal::{Read, Wal, WalError};
use tokio::sync::watch;

/// A source whose listeners are bound: binding happens at start-up, so that a port in use stops
/// flumen before it reports ready.
#[derive(Debug)]
pub enum BoundSource {
    /// The Forward protocol.
    Forward(forward::ForwardSource),
    /// Fluentd's `in_http`.
    Http(http::HttpSource),
    /// Syslog.
    Syslog(syslog::SyslogSource),
    /// Files, tailed.
    Tail(tail::TailSource),
    /// OpenTelemetry logs.
    Otlp(otlp::OtlpSource),
    /// Grafana Loki's push API.
    Loki(loki::LokiSource),
}

impl BoundSource {
    /// Binds the listeners `config` asks for (or, for files, checks what it names).
    pub async fn bind(name: &str, config: &SourceConfig) -> std::io::Result<Self> {
        Ok(match config {
            SourceConfig::Forward(c) => Self::Forward(forward::ForwardSource::bind(name, c).await?),
            SourceConfig::Http(c) => Self::Http(http::HttpSource::bind(name, c).await?),
            SourceConfig::Syslog(c) => Self::Syslog(syslog::SyslogSource::bind(name, c).await?),
            SourceConfig::Tail(c) => Self::Tail(tail::TailSource::bind(name, c).await?),
            SourceConfig::Otlp(c) => Self::Otlp(otlp::OtlpSource::bind(name, c).await?),
            SourceConfig::Loki(c) => Self::Loki(loki::LokiSource::bind(name, c).await?),
        })
    }

    /// The bound address (for port 0 in the configuration); none for sources that do not
    /// listen.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Forward(source) => source.local_addr().ok(),
            Self::Http(source) => source.local_addr().ok(),
            Self::Syslog(source) => source.local_addr(),
            Self::Tail(source) => source.local_addr(),
            Self::Otlp(source) => source.local_addr(),
            Self::Loki(source) => source.local_addr(),
        }
    }

    /// Takes events until `stop` turns true, then finishes what it read.
    pub async fn run(self, shared: SourceShared, stop: watch::Receiver<bool>) {
        match self {
            Self::Forward(source) => source.run(shared, stop).await,
            Self::Http(source) => source.run(shared, stop).await,
            Self::Syslog(source) => source.run(shared, stop).await,
            Self::Tail(source) => source.run(shared, stop).await,
            Self::Otlp(source) => source.run(shared, stop).await,
            Self::Loki(source) => source.run(shared, stop).await,
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A time far enough away to stand for "never" (a timer that is not armed).
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Calls `each` with the sequence number and header of every batch in the log's `segments`
/// newest segments, oldest first: what sources rebuild their memory of stored chunks from at
/// start.
pub(crate) fn each_recent_batch(
    wal: &Wal,
    segments: usize,
    mut each: impl FnMut(u64, BatchRef<'_>),
) -> Result<(), WalError> {
    let mut reader = wal.recent(segments);
    loop {
        // Records removed meanwhile are no longer recent: there is nothing to remember of them.
        let Read::Records(records) = reader.read_blocking(4096, 64 * 1024 * 1024)? else {
            continue;
        };
        if records.is_empty() {
            return Ok(());
        }
        for record in records {
            if let Ok(batch) = BatchRef::parse(&record.payload) {
                each(record.position.get(), batch);
            }
        }
    }
}

/// What every source shares: the log, the routes, the filters, the chunk ledger.
#[derive(Debug, Clone)]
pub struct SourceShared {
    /// The durable log.
    pub wal: Arc<Wal>,
    /// The compiled routes.
    pub routes: Arc<RouteTable>,
    /// The compiled filters.
    pub pipeline: Arc<Pipeline>,
    /// Recent Forward chunk ids.
    pub chunks: Arc<ingest::chunks::ChunkLedger>,
    /// Where sources keep their own state (file positions).
    pub data_dir: std::path::PathBuf,
}
