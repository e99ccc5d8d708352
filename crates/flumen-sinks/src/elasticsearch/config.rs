//! `type = "elasticsearch"`: the Elasticsearch / OpenSearch output's settings.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::names::NameTemplate;
use crate::config::{BatchConfig, RetryConfig};
pub use crate::http_client::BasicAuth;
use crate::template::field::FieldTemplate;

/// The path of the bulk API, added to `url`.
pub const BULK_PATH: &str = "/_bulk";

/// The index template when none is set.
pub const DEFAULT_INDEX: &str = "flumen-%Y.%m.%d";

/// How documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkMode {
    /// `index`: add the document, or replace the one with its `_id`.
    #[default]
    Index,
    /// `create`: add the document; one with its `_id` already there is left as it is (409,
    /// counted as delivered). What a data stream named in `index` takes.
    Create,
    /// `create` into the data stream `{type}-{dataset}-{namespace}` (`data_stream`).
    DataStream,
}

impl BulkMode {
    /// The bulk action's name.
    pub(super) fn action(self) -> &'static str {
        match self {
            BulkMode::Index => "index",
            BulkMode::Create | BulkMode::DataStream => "create",
        }
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkCompression {
    /// As it is.
    #[default]
    None,
    /// gzip (`Content-Encoding: gzip`; Elasticsearch takes it with `http.compression`, on by
    /// default).
    Gzip,
}

/// `data_stream`: the name of the data stream, `{type}-{dataset}-{namespace}`, as three
/// templates (Elastic's naming scheme).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataStreamConfig {
    /// `logs` by default.
    #[serde(rename = "type")]
    pub kind: String,
    /// `generic` by default.
    pub dataset: String,
    /// `default` by default.
    pub namespace: String,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self {
            kind: "logs".into(),
            dataset: "generic".into(),
            namespace: "default".into(),
        }
    }
}

/// `type = "elasticsearch"`: Elasticsearch's or OpenSearch's `_bulk` API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// The cluster's base URL (`http://elasticsearch:9200`); `/_bulk` is added unless the URL
    /// ends with it already.
    pub url: String,
    /// The index: text with strftime specifiers (the event's time, UTC) and `{{…}}`
    /// placeholders (fields, the tag); `flumen-%Y.%m.%d` by default. Not with
    /// `mode = "data_stream"`.
    #[serde(default)]
    pub index: Option<String>,
    /// `index` (default), `create` or `data_stream`.
    #[serde(default)]
    pub mode: BulkMode,
    /// The data stream's name, with `mode = "data_stream"`.
    #[serde(default)]
    pub data_stream: Option<Box<DataStreamConfig>>,
    /// A field whose value is the document's `_id` (for idempotent resends); when the event
    /// has none, Elasticsearch makes one up.
    #[serde(default)]
    pub id_field: Option<String>,
    /// An ingest pipeline every document goes through (`?pipeline=`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The field the event's time is added as (RFC 3339, nanoseconds); `""` adds none.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// A field the event's tag is added as (Fluentd's `include_tag_key`/`tag_key`).
    #[serde(default)]
    pub tag_field: Option<String>,
    /// Map common fields to the Elastic Common Schema.
    #[serde(default)]
    pub ecs: bool,
    /// Basic authentication.
    #[serde(default)]
    pub auth: Option<BasicAuth>,
    /// An API key: `id:key`, or the two already base64-encoded as Elasticsearch hands them
    /// out (`encoded`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: BulkCompression,
    /// A delivery whose body would be larger is sent as several bulk requests.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// How long one request may take, from connecting to the end of the answer.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timestamp_field() -> String {
    "@timestamp".into()
}

fn default_max_request_bytes() -> ByteSize {
    ByteSize::mib(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The credentials are not printed.
impl fmt::Debug for ElasticsearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchConfig")
            .field("url", &crate::http_client::redact_url(&self.url))
            .field("index", &self.index)
            .field("mode", &self.mode)
            .field("data_stream", &self.data_stream)
            .field("id_field", &self.id_field)
            .field("pipeline", &self.pipeline)
            .field("timestamp_field", &self.timestamp_field)
            .field("tag_field", &self.tag_field)
            .field("ecs", &self.ecs)
            .field("auth", &self.auth)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("compression", &self.compression)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Where each document goes: an index template, or a data stream's three parts.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// `index`.
    Index(NameTemplate),
    /// `data_stream`: type, dataset, namespace.
    DataStream([NameTemplate; 3]),
}

/// An Elasticsearch output's checked settings, its URL, headers and templates compiled: what
/// the sink is built from.
#[derive(Clone)]
pub struct ElasticsearchSpec {
    pub(super) config: ElasticsearchConfig,
    pub(super) url: reqwest::Url,
    pub(super) headers: HeaderMap,
    pub(super) target: Target,
    /// `id_field`, parsed as a one-field template.
    pub(super) id: Option<FieldTemplate>,
}

impl fmt::Debug for ElasticsearchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchSpec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ElasticsearchConfig {
    /// Checks the settings and compiles the URL, headers and templates once; the error starts
    /// with the key.
    pub fn check(&self) -> Result<ElasticsearchSpec, String> {
        let url = bulk_url(&self.url, self.pipeline.as_deref())?;
        let headers = self.headers()?;
        if self.timeout.is_zero() {
            return Err("timeout: must be more than 0".into());
        }
        if self.max_request_bytes.as_u64() == 0 {
            return Err("max_request_bytes: must be more than 0".into());
        }
        let target = self.target()?;
        let id = match &self.id_field {
            None => None,
            Some(field) => Some(one_field("id_field", field)?),
        };
        if let Some(field) = &self.tag_field {
            check_field_name("tag_field", field)?;
        }
        if !self.timestamp_field.is_empty() {
            check_field_name("timestamp_field", &self.timestamp_field)?;
        }
        if self.mode == BulkMode::DataStream && self.timestamp_field != "@timestamp" {
            return Err(
                "timestamp_field: a data stream needs its documents' time in \"@timestamp\"".into(),
            );
        }
        Ok(ElasticsearchSpec {
            config: self.clone(),
            url,
            headers,
            target,
            id,
        })
    }

    /// The request headers: the content type, the encoding, the credentials, then `headers`.
    fn headers(&self) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if self.compression == BulkCompression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        match (&self.auth, &self.api_key) {
            (Some(_), Some(_)) => {
                return Err("auth and api_key: set one of them, not both".into());
            }
            (Some(auth), None) => {
                headers.insert(AUTHORIZATION, auth.header()?);
            }
            (None, Some(key)) => {
                headers.insert(AUTHORIZATION, api_key_header(key)?);
            }
            (None, None) => {}
        }
        crate::http_client::insert_headers(&mut headers, &self.headers)?;
        Ok(headers)
    }

    /// The index template, or the data stream's parts.
    fn target(&self) -> Result<Target, String> {
        if self.mode != BulkMode::DataStream {
            if self.data_stream.is_some() {
                return Err("data_stream: only with mode = \"data_stream\"".into());
            }
            let index = self.index.as_deref().unwrap_or(DEFAULT_INDEX);
            return NameTemplate::parse(index)
                .map(Target::Index)
                .map_err(|e| format!("index: {e}"));
        }
        if self.index.is_some() {
            return Err(
                "index: not with mode = \"data_stream\" (the data stream is named by data_stream = { type, dataset, namespace })"
                    .into(),
            );
        }
        let stream = self.data_stream.clone().unwrap_or_default();
        let part = |key: &str, text: &str| {
            NameTemplate::parse(text).map_err(|e| format!("data_stream.{key}: {e}"))
        };
        Ok(Target::DataStream([
            part("type", &stream.kind)?,
            part("dataset", &stream.dataset)?,
            part("namespace", &stream.namespace)?,
        ]))
    }
}

/// `Authorization: ApiKey …`: an `id:key` pair is encoded; anything else (base64 has no `:`)
/// is taken as encoded already.
fn api_key_header(key: &str) -> Result<HeaderValue, String> {
    use base64::Engine;
    let key = key.trim();
    if key.is_empty() {
        return Err("api_key: empty".into());
    }
    let encoded = if key.contains(':') {
        base64::engine::general_purpose::STANDARD.encode(key)
    } else {
        key.to_owned()
    };
    let mut value = HeaderValue::from_str(&format!("ApiKey {encoded}"))
        .map_err(|_| "api_key: not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The bulk URL: the base URL with `/_bulk` added unless it has that path already, and the
/// pipeline as a query parameter.
fn bulk_url(base: &str, pipeline: Option<&str>) -> Result<reqwest::Url, String> {
    let base = base.trim();
    if base.is_empty() {
        return Err(
            "url: required (the cluster's address, such as \"http://elasticsearch:9200\")".into(),
        );
    }
    let mut url = crate::http_client::check_url("url", base)?;
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with(BULK_PATH) {
        path.to_owned()
    } else {
        format!("{path}{BULK_PATH}")
    };
    url.set_path(&path);
    if let Some(pipeline) = pipeline {
        if pipeline.trim().is_empty() {
            return Err("pipeline: empty (leave it out for none)".into());
        }
        url.query_pairs_mut()
            .append_pair("pipeline", pipeline.trim());
    }
    Ok(url)
}

/// `field` as a template reading that one field (a dotted path).
fn one_field(key: &str, field: &str) -> Result<FieldTemplate, String> {
    check_field_name(key, field)?;
    // `record.`: a field named `tag` or `time` is the record's, not the event's tag or time.
    FieldTemplate::parse(&format!("{{{{record.{field}}}}}")).map_err(|e| format!("{key}: {e}"))
}

/// A field name flumen reads or writes: not empty, no `{{`, `}}` or `|` (template syntax).
fn check_field_name(key: &str, field: &str) -> Result<(), String> {
    if field.trim().is_empty() {
        return Err(format!("{key}: empty"));
    }
    if field.contains(['{', '}', '|', '"']) {
        return Err(format!(
            "{key}: {field:?} is not a field name (write the field itself, such as \"request_id\")"
        ));
    }
    Ok(())
}
