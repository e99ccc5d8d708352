//! `GET /healthz` (the process answers) and `GET /readyz` (the log is open, the listeners are
//! bound, the log accepts writes, every output is running).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;

use super::{ApiError, ApiState};

pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

pub(super) async fn readyz(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    match not_ready_because(&state) {
        Some(reason) => Err(ApiError::Unavailable(format!("not ready: {reason}"))),
        None => Ok("ready\n"),
    }
}

/// Why flumen should not be sent events now, or `None` when it is ready.
fn not_ready_because(state: &ApiState) -> Option<String> {
    if let Some(error) = state.wal.poisoned() {
        return Some(error.to_string());
    }
    if state.wal.disk_full() {
        return Some("the disk is full; inputs are held back until there is room".to_owned());
    }
    if let Some(stopped) = state.stopped_outputs.describe() {
        return Some(stopped);
    }
    if !state.ready.load(Ordering::Relaxed) {
        return Some("starting or stopping".to_owned());
    }
    None
}
