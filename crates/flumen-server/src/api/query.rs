//! flumen's own search API over the embedded store.
//!
//! - `GET /api/v1/query?query=…`: matching events as NDJSON, one JSON object per line, then one
//!   closing line. Parameters: `query` (the query language; required), `start` and `end` (RFC
//!   3339, or Unix seconds, milliseconds or nanoseconds by their size; default the last hour),
//!   `since` (a duration such as `15m`, instead of `start`), `limit` (default 100, at most the
//!   store's `max_limit`), `direction` (`backward`, newest first, the default; or `forward`),
//!   `cursor` (the `next` of an earlier answer, to continue after it).
//!
//!   An event line: `{"time":"2026-12-03T12:00:00.000000001Z","time_ns":…,"position":"19.39",
//!   "tag":"…","labels":{…},"line":"…","record":{…}}`. `position` is the event's place in
//!   the log, the cursor live streams use too. The closing line:
//!   `{"done":true,"next":"…"|null,"truncated":null|"timeout","stats":{…}}`.
//! - `GET /api/v1/labels` and `GET /api/v1/label/{name}/values`, with `start`, `end` and
//!   `since`: `{"labels":[…]}` and `{"values":[…]}`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flumen_event::TenantId;
use flumen_select::Selector;
use flumen_store::{Direction, SearchCursor, SearchRequest, SearchResult, Store};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiState};

/// How far back a search looks when it names no start.
const DEFAULT_RANGE: Duration = Duration::from_secs(3600);
/// How many events a search returns when it names no limit.
const DEFAULT_LIMIT: usize = 100;

/// The parameters every store endpoint takes for its time range.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeParams {
    start: Option<String>,
    end: Option<String>,
    since: Option<String>,
}

impl RangeParams {
    /// True when the request names no bound.
    pub(crate) fn is_empty(&self) -> bool {
        self.start.is_none() && self.end.is_none() && self.since.is_none()
    }

    /// From `start` (Loki's `tail` takes no other bound).
    pub(crate) fn starting(start: Option<String>) -> Self {
        Self {
            start,
            ..Self::default()
        }
    }
}

/// `GET /api/v1/query`'s parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct QueryParams {
    query: Option<String>,
    limit: Option<usize>,
    direction: Option<String>,
    cursor: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

pub(crate) fn store_of(state: &ApiState) -> Result<Arc<Store>, ApiError> {
    state.store.clone().ok_or_else(|| {
        ApiError::NotFound("the store is off: add a [store] section to the configuration".into())
    })
}

pub(crate) async fn query(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let request = search_request(&params, SystemTime::now(), store.config().max_limit)?;
    let result = tokio::task::spawn_blocking(move || store.search(&request))
        .await
        .map_err(|e| ApiError::Unavailable(format!("the search failed: {e}")))?;
    let body = render_ndjson(&result);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /api/v1/store/compact`: merges every partition of the store into one file now (as
/// happens by itself once a partition's hour is over), then answers with the store's figures.
pub(crate) async fn compact(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let store = store_of(&state)?;
    let stats = tokio::task::spawn_blocking(move || store.compact_now().map(|()| store.stats()))
        .await
        .map_err(|e| ApiError::Unavailable(format!("the compaction failed: {e}")))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let body = json!({
        "files": stats.files,
        "chunks": stats.chunks,
        "events": stats.events,
        "bytes": stats.bytes,
    });
    Ok(axum::Json(body).into_response())
}

pub(crate) async fn labels(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<LabelParams>,
) -> Result<Response, ApiError> {
    let names = params.names(&*store_of(&state)?, DEFAULT_RANGE)?;
    Ok(axum::Json(json!({ "labels": names })).into_response())
}

pub(crate) async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(params): Query<LabelParams>,
) -> Result<Response, ApiError> {
    let values = params.values(&*store_of(&state)?, &name, DEFAULT_RANGE)?;
    Ok(axum::Json(json!({ "values": values })).into_response())
}

/// The parameters of the label endpoints (flumen's and Loki's): a range, and an optional
/// selector of the streams to look at.
#[derive(Debug, Deserialize)]
pub(crate) struct LabelParams {
    query: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

impl LabelParams {
    /// Every (name, value) label pair of the streams the request is about, from the store's
    /// catalog.
    fn label_pairs(
        &self,
        store: &Store,
        default_range: Duration,
    ) -> Result<impl Iterator<Item = (String, String)>, ApiError> {
        let (start, end) = self.range.resolve_or(SystemTime::now(), default_range)?;
        let selector = stream_selector(self.query.as_deref().unwrap_or("{}"))?;
        Ok(store
            .streams(TenantId::DEFAULT_NAME, &selector, start, end)
            .into_iter()
            .flat_map(|s| s.labels))
    }

    /// The label names of those streams, sorted.
    pub(crate) fn names(
        &self,
        store: &Store,
        default_range: Duration,
    ) -> Result<BTreeSet<String>, ApiError> {
        Ok(self
            .label_pairs(store, default_range)?
            .map(|(name, _)| name)
            .collect())
    }

    /// The values label `name` takes in those streams, sorted.
    pub(crate) fn values(
        &self,
        store: &Store,
        name: &str,
        default_range: Duration,
    ) -> Result<BTreeSet<String>, ApiError> {
        Ok(self
            .label_pairs(store, default_range)?
            .filter_map(|(n, value)| (n == name).then_some(value))
            .collect())
    }
}

/// A stream selector alone (no stages), as the label and index endpoints take.
pub(crate) fn stream_selector(text: &str) -> Result<Selector, ApiError> {
    Selector::parse(text).map_err(|e| ApiError::BadRequest(format!("parse error {e}")))
}

/// The `query` parameter, parsed: a log query (a selector with stages).
pub(crate) fn required_query(text: Option<&str>) -> Result<Selector, ApiError> {
    let text =
        text.ok_or_else(|| ApiError::BadRequest("query: missing (for example query={})".into()))?;
    Selector::parse(text).map_err(|e| ApiError::BadRequest(format!("query: {e}")))
}

/// The search a request asks for, or why it cannot be run.
fn search_request(
    params: &QueryParams,
    now: SystemTime,
    max_limit: usize,
) -> Result<SearchRequest, ApiError> {
    let query = required_query(params.query.as_deref())?;
    let (start_ns, end_ns) = params.range.resolve(now)?;
    let direction = match params.direction.as_deref() {
        None | Some("backward") => Direction::Backward,
        Some("forward") => Direction::Forward,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "direction: {other:?} is neither backward nor forward"
            )));
        }
    };
    let after = params
        .cursor
        .as_deref()
        .map(str::parse::<SearchCursor>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("cursor: {e}")))?;
    Ok(SearchRequest {
        tenant: TenantId::DEFAULT_NAME.to_owned(),
        query,
        start_ns,
        end_ns,
        limit: checked_limit(params.limit.unwrap_or(DEFAULT_LIMIT), max_limit)?,
        direction,
        after,
    })
}

impl RangeParams {
    /// A range from its three parameters.
    pub(crate) fn new(start: Option<String>, end: Option<String>, since: Option<String>) -> Self {
        Self { start, end, since }
    }

    /// `[start, end)` in Unix nanoseconds; without a start, the hour before the end.
    pub(crate) fn resolve(&self, now: SystemTime) -> Result<(u64, u64), ApiError> {
        self.resolve_or(now, DEFAULT_RANGE)
    }

    /// `[start, end)` in Unix nanoseconds; without a start, `default_range` before the end.
    pub(crate) fn resolve_or(
        &self,
        now: SystemTime,
        default_range: Duration,
    ) -> Result<(u64, u64), ApiError> {
        let end = match &self.end {
            Some(text) => {
                parse_time(text).map_err(|m| ApiError::BadRequest(format!("end: {m}")))?
            }
            None => unix_ns(now),
        };
        let start = match (&self.start, &self.since) {
            (Some(text), _) => {
                parse_time(text).map_err(|m| ApiError::BadRequest(format!("start: {m}")))?
            }
            (None, Some(since)) => {
                let since = humantime::parse_duration(since)
                    .map_err(|e| ApiError::BadRequest(format!("since: {e}")))?;
                end.saturating_sub(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
            }
            (None, None) => end.saturating_sub(default_range.as_nanos() as u64),
        };
        if start > end {
            return Err(ApiError::BadRequest("start: after end".into()));
        }
        // `end` is inclusive for people (`--to now`); the store's end is exclusive.
        Ok((start, end.saturating_add(1)))
    }
}

/// `limit`, when the store allows it; otherwise a 400 that says the store's limit (as Loki's
/// `max_entries_limit_per_query` does), rather than fewer events than asked without a word.
pub(crate) fn checked_limit(limit: usize, max_limit: usize) -> Result<usize, ApiError> {
    match limit {
        0 => Err(ApiError::BadRequest("limit: must be at least 1".into())),
        limit if limit > max_limit => Err(ApiError::BadRequest(format!(
            "max entries limit per query exceeded, limit > max_limit ({limit} > {max_limit}); raise [store] max_limit or page with the cursor"
        ))),
        limit => Ok(limit),
    }
}

pub(crate) fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A time as Loki takes it: RFC 3339, or a Unix time in seconds (with a fraction),
/// milliseconds or nanoseconds, told apart by the size of the number.
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(integer) = text.parse::<u64>() {
        return Ok(match integer {
            // Up to year 5138 in seconds, then milliseconds, then nanoseconds.
            0..100_000_000_000 => integer.saturating_mul(1_000_000_000),
            100_000_000_000..100_000_000_000_000 => integer.saturating_mul(1_000_000),
            _ => integer,
        });
    }
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok((seconds * 1e9) as u64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("{text:?} is not a time (RFC 3339 or a Unix time)"))
        .and_then(|t| {
            t.timestamp_nanos_opt()
                .and_then(|ns| u64::try_from(ns).ok())
                .ok_or_else(|| format!("{text:?} is out of range"))
        })
}

/// The NDJSON body of a search answer.
fn render_ndjson(result: &SearchResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.events.len() * 256);
    for event in &result.events {
        flumen_live::render::write_event(&mut out, &event.into());
        out.push(b'\n');
    }
    let stats = &result.stats;
    let closing = json!({
        "done": true,
        "next": result.next.map(|c| c.to_string()),
        "truncated": result.truncated.map(|_| "timeout"),
        "stats": {
            "chunks_in_range": stats.chunks_in_range,
            "chunks_read": stats.chunks_read,
            "bytes_read": stats.bytes_read,
            "bytes_decompressed": stats.bytes_decompressed,
            "events_scanned": stats.events_scanned,
            "corrupt_chunks": stats.corrupt_chunks,
        },
    });
    serde_json::to_writer(&mut out, &closing).expect("JSON to a Vec");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_loki_reads_them() {
        let second = 1_796_299_200u64;
        assert_eq!(parse_time("1796299200"), Ok(second * 1_000_000_000));
        assert_eq!(parse_time("1796299200000"), Ok(second * 1_000_000_000));
        assert_eq!(
            parse_time("1796299200000000001"),
            Ok(second * 1_000_000_000 + 1)
        );
        assert_eq!(
            parse_time("1796299200.5"),
            Ok(second * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(
            parse_time("2026-12-03T12:00:00.000000001Z"),
            Ok(second * 1_000_000_000 + 1)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
