//! The HTTP source, compatible with Fluentd's `in_http`: the URL path is the tag
//! (`/app/web` → `app.web`), the body or the `json=`/`msgpack=` parameter the records (see
//! `flumen_codec::http`). It answers 200 once the events are durable, 400 with the reason for a
//! bad body, 413 past the body limit, and 503 with `Retry-After` while the log is full.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flumen_codec::http::{HttpRequest, decode_request};
use flumen_event::EventTime;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use super::http_common::{StoreError, serve_and_flush, store_request};
use super::{Ingest, SourceShared, stopped};
use crate::config::HttpSourceConfig;

/// A bound HTTP source, ready to run.
#[derive(Debug)]
pub struct HttpSource {
    name: String,
    config: HttpSourceConfig,
    listener: TcpListener,
}

struct HttpState {
    source: String,
    ingest: Mutex<Ingest>,
}

impl HttpSource {
    /// Binds the listener.
    pub async fn bind(name: &str, config: &HttpSourceConfig) -> std::io::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            listener: TcpListener::bind(config.address).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true; requests in progress finish.
    pub async fn run(self, shared: SourceShared, shutdown: watch::Receiver<bool>) {
        let Self {
            name,
            config,
            listener,
        } = self;
        let state = Arc::new(HttpState {
            ingest: Mutex::new(Ingest::new(&name, &config.label, &shared)),
            source: name,
        });
        let app = router(state.clone(), config.max_body_size.as_u64() as usize);
        let mut stop = shutdown.clone();
        let serve = async {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped(&mut stop).await })
                .await;
            if let Err(error) = served {
                tracing::error!(message = "The HTTP source stopped.", source = %state.source, %error);
            }
        };
        serve_and_flush(&state.source, &state.ingest, shutdown, serve).await;
    }
}

fn router(state: Arc<HttpState>, max_body: usize) -> Router {
    Router::new()
        .route("/{*tag}", get(receive).post(receive))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn receive(
    State(state): State<Arc<HttpState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tag = path.trim_matches('/').replace('/', ".");
    if tag.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "the URL path is the tag: POST /<tag>\n",
        )
            .into_response();
    }
    let request = HttpRequest {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        query: query.as_deref(),
        body: &body,
    };
    let events = match decode_request(&request, EventTime::now()) {
        Ok(events) => events,
        Err(error) => {
            metrics::counter!("flumen_source_rejected_total", "source" => state.source.clone(), "reason" => "bad_request")
                .increment(1);
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    match store_request(&state.ingest, &tag, events.count, &events.entries).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(StoreError::Full) => retry_later("the log is full; retry later\n"),
        Err(StoreError::Rejected(reason)) => {
            (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
        }
        Err(StoreError::Log(error)) => retry_later(&format!("{error}\n")),
        Err(StoreError::NotDurable) => retry_later("the events could not be stored; retry later\n"),
    }
}

fn retry_later(message: &str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, message.to_owned()).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
