//! `type = "loki"`: the Loki output's settings.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{BatchConfig, RetryConfig};
pub use crate::http_client::BasicAuth;
use crate::template::field::FieldTemplate;

/// Fields whose values are unique per event, or nearly: as labels they make a stream each,
/// which Loki refuses past `max_streams_per_user`, or slows to a crawl before that.
pub const HIGH_CARDINALITY_FIELDS: &[&str] = &[
    "deployment_id",
    "request_id",
    "trace_id",
    "span_id",
    "container_id",
    "message",
    "msg",
    "log",
    "time",
    "timestamp",
];

/// Label names, or fields: a map of name → template, or a list of field names.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum FieldMap {
    /// `{ name = "{{field}}", job = "static" }`.
    Map(BTreeMap<String, String>),
    /// `["service", "kubernetes.namespace"]`: each field under its own name (dots and other
    /// characters not allowed in a label name become `_`).
    List(Vec<String>),
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap::List(Vec::new())
    }
}

impl FieldMap {
    /// `(name, template)` pairs: the list form's fields as `{{field}}` under their sanitised
    /// names.
    fn pairs(&self) -> Vec<(String, String)> {
        match self {
            FieldMap::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            FieldMap::List(fields) => fields
                .iter()
                .map(|field| (sanitize_name(field), format!("{{{{{field}}}}}")))
                .collect(),
        }
    }
}

/// How a record becomes a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// The record as one JSON object.
    #[default]
    Json,
    /// `key=value key2="two words"`, logfmt.
    KeyValue,
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LokiCompression {
    /// Protobuf (`logproto.PushRequest`), snappy block-compressed: what Promtail sends.
    #[default]
    Snappy,
    /// JSON, gzip-compressed.
    Gzip,
    /// JSON.
    None,
}

/// What to do with an entry older than the last one sent on its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfOrderAction {
    /// Send it: Loki 2.4 and later accept it (within `max_chunk_age / 2` of the stream's
    /// newest entry, 1 h by default).
    #[default]
    Accept,
    /// Send it at the last time sent on its stream.
    RewriteTimestamp,
    /// Do not send it: it goes to the dead-letter file, with the reason.
    Drop,
}

/// `type = "loki"`: Grafana Loki's push API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Loki's base URL (`http://loki:3100`); `/loki/api/v1/push` is added unless the URL ends
    /// with it already.
    pub url: String,
    /// Stream labels: label name → template (`"{{service}}"`, `"static"`, `"{{tag}}"`), or a
    /// list of field names.
    #[serde(default)]
    pub labels: FieldMap,
    /// Fields sent as structured metadata (Loki 2.9 and later) rather than in the line.
    #[serde(default)]
    pub structured_metadata: FieldMap,
    /// Fields tried in order for the line; the first present is the line (a string as it is,
    /// anything else as JSON). When none is present, or none is set, the line is the record in
    /// `line_format`.
    #[serde(default)]
    pub line_field: Vec<String>,
    /// `json` (default) or `key_value`.
    #[serde(default)]
    pub line_format: LineFormat,
    /// Take the fields labels read out of the line.
    #[serde(default)]
    pub remove_label_fields: bool,
    /// When the record has a single field left, its value is the line (Fluent Bit's
    /// `drop_single_key`).
    #[serde(default)]
    pub drop_single_key: bool,
    /// `X-Scope-OrgID`: the tenant, for a multi-tenant Loki.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Basic authentication.
    #[serde(default)]
    pub auth: Option<BasicAuth>,
    /// `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `snappy` (protobuf, default), `gzip` (JSON) or `none` (JSON).
    #[serde(default)]
    pub compression: LokiCompression,
    /// `accept` (default), `rewrite_timestamp` or `drop`.
    #[serde(default)]
    pub out_of_order_action: OutOfOrderAction,
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

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The credentials are not printed.
impl fmt::Debug for LokiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiConfig")
            .field("url", &crate::http_client::redact_url(&self.url))
            .field("labels", &self.labels)
            .field("structured_metadata", &self.structured_metadata)
            .field("line_field", &self.line_field)
            .field("line_format", &self.line_format)
            .field("remove_label_fields", &self.remove_label_fields)
            .field("drop_single_key", &self.drop_single_key)
            .field("tenant_id", &self.tenant_id)
            .field("auth", &self.auth.as_ref().map(|a| (&a.user, "<redacted>")))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("compression", &self.compression)
            .field("out_of_order_action", &self.out_of_order_action)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A Loki output's checked settings: its URL, headers and templates parsed, what the sink is
/// built from.
#[derive(Clone)]
pub struct LokiSpec {
    pub(super) config: LokiConfig,
    pub(super) url: reqwest::Url,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) labels: Vec<(String, FieldTemplate)>,
    pub(super) metadata: Vec<(String, FieldTemplate)>,
    /// Top-level fields left out of the line: structured metadata's, and labels' with
    /// `remove_label_fields`.
    pub(super) removed: Vec<String>,
    /// What a check would warn about (high-cardinality labels), already logged.
    pub warnings: Vec<String>,
}

impl fmt::Debug for LokiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiSpec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LokiConfig {
    /// Checks the settings and compiles the URL, headers and templates once; the error names
    /// the key. A label read from a field known to be of high cardinality is not an error, but
    /// a warning, logged here (so `flumen validate` shows it) and kept in the spec.
    pub fn check(&self) -> Result<LokiSpec, String> {
        use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

        let url = push_url(&self.url)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(match self.compression {
                LokiCompression::Snappy => "application/x-protobuf",
                LokiCompression::Gzip | LokiCompression::None => "application/json",
            }),
        );
        if self.compression == LokiCompression::Gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        if let Some(tenant) = &self.tenant_id {
            if tenant.trim().is_empty() {
                return Err("tenant_id: empty (leave it out for a single-tenant Loki)".into());
            }
            let value = HeaderValue::from_str(tenant)
                .map_err(|_| "tenant_id: not a valid header value".to_owned())?;
            headers.insert(HeaderName::from_static("x-scope-orgid"), value);
        }
        match (&self.auth, &self.bearer_token) {
            (Some(_), Some(_)) => {
                return Err("auth and bearer_token: set one of them, not both".into());
            }
            (Some(auth), None) => {
                headers.insert(AUTHORIZATION, auth.header()?);
            }
            (None, Some(token)) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| "bearer_token: not a valid header value".to_owned())?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            (None, None) => {}
        }
        crate::http_client::insert_headers(&mut headers, &self.headers)?;
        if self.timeout.is_zero() {
            return Err("timeout: must be more than 0".into());
        }
        let labels = compile("labels", &self.labels)?;
        let metadata = compile("structured_metadata", &self.structured_metadata)?;
        for field in &self.line_field {
            if field.trim().is_empty() {
                return Err("line_field: a field name is empty".into());
            }
        }
        let mut removed: Vec<String> = metadata
            .iter()
            .flat_map(|(_, template)| template.fields())
            .map(str::to_owned)
            .collect();
        if self.remove_label_fields {
            removed.extend(
                labels
                    .iter()
                    .flat_map(|(_, template)| template.fields())
                    .map(str::to_owned),
            );
        }
        removed.sort();
        removed.dedup();
        let warnings = cardinality_warnings(&labels);
        for warning in &warnings {
            tracing::warn!(message = "A Loki label may have too many values.", %warning);
        }
        Ok(LokiSpec {
            config: self.clone(),
            url,
            headers,
            labels,
            metadata,
            removed,
            warnings,
        })
    }
}

/// The push URL: the base URL with `/loki/api/v1/push` added, unless it has that path already.
fn push_url(base: &str) -> Result<reqwest::Url, String> {
    let base = base.trim();
    if base.is_empty() {
        return Err("url: required (Loki's address, such as \"http://loki:3100\")".into());
    }
    let mut url = crate::http_client::check_url("url", base)?;
    let path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with(super::PUSH_PATH) {
        url.set_path(&format!("{path}{}", super::PUSH_PATH));
    }
    Ok(url)
}

fn compile(key: &str, map: &FieldMap) -> Result<Vec<(String, FieldTemplate)>, String> {
    let mut out: Vec<(String, FieldTemplate)> = Vec::new();
    for (name, template) in map.pairs() {
        if !is_label_name(&name) {
            return Err(format!(
                "{key}: {name:?} is not a valid name (letters, digits and _, not starting with a digit)"
            ));
        }
        if out.iter().any(|(other, _)| *other == name) {
            return Err(format!("{key}: {name:?} is given twice"));
        }
        if template.is_empty() {
            return Err(format!("{key}.{name}: empty"));
        }
        let template = FieldTemplate::parse(&template).map_err(|e| format!("{key}.{name}: {e}"))?;
        out.push((name, template));
    }
    // Loki's label strings are sorted by name.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A field's name as a label name: what is not a letter, a digit or `_` becomes `_`, and a
/// leading digit gets a `_` before it.
fn sanitize_name(field: &str) -> String {
    let mut name: String = field
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        name.insert(0, '_');
    }
    name
}

/// True for a field whose values are likely unique per event: the known ones, and any whose
/// last part is named `id` or ends in `id` (`uid`, `pid`, `userId`, `session_id`).
pub fn is_high_cardinality(field: &str) -> bool {
    let last = field.rsplit(['.', '/']).next().unwrap_or(field);
    let lower = last.to_ascii_lowercase();
    HIGH_CARDINALITY_FIELDS.contains(&lower.as_str()) || lower.ends_with("id")
}

fn cardinality_warnings(labels: &[(String, FieldTemplate)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, template) in labels {
        for field in template.fields() {
            if is_high_cardinality(field) {
                warnings.push(format!(
                    "labels.{name} reads the field {field:?}, which likely has a value per event or per instance: every value is a stream of its own in Loki (too many streams are refused, and slow queries before that); send it as structured_metadata instead"
                ));
            }
        }
        if template.reads_time() {
            warnings.push(format!(
                "labels.{name} reads the event time: every value is a stream of its own in Loki"
            ));
        }
    }
    warnings
}
