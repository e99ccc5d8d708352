//! The operations API: `GET /healthz` (the process answers), `GET /readyz` (the log is open, the
//! listeners are bound, the log accepts writes, every output is running) and `GET /metrics`
//! (Prometheus text).
//!
//! Built as `fn app(state) -> Router` so tests can call it without a socket. This is the only
//! module that knows the operations endpoints' HTTP shapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flumen_wal::Wal;
use metrics_exporter_prometheus::PrometheusHandle;

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
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    if let Some(error) = state.wal.poisoned() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}\n"),
        );
    }
    if state.wal.disk_full() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the disk is full; inputs are held back until there is room\n".to_owned(),
        );
    }
    if let Some(stopped) = state.stopped_outputs.describe() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {stopped}\n"),
        );
    }
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n".to_owned(),
        );
    }
    (StatusCode::OK, "ready\n".to_owned())
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let stats = state.wal.stats();
    metrics::gauge!("flumen_log_size_bytes").set(stats.size_bytes as f64);
    metrics::gauge!("flumen_log_segments").set(stats.segments as f64);
    metrics::gauge!("flumen_log_full").set(if stats.full { 1.0 } else { 0.0 });
    metrics::gauge!("flumen_log_disk_full").set(if state.wal.disk_full() { 1.0 } else { 0.0 });
    metrics::gauge!("flumen_log_next_sequence").set(stats.durable_end.get() as f64);
    metrics::counter!("flumen_log_dropped_batches_total").absolute(stats.dropped_records);
    metrics::counter!("flumen_log_corrupt_records_total").absolute(stats.corrupt_records);
    metrics::counter!("flumen_log_corrupt_bytes_total").absolute(stats.corrupt_bytes);
    let body = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
