//! The deployment API:
//!
//! - `POST /api/v1/deployments`: starts one (201), `{id?, service?, environment?, version?,
//!   commit?, started_by?, metadata?, retention?}`; an id is generated when none is given.
//! - `POST /api/v1/deployments/{id}/finish`: `{status: succeeded|failed|cancelled, message?}`.
//! - `GET /api/v1/deployments`: newest started first, filtered by `service`, `environment`,
//!   `status` and start time (`start`, `end`, `since`), `limit` at a time; `next_cursor`, given
//!   back as `cursor`, continues.
//! - `GET /api/v1/deployments/{id}`: one, with its events counted by level.
//!
//! Bad input gets 400 (a bad id, status or field), 404 (unknown), 409 (exists already,
//! finished already) or 413 (a body over [`MAX_BODY`]) and changes nothing; the database away
//! gets 503. Live streams scoped to a deployment are `stream.rs`'s (`?deployment=ID`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flumen_deploy::{
    CatalogueError, Deployment, EventCounts, Finish, ListFilter, NewDeployment, PageCursor,
    Refusal, Status, check_id,
};
use flumen_event::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::query::RangeParams;
use super::{ApiError, ApiState};
use crate::deployments::{Deployments, now_ns, rfc3339};

/// The largest request body: metadata is at most 64 KiB as JSON.
pub(crate) const MAX_BODY: usize = 256 << 10;
/// A list's page when the request names none.
const DEFAULT_PAGE: usize = 50;
/// Without a time range, a list covers this far back (all of it, in practice).
const ALL_TIME: Duration = Duration::from_secs(100 * 365 * 86_400);

impl From<CatalogueError> for ApiError {
    fn from(error: CatalogueError) -> Self {
        match error {
            CatalogueError::Invalid(invalid) => ApiError::BadRequest(invalid.0),
            CatalogueError::NotFound(_) => ApiError::NotFound(error.to_string()),
            CatalogueError::Conflict(_) => ApiError::Conflict(error.to_string()),
            CatalogueError::Unavailable(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

/// The deployments, or 404 when the catalogue is off.
pub(crate) fn deployments_of(state: &ApiState) -> Result<&Arc<Deployments>, ApiError> {
    state.deployments.as_ref().ok_or_else(|| {
        ApiError::NotFound("deployments are off ([deployments] database = \"off\")".into())
    })
}

/// A JSON body, or the error that says what is wrong with it.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
            ApiError::PayloadTooLarge(format!("the body is over {} KiB", MAX_BODY >> 10)),
        ),
        Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
    }
}

/// The id in a path, checked before it goes anywhere.
fn path_id(id: &str) -> Result<&str, ApiError> {
    check_id(id).map_err(|e| ApiError::BadRequest(e.0))?;
    Ok(id)
}

pub(crate) async fn create(
    State(state): State<Arc<ApiState>>,
    request: Result<Json<NewDeployment>, JsonRejection>,
) -> Result<Response, ApiError> {
    let deployments = deployments_of(&state)?;
    let new = body(request)?
        .check(TenantId::DEFAULT_NAME, now_ns())
        .map_err(|refusal| match refusal {
            Refusal::Invalid(invalid) => ApiError::BadRequest(invalid.0),
            Refusal::TooLarge(why) => ApiError::PayloadTooLarge(why),
        })?;
    let deployment = deployments.start(new).await?;
    let view = deployment_json(&deployment, &EventCounts::default(), now_ns());
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(crate) async fn finish(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    request: Result<Json<Finish>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let deployments = deployments_of(&state)?;
    let id = path_id(&id)?;
    let (status, message) = body(request)?
        .check()
        .map_err(|e| ApiError::BadRequest(e.0))?;
    deployments.finish(id, status, message.as_deref()).await?;
    // With its counts as they are now.
    let (deployment, counts) = deployments.get(id).await?;
    Ok(Json(deployment_json(&deployment, &counts, now_ns())))
}

pub(crate) async fn show(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deployments = deployments_of(&state)?;
    let (deployment, counts) = deployments.get(path_id(&id)?).await?;
    Ok(Json(deployment_json(&deployment, &counts, now_ns())))
}

/// `GET /api/v1/deployments`'s parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    service: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    #[serde(flatten)]
    range: RangeParams,
}

pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let deployments = deployments_of(&state)?;
    let filter = list_filter(params, SystemTime::now())?;
    let (page, counts) = deployments.list(&filter).await?;
    let now = now_ns();
    let none = EventCounts::default();
    let listed: Vec<Value> = page
        .deployments
        .iter()
        .map(|d| deployment_json(d, counts.get(&d.id).unwrap_or(&none), now))
        .collect();
    Ok(Json(json!({
        "deployments": listed,
        "next_cursor": page.next.map(|c| c.to_string()),
    })))
}

fn list_filter(params: ListParams, now: SystemTime) -> Result<ListFilter, ApiError> {
    let bad = |e: flumen_deploy::Invalid| ApiError::BadRequest(e.0);
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > flumen_deploy::MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} is not 1 to {}",
            flumen_deploy::MAX_PAGE
        )));
    }
    let (start, end) = params.range.resolve_or(now, ALL_TIME)?;
    Ok(ListFilter {
        tenant: TenantId::DEFAULT_NAME.to_owned(),
        service: params.service,
        environment: params.environment,
        status: params
            .status
            .as_deref()
            .map(str::parse::<Status>)
            .transpose()
            .map_err(bad)?,
        started_from: Some(start),
        started_before: Some(end),
        limit,
        after: params
            .cursor
            .as_deref()
            .map(str::parse::<PageCursor>)
            .transpose()
            .map_err(bad)?,
    })
}

/// A duration in its largest whole unit, as people write retentions: `30d`, `36h`, `90m`.
fn compact_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| secs.is_multiple_of(*unit) && secs > 0)
        .map_or_else(
            || format!("{secs}s"),
            |(unit, name)| format!("{}{name}", secs / unit),
        )
}

/// A deployment as the API shows it, with its counts; `now` makes a running one's duration.
pub(crate) fn deployment_json(deployment: &Deployment, counts: &EventCounts, now: u64) -> Value {
    let duration_ns = deployment
        .finished_at
        .unwrap_or(now)
        .saturating_sub(deployment.started_at);
    let by_level: HashMap<&str, u64> = counts
        .by_level
        .iter()
        .map(|(level, n)| (if level.is_empty() { "unknown" } else { level }, *n))
        .fold(HashMap::new(), |mut all, (level, n)| {
            *all.entry(level).or_default() += n;
            all
        });
    json!({
        "id": deployment.id,
        "service": deployment.service,
        "environment": deployment.environment,
        "version": deployment.version,
        "commit": deployment.commit,
        "started_by": deployment.started_by,
        "metadata": deployment.metadata,
        "retention": deployment.retention.map(compact_duration),
        "status": deployment.status.as_str(),
        "message": deployment.message,
        "started_at": rfc3339(deployment.started_at),
        "finished_at": deployment.finished_at.map(rfc3339),
        "duration_ms": duration_ns / 1_000_000,
        "events": {
            "total": counts.total(),
            "by_level": by_level,
            "errors": counts.errors(),
            "first_event": counts.first_event.map(rfc3339),
            "last_event": counts.last_event.map(rfc3339),
        },
    })
}
