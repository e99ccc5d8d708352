//! OpenTelemetry logs over OTLP, as the OpenTelemetry SDKs and the Collector's `otlp` and
//! `otlphttp` exporters send them: OTLP/HTTP (`POST /v1/logs`, protobuf or JSON, port 4318) and
//! OTLP/gRPC (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, port 4317).
//!
//! Each request is one append under the source's `tag` (default `otlp`; route on content,
//! `select = '{service="api"}'`, to tell services apart), answered once every event of it is
//! durable — HTTP 200 with an empty `ExportLogsServiceResponse` in the request's encoding, gRPC
//! OK. A request flumen cannot take is refused whole, never half-stored:
//!
//! | why | OTLP/HTTP | OTLP/gRPC |
//! |---|---|---|
//! | does not decode; over `max_attributes` | 400 | `INVALID_ARGUMENT` |
//! | over `max_request_size` (as sent or decompressed) | 413 | `RESOURCE_EXHAUSTED` |
//! | a content type other than protobuf and JSON; an encoding other than gzip and deflate | 415 | `UNIMPLEMENTED` (tonic) |
//! | the log is full (or failing) | 503 + `Retry-After: 1` | `UNAVAILABLE` |
//! | not `POST /v1/logs`; another gRPC method | 404 / 405 | `UNIMPLEMENTED` |
//!
//! Each client (by IP address, over either listener) has its own filter session (see
//! [`ClientSessions`]), so that a joining filter never joins one client's lines into another's
//! events; when every one of the 1024 sessions is serving a request, a new client is answered
//! 503 / `UNAVAILABLE`.
//!
//! OTLP clients retry 503 and `UNAVAILABLE`, not 400 and `INVALID_ARGUMENT`. HTTP error bodies
//! are a `google.rpc.Status` in the request's encoding, as the OTLP specification asks (415 and
//! 404 answer plain text). Requests with `Content-Encoding` / `grpc-encoding` gzip or deflate
//! are decompressed. OTLP/JSON is read by this module (see `json`), not by the
//! `opentelemetry-proto` crate's serde mapping, which refuses valid OTLP/JSON.
//!
//! # The events
//!
//! Each `LogRecord` becomes one event at `time_unix_nano` (else `observed_time_unix_nano`, else
//! the time it arrived). Its fields, in this order (empty or zero ones are left out):
//!
//! | field | from |
//! |---|---|
//! | `message` | the body: a string as it is; a map or array as JSON text; other values as text (bytes in base64) |
//! | `body` | a map or array body, as a map or array (selectors reach inside it: `body.user.id`) |
//! | `level` | `severity_number` 1–4 `TRACE`, 5–8 `DEBUG`, 9–12 `INFO`, 13–16 `WARN`, 17–20 `ERROR`, 21–24 `FATAL`; without one, `severity_text` read by [`Level::parse`] |
//! | `service`, `version`, `environment`, `host`, `container_id`, `container_name`, `deployment_id` | the canonical fields, from the log record's attributes, else the resource's: `service.name`, `service.version`, `deployment.environment.name` or `deployment.environment`, `host.name`, `container.id`, `container.name`, `deployment.id`; a log attribute with the canonical name itself wins |
//! | `severity_text`, `severity_number` | as sent |
//! | `trace_id`, `span_id` | lowercase hex (all-zero ids are left out) |
//! | `trace_flags` | the W3C trace flags (`flags & 0xff`) |
//! | `event_name` | as sent |
//! | *each log attribute* | a top-level field named by its key, dots kept (`http.request.method`, `exception.stacktrace`; selectors find a dotted top-level key first); a key the source itself uses ([`RESERVED`]: `message`, `level`, `trace_id`, …) goes into the `attributes` map instead |
//! | `dropped_attributes_count` | as sent |
//! | `scope.name`, `scope.version`, `scope.attributes` | the instrumentation scope (for Python `logging`, the logger's name) |
//! | `resource` | every resource attribute, as a map keyed by attribute name (`resource.service.instance.id`) |
//!
//! Values keep their type (string, bool, int, double, arrays, maps); bytes become base64
//! strings, as in OTLP/JSON. Of duplicate keys, the last wins.
//!
//! # Limits
//!
//! `max_request_size` bounds the body and what it decompresses to (the Collector's gRPC default is
//! the same 4 MiB); `max_attributes` bounds the attributes of each resource, scope and log
//! record, counting the entries of nested maps — an event with 100,000 fields would slow every
//! filter and output after it. Since every log record carries its resource's attributes, a
//! request whose events would come to more than 16 × `max_request_size` (at least 64 MiB) is
//! refused too.

mod config;
#[cfg(test)]
mod fixtures;
pub use config::OtlpConfig;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use bytesize::ByteSize;
use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::Level;
use flumen_parse::level::LEVEL_FIELD;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde::{Deserialize, Deserializer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;

use super::{SourceShared, stopped};
use crate::request::clients::ClientSessions;
use crate::request::{StoreError, serve_and_flush, store_request};

/// The gRPC method OTLP log exporters call.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// The OTLP/HTTP path for logs.
pub const HTTP_LOGS_PATH: &str = "/v1/logs";

/// A bound otlp source.
#[derive(Debug)]
pub struct OtlpSource {
    name: String,
    config: OtlpConfig,
    http: Option<TcpListener>,
    grpc: Option<TcpListener>,
}

impl OtlpSource {
    /// Checks `config` and binds its listeners.
    pub async fn bind(name: &str, config: &OtlpConfig) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?;
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            http: bind_optional(config.http_address).await?,
            grpc: bind_optional(config.grpc_address).await?,
        })
    }

    /// The OTLP/HTTP listener's address (the gRPC one's when HTTP is off).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.http
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .or_else(|| self.grpc_addr())
    }

    /// The OTLP/gRPC listener's address.
    fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `stop` turns true; requests in progress finish.
    pub async fn run(self, shared: SourceShared, stop: watch::Receiver<bool>) {
        let Self {
            name,
            config,
            http,
            grpc,
        } = self;
        let state = Arc::new(OtlpState {
            source: name.clone(),
            tag: config.tag.clone(),
            max_attributes: config.max_attributes,
            max_request_size: usize::try_from(config.max_request_size.as_u64())
                .unwrap_or(usize::MAX),
            clients: ClientSessions::new(&name, &config.label, &shared),
        });
        let http = async {
            let Some(listener) = http else { return };
            let mut stop = stop.clone();
            let served = axum::serve(
                listener,
                http_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped(&mut stop).await })
            .await;
            if let Err(error) = served {
                tracing::error!(message = "The OTLP/HTTP listener stopped.", source = %name, %error);
            }
        };
        let grpc = async {
            let Some(listener) = grpc else { return };
            if let Ok(address) = listener.local_addr() {
                tracing::info!(message = "Listening (OTLP/gRPC).", source = %name, %address);
            }
            let mut stop = stop.clone();
            let served = tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::from(grpc_router(state.clone())))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async move { stopped(&mut stop).await },
                )
                .await;
            if let Err(error) = served {
                tracing::error!(message = "The OTLP/gRPC listener stopped.", source = %name, %error);
            }
        };
        let serve = async {
            tokio::join!(http, grpc);
        };
        serve_and_flush(&name, &state.clients, stop.clone(), serve).await;
    }
}

/// A listener on `address`, if there is one.
async fn bind_optional(address: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
    match address {
        Some(address) => crate::net::bind_tcp(address).await.map(Some),
        None => Ok(None),
    }
}

/// What both listeners share.
struct OtlpState {
    source: String,
    tag: String,
    max_attributes: usize,
    max_request_size: usize,
    clients: ClientSessions,
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    /// The request is wrong and will stay wrong: not to be retried.
    Invalid(String),
    /// The log cannot take it now: to be retried.
    Unavailable(String),
}

impl OtlpState {
    /// Stores a request's events and waits until they are durable. Runs as its own task so that
    /// a client hanging up cannot interrupt an append half-way.
    async fn export_detached(
        self: &Arc<Self>,
        client: IpAddr,
        request: ExportLogsServiceRequest,
    ) -> Result<(), Refusal> {
        let state = self.clone();
        tokio::spawn(async move { state.export(client, request).await })
            .await
            .unwrap_or_else(|error| {
                Err(Refusal::Unavailable(format!("the request failed: {error}")))
            })
    }

    /// Stores `request`'s events through the filter session of `client`.
    async fn export(
        &self,
        client: IpAddr,
        request: ExportLogsServiceRequest,
    ) -> Result<(), Refusal> {
        let max_events = self.max_request_size.saturating_mul(16).max(64 << 20);
        if let Err((label, reason)) = check_limits(&request, self.max_attributes, max_events) {
            self.rejected(label);
            tracing::debug!(message = "An OTLP request was refused.", source = %self.source, %reason);
            return Err(Refusal::Invalid(reason));
        }
        let (entries, count) = encode_events(&request, EventTime::now());
        drop(request);
        if count == 0 {
            return Ok(());
        }
        let mut ingest = self
            .clients
            .ingest_for(client, &self.tag)
            .await
            .map_err(|error| Refusal::Unavailable(error.to_string()))?;
        store_request(&mut ingest, &self.tag, count, &entries)
            .await
            .map_err(|error| match error {
                StoreError::Full => Refusal::Unavailable("the log is full; retry later".to_owned()),
                StoreError::Busy(error) => Refusal::Unavailable(error.to_string()),
                StoreError::Rejected(reason) => Refusal::Invalid(reason),
                StoreError::Log(error) => Refusal::Unavailable(format!("{error}; retry later")),
                StoreError::NotDurable => {
                    Refusal::Unavailable("the events could not be stored; retry later".to_owned())
                }
            })
    }

    fn rejected(&self, reason: &'static str) {
        crate::net::count_rejected(&self.source, reason);
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if OTLP has it.
    fn of(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    fn decode(self, body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
        match self {
            Self::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|error| {
                format!("the body is not a protobuf ExportLogsServiceRequest: {error}")
            }),
            Self::Json => json::decode(body).map_err(|error| {
                format!("the body is not an OTLP/JSON ExportLogsServiceRequest: {error}")
            }),
        }
    }

    /// A response with `message` encoded this way.
    fn respond<M: Message + serde::Serialize>(self, status: StatusCode, message: M) -> Response {
        let body = match self {
            Self::Protobuf => message.encode_to_vec(),
            Self::Json => serde_json::to_vec(&message).unwrap_or_default(),
        };
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type()),
        );
        response
    }

    /// An error response: a `google.rpc.Status`, as OTLP/HTTP asks.
    fn error(self, status: StatusCode, code: tonic::Code, message: String) -> Response {
        let mut response = self.respond(
            status,
            RpcStatus {
                code: code as i32,
                message,
            },
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses (its `details` left out).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An `ExportLogsServiceResponse` without `partial_success`: no bytes in protobuf, `{}` in
/// JSON.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct ExportOk {}

fn http_router(state: Arc<OtlpState>) -> Router {
    let limit = state.max_request_size;
    Router::new()
        .route(HTTP_LOGS_PATH, post(http_export))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "flumen's OTLP source takes logs only: POST /v1/logs\n",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn http_export(
    State(state): State<Arc<OtlpState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::of(content_type) else {
        state.rejected("unsupported");
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not OTLP: send application/x-protobuf or application/json\n"
            ),
        )
            .into_response();
    };
    let too_large = |state: &OtlpState| {
        state.rejected("too_large");
        encoding.error(
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            format!(
                "the request is over max_request_size ({})",
                ByteSize::b(state.max_request_size as u64)
            ),
        )
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(&state);
        }
        Err(rejection) => return rejection.into_response(),
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = match decompress(content_encoding, body, state.max_request_size) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(&state),
        Err(BodyError::Unsupported) => {
            state.rejected("unsupported");
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {content_encoding:?} is not supported: send gzip, deflate or none\n"
                ),
            )
                .into_response();
        }
        Err(BodyError::Corrupt(reason)) => {
            state.rejected("bad_request");
            return encoding.error(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                reason,
            );
        }
    };
    let request = match encoding.decode(&body) {
        Ok(request) => request,
        Err(reason) => {
            state.rejected("bad_request");
            return encoding.error(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                reason,
            );
        }
    };
    drop(body);
    match state.export_detached(client.ip(), request).await {
        Ok(()) => encoding.respond(StatusCode::OK, ExportOk {}),
        Err(Refusal::Invalid(reason)) => encoding.error(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            reason,
        ),
        Err(Refusal::Unavailable(reason)) => encoding.error(
            StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::Unavailable,
            reason,
        ),
    }
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Unsupported,
    Corrupt(String),
}

/// The body as sent before `Content-Encoding`, at most `limit` bytes of it.
fn decompress(content_encoding: &str, body: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let reader: Box<dyn Read + '_> = match content_encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        _ => return Err(BodyError::Unsupported),
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| {
            BodyError::Corrupt(format!(
                "the body does not decompress as {content_encoding}: {error}"
            ))
        })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out.into())
}

// ---------------------------------------------------------------------------------------------
// OTLP/gRPC

fn grpc_router(state: Arc<OtlpState>) -> Router {
    Router::new()
        .route(GRPC_EXPORT_PATH, post(grpc_export))
        .fallback(|| async {
            tonic::Status::unimplemented(
                "flumen's OTLP source takes logs only: opentelemetry.proto.collector.logs.v1.LogsService/Export",
            )
            .into_http::<axum::body::Body>()
        })
        .with_state(state)
}

async fn grpc_export(
    State(state): State<Arc<OtlpState>>,
    request: axum::extract::Request,
) -> Response {
    let mut grpc = tonic::server::Grpc::new(ExportCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .max_decoding_message_size(state.max_request_size);
    let mut response = grpc
        .unary(GrpcExport(state.clone()), request)
        .await
        .map(axum::body::Body::new);
    // tonic answers a message over the limit with OUT_OF_RANGE, which OTLP clients retry; gRPC
    // servers elsewhere (grpc-go, so the Collector) answer RESOURCE_EXHAUSTED.
    let status = response.headers_mut().get_mut("grpc-status");
    if let Some(status) = status
        && status == "11"
    {
        *status = HeaderValue::from_static("8");
        state.rejected("too_large");
    }
    response
}

/// Takes the `Export` message as bytes, so that one that does not decode is answered
/// INVALID_ARGUMENT (tonic's prost codec would say INTERNAL).
#[derive(Debug, Clone, Copy)]
struct ExportCodec;

impl tonic::codec::Codec for ExportCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = Bytes;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for ExportCodec {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

impl tonic::codec::Decoder for ExportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The `Export` call.
struct GrpcExport(Arc<OtlpState>);

/// The session of gRPC clients whose address tonic does not know. Its listener is always TCP,
/// which tonic records, so this stays unused unless that changes.
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

type GrpcFuture = Pin<
    Box<
        dyn Future<Output = Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status>>
            + Send,
    >,
>;

impl tonic::server::UnaryService<Bytes> for GrpcExport {
    type Response = ExportLogsServiceResponse;
    type Future = GrpcFuture;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        let client = request
            .remote_addr()
            .map_or(UNKNOWN_CLIENT, |address| address.ip());
        Box::pin(async move {
            let request = match ExportLogsServiceRequest::decode(request.into_inner()) {
                Ok(request) => request,
                Err(error) => {
                    state.rejected("bad_request");
                    return Err(tonic::Status::invalid_argument(format!(
                        "the message is not a protobuf ExportLogsServiceRequest: {error}"
                    )));
                }
            };
            match state.export_detached(client, request).await {
                Ok(()) => Ok(tonic::Response::new(ExportLogsServiceResponse {
                    partial_success: None,
                })),
                Err(Refusal::Invalid(reason)) => Err(tonic::Status::invalid_argument(reason)),
                Err(Refusal::Unavailable(reason)) => Err(tonic::Status::unavailable(reason)),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// From OTLP log records to events

/// Field names the source writes itself; a log attribute with one of these names goes into the
/// `attributes` map instead of the top level.
pub const RESERVED: &[&str] = &[
    "message",
    "body",
    LEVEL_FIELD,
    "severity_text",
    "severity_number",
    "trace_id",
    "span_id",
    "trace_flags",
    "event_name",
    "attributes",
    "dropped_attributes_count",
    "scope.name",
    "scope.version",
    "scope.attributes",
    "resource",
];

/// The canonical fields (see `flumen_process::enrich::CANONICAL_FIELDS`) and the OpenTelemetry
/// semantic-convention attributes they are filled from, tried in order.
pub const CANONICAL_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("service", &["service.name"]),
    (
        "environment",
        &["deployment.environment.name", "deployment.environment"],
    ),
    ("version", &["service.version"]),
    ("host", &["host.name"]),
    ("container_id", &["container.id"]),
    ("container_name", &["container.name"]),
    ("deployment_id", &["deployment.id"]),
];

/// Checks the attribute limits and the size the events would come to.
fn check_limits(
    request: &ExportLogsServiceRequest,
    max_attributes: usize,
    max_events: usize,
) -> Result<(), (&'static str, String)> {
    let over = |place: String, count: usize| {
        let message = format!(
            "{place} has {count} attributes, over the limit of {max_attributes} per resource, scope or log record (max_attributes)"
        );
        ("too_many_attributes", message)
    };
    let mut events_size = 0usize;
    let mut records = 0usize;
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let (resource_count, resource_size) =
            resource_logs.resource.as_ref().map_or((0, 0), |resource| {
                (
                    count_attributes(&resource.attributes),
                    resource.encoded_len(),
                )
            });
        if resource_count > max_attributes {
            return Err(over(format!("resource_logs[{r}].resource"), resource_count));
        }
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let (scope_count, scope_size) = scope_logs.scope.as_ref().map_or((0, 0), |scope| {
                (count_attributes(&scope.attributes), scope.encoded_len())
            });
            if scope_count > max_attributes {
                return Err(over(
                    format!("resource_logs[{r}].scope_logs[{s}].scope"),
                    scope_count,
                ));
            }
            for (l, log) in scope_logs.log_records.iter().enumerate() {
                let count = count_attributes(&log.attributes);
                if count > max_attributes {
                    return Err(over(
                        format!("resource_logs[{r}].scope_logs[{s}].log_records[{l}]"),
                        count,
                    ));
                }
                // Every event carries its resource and scope: roughly their encoded size.
                events_size =
                    events_size.saturating_add(log.encoded_len() + resource_size + scope_size + 64);
                records += 1;
            }
        }
    }
    if events_size > max_events {
        return Err((
            "too_large",
            format!(
                "the request's {records} log records would make about {} of events, each carrying its resource's attributes, over the limit of {}; send fewer log records per request",
                ByteSize::b(events_size as u64),
                ByteSize::b(max_events as u64)
            ),
        ));
    }
    if records > u32::MAX as usize {
        return Err((
            "too_large",
            format!("the request has {records} log records"),
        ));
    }
    Ok(())
}

/// Attributes, counting the entries of nested maps (maps in arrays too).
fn count_attributes(attributes: &[KeyValue]) -> usize {
    attributes
        .iter()
        .map(|kv| 1 + kv.value.as_ref().map_or(0, nested_attributes))
        .sum()
}

fn nested_attributes(value: &AnyValue) -> usize {
    match &value.value {
        Some(any_value::Value::KvlistValue(list)) => count_attributes(&list.values),
        Some(any_value::Value::ArrayValue(array)) => {
            array.values.iter().map(nested_attributes).sum()
        }
        _ => 0,
    }
}

/// The request's log records as entries laid end to end, and how many there are.
fn encode_events(request: &ExportLogsServiceRequest, now: EventTime) -> (Vec<u8>, u32) {
    let mut entries = Vec::new();
    let mut count = 0u32;
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|resource| map_of(&resource.attributes))
            .unwrap_or_default();
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            for log in &scope_logs.log_records {
                let event = Event {
                    time: time_of(log, now),
                    record: record_of(log, scope, &resource),
                    metadata: None,
                };
                event.write_entry(&mut entries);
                count += 1;
            }
        }
    }
    (entries, count)
}

/// When the event happened: its time, else when it was observed, else `now`.
fn time_of(log: &LogRecord, now: EventTime) -> EventTime {
    let nanos = if log.time_unix_nano != 0 {
        log.time_unix_nano
    } else {
        log.observed_time_unix_nano
    };
    if nanos == 0 {
        return now;
    }
    EventTime::new(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
}

/// The canonical level of an OTLP severity number, or of the severity text without one.
fn level_of(severity_number: i32, severity_text: &str) -> Option<Level> {
    Some(match severity_number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        _ => return Level::parse(severity_text),
    })
}

/// One log record's fields (see the module documentation for the layout).
fn record_of(
    log: &LogRecord,
    scope: Option<&InstrumentationScope>,
    resource: &[(String, Value)],
) -> Record {
    let attributes = map_of(&log.attributes);
    let mut fields: Vec<(String, Value)> = Vec::with_capacity(attributes.len() + 24);
    let mut push = |name: &str, value: Value| fields.push((name.to_owned(), value));

    match log.body.as_ref().map(value_of) {
        None | Some(Value::Null) => {}
        Some(Value::Str(text)) => push("message", Value::Str(text)),
        Some(body @ (Value::Map(_) | Value::Array(_))) => {
            push("message", Value::Str(body.to_text().into_owned()));
            push("body", body);
        }
        Some(other) => push("message", Value::Str(other.to_text().into_owned())),
    }
    if let Some(level) = level_of(log.severity_number, &log.severity_text) {
        push(LEVEL_FIELD, Value::from(level.as_str()));
    }
    for (canonical, names) in CANONICAL_ATTRIBUTES {
        if attributes.iter().any(|(key, _)| key == *canonical) {
            continue;
        }
        let found = [attributes.as_slice(), resource]
            .into_iter()
            .find_map(|map| {
                names.iter().find_map(|name| {
                    map.iter()
                        .find(|(key, _)| key == *name)
                        .and_then(|(_, value)| scalar_text(value))
                })
            });
        if let Some(text) = found {
            push(canonical, Value::Str(text));
        }
    }
    if !log.severity_text.is_empty() {
        push("severity_text", Value::from(log.severity_text.as_str()));
    }
    if log.severity_number != 0 {
        push(
            "severity_number",
            Value::Int(i64::from(log.severity_number)),
        );
    }
    if let Some(id) = hex_id(&log.trace_id) {
        push("trace_id", Value::Str(id));
    }
    if let Some(id) = hex_id(&log.span_id) {
        push("span_id", Value::Str(id));
    }
    if log.flags & 0xff != 0 {
        push("trace_flags", Value::UInt(u64::from(log.flags & 0xff)));
    }
    if !log.event_name.is_empty() {
        push("event_name", Value::from(log.event_name.as_str()));
    }
    let mut collided = Vec::new();
    for (key, value) in attributes {
        if RESERVED.contains(&key.as_str()) {
            collided.push((key, value));
        } else {
            fields.push((key, value));
        }
    }
    let mut push = |name: &str, value: Value| fields.push((name.to_owned(), value));
    if !collided.is_empty() {
        push("attributes", Value::Map(collided));
    }
    if log.dropped_attributes_count != 0 {
        push(
            "dropped_attributes_count",
            Value::UInt(u64::from(log.dropped_attributes_count)),
        );
    }
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            push("scope.name", Value::from(scope.name.as_str()));
        }
        if !scope.version.is_empty() {
            push("scope.version", Value::from(scope.version.as_str()));
        }
        if !scope.attributes.is_empty() {
            push("scope.attributes", Value::Map(map_of(&scope.attributes)));
        }
    }
    if !resource.is_empty() {
        push("resource", Value::Map(resource.to_vec()));
    }
    Record::from(fields)
}

/// Attributes as map entries, in order; of duplicate keys the last value wins.
fn map_of(attributes: &[KeyValue]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(attributes.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(attributes.len());
    for kv in attributes {
        let value = kv.value.as_ref().map_or(Value::Null, value_of);
        match index.entry(kv.key.as_str()) {
            Entry::Occupied(slot) => out[*slot.get()].1 = value,
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push((kv.key.clone(), value));
            }
        }
    }
    out
}

/// An OTLP value as a field value; bytes as base64, as OTLP/JSON writes them.
fn value_of(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(n)) => Value::Int(*n),
        Some(any_value::Value::DoubleValue(f)) => Value::Float(*f),
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(value_of).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Map(map_of(&list.values)),
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::Str(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        // Only profiles use string tables; a log record has nothing to look the index up in.
        Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
    }
}

/// A scalar value as text (for the canonical fields); none for maps, arrays and null.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null | Value::Map(_) | Value::Array(_) => None,
        Value::Str(s) if s.is_empty() => None,
        other => Some(other.to_text().into_owned()),
    }
}

/// A trace or span id in lowercase hex; none when empty or all zeros (invalid ids).
fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|&b| b == 0) {
        return None;
    }
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    Some(out)
}

/// OTLP/JSON: the protobuf JSON mapping with OTLP's exceptions (trace and span ids in hex),
/// read as the specification says receivers must: field names in lowerCamelCase or as in the
/// `.proto`; 64-bit integers as strings or numbers; enums as numbers or names; `null` for a
/// default value; `"NaN"` and `"Infinity"` doubles; unknown fields ignored. (The
/// `opentelemetry-proto` crate's serde mapping refuses several of these — among them
/// `{"arrayValue": {}}`, which is how a conforming writer sends an empty array.)
mod json {
    use base64::Engine;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::{
        LogRecord, ResourceLogs, ScopeLogs, SeverityNumber,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use serde_json::{Map, Value as Json};

    /// Where in the body something is wrong, and what.
    #[derive(Debug)]
    pub struct Error {
        path: String,
        message: String,
    }

    impl Error {
        fn new(message: impl Into<String>) -> Self {
            Self {
                path: String::new(),
                message: message.into(),
            }
        }

        /// The same error, one level further out.
        fn at(mut self, outer: &str) -> Self {
            self.path = if self.path.is_empty() {
                outer.to_owned()
            } else if self.path.starts_with('[') {
                format!("{outer}{}", self.path)
            } else {
                format!("{outer}.{}", self.path)
            };
            self
        }
    }

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.path.is_empty() {
                f.write_str(&self.message)
            } else {
                write!(f, "{}: {}", self.path, self.message)
            }
        }
    }

    type Result<T> = std::result::Result<T, Error>;

    /// Reads one case of `AnyValue`'s `oneof`.
    type ReadValue = fn(&Json) -> Result<any_value::Value>;

    /// Decodes an `ExportLogsServiceRequest`.
    pub fn decode(body: &[u8]) -> Result<ExportLogsServiceRequest> {
        let root: Json = serde_json::from_slice(body).map_err(|e| Error::new(e.to_string()))?;
        let root = object(&root)?;
        Ok(ExportLogsServiceRequest {
            resource_logs: repeated(root, "resourceLogs", resource_logs)?,
        })
    }

    fn resource_logs(value: &Json) -> Result<ResourceLogs> {
        let o = object(value)?;
        Ok(ResourceLogs {
            resource: optional(o, "resource", resource)?,
            scope_logs: repeated(o, "scopeLogs", scope_logs)?,
            schema_url: scalar(o, "schemaUrl", string)?,
        })
    }

    fn resource(value: &Json) -> Result<Resource> {
        let o = object(value)?;
        Ok(Resource {
            attributes: repeated(o, "attributes", key_value)?,
            dropped_attributes_count: scalar(o, "droppedAttributesCount", uint32)?,
            ..Default::default()
        })
    }

    fn scope_logs(value: &Json) -> Result<ScopeLogs> {
        let o = object(value)?;
        Ok(ScopeLogs {
            scope: optional(o, "scope", scope)?,
            log_records: repeated(o, "logRecords", log_record)?,
            schema_url: scalar(o, "schemaUrl", string)?,
        })
    }

    fn scope(value: &Json) -> Result<InstrumentationScope> {
        let o = object(value)?;
        Ok(InstrumentationScope {
            name: scalar(o, "name", string)?,
            version: scalar(o, "version", string)?,
            attributes: repeated(o, "attributes", key_value)?,
            dropped_attributes_count: scalar(o, "droppedAttributesCount", uint32)?,
        })
    }

    fn log_record(value: &Json) -> Result<LogRecord> {
        let o = object(value)?;
        Ok(LogRecord {
            time_unix_nano: scalar(o, "timeUnixNano", uint64)?,
            observed_time_unix_nano: scalar(o, "observedTimeUnixNano", uint64)?,
            severity_number: scalar(o, "severityNumber", severity)?,
            severity_text: scalar(o, "severityText", string)?,
            body: optional(o, "body", any_value)?,
            attributes: repeated(o, "attributes", key_value)?,
            dropped_attributes_count: scalar(o, "droppedAttributesCount", uint32)?,
            flags: scalar(o, "flags", uint32)?,
            trace_id: scalar(o, "traceId", |v| hex_id(v, 16))?,
            span_id: scalar(o, "spanId", |v| hex_id(v, 8))?,
            event_name: scalar(o, "eventName", string)?,
        })
    }

    fn key_value(value: &Json) -> Result<KeyValue> {
        let o = object(value)?;
        Ok(KeyValue {
            key: scalar(o, "key", string)?,
            value: optional(o, "value", any_value)?,
            ..Default::default()
        })
    }

    fn any_value(value: &Json) -> Result<AnyValue> {
        let o = object(value)?;
        let one_of: [(&str, ReadValue); 7] = [
            ("stringValue", |v| {
                string(v).map(any_value::Value::StringValue)
            }),
            ("boolValue", |v| boolean(v).map(any_value::Value::BoolValue)),
            ("intValue", |v| int64(v).map(any_value::Value::IntValue)),
            ("doubleValue", |v| {
                double(v).map(any_value::Value::DoubleValue)
            }),
            ("arrayValue", |v| {
                let o = object(v)?;
                Ok(any_value::Value::ArrayValue(ArrayValue {
                    values: repeated(o, "values", any_value)?,
                }))
            }),
            ("kvlistValue", |v| {
                let o = object(v)?;
                Ok(any_value::Value::KvlistValue(KeyValueList {
                    values: repeated(o, "values", key_value)?,
                }))
            }),
            ("bytesValue", |v| bytes(v).map(any_value::Value::BytesValue)),
        ];
        for (name, read) in one_of {
            if let Some(v) = field(o, name) {
                return Ok(AnyValue {
                    value: Some(read(v).map_err(|e| e.at(name))?),
                });
            }
        }
        Ok(AnyValue { value: None })
    }

    /// A field by its JSON name or its `.proto` name; `null` is no field.
    fn field<'a>(o: &'a Map<String, Json>, camel: &str) -> Option<&'a Json> {
        let found = o
            .get(camel)
            .or_else(|| o.get(snake_case(camel, &mut [0; 64])?));
        found.filter(|v| !v.is_null())
    }

    /// The `.proto` name of a JSON field name (`timeUnixNano` → `time_unix_nano`), spelled in
    /// `buf` (no allocation: it is looked up for every absent field of every record); none
    /// when it is the same name (no capitals).
    fn snake_case<'b>(camel: &str, buf: &'b mut [u8; 64]) -> Option<&'b str> {
        if !camel.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut len = 0;
        for b in camel.bytes() {
            if b.is_ascii_uppercase() {
                *buf.get_mut(len)? = b'_';
                len += 1;
            }
            *buf.get_mut(len)? = b.to_ascii_lowercase();
            len += 1;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }

    fn object(value: &Json) -> Result<&Map<String, Json>> {
        value
            .as_object()
            .ok_or_else(|| Error::new(format!("expected an object, found {}", kind(value))))
    }

    fn repeated<T>(
        o: &Map<String, Json>,
        name: &str,
        read: impl Fn(&Json) -> Result<T>,
    ) -> Result<Vec<T>> {
        match field(o, name) {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| read(item).map_err(|e| e.at(&format!("[{i}]")).at(name)))
                .collect(),
            Some(other) => {
                Err(Error::new(format!("expected an array, found {}", kind(other))).at(name))
            }
        }
    }

    fn optional<T>(
        o: &Map<String, Json>,
        name: &str,
        read: impl Fn(&Json) -> Result<T>,
    ) -> Result<Option<T>> {
        field(o, name)
            .map(|v| read(v).map_err(|e| e.at(name)))
            .transpose()
    }

    fn scalar<T: Default>(
        o: &Map<String, Json>,
        name: &str,
        read: impl Fn(&Json) -> Result<T>,
    ) -> Result<T> {
        Ok(optional(o, name, read)?.unwrap_or_default())
    }

    fn kind(value: &Json) -> &'static str {
        match value {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    fn string(value: &Json) -> Result<String> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::new(format!("expected a string, found {}", kind(value))))
    }

    fn boolean(value: &Json) -> Result<bool> {
        value
            .as_bool()
            .ok_or_else(|| Error::new(format!("expected a boolean, found {}", kind(value))))
    }

    /// An integer: a JSON number without a fraction, or a string of one.
    fn integer<T: std::str::FromStr + TryFrom<i64> + TryFrom<u64>>(value: &Json) -> Result<T> {
        let wrong = || {
            Error::new(format!(
                "expected an integer (a number or a decimal string) in range, found {value}"
            ))
        };
        match value {
            Json::Number(n) => {
                if let Some(n) = n.as_u64() {
                    T::try_from(n).map_err(|_| wrong())
                } else if let Some(n) = n.as_i64() {
                    T::try_from(n).map_err(|_| wrong())
                } else {
                    // 1e3 and 10.0 are integers too, as the protobuf JSON mapping allows.
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                        T::try_from(f as i64).map_err(|_| wrong())
                    } else {
                        Err(wrong())
                    }
                }
            }
            Json::String(s) => s.trim().parse().map_err(|_| wrong()),
            _ => Err(wrong()),
        }
    }

    fn uint64(value: &Json) -> Result<u64> {
        integer(value)
    }

    fn int64(value: &Json) -> Result<i64> {
        integer(value)
    }

    fn uint32(value: &Json) -> Result<u32> {
        integer(value)
    }

    fn double(value: &Json) -> Result<f64> {
        match value {
            Json::Number(n) => n.as_f64().ok_or_else(|| Error::new("not a double")),
            Json::String(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => other
                    .trim()
                    .parse()
                    .map_err(|_| Error::new(format!("expected a double, found {value}"))),
            },
            _ => Err(Error::new(format!(
                "expected a double, found {}",
                kind(value)
            ))),
        }
    }

    /// `severityNumber`: a number, or the enum value's name.
    fn severity(value: &Json) -> Result<i32> {
        if let Some(name) = value.as_str()
            && let Some(severity) = SeverityNumber::from_str_name(name)
        {
            return Ok(severity as i32);
        }
        integer(value)
    }

    /// A trace or span id: hex digits, either case; empty for none.
    fn hex_id(value: &Json, len: usize) -> Result<Vec<u8>> {
        let text = value
            .as_str()
            .ok_or_else(|| Error::new(format!("expected a hex string, found {}", kind(value))))?;
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let digit = |c: u8| (c as char).to_digit(16);
        if text.len() != len * 2 {
            return Err(Error::new(format!(
                "expected {} hex digits, found {:?}",
                len * 2,
                text
            )));
        }
        text.as_bytes()
            .chunks(2)
            .map(|pair| match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err(Error::new(format!("expected hex digits, found {text:?}"))),
            })
            .collect()
    }

    /// Bytes in base64, standard or URL-safe, padded or not.
    fn bytes(value: &Json) -> Result<Vec<u8>> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let text = string(value)?;
        let text = text.trim_end_matches('=');
        STANDARD_NO_PAD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|e| Error::new(format!("expected base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{int, kv, map, request, string};
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;

    /// The instrumentation scope of the unit tests' requests.
    const SCOPE: (&str, &str) = ("app.orders", "1.2");

    fn events(request: &ExportLogsServiceRequest) -> Vec<Event> {
        let (entries, count) = encode_events(request, EventTime::new(7, 0));
        let events: Vec<Event> = flumen_event::EntryIter::new(&entries)
            .map(|entry| Event::decode(&entry.unwrap()).unwrap())
            .collect();
        assert_eq!(events.len(), count as usize);
        events
    }

    #[test]
    fn severity_numbers_map_to_the_six_levels() {
        let expected = [
            (1, "TRACE"),
            (4, "TRACE"),
            (5, "DEBUG"),
            (8, "DEBUG"),
            (9, "INFO"),
            (12, "INFO"),
            (13, "WARN"),
            (16, "WARN"),
            (17, "ERROR"),
            (20, "ERROR"),
            (21, "FATAL"),
            (24, "FATAL"),
        ];
        for (number, level) in expected {
            assert_eq!(level_of(number, "").unwrap().as_str(), level, "{number}");
        }
        assert_eq!(level_of(0, "WARNING"), Some(Level::Warn));
        assert_eq!(level_of(0, "Information"), Some(Level::Info));
        assert_eq!(level_of(25, "error"), Some(Level::Error));
        assert_eq!(level_of(0, ""), None);
        assert_eq!(level_of(0, "whatever"), None);
    }

    #[test]
    fn canonical_names_are_flumens() {
        let names: Vec<&str> = flumen_process::enrich::CANONICAL_FIELDS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        for (canonical, _) in CANONICAL_ATTRIBUTES {
            assert!(names.contains(canonical), "{canonical}");
        }
        assert_eq!(CANONICAL_ATTRIBUTES.len(), names.len());
    }

    #[test]
    fn a_record_maps_to_fields() {
        let log = LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            severity_number: 17,
            severity_text: "ERROR".to_owned(),
            body: Some(string("payment failed")),
            attributes: vec![
                kv("http.request.method", string("POST")),
                kv("level", string("mine")),
                kv("service.version", string("2.0-log")),
                kv("retries", int(3)),
                kv("retries", int(4)),
                kv(
                    "raw",
                    AnyValue {
                        value: Some(any_value::Value::BytesValue(vec![0xff, 0x00])),
                    },
                ),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0, 0, 0, 0, 0, 0xff],
            flags: 0x101,
            ..Default::default()
        };
        let request = request(
            SCOPE,
            vec![
                kv("service.name", string("checkout")),
                kv("service.version", string("1.0")),
                kv("deployment.environment", string("prod")),
                kv("host.name", string("node-1")),
                kv("container.id", string("c0ffee")),
                kv("container.name", string("checkout-1")),
                kv("deployment.id", string("d-42")),
            ],
            vec![log],
        );
        let events = events(&request);
        let event = &events[0];
        assert_eq!(event.time, EventTime::new(1_700_000_000, 123_456_789));
        let json: serde_json::Value = serde_json::from_str(&event.record.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "message": "payment failed",
                "level": "ERROR",
                "service": "checkout",
                "environment": "prod",
                "version": "2.0-log",
                "host": "node-1",
                "container_id": "c0ffee",
                "container_name": "checkout-1",
                "deployment_id": "d-42",
                "severity_text": "ERROR",
                "severity_number": 17,
                "trace_id": "abababababababababababababababab",
                "span_id": "01020000000000ff",
                "trace_flags": 1,
                "http.request.method": "POST",
                "service.version": "2.0-log",
                "retries": 4,
                "raw": "/wA=",
                "attributes": {"level": "mine"},
                "scope.name": "app.orders",
                "scope.version": "1.2",
                "resource": {
                    "service.name": "checkout",
                    "service.version": "1.0",
                    "deployment.environment": "prod",
                    "host.name": "node-1",
                    "container.id": "c0ffee",
                    "container.name": "checkout-1",
                    "deployment.id": "d-42"
                }
            })
        );
        assert_eq!(
            event.record.get_path("resource.service.name"),
            Some(&Value::from("checkout"))
        );
        assert_eq!(
            event.record.get_path("http.request.method"),
            Some(&Value::from("POST"))
        );
    }

    #[test]
    fn structured_bodies_keep_their_shape() {
        let map = map(vec![kv("user", string("ada"))]);
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![string("a"), AnyValue::default()],
            })),
        };
        let number = AnyValue {
            value: Some(any_value::Value::DoubleValue(1.5)),
        };
        let logs = [Some(map), Some(array), Some(number), None]
            .into_iter()
            .map(|body| LogRecord {
                body,
                observed_time_unix_nano: 5_000_000_000,
                ..Default::default()
            })
            .collect();
        let events = events(&request(SCOPE, vec![], logs));
        let json = |i: usize| -> serde_json::Value {
            serde_json::from_str(&events[i].record.to_json()).unwrap()
        };
        assert_eq!(json(0)["message"], r#"{"user":"ada"}"#);
        assert_eq!(json(0)["body"]["user"], "ada");
        assert_eq!(json(1)["body"], serde_json::json!(["a", null]));
        assert_eq!(json(2)["message"], "1.5");
        assert!(json(3).get("message").is_none());
        assert!(json(3).get("resource").is_none());
        assert_eq!(events[3].time, EventTime::new(5, 0));
        // No time at all: when it arrived.
        let events = super::tests::events(&request(SCOPE, vec![], vec![LogRecord::default()]));
        assert_eq!(events[0].time, EventTime::new(7, 0));
    }

    #[test]
    fn attribute_limits_count_nested_entries() {
        let nested = map((0..5).map(|i| kv(&format!("k{i}"), string("v"))).collect());
        let log = LogRecord {
            attributes: vec![kv("map", nested)],
            ..Default::default()
        };
        let request = request(SCOPE, vec![], vec![log]);
        assert!(check_limits(&request, 6, usize::MAX).is_ok());
        let (_, error) = check_limits(&request, 5, usize::MAX).unwrap_err();
        assert!(
            error.contains("resource_logs[0].scope_logs[0].log_records[0] has 6 attributes"),
            "{error}"
        );
        let (_, error) = check_limits(&request, 6, 10).unwrap_err();
        assert!(error.contains("send fewer log records"), "{error}");
    }

    #[test]
    fn the_specification_json_example_decodes() {
        // https://github.com/open-telemetry/opentelemetry-proto/blob/main/examples/logs.json
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
          "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","body":{"stringValue":"Example log record"},
          "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},{"key":"boolean.attribute","value":{"boolValue":true}},
          {"key":"int.attribute","value":{"intValue":"10"}},{"key":"double.attribute","value":{"doubleValue":637.704}},
          {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}},
          {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}}]}]}]}]}"#;
        let request = Encoding::Json.decode(body.as_bytes()).unwrap();
        let events = events(&request);
        assert_eq!(events[0].time, EventTime::new(1_544_712_660, 300_000_000));
        let json: serde_json::Value = serde_json::from_str(&events[0].record.to_json()).unwrap();
        assert_eq!(json["message"], "Example log record");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["service"], "my.service");
        assert_eq!(json["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(json["span_id"], "eee19b7ec3c1b174");
        assert_eq!(json["int.attribute"], 10);
        assert_eq!(json["double.attribute"], 637.704);
        assert_eq!(json["boolean.attribute"], true);
        assert_eq!(
            json["array.attribute"],
            serde_json::json!(["many", "values"])
        );
        assert_eq!(json["map.attribute"]["some.map.key"], "some value");
        assert_eq!(
            json["scope.attributes"]["my.scope.attribute"],
            "some scope attribute"
        );
    }

    #[test]
    fn json_quirks_are_read_as_the_specification_says() {
        // int64 as a number or a string; bytes in base64; empty ids; unknown fields ignored;
        // a missing value.
        let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
            "timeUnixNano":1544712660300000000,"traceId":"","spanId":"","unknownField":{"x":1},
            "body":{"bytesValue":"aGk="},
            "attributes":[{"key":"n","value":{"intValue":-5}},{"key":"s","value":{"intValue":"9007199254740993"}},{"key":"empty"},{"key":"e","value":{}}]
        }]}]}]}"#;
        let request = Encoding::Json.decode(body.as_bytes()).unwrap();
        let events = events(&request);
        let json: serde_json::Value = serde_json::from_str(&events[0].record.to_json()).unwrap();
        assert_eq!(json["message"], "aGk=");
        assert_eq!(json["n"], -5);
        assert_eq!(json["s"], 9_007_199_254_740_993_i64);
        assert_eq!(json["empty"], serde_json::Value::Null);
        assert_eq!(json["e"], serde_json::Value::Null);
        assert!(json.get("trace_id").is_none());
        // Not hex, or not the length of an id: refused, saying where.
        let bad = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{"traceId":"zz"}]}]}]}"#;
        let error = Encoding::Json.decode(bad.as_bytes()).unwrap_err();
        assert!(
            error.contains(
                "resourceLogs[0].scopeLogs[0].logRecords[1].traceId: expected 32 hex digits"
            ),
            "{error}"
        );
        let bad = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#;
        let error = Encoding::Json.decode(bad.as_bytes()).unwrap_err();
        assert!(
            error.contains("logRecords[0].timeUnixNano: expected an integer"),
            "{error}"
        );
        assert!(Encoding::Json.decode(b"[]").is_err());
        assert!(Encoding::Json.decode(b"{").is_err());
        // An empty request is a request.
        assert_eq!(
            Encoding::Json.decode(b"{}").unwrap(),
            ExportLogsServiceRequest::default()
        );
    }

    #[test]
    fn json_as_any_protobuf_json_writer_sends_it() {
        // `.proto` field names, enum names, nulls, 64-bit numbers as numbers, u32 as strings,
        // special doubles, empty arrays and maps written as `{}` (empty repeated fields are
        // left out), padded and URL-safe base64.
        let body = r#"{"resource_logs":[{"resource":null,"scope_logs":[{"scope":{"name":"s"},"log_records":[{
            "time_unix_nano":"1000000001","severity_number":"SEVERITY_NUMBER_WARN","severity_text":null,
            "dropped_attributes_count":"3","flags":"1","attributes":null,"body":{"arrayValue":{}}},{
            "severityNumber":21,"attributes":[{"key":"nan","value":{"doubleValue":"NaN"}},
            {"key":"map","value":{"kvlistValue":{}}},{"key":"b","value":{"bytes_value":"-_8"}},
            {"key":"e","value":{"doubleValue":1e3}},{"key":"i","value":{"intValue":1e3}}]}]}]}]}"#;
        let request = Encoding::Json.decode(body.as_bytes()).unwrap();
        let events = events(&request);
        let json = |i: usize| -> serde_json::Value {
            serde_json::from_str(&events[i].record.to_json()).unwrap()
        };
        assert_eq!(events[0].time, EventTime::new(1, 1));
        assert_eq!(json(0)["level"], "WARN");
        assert_eq!(json(0)["severity_number"], 13);
        assert_eq!(json(0)["dropped_attributes_count"], 3);
        assert_eq!(json(0)["trace_flags"], 1);
        assert_eq!(json(0)["body"], serde_json::json!([]));
        assert_eq!(json(0)["scope.name"], "s");
        assert_eq!(json(1)["level"], "FATAL");
        assert_eq!(json(1)["map"], serde_json::json!({}));
        assert_eq!(json(1)["b"], "+/8=");
        assert_eq!(json(1)["e"], 1000.0);
        assert_eq!(json(1)["i"], 1000);
        assert!(events[1].record.get("nan").is_some());
    }

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            Encoding::of("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::of("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::of("text/plain"), None);
        assert_eq!(Encoding::of(""), None);

        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[b'x'; 1000]).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert_eq!(decompress("gzip", gz.clone(), 1000).unwrap().len(), 1000);
        assert!(matches!(
            decompress("gzip", gz.clone(), 999),
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            decompress("gzip", Bytes::from_static(b"nope"), 999),
            Err(BodyError::Corrupt(_))
        ));
        assert!(matches!(
            decompress("br", gz, 999),
            Err(BodyError::Unsupported)
        ));
    }

    #[test]
    fn config_defaults_and_switching_a_listener_off() {
        let config: OtlpConfig = toml::from_str("").unwrap();
        assert_eq!(config.http_address, Some("0.0.0.0:4318".parse().unwrap()));
        assert_eq!(config.grpc_address, Some("0.0.0.0:4317".parse().unwrap()));
        assert_eq!(config.tag, "otlp");
        assert_eq!(config.max_request_size, ByteSize::mib(4));
        assert_eq!(config.max_attributes, 1000);
        let config: OtlpConfig = toml::from_str("grpc_address = \"\"").unwrap();
        assert_eq!(config.grpc_address, None);
        let error = toml::from_str::<OtlpConfig>("http_address = \"nope\"").unwrap_err();
        assert!(error.to_string().contains("is not an address"), "{error}");
    }
}
