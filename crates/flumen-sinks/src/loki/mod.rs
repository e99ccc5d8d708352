//! The Loki output: events to Grafana Loki's push API (`POST /loki/api/v1/push`).
//!
//! Every delivery the driver hands over is one push request. Each event becomes one entry of
//! the stream its labels name:
//!
//! - **labels** (`labels`): templates of fields, the tag and constants, rendered per event; a
//!   label that comes out empty is left out, and a stream left without labels gets
//!   `agent="flumen"` (Loki refuses streams without one). Label strings are sorted by name and
//!   escaped as Prometheus writes them: `{job="shop", service="api"}`.
//! - **structured metadata** (`structured_metadata`): pairs sent beside the line (Loki 2.9 and
//!   later); the fields they read are left out of the line.
//! - **the line**: the first of `line_field` present (a string as it is, anything else as
//!   JSON), else the record (less the fields sent as metadata and, with `remove_label_fields`,
//!   as labels) as JSON or `key=value` pairs; with `drop_single_key`, a record of one field
//!   is its value.
//! - **the time**: the event's, to the nanosecond.
//!
//! Label and metadata values are templates: `{{field}}` is a record field, `{{a.b}}` a nested
//! one (a top-level field named `a.b` wins), `{{tag}}` the event's tag, `{{time}}` its time
//! (RFC 3339), `{{record.tag}}` a record field named `tag`; `{{a|b|"text"}}` takes the first
//! alternative present and not empty, a quoted one as written. Text outside placeholders is
//! kept as written, so `job = "shop"` is a constant label. Strings render as they are,
//! numbers and booleans in decimal, maps and arrays as JSON.
//!
//! Entries of one stream are sorted by time within a request (stably: events of one time keep
//! their order), which is what Loki before 2.4 required and what keeps a stream's chunks
//! ordered after it. Across requests, `out_of_order_action` decides: `accept` (Loki 2.4 and
//! later take entries older than the stream's newest, within `max_chunk_age / 2`), or
//! `rewrite_timestamp` / `drop` against the last time this sink sent on the stream.
//!
//! The body is a snappy block-compressed `logproto.PushRequest` (the protobuf types of
//! `flumen_codec::loki`, which flumen's Loki input decodes with), or JSON (`compression =
//! "none"` or `"gzip"`).
//!
//! # Failures and retries
//!
//! Loki answers 204. Connection errors, timeouts, 408, 429 and 5xx are retried by the driver,
//! never sooner than a `Retry-After` (seconds) on a 429 or 503 asks. 400 is Loki refusing
//! entries for good (out of order, too far behind, line too long, bad labels): the request's
//! events go to the dead-letter file at once with Loki's reason, and are never retried. Other
//! 4xx answers (401, 403, 404, 413) are permanent too. Errors name the endpoint by scheme, host
//! and port only (`http://loki:3100/…`).

mod config;

pub use config::{
    BasicAuth, FieldMap, HIGH_CARDINALITY_FIELDS, LineFormat, LokiCompression, LokiConfig,
    LokiSpec, OutOfOrderAction, is_high_cardinality,
};

use std::collections::HashMap;
use std::fmt;
use std::io::Write;

use flumen_codec::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use flumen_event::json::{write_json_str, write_string_map, write_value};
use flumen_event::msgpack::Reader;
use flumen_event::record::{Record, Value};
use flumen_event::{Entry, EventTime};
use prost::Message;

use crate::http_client::{Endpoint, Failure, gzip};
use crate::template::field::FieldTemplate;
use crate::{Delivery, DeliveryError, Items, Outcome};

/// The path of Loki's push API, added to `url`.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// The label a stream gets when none of its labels has a value.
pub const FALLBACK_LABEL: (&str, &str) = ("agent", "flumen");

/// How much of an error answer's body goes into the error (Loki lists the entries it refused).
const ERROR_BODY_BYTES: usize = 1024;
/// The most streams whose last time is remembered for `out_of_order_action`.
const MAX_REMEMBERED_STREAMS: usize = 100_000;

/// One entry of a push, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    /// Its time.
    pub time: EventTime,
    /// The line.
    pub line: String,
    /// Structured metadata, in the configured order (by name).
    pub metadata: Vec<(String, String)>,
    /// The event's position in the delivery.
    pub position: usize,
}

/// One stream of a push, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushStream {
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its entries, sorted by time.
    pub entries: Vec<PushEntry>,
}

impl PushStream {
    /// The label string: `{name="value", …}`.
    pub fn label_string(&self) -> String {
        label_string(&self.labels)
    }
}

/// A label string as Loki and Prometheus write it: `{a="b", c="d"}`, with `\`, `"`, newlines
/// and tabs escaped in values. `labels` must be sorted by name.
pub fn label_string(labels: &[(String, String)]) -> String {
    let mut out = String::with_capacity(2 + labels.len() * 16);
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Sends events to Loki.
pub struct LokiSink {
    name: String,
    endpoint: Endpoint,
    spec: LokiSpec,
    /// True when labels, metadata or the line read record fields.
    needs_record: bool,
    /// The last time sent on each stream (label string), for `out_of_order_action`.
    last_sent: HashMap<String, EventTime>,
}

impl fmt::Debug for LokiSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiSink")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.name())
            .finish_non_exhaustive()
    }
}

impl LokiSink {
    /// A sink for output `name` from checked settings; fails only if the HTTP client cannot
    /// be built.
    pub fn from_spec(name: &str, spec: &LokiSpec) -> Result<Self, String> {
        let endpoint = Endpoint::new(
            &spec.url,
            spec.config.timeout,
            spec.headers.clone(),
            ERROR_BODY_BYTES,
        )?;
        let needs_record = spec
            .labels
            .iter()
            .chain(&spec.metadata)
            .any(|(_, t)| t.fields().next().is_some())
            || !spec.config.line_field.is_empty()
            || !spec.removed.is_empty()
            || spec.config.drop_single_key
            || spec.config.line_format != LineFormat::Json;
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            spec: spec.clone(),
            needs_record,
            last_sent: HashMap::new(),
        })
    }

    /// Sends `delivery` as one push request.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let (streams, dropped) = self.plan(delivery);
        let mut outcome = Outcome::delivered();
        if !dropped.is_empty() {
            outcome = outcome.fail(
                Items::positions(dropped),
                DeliveryError::permanent(
                    "entry out of order: older than the last entry sent on its stream (out_of_order_action = \"drop\")",
                ),
            );
        }
        if streams.is_empty() {
            return outcome;
        }
        let body = match self.spec.config.compression {
            LokiCompression::Snappy => encode_protobuf(&streams),
            LokiCompression::None => encode_json(&streams),
            LokiCompression::Gzip => gzip(&encode_json(&streams)),
        };
        match self.endpoint.post(body).await {
            Ok(()) => {
                self.remember(&streams);
                outcome
            }
            Err(Failure {
                error, retry_after, ..
            }) => {
                let sent = streams
                    .iter()
                    .flat_map(|s| s.entries.iter().map(|e| e.position));
                let outcome = outcome.fail(Items::positions(sent), error);
                match retry_after {
                    Some(wait) => outcome.retry_after(wait),
                    None => outcome,
                }
            }
        }
    }

    /// The streams of `delivery`, each sorted by time, and the positions of the entries
    /// `out_of_order_action = "drop"` leaves out.
    pub fn plan(&self, delivery: &Delivery) -> (Vec<PushStream>, Vec<usize>) {
        let mut streams: Vec<PushStream> = Vec::new();
        let mut index: HashMap<Vec<(String, String)>, usize> = HashMap::new();
        for (position, (tag, entry)) in delivery.events().enumerate() {
            let record = if self.needs_record {
                decode(tag, &entry)
            } else {
                Record::new()
            };
            let labels = self.labels_of(tag, entry.time, &record);
            let metadata = self
                .spec
                .metadata
                .iter()
                .filter_map(|(name, t)| Some((name.clone(), render(t, tag, entry.time, &record)?)))
                .collect();
            let line = self.line_of(&entry, record);
            let slot = *index.entry(labels).or_insert_with_key(|labels| {
                streams.push(PushStream {
                    labels: labels.clone(),
                    entries: Vec::new(),
                });
                streams.len() - 1
            });
            streams[slot].entries.push(PushEntry {
                time: entry.time,
                line,
                metadata,
                position,
            });
        }
        let mut dropped = Vec::new();
        for stream in &mut streams {
            // Stable: events of one time keep their order.
            stream.entries.sort_by_key(|e| e.time);
            let action = self.spec.config.out_of_order_action;
            if action == OutOfOrderAction::Accept {
                continue;
            }
            let Some(&last) = self.last_sent.get(&stream.label_string()) else {
                continue;
            };
            match action {
                OutOfOrderAction::RewriteTimestamp => {
                    for entry in stream.entries.iter_mut().filter(|e| e.time < last) {
                        entry.time = last;
                    }
                }
                OutOfOrderAction::Drop => stream.entries.retain(|e| {
                    let keep = e.time >= last;
                    if !keep {
                        dropped.push(e.position);
                    }
                    keep
                }),
                OutOfOrderAction::Accept => {}
            }
        }
        streams.retain(|s| !s.entries.is_empty());
        (streams, dropped)
    }

    fn labels_of(&self, tag: &str, time: EventTime, record: &Record) -> Vec<(String, String)> {
        let mut labels: Vec<(String, String)> = self
            .spec
            .labels
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), render(t, tag, time, record)?)))
            .collect();
        if labels.is_empty() {
            labels.push((FALLBACK_LABEL.0.to_owned(), FALLBACK_LABEL.1.to_owned()));
        }
        labels
    }

    fn line_of(&self, entry: &Entry<'_>, mut record: Record) -> String {
        let config = &self.spec.config;
        for field in &config.line_field {
            if let Some(value) = record.get_path(field) {
                return value.to_text().into_owned();
            }
        }
        let whole_record = self.spec.removed.is_empty()
            && !config.drop_single_key
            && config.line_format == LineFormat::Json;
        if whole_record {
            // The record as it is: JSON straight from its msgpack.
            let mut out = Vec::with_capacity(entry.record.len() * 2);
            if write_value(&mut out, &mut Reader::new(entry.record), 0).is_err() {
                return String::new();
            }
            return String::from_utf8(out).unwrap_or_default();
        }
        if !self.spec.removed.is_empty() {
            record.retain(|name, _| !self.spec.removed.iter().any(|r| r == name));
        }
        if config.drop_single_key && record.len() == 1 {
            return record.fields()[0].1.to_text().into_owned();
        }
        match config.line_format {
            LineFormat::Json => record.to_json(),
            LineFormat::KeyValue => key_value(&record),
        }
    }

    /// Remembers the newest time sent on each stream, for `out_of_order_action`.
    fn remember(&mut self, streams: &[PushStream]) {
        if self.spec.config.out_of_order_action == OutOfOrderAction::Accept {
            return;
        }
        if self.last_sent.len() > MAX_REMEMBERED_STREAMS {
            self.last_sent.clear();
        }
        for stream in streams {
            if let Some(newest) = stream.entries.iter().map(|e| e.time).max() {
                let last = self
                    .last_sent
                    .entry(stream.label_string())
                    .or_insert(newest);
                *last = (*last).max(newest);
            }
        }
    }
}

/// A snappy block-compressed `logproto.PushRequest`.
pub fn encode_protobuf(streams: &[PushStream]) -> Vec<u8> {
    let request = PushRequest {
        streams: streams
            .iter()
            .map(|stream| StreamAdapter {
                labels: stream.label_string(),
                entries: stream
                    .entries
                    .iter()
                    .map(|entry| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: entry.time.secs as i64,
                            nanos: entry.time.nanos as i32,
                        }),
                        line: entry.line.as_bytes().to_vec(),
                        structured_metadata: entry
                            .metadata
                            .iter()
                            .map(|(name, value)| LabelPairAdapter {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    };
    let plain = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&plain)
        .expect("snappy compresses any input under 4 GiB")
}

/// `{"streams":[{"stream":{…},"values":[["<unix ns>","line"{,{metadata}}],…]},…]}`.
pub fn encode_json(streams: &[PushStream]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"streams\":[");
    for (s, stream) in streams.iter().enumerate() {
        if s > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        write_string_map(&mut out, &stream.labels);
        out.extend_from_slice(b",\"values\":[");
        for (e, entry) in stream.entries.iter().enumerate() {
            if e > 0 {
                out.push(b',');
            }
            let nanos = u128::from(entry.time.secs) * 1_000_000_000 + u128::from(entry.time.nanos);
            write!(out, "[\"{nanos}\",").expect("Vec write");
            write_json_str(&mut out, entry.line.as_bytes());
            if !entry.metadata.is_empty() {
                out.push(b',');
                write_string_map(&mut out, &entry.metadata);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// A label's or a metadata pair's value for one event: `template`'s pieces one after the
/// other; `None` when that is empty (a label or a pair whose fields are all missing is left
/// out).
fn render(template: &FieldTemplate, tag: &str, time: EventTime, record: &Record) -> Option<String> {
    let mut value = String::new();
    for piece in template.render(tag, time, record) {
        value.push_str(piece.as_ref());
    }
    (!value.is_empty()).then_some(value)
}

/// `key=value` pairs, logfmt: a value with spaces, `=`, quotes or nothing in it is quoted.
fn key_value(record: &Record) -> String {
    let mut out = String::new();
    for (name, value) in record.fields() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(name);
        out.push('=');
        let text = value.to_text();
        let plain = !text.is_empty()
            && !matches!(value, Value::Map(_) | Value::Array(_))
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c == '=' || c == '"' || c.is_control());
        if plain {
            out.push_str(&text);
        } else {
            let mut quoted = Vec::new();
            write_json_str(&mut quoted, text.as_bytes());
            out.push_str(&String::from_utf8_lossy(&quoted));
        }
    }
    out
}

/// Decodes a record; one that cannot be (the log holds validated entries, so a bug) is empty.
fn decode(tag: &str, entry: &Entry<'_>) -> Record {
    Record::decode(entry.record).unwrap_or_else(|error| {
        tracing::error!(message = "Cannot read a record; sending it as empty.", tag, %error);
        Record::new()
    })
}

#[cfg(test)]
mod tests;
