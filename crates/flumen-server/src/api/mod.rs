//! The API: `GET /healthz`, `GET /readyz`, `GET /metrics`, and search over the store
//! (`query.rs`: `GET /api/v1/query`, label names and values, `POST /api/v1/store/compact`),
//! and live streams (`stream.rs`: `GET /api/v1/stream`, Server-Sent Events; `tail.rs`:
//! `GET /api/v1/tail` and Loki's `GET /loki/api/v1/tail`, WebSocket).
//!
//! - `health.rs`: liveness and readiness.
//! - `metrics.rs`: Prometheus text.
//! - `query.rs`: the store's search API; `loki.rs`: Loki's query API over it.
//! - `page.rs`: the web page at `/`, its files embedded in the binary.
//! - `error.rs`: [`ApiError`], the one mapping from errors to HTTP status codes; a handler that
//!   can fail returns `Result<_, ApiError>`.
//!
//! Built as `fn app(state) -> Router` so tests can call it without a socket; [`Api::serve`]
//! runs it on a listener. This is the only module that knows the operations endpoints' HTTP
//! shapes. A new endpoint is a module here and a line in [`app`].

mod deployments;
mod error;
mod health;
mod loki;
mod metrics;
mod page;
mod query;
mod stream;
mod tail;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use flumen_wal::Wal;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::ApiError;

/// What the API reads.
#[derive(Debug)]
pub struct ApiState {
    /// True once every listener is bound, false again when shutting down.
    pub ready: AtomicBool,
    /// The log, for readiness and gauges.
    pub wal: Arc<Wal>,
    /// The metrics recorder's handle; `None` when no recorder is installed (tests).
    pub metrics: Option<PrometheusHandle>,
    /// Outputs that stopped delivering.
    pub stopped_outputs: Arc<StoppedOutputs>,
    /// The embedded store, when it is on.
    pub store: Option<Arc<flumen_store::Store>>,
    /// Set when flumen stops: live streams tell their clients to reconnect, and end.
    pub closing: watch::Sender<bool>,
    /// Live streams.
    pub live: Arc<flumen_live::LiveHub>,
    /// The deployments, unless they are off.
    pub deployments: Option<Arc<crate::deployments::Deployments>>,
}

/// Outputs whose delivery loop ended with an error, and why: such an output delivers nothing
/// until flumen restarts, so flumen is not ready.
#[derive(Debug, Default)]
pub struct StoppedOutputs(Mutex<BTreeMap<String, String>>);

impl StoppedOutputs {
    /// Records that `output` stopped because of `error`.
    pub fn record(&self, output: &str, error: &dyn std::fmt::Display) {
        self.0
            .lock()
            .expect("stopped outputs lock")
            .insert(output.to_owned(), error.to_string());
    }

    /// "output `a` stopped: why; …", or `None` while every output runs.
    fn describe(&self) -> Option<String> {
        let stopped = self.0.lock().expect("stopped outputs lock");
        if stopped.is_empty() {
            return None;
        }
        let each: Vec<String> = stopped
            .iter()
            .map(|(output, error)| format!("output {output} stopped: {error}"))
            .collect();
        Some(each.join("; "))
    }
}

/// The API's routes.
pub fn app(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/query", get(query::query))
        .route("/api/v1/labels", get(query::labels))
        .route("/api/v1/store/compact", post(query::compact))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/tail", get(tail::tail))
        .route(
            "/api/v1/deployments",
            get(deployments::list)
                .post(deployments::create)
                .layer(DefaultBodyLimit::max(deployments::MAX_BODY)),
        )
        .route("/api/v1/deployments/{id}", get(deployments::show))
        .route(
            "/api/v1/deployments/{id}/finish",
            post(deployments::finish).layer(DefaultBodyLimit::max(deployments::MAX_BODY)),
        )
        .route("/api/v1/label/{name}/values", get(query::label_values))
        .route("/loki/api/v1/query_range", get(loki::query_range))
        .route("/loki/api/v1/query", get(loki::instant))
        .route("/loki/api/v1/labels", get(loki::labels))
        .route("/loki/api/v1/label/{name}/values", get(loki::label_values))
        .route("/loki/api/v1/series", get(loki::series))
        .route("/loki/api/v1/index/stats", get(loki::index_stats))
        .route("/loki/api/v1/index/volume", get(loki::index_volume))
        .route("/loki/api/v1/tail", get(tail::loki_tail))
        .route("/", get(page::index))
        .route("/search", get(page::index))
        .route("/deployments", get(page::index))
        .route("/deployments/{id}", get(page::index))
        .route("/assets/{*path}", get(page::asset))
        .with_state(state)
}

/// The API, served.
#[derive(Debug)]
pub struct Api {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    live: Arc<flumen_live::LiveHub>,
}

impl Api {
    /// Listens on `address` and serves [`app`], with the routes of `inputs` (Loki's push API)
    /// beside it, until [`Api::stop`].
    pub async fn serve(
        address: SocketAddr,
        state: Arc<ApiState>,
        inputs: Router,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("api: cannot listen on {address}"))?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let live = state.live.clone();
        let app = app(state)
            .merge(inputs)
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(message = "The API server stopped.", %error);
            }
        });
        tracing::info!(message = "API listening.", address = %addr);
        Ok(Self {
            addr,
            stop,
            task,
            live,
        })
    }

    /// The address the API is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: requests under way may finish until `deadline`, then are cut. Live
    /// streams (closing since flumen began to stop) may send what they hold and their closing
    /// message until then too: a WebSocket is no longer the server's once upgraded.
    pub async fn stop(mut self, deadline: Instant) {
        let _ = self.stop.send(true);
        if tokio::time::timeout_at(deadline.into(), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        if !self.live.wait_closed(deadline).await {
            tracing::warn!(
                message = "Live streams whose clients did not read their closing message are cut.",
                streams = self.live.streams()
            );
        }
    }
}
