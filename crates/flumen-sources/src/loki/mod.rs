//! Grafana Loki's push API, so that whatever ships to Loki (Promtail, Alloy, Fluent Bit's and
//! Vector's `loki` outputs, pino-loki, winston-loki, python-logging-loki) ships to flumen
//! unchanged: `POST /loki/api/v1/push` (and the older `/api/prom/push`), snappy-compressed
//! protobuf or JSON, optionally gzip (see `flumen_codec::loki`).
//!
//! | answer | when |
//! |---|---|
//! | 204 | every event of the request is durable in the log |
//! | 400 | the body is not a push request (nothing of it is stored) |
//! | 413 | the body is over `max_body_size`, as sent or decompressed, or its events too large |
//! | 415 | a content type other than protobuf and JSON; an encoding other than gzip |
//! | 503 + `Retry-After: 1` | the log is full or failing; every client session is busy |
//!
//! Clients retry 5xx answers, not 4xx ones. Each client (by IP address) has its own filter
//! session, as for the HTTP and OTLP sources (see `request::clients`).
//!
//! # The events
//!
//! Each entry is one event at its own timestamp (nanoseconds kept). Its record: the stream's
//! labels, each a string field; the entry's structured metadata, each a string field; the line
//! as `message` (labels or metadata named `message` or `attributes` go into an `attributes`
//! map). The canonical fields are filled as the `enrich` filter fills them
//! (`flumen_process::enrich::fill_canonical`): `service` from `service_name` or `app`, `host`,
//! `environment`, ...; `level` written canonically (`INFO`, `WARN`, ...) from `level` or
//! `severity`, else from Loki's `detected_level`. The tag is the `tag` template (default
//! `loki`), rendered from the stream's labels.
//!
//! The push route can be served by this source's own listener or mounted on another router:
//! see [`LokiPush`].

mod config;
pub use config::LokiConfig;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flumen_codec::batches::Batches;
use flumen_codec::loki::{Limits, LokiError, PushBody, TagEvents, decode_push, push_events};
use flumen_event::EventTime;
use flumen_event::record::{Record, Value};
use flumen_parse::Level;
use flumen_parse::level::LEVEL_FIELD;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{SourceShared, stopped};
use crate::request::clients::{ClientAddr, ClientSessions};
use crate::request::{retry_later, serve_and_flush, store_tagged};

/// The push path of Loki's HTTP API.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// The push path of Loki before 1.0, which some clients still use.
pub const LEGACY_PUSH_PATH: &str = "/api/prom/push";

/// A bound Loki source, ready to run.
#[derive(Debug)]
pub struct LokiSource {
    name: String,
    config: LokiConfig,
    listener: TcpListener,
}

impl LokiSource {
    /// Checks `config` and binds the listener.
    pub async fn bind(name: &str, config: &LokiConfig) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?;
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            listener: crate::net::bind_tcp(config.address).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` turns true; requests in progress finish.
    pub async fn run(self, shared: SourceShared, stop: watch::Receiver<bool>) {
        let Self {
            name,
            config,
            listener,
        } = self;
        let push = match LokiPush::new(&name, &config, &shared) {
            Ok(push) => push,
            Err(error) => {
                // `bind` checked the configuration; this is not reached.
                tracing::error!(message = "The Loki source cannot start.", source = %name, %error);
                return;
            }
        };
        let mut serving = stop.clone();
        let serve = async {
            let served = axum::serve(
                listener,
                push.router()
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped(&mut serving).await })
            .await;
            if let Err(error) = served {
                tracing::error!(message = "The Loki source stopped.", source = %name, %error);
            }
        };
        serve_and_flush(&name, &push.state.clients, stop, serve).await;
    }
}

/// Loki's push route over the shared log, routes and filters: what the source serves on its
/// own listener, and what another server (the API port) can mount.
///
/// ```ignore
/// let push = LokiPush::new("loki", &config, &shared)?;
/// let app = api_router.merge(push.router());
/// // Serve `app` with `into_make_service_with_connect_info::<SocketAddr>()` (each client's
/// // filter session is kept by its address), and beside it:
/// push.release_held_events(stop).await;
/// ```
#[derive(Debug, Clone)]
pub struct LokiPush {
    state: Arc<PushState>,
}

#[derive(Debug)]
struct PushState {
    source: String,
    tag: TagTemplate,
    limits: Limits,
    clients: ClientSessions,
}

impl LokiPush {
    /// The push route of the source `name` with `config`, storing into `shared`'s log; an error
    /// names what is wrong with `config`.
    pub fn new(name: &str, config: &LokiConfig, shared: &SourceShared) -> Result<Self, String> {
        config.validate()?;
        Ok(Self {
            state: Arc::new(PushState {
                source: name.to_owned(),
                tag: config.tag_template()?,
                limits: Limits::for_body_size(config.max_body()),
                clients: ClientSessions::new(name, &config.label, shared),
            }),
        })
    }

    /// `POST /loki/api/v1/push` and `POST /api/prom/push`, with the body limit, to merge into
    /// another router. Served without connect info, all clients share one filter session.
    pub fn router(&self) -> Router {
        Router::new()
            .route(PUSH_PATH, post(receive))
            .route(LEGACY_PUSH_PATH, post(receive))
            .layer(DefaultBodyLimit::max(self.state.limits.max_decoded))
            .with_state(self.state.clone())
    }

    /// Releases the events joining filters hold back once their timeout passes, until `stop`
    /// turns true, then stores every event still held. Run it beside a server that mounted
    /// [`router`](Self::router); it ends after `stop`, and should be awaited after that server
    /// stopped taking requests.
    pub async fn release_held_events(&self, stop: watch::Receiver<bool>) {
        serve_and_flush(&self.state.source, &self.state.clients, stop, async {}).await;
    }
}

async fn receive(
    State(state): State<Arc<PushState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return state.refuse(&LokiError::TooLarge(format!(
                "the body is over max_body_size ({} bytes)",
                state.limits.max_decoded
            )));
        }
        Err(rejection) => return rejection.into_response(),
    };
    // Decoding costs more than receiving: a body the log has no room for is not decoded.
    if !state.clients.has_room(body.len()) {
        return retry_later("the log is full; retry later\n");
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, content_encoding) = (
        header(header::CONTENT_TYPE),
        header(header::CONTENT_ENCODING),
    );
    let decoding = state.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        decoding.events(content_type.as_deref(), content_encoding.as_deref(), &body)
    })
    .await
    .expect("the push decoder does not panic");
    let groups = match decoded {
        Ok(groups) => groups,
        Err(error) => return state.refuse(&error),
    };
    if groups.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    // Detached, so that a client hanging up cannot interrupt the appends half-way.
    let storing = tokio::spawn(async move {
        let tagged: Vec<(&str, &Batches)> = groups
            .iter()
            .map(|group| (group.tag.as_str(), &group.events))
            .collect();
        store_tagged(&state.clients, client, &tagged).await
    });
    match storing.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(error) => retry_later(&format!(
            "the events could not be stored: {error}; retry later\n"
        )),
    }
}

impl PushState {
    /// A body's events, by tag.
    fn events(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<TagEvents>, LokiError> {
        let push = PushBody {
            content_type,
            content_encoding,
            body,
        };
        let streams = decode_push(&push, &self.limits, EventTime::now())?;
        push_events(
            &streams,
            &self.limits,
            |labels| self.tag.render(labels).into_owned(),
            canonical_fields,
        )
    }

    /// The answer to a refused body, counted.
    fn refuse(&self, error: &LokiError) -> Response {
        let (status, reason) = if error.is_too_large() {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        } else if error.is_unsupported() {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported")
        } else {
            (StatusCode::BAD_REQUEST, "bad_request")
        };
        crate::net::count_rejected(&self.source, reason);
        tracing::debug!(message = "A Loki push was refused.", source = %self.source, %error);
        (status, format!("{error}\n")).into_response()
    }
}

/// The field Loki writes the level it detected in a line to.
const DETECTED_LEVEL: &str = "detected_level";

/// Fills the canonical fields as the `enrich` filter does; a stream with no level-like label
/// but Loki's `detected_level` gets its level from that.
fn canonical_fields(record: &mut Record) {
    flumen_process::enrich::fill_canonical(record);
    if flumen_process::enrich::level_of(record).is_none()
        && let Some(level) = record
            .get(DETECTED_LEVEL)
            .and_then(Value::as_str)
            .and_then(Level::parse)
    {
        record.insert(LEVEL_FIELD, level.as_str());
    }
}

/// A tag with `{label}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagTemplate(crate::tag_template::TagTemplate<String>);

impl TagTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        crate::tag_template::TagTemplate::parse(text, |name| {
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "{{{name}}} is not a label name (letters, digits and _)"
                ))
            }
        })
        .map(Self)
    }

    /// The tag of a stream with `labels`.
    fn render(&self, labels: &Record) -> Cow<'_, str> {
        self.0.render(|name| labels.get(name).map(Value::to_text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Record {
        let mut record = Record::new();
        for (k, v) in pairs {
            record.insert(*k, *v);
        }
        record
    }

    #[test]
    fn tags_from_labels() {
        let template = TagTemplate::parse("loki.{job}.{service}").unwrap();
        assert_eq!(
            template.render(&labels(&[("job", "ns/api"), ("service", "shop")])),
            "loki.ns_api.shop"
        );
        assert_eq!(template.render(&labels(&[])), "loki.unknown.unknown");
        assert_eq!(
            TagTemplate::parse("loki").unwrap().render(&labels(&[])),
            "loki"
        );
        for bad in ["", "loki.{job", "loki.{}", "loki.{a.b}"] {
            assert!(TagTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn canonical_fields_from_loki_labels() {
        let mut record = labels(&[("service_name", "shop"), ("level", "warning")]);
        canonical_fields(&mut record);
        assert_eq!(
            record.to_json(),
            r#"{"service_name":"shop","level":"WARN","service":"shop"}"#
        );
        let mut record = labels(&[("detected_level", "error")]);
        canonical_fields(&mut record);
        assert_eq!(record.get("level").and_then(Value::as_str), Some("ERROR"));
        let mut record = labels(&[("severity", "info"), ("detected_level", "error")]);
        canonical_fields(&mut record);
        assert_eq!(
            record.get("level").and_then(Value::as_str),
            Some("INFO"),
            "the sender's own level wins"
        );
    }

    #[test]
    fn config_defaults() {
        let config: LokiConfig = toml::from_str("").unwrap();
        assert_eq!(config.address, SocketAddr::from(([0, 0, 0, 0], 3100)));
        assert_eq!(config.tag, "loki");
        assert!(config.validate().is_ok());
        let config: LokiConfig = toml::from_str("tag = \"loki.{job\"").unwrap();
        assert!(config.validate().is_err());
    }
}
