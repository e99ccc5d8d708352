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
//! - `GET /loki/api/v1/series?match[]=…`: the label sets of the streams the selectors match.
//! - `GET /loki/api/v1/index/stats?query=…`: streams, chunks, bytes and entries.
//! - `GET /loki/api/v1/index/volume?query=…`: bytes by series (the selector's label names, or
//!   `targetLabels`), largest first, at most `limit` (100).
//!
//! `series`, `index/stats` and `index/volume` are answered from the store's catalog, without
//! reading chunks: their selectors' matchers on labels are exact, matchers on indexed fields
//! use the chunks' filters, and line filters are not applied (as in Loki, whose index knows
//! streams, not lines). Bytes are the stored records' bytes before compression.
//!
//! Errors are answered with 400 and a plain-text message, as Loki does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, RawQuery, State};
use axum::response::{IntoResponse, Response};
use flumen_event::TenantId;
use flumen_select::{Query as LokiQuery, Selector};
use flumen_store::{Direction, MetricRequest, ScanStats, SearchRequest, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use super::query::{
    LabelParams, RangeParams, checked_limit, parse_time, store_of, stream_selector,
};
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
    let started = std::time::Instant::now();
    let truncated;
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
            let result_stats = result.stats;
            truncated = result.truncated.is_some();
            if instant {
                let result: Vec<Value> = result
                    .series
                    .iter()
                    .filter_map(|s| {
                        let (t, v) = s.points.last()?;
                        Some(json!({ "metric": s.labels, "value": sample(*t, *v) }))
                    })
                    .collect();
                json!({ "resultType": "vector", "result": result, "stats": loki_stats(&result_stats, started) })
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
                json!({ "resultType": "matrix", "result": result, "stats": loki_stats(&result_stats, started) })
            }
        }
        LokiQuery::Log(_) if instant => {
            return Err(ApiError::BadRequest(
                "log queries are not supported as an instant query type, please change your query to a range query type".into(),
            ));
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
                limit: checked_limit(params.limit.unwrap_or(100), store.config().max_limit)?,
                direction,
                after: None,
            };
            let result = tokio::task::spawn_blocking(move || store.search(&request))
                .await
                .map_err(|e| ApiError::Unavailable(format!("the query failed: {e}")))?;
            let stats = result.stats;
            truncated = result.truncated.is_some();
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
            json!({ "resultType": "streams", "result": result, "stats": loki_stats(&stats, started) })
        }
    };
    let mut body = json!({ "status": "success", "data": data });
    if truncated {
        // Loki's answers carry `warnings` for results that are not the whole truth.
        body["warnings"] =
            json!(["the query ran out of time ([store] query_timeout); the result is partial"]);
    }
    Ok(axum::Json(body).into_response())
}

/// How far back label names and values look by default, as Loki's.
const LABELS_RANGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

pub(crate) async fn labels(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<LabelParams>,
) -> Result<Response, ApiError> {
    let names = params.names(&*store_of(&state)?, LABELS_RANGE)?;
    Ok(axum::Json(json!({ "status": "success", "data": names })).into_response())
}

pub(crate) async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(params): Query<LabelParams>,
) -> Result<Response, ApiError> {
    let values = params.values(&*store_of(&state)?, &name, LABELS_RANGE)?;
    Ok(axum::Json(json!({ "status": "success", "data": values })).into_response())
}

/// A Prometheus sample: `[<unix seconds>, "<value>"]`, the seconds whole when they are.
fn sample(time_ns: i64, value: f64) -> Value {
    let seconds = if time_ns % 1_000_000_000 == 0 {
        json!(time_ns / 1_000_000_000)
    } else {
        json!(time_ns as f64 / 1e9)
    };
    json!([seconds, value.to_string()])
}

/// A query's statistics in Loki's shape (`data.stats`): what the store read goes under
/// `store` and `summary`; flumen has no ingesters, so theirs are zero.
fn loki_stats(stats: &ScanStats, started: std::time::Instant) -> Value {
    let seconds = started.elapsed().as_secs_f64();
    let per_second = |n: u64| {
        if seconds > 0.0 {
            (n as f64 / seconds) as u64
        } else {
            0
        }
    };
    json!({
        "ingester": {
            "compressedBytes": 0, "decompressedBytes": 0, "decompressedLines": 0,
            "headChunkBytes": 0, "headChunkLines": 0, "totalBatches": 0,
            "totalChunksMatched": 0, "totalDuplicates": 0, "totalLinesSent": 0,
            "totalReached": 0,
        },
        "store": {
            "compressedBytes": stats.bytes_read,
            "decompressedBytes": stats.bytes_decompressed,
            "decompressedLines": stats.events_scanned,
            "chunksDownloadTime": 0,
            "totalChunksRef": stats.chunks_in_range,
            "totalChunksDownloaded": stats.chunks_read,
            "totalDuplicates": 0,
        },
        "summary": {
            "bytesProcessedPerSecond": per_second(stats.bytes_decompressed),
            "execTime": seconds,
            "linesProcessedPerSecond": per_second(stats.events_scanned),
            "queueTime": 0,
            "totalBytesProcessed": stats.bytes_decompressed,
            "totalLinesProcessed": stats.events_scanned,
        },
    })
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

pub(crate) async fn series(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let range = RangeParams::new(param("start"), param("end"), param("since"));
    let (start, end) = range.resolve(SystemTime::now())?;
    let selectors = pairs
        .iter()
        .filter(|(k, _)| k == "match[]" || k == "match")
        .map(|(_, v)| stream_selector(v))
        .collect::<Result<Vec<_>, _>>()?;
    if selectors.is_empty() {
        return Err(ApiError::BadRequest(
            "match[]: at least one selector is needed".into(),
        ));
    }
    let mut label_sets = std::collections::BTreeSet::new();
    for selector in &selectors {
        for stream in store.streams(TenantId::DEFAULT_NAME, selector, start, end) {
            label_sets.insert(stream.labels.into_iter().collect::<BTreeMap<_, _>>());
        }
    }
    let data: Vec<_> = label_sets.into_iter().collect();
    Ok(axum::Json(json!({ "status": "success", "data": data })).into_response())
}

/// The parameters of `index/stats` and `index/volume`.
#[derive(Debug, Deserialize)]
pub(crate) struct IndexParams {
    query: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "targetLabels")]
    target_labels: Option<String>,
    #[serde(rename = "aggregateBy")]
    aggregate_by: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

impl IndexParams {
    fn selector(&self) -> Result<Selector, ApiError> {
        stream_selector(self.query.as_deref().unwrap_or("{}"))
    }
}

pub(crate) async fn index_stats(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<IndexParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let (start, end) = params.range.resolve(SystemTime::now())?;
    let streams = store.streams(TenantId::DEFAULT_NAME, &params.selector()?, start, end);
    Ok(axum::Json(json!({
        "streams": streams.len(),
        "chunks": streams.iter().map(|s| s.chunks).sum::<u64>(),
        "bytes": streams.iter().map(|s| s.bytes).sum::<u64>(),
        "entries": streams.iter().map(|s| s.events).sum::<u64>(),
    }))
    .into_response())
}

pub(crate) async fn index_volume(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<IndexParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    if params
        .aggregate_by
        .as_deref()
        .is_some_and(|a| a != "series")
    {
        return Err(ApiError::BadRequest(
            "aggregateBy: only `series` is supported".into(),
        ));
    }
    let (start, end) = params.range.resolve(SystemTime::now())?;
    let selector = params.selector()?;
    // Group by the target labels, or else by the label names the selector names.
    let group_by: Vec<String> = match &params.target_labels {
        Some(list) => list
            .split(',')
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
        None => selector
            .stream_matchers()
            .iter()
            .map(|m| m.name().to_owned())
            .collect(),
    };
    let mut volumes: BTreeMap<BTreeMap<String, String>, u64> = BTreeMap::new();
    for stream in store.streams(TenantId::DEFAULT_NAME, &selector, start, end) {
        let key = stream
            .labels
            .into_iter()
            .filter(|(name, _)| group_by.contains(name))
            .collect();
        *volumes.entry(key).or_default() += stream.bytes;
    }
    let mut volumes: Vec<_> = volumes.into_iter().collect();
    volumes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    volumes.truncate(params.limit.unwrap_or(100));
    let at = end.saturating_sub(1);
    let result: Vec<Value> = volumes
        .into_iter()
        .map(|(metric, bytes)| json!({ "metric": metric, "value": [at as f64 / 1e9, bytes.to_string()] }))
        .collect();
    Ok(axum::Json(json!({
        "status": "success",
        "data": { "resultType": "vector", "result": result },
    }))
    .into_response())
}
