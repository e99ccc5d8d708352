//! Live streams over HTTP: `GET /api/v1/stream` (Server-Sent Events), and what the WebSocket
//! endpoints (`tail.rs`) share with it: the request's parameters and where a stream starts.
//!
//! A stream first sends what the store holds (the newest `limit` events in the range, by
//! default the last hour, oldest first), then follows the log: each event once it is durable.
//! Every event goes out with its log position as the SSE `id`; a client that reconnects with
//! `Last-Event-ID` (or `?after=POSITION`, which a browser cannot send on its first
//! connection) gets every event after it and none twice, across a restart of flumen too. The
//! streams themselves (the hub, catching up, positions) are `flumen-live`'s; this module only
//! frames their messages:
//!
//! - an event: `id: <position>` and `data: <event>`;
//! - `event: gap`, `{"from":…,"to":…,"records":…,"events_at_most":…}`: log records the stream
//!   could not send (they left the log before it read them, and the store is off or its
//!   retention removed them; `events_at_most` bounds how many events they held, or is null
//!   when not known);
//! - `: heartbeat` after [`HEARTBEAT`](flumen_live::HEARTBEAT) without anything else;
//! - `event: error`, `{"error":…}`, then the end, when the stream cannot go on;
//! - `event: close`, `{"reason":"shutting down","reconnect":true}`, when flumen stops.
//!
//! - `event: end`, `{"type":"end","deployment_id":…,"status":…}`, then the end, when the
//!   stream is a deployment's (`?deployment=ID`: only its events, from its start) and the
//!   deployment has finished and every event logged before its finish was sent.
//!
//! A bad query is answered 400, an unknown deployment 404 and too many streams 429, before the
//! stream starts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flumen_deploy::check_id;
use flumen_live::{Format, Message, Start, Subscription};
use flumen_store::{EventPosition, StoreConfig};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use super::deployments::deployments_of;
use super::query::{RangeParams, checked_limit, required_query};
use super::{ApiError, ApiState};

/// The backfill's size when the request names none (as Loki's `tail`); 0 is none.
const DEFAULT_BACKFILL: usize = 100;
/// How many bytes of ready messages go out in one write.
const WRITE_BYTES: usize = 256 << 10;
/// How long an `EventSource` waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 2000;

/// The parameters of the live-stream endpoints.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamParams {
    pub(crate) query: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) after: Option<String>,
    /// Only this deployment's events; the stream ends after its finish.
    pub(crate) deployment: Option<String>,
    #[serde(flatten)]
    pub(crate) range: RangeParams,
}

/// Opens the stream a request asks for: `resume_after` (a `Last-Event-ID`) when the request
/// names no `after`.
pub(crate) async fn subscribe(
    state: &ApiState,
    params: &StreamParams,
    resume_after: Option<&str>,
    format: Format,
) -> Result<Subscription, ApiError> {
    let deployment = match &params.deployment {
        Some(id) => {
            check_id(id).map_err(|e| ApiError::BadRequest(format!("deployment: {e}")))?;
            Some(deployments_of(state)?.get(id).await?.0)
        }
        None => None,
    };
    let query = match &deployment {
        Some(deployment) => scoped_query(params.query.as_deref(), &deployment.id)?,
        None => required_query(params.query.as_deref())?,
    };
    let after = params
        .after
        .as_deref()
        .or(resume_after)
        .map(str::parse::<EventPosition>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("after: {e}")))?;
    let start = match after {
        Some(after) => Start::After(after),
        None => {
            // Without a store, its defaults: the largest backfill there is none of anyway.
            let max_limit = state
                .store
                .as_ref()
                .map_or_else(|| StoreConfig::new("").max_limit, |s| s.config().max_limit);
            // `limit=0`: no backfill, only what comes next (as `tail -n 0 -f`).
            let limit = match params.limit.unwrap_or(DEFAULT_BACKFILL) {
                0 => 0,
                limit => checked_limit(limit, max_limit)?,
            };
            let range = match &deployment {
                // A deployment's stream starts with its start, and shows all it can of it.
                Some(deployment) if params.range.is_empty() => {
                    (deployment.started_at.saturating_sub(EARLY_NS), u64::MAX)
                }
                _ => params.range.resolve(SystemTime::now())?,
            };
            let limit = match (&deployment, params.limit) {
                (Some(_), None) => max_limit,
                _ => limit,
            };
            Start::Backfill { limit, range }
        }
    };
    let mut subscription = state
        .live
        .subscribe(query, format, start)
        .map_err(|e| ApiError::TooManyRequests(e.to_string()))?;
    if let (Some(deployment), Ok(deployments)) = (&deployment, deployments_of(state)) {
        subscription.end_when(deployments.stream_end(deployment));
    }
    Ok(subscription)
}

/// How long before its deployment's start an event may be and still be shown in its stream:
/// a sender's clock may be a little behind.
const EARLY_NS: u64 = 60_000_000_000;

/// `query` (by default `{}`) narrowed to the events of deployment `id`.
fn scoped_query(query: Option<&str>, id: &str) -> Result<flumen_select::Selector, ApiError> {
    let query = query.unwrap_or("{}").trim_start();
    let Some(rest) = query.strip_prefix('{') else {
        return Err(ApiError::BadRequest(
            "query: a deployment's stream takes a query that starts with a stream selector ({...})"
                .into(),
        ));
    };
    // The id is letters, digits, '.', '_' and '-' (checked): nothing to escape.
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ", "
    };
    required_query(Some(&format!("{{deployment_id=\"{id}\"{separator}{rest}")))
}

pub(crate) async fn stream(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let subscription = subscribe(&state, &params, last_event_id, Format::Event).await?;
    let retry = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    let events = futures_util::stream::unfold(subscription, |mut subscription| async move {
        let first = subscription.next().await?;
        let mut out = Vec::new();
        write_message(&mut out, &first);
        while out.len() < WRITE_BYTES
            && let Some(message) = subscription.try_next()
        {
            write_message(&mut out, &message);
        }
        Some((Ok::<_, Infallible>(Bytes::from(out)), subscription))
    });
    let body = futures_util::stream::iter([Ok(retry)]).chain(events);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Appends one message in SSE framing.
fn write_message(out: &mut Vec<u8>, message: &Message) {
    match message {
        Message::Event(event) => {
            out.extend_from_slice(format!("id: {}\ndata: ", event.position).as_bytes());
            out.extend_from_slice(&event.body);
            out.extend_from_slice(b"\n\n");
        }
        Message::Gap {
            from,
            to,
            events_at_most,
        } => {
            let gap = gap_json(*from, *to, *events_at_most);
            out.extend_from_slice(format!("event: gap\ndata: {gap}\n\n").as_bytes());
        }
        Message::Heartbeat => out.extend_from_slice(b": heartbeat\n\n"),
        Message::Error(error) => {
            let error = json!({ "error": error });
            out.extend_from_slice(format!("event: error\ndata: {error}\n\n").as_bytes());
        }
        Message::Closing => {
            let close = json!({ "reason": "shutting down", "reconnect": true });
            out.extend_from_slice(format!("event: close\ndata: {close}\n\n").as_bytes());
        }
        Message::End(end) => {
            out.extend_from_slice(format!("event: end\ndata: {end}\n\n").as_bytes())
        }
    }
}

/// What a stream says of log records it could not send.
pub(crate) fn gap_json(
    from: flumen_wal::Position,
    to: flumen_wal::Position,
    events_at_most: Option<u64>,
) -> serde_json::Value {
    json!({
        "from": from.get(),
        "to": to.get(),
        "records": to.get().saturating_sub(from.get()),
        "events_at_most": events_at_most,
        "reason": "these log records left the log before the stream read them, and the store no longer holds them",
    })
}
