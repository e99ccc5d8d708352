//! `GET /metrics`: Prometheus text, with the log's gauges read at the moment of the request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;

use super::ApiState;

pub(super) async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let stats = state.wal.stats();
    metrics::gauge!("flumen_log_size_bytes").set(stats.size_bytes as f64);
    metrics::gauge!("flumen_log_segments").set(stats.segments as f64);
    metrics::gauge!("flumen_log_full").set(if stats.full { 1.0 } else { 0.0 });
    metrics::gauge!("flumen_log_disk_full").set(if state.wal.disk_full() { 1.0 } else { 0.0 });
    metrics::gauge!("flumen_log_next_sequence").set(stats.durable_end.get() as f64);
    metrics::gauge!("flumen_log_first_sequence").set(stats.first.get() as f64);
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
