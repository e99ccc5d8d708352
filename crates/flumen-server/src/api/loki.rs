//! Loki's HTTP query API over the embedded store, in the shapes of Loki's published
//! documentation, so that Grafana's Loki data source and `logcli` read flumen:
//!
//! - `GET /loki/api/v1/query_range`: log queries as `streams`, metric queries as
//!   `matrix`; `query`, `start`, `end` (default the last hour), `since`, `limit` (100),
//!   `direction` (`backward`), `step` (a duration or seconds; by default the range / 250, at
//!   least one second).
//! - `GET /loki/api/v1/query`: at one `time` (default now): metric queries as `vector`,
//!   log queries as `streams`.
//! - `GET /loki/api/v1/labels`, `GET /loki/api/v1/label/{name}/values`.
//!
//! Errors are answered with 400 and a plain-text message, as Loki does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use flumen_event::TenantId;
use flumen_select::Query as LokiQuery;
use flumen_store::{Direction, MetricRequest, SearchRequest, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use super::query::{RangeParams, parse_time, store_of};
use super::{ApiError, ApiState};

/// The parameters of `query_range` and `query`.
#[derive(Debug, Deserialize)]
pub(crate) struct LokiParams {
    query: Option<String>,
    limit: Option<usize>,
    direction: Option<String>,
    step: Option<String>,
    time: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

pub(crate) async fn query_range(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<LokiParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let (start, end) = params.range.resolve(SystemTime::now())?;
    let end = end.saturating_sub(1);
    let step = match &params.step {
        Some(text) => parse_step(text)?,
        None => ((end - start) / 250).max(1_000_000_000),
    };
    run(store, params, start, end, step, false).await
}

pub(crate) async fn instant(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<LokiParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let time = match &params.time {
        Some(text) => parse_time(text).map_err(|m| ApiError::BadRequest(format!("time: {m}")))?,
        None => super::query::unix_ns(SystemTime::now()),
    };
    // A log query at one time looks back the default hour, as Loki's does.
    let start = time.saturating_sub(3_600_000_000_000);
    run(store, params, start, time, 1_000_000_000, true).await
}

async fn run(
    store: Arc<Store>,
    params: LokiParams,
    start: u64,
    end: u64,
    step: u64,
    instant: bool,
) -> Result<Response, ApiError> {
    let text = params
        .query
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("query: missing".into()))?;
    let query =
        LokiQuery::parse(text).map_err(|e| ApiError::BadRequest(format!("parse error {e}")))?;
    let tenant = TenantId::DEFAULT_NAME.to_owned();
    let data = match query {
        LokiQuery::Metric(query) => {
            let start = if instant { end } else { start };
            let request = MetricRequest {
                tenant,
                query,
                start_ns: start,
                end_ns: end,
                step_ns: step,
            };
            let result = tokio::task::spawn_blocking(move || store.metric(&request))
                .await
                .map_err(|e| ApiError::Unavailable(format!("the query failed: {e}")))?
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            if instant {
                let result: Vec<Value> = result
                    .series
                    .iter()
                    .filter_map(|s| {
                        let (t, v) = s.points.last()?;
                        Some(json!({ "metric": s.labels, "value": sample(*t, *v) }))
                    })
                    .collect();
                json!({ "resultType": "vector", "result": result })
            } else {
                let result: Vec<Value> = result
                    .series
                    .iter()
                    .map(|s| {
                        let values: Vec<Value> =
                            s.points.iter().map(|(t, v)| sample(*t, *v)).collect();
                        json!({ "metric": s.labels, "values": values })
                    })
                    .collect();
                json!({ "resultType": "matrix", "result": result })
            }
        }
        LokiQuery::Log(selector) => {
            let direction = match params.direction.as_deref() {
                None | Some("backward") | Some("BACKWARD") => Direction::Backward,
                Some("forward") | Some("FORWARD") => Direction::Forward,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "direction: {other:?} is neither backward nor forward"
                    )));
                }
            };
            let request = SearchRequest {
                tenant,
                query: selector,
                start_ns: start,
                end_ns: end.saturating_add(1),
                limit: params.limit.unwrap_or(100),
                direction,
                after: None,
            };
            let result = tokio::task::spawn_blocking(move || store.search(&request))
                .await
                .map_err(|e| ApiError::Unavailable(format!("the query failed: {e}")))?;
            // One stream per label set (stream labels and extracted ones), events in the
            // order found.
            let mut streams: BTreeMap<BTreeMap<String, String>, Vec<Value>> = BTreeMap::new();
            for event in &result.events {
                let labels: BTreeMap<String, String> = event
                    .labels
                    .iter()
                    .chain(&event.extracted)
                    .cloned()
                    .collect();
                streams
                    .entry(labels)
                    .or_default()
                    .push(json!([event.time_ns.to_string(), event.line]));
            }
            let result: Vec<Value> = streams
                .into_iter()
                .map(|(stream, values)| json!({ "stream": stream, "values": values }))
                .collect();
            json!({ "resultType": "streams", "result": result })
        }
    };
    Ok(axum::Json(json!({ "status": "success", "data": data })).into_response())
}

pub(crate) async fn labels(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<RangeParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let (start, end) = params.resolve(SystemTime::now())?;
    let names = store.label_names(TenantId::DEFAULT_NAME, start, end);
    Ok(axum::Json(json!({ "status": "success", "data": names })).into_response())
}

pub(crate) async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(params): Query<RangeParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let (start, end) = params.resolve(SystemTime::now())?;
    let values = store.label_values(TenantId::DEFAULT_NAME, &name, start, end);
    Ok(axum::Json(json!({ "status": "success", "data": values })).into_response())
}

/// A Prometheus sample: `[<unix seconds>, "<value>"]`.
fn sample(time_ns: i64, value: f64) -> Value {
    json!([time_ns as f64 / 1e9, value.to_string()])
}

/// A step: a duration (`30s`, `1m`) or a number of seconds.
fn parse_step(text: &str) -> Result<u64, ApiError> {
    let ns = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => (seconds * 1e9) as u64,
        Ok(_) => 0,
        Err(_) => humantime::parse_duration(text)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .map_err(|e| ApiError::BadRequest(format!("step: {e}")))?,
    };
    if ns == 0 {
        return Err(ApiError::BadRequest("step: must be more than zero".into()));
    }
    Ok(ns)
}
