//! The HTTP source, compatible with Fluentd's `in_http`: the URL path is the tag
//! (`/app/web` → `app.web`), the body or the `json=`/`msgpack=` parameter the records (see
//! `flumen_codec::http`). It answers 200 once the events are durable, 400 with the reason for a
//! bad body, 413 past the body limit or when the body decodes to over four times its size, and
//! 503 with `Retry-After` while the log is full.
//!
//! A request's events are stored in batches of at most 4096 events or about 1 MiB, each a
//! record of its own in the log, and run through the filters in its client's own session (see
//! [`ClientSessions`]).

mod config;
pub use config::HttpSourceConfig;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flumen_codec::http::{HttpBodyError, HttpEvents, HttpRequest, decode_request};
use flumen_event::EventTime;
use flumen_wal::Wal;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{SourceShared, stopped};
use crate::request::clients::ClientSessions;
use crate::request::{retry_later, serve_and_flush, store_batches};

/// A bound HTTP source, ready to run.
#[derive(Debug)]
pub struct HttpSource {
    name: String,
    config: HttpSourceConfig,
    listener: TcpListener,
}

struct HttpState {
    source: String,
    wal: Arc<Wal>,
    clients: ClientSessions,
}

impl HttpSource {
    /// Binds the listener.
    pub async fn bind(name: &str, config: &HttpSourceConfig) -> std::io::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            listener: crate::net::bind_tcp(config.address).await?,
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
            clients: ClientSessions::new(&name, &config.label, &shared),
            wal: shared.wal.clone(),
            source: name,
        });
        let app = router(state.clone(), config.max_body_size.as_u64() as usize);
        let mut stop = shutdown.clone();
        let serve = async {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped(&mut stop).await })
            .await;
            if let Err(error) = served {
                tracing::error!(message = "The HTTP source stopped.", source = %state.source, %error);
            }
        };
        serve_and_flush(&state.source, &state.clients, shutdown, serve).await;
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
    ConnectInfo(client): ConnectInfo<SocketAddr>,
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
    // Decoding costs more than receiving: a body the log has no room for is not decoded.
    if !state.wal.has_room(body.len()) {
        return retry_later("the log is full; retry later\n");
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let events = match decode(content_type, query, body).await {
        Ok(events) => events,
        Err(error) => return refuse(&state.source, &error),
    };
    // Detached, so that a client hanging up cannot interrupt the appends half-way.
    let storing = tokio::spawn(async move { store(&state, client.ip(), &tag, &events).await });
    storing.await.unwrap_or_else(|error| {
        retry_later(&format!(
            "the events could not be stored: {error}; retry later\n"
        ))
    })
}

/// Decodes a request's events on a blocking thread: a large body takes a while.
async fn decode(
    content_type: Option<String>,
    query: Option<String>,
    body: Bytes,
) -> Result<HttpEvents, HttpBodyError> {
    tokio::task::spawn_blocking(move || {
        let request = HttpRequest {
            content_type: content_type.as_deref(),
            query: query.as_deref(),
            body: &body,
        };
        decode_request(&request, EventTime::now())
    })
    .await
    .expect("the body decoder does not panic")
}

/// The answer to a request whose body was refused, counted.
fn refuse(source: &str, error: &HttpBodyError) -> Response {
    let (status, reason) = match error {
        HttpBodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        _ => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    crate::net::count_rejected(source, reason);
    (status, format!("{error}\n")).into_response()
}

/// Stores `events` under `tag` through the session of `client`; answers once they are durable.
async fn store(state: &HttpState, client: IpAddr, tag: &str, events: &HttpEvents) -> Response {
    let mut ingest = match state.clients.ingest_for(client, tag).await {
        Ok(ingest) => ingest,
        Err(error) => return retry_later(&format!("{error}\n")),
    };
    match store_batches(&mut ingest, tag, events.entries.len(), events.batches()).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}
