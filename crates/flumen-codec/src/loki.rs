//! Grafana Loki push bodies (`POST /loki/api/v1/push`), sans I/O.
//!
//! What the clients that ship to Loki send (Promtail, Alloy, Fluent Bit's and Vector's `loki`
//! outputs, pino-loki, winston-loki, python-logging-loki):
//!
//! - `Content-Type: application/x-protobuf`: a snappy **block**-compressed `logproto.PushRequest`
//!   (Loki's `pkg/push/push.proto`): streams with their labels as a Prometheus label string
//!   (`{job="api", level="info"}`), entries with a `google.protobuf.Timestamp`, a line and
//!   structured metadata pairs.
//! - `application/json` (or no type): `{"streams":[{"stream":{"job":"api"},"values":[["<unix
//!   ns>","line"],["<unix ns>","line",{"trace_id":"…"}]]}]}`, and Loki's legacy form
//!   `{"streams":[{"labels":"{job=\"api\"}","entries":[{"ts":"<RFC 3339>","line":"…"}]}]}`
//!   (python-logging-loki's default). Either may be gzip-compressed (`Content-Encoding: gzip`).
//!
//! [`decode_push`] reads a body into [`Stream`]s; [`push_events`] makes them flumen entries:
//! each entry one event at its own time (nanoseconds kept), its record the stream's labels
//! (every label a string field), then the entry's structured metadata, then the line as
//! `message`. A label or metadata pair named `message` or `attributes` goes into an
//! `attributes` map instead, as the OTLP source does with its reserved names. The caller
//! decides the tag of each stream and the canonical fields (service, level): those are
//! `flumen-process`'s, which this crate does not depend on.
//!
//! What a body may cost is bounded: its decompressed size by [`Limits::max_decoded`] and by
//! [`MAX_COMPRESSION_RATIO`] times its compressed size (snappy states its decompressed size up
//! front, so an oversized body is refused before anything is allocated); the entries, which
//! repeat their stream's labels, by [`Limits::max_events`].

use std::io::Read;

use flumen_event::EventTime;
use flumen_event::record::{Record, Value};
use prost::Message;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::batches::Batches;

/// How much larger than its compressed form a body may be (and 64 KiB): logs compress well,
/// but not a thousandfold. It bounds gzip; snappy never compresses more than about 21 times,
/// so for snappy [`Limits::max_decoded`] is the bound that counts.
pub const MAX_COMPRESSION_RATIO: usize = 64;

/// Field names the mapping writes itself; labels and metadata by these names go into the
/// `attributes` map.
pub const RESERVED: &[&str] = &["message", "attributes"];

/// What a push request may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes a body may decompress to.
    pub max_decoded: usize,
    /// The most bytes of entries a request may make.
    pub max_events: usize,
}

impl Limits {
    /// The limits of a source that takes bodies of up to `max_body` bytes: as many decompressed,
    /// and events of 16 times that (at least 64 MiB), since every entry carries its stream's
    /// labels.
    pub fn for_body_size(max_body: usize) -> Self {
        Self {
            max_decoded: max_body,
            max_events: max_body.saturating_mul(16).max(64 << 20),
        }
    }
}

/// A push request as the HTTP layer saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushBody<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The `Content-Encoding` header, if any.
    pub content_encoding: Option<&'a str>,
    /// The body, as sent.
    pub body: &'a [u8],
}

/// One stream of a push request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Its labels, in the order sent.
    pub labels: Vec<(String, String)>,
    /// Its entries.
    pub entries: Vec<LogEntry>,
}

/// One log line of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When it happened.
    pub time: EventTime,
    /// The line.
    pub line: String,
    /// Its structured metadata, in the order sent.
    pub metadata: Vec<(String, String)>,
}

/// Why a push body was refused (the message is the response body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LokiError {
    /// A `Content-Type` Loki does not take (HTTP 415).
    #[error(
        "unsupported Content-Type {0:?}: send application/x-protobuf (snappy-compressed) or application/json"
    )]
    ContentType(String),
    /// A `Content-Encoding` other than gzip (HTTP 415).
    #[error("unsupported Content-Encoding {0:?}: send gzip or none")]
    ContentEncoding(String),
    /// The body does not decompress.
    #[error("the body does not decompress as {encoding}: {reason}")]
    Compression {
        /// gzip or snappy.
        encoding: &'static str,
        /// What the decompressor said.
        reason: String,
    },
    /// The body is not a push request.
    #[error("{0}")]
    Invalid(String),
    /// The body decompresses, or its events come, to more than the limits allow (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
}

impl LokiError {
    /// True when the request is refused for its size (HTTP 413).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::TooLarge(_))
    }

    /// True when the request is refused for its content type or encoding (HTTP 415).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::ContentType(_) | Self::ContentEncoding(_))
    }
}

/// The two encodings of a push body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// Reads a push body into its streams; `now` is the time of entries that carry none.
pub fn decode_push(
    push: &PushBody<'_>,
    limits: &Limits,
    now: EventTime,
) -> Result<Vec<Stream>, LokiError> {
    let format = format_of(push.content_type)?;
    let body = decompress_gzip(push.content_encoding, push.body, limits)?;
    match format {
        Format::Protobuf => decode_protobuf(&decompress_snappy(&body, limits)?, now),
        Format::Json => decode_json(&body),
    }
}

fn format_of(content_type: Option<&str>) -> Result<Format, LokiError> {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        // Loki reads a body without a type as JSON, and so do some clients' defaults.
        "" | "application/json" | "text/json" => Ok(Format::Json),
        _ => Err(LokiError::ContentType(essence)),
    }
}

/// The most a body of `compressed` bytes may decompress to.
fn decompressed_limit(compressed: usize, limits: &Limits) -> usize {
    compressed
        .saturating_mul(MAX_COMPRESSION_RATIO)
        .saturating_add(64 << 10)
        .min(limits.max_decoded)
}

fn too_large_decompressed(compressed: usize, limit: usize) -> LokiError {
    LokiError::TooLarge(format!(
        "the body's {compressed} bytes decompress to more than {limit} bytes (max_body_size, or {MAX_COMPRESSION_RATIO} times its size and 64 KiB): send smaller batches"
    ))
}

/// The body before its `Content-Encoding` (only gzip is one).
fn decompress_gzip<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
    limits: &Limits,
) -> Result<std::borrow::Cow<'a, [u8]>, LokiError> {
    match encoding.unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "" | "identity" => return Ok(body.into()),
        "gzip" | "x-gzip" => {}
        other => return Err(LokiError::ContentEncoding(other.to_owned())),
    }
    let limit = decompressed_limit(body.len(), limits);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| LokiError::Compression {
            encoding: "gzip",
            reason: error.to_string(),
        })?;
    if out.len() > limit {
        return Err(too_large_decompressed(body.len(), limit));
    }
    Ok(out.into())
}

/// A snappy block's contents; its stated size is checked before anything is allocated.
fn decompress_snappy(body: &[u8], limits: &Limits) -> Result<Vec<u8>, LokiError> {
    let corrupt = |error: snap::Error| LokiError::Compression {
        encoding: "snappy (block format)",
        reason: error.to_string(),
    };
    let size = snap::raw::decompress_len(body).map_err(corrupt)?;
    let limit = decompressed_limit(body.len(), limits);
    if size > limit {
        return Err(too_large_decompressed(body.len(), limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(corrupt)
}

// ---------------------------------------------------------------------------------------------
// Protobuf: Loki's `pkg/push/push.proto`, the fields a push carries.

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// `streams = 1`.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter` (its `hash = 3` is Loki's own and left out).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `labels = 1`: a Prometheus label string, `{job="api"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// `entries = 2`.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

/// `logproto.EntryAdapter` (its `parsed = 4` is for query answers and left out).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// `timestamp = 1`.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// `line = 2`: a string in the `.proto`, read as bytes so that a line that is not UTF-8
    /// (Loki's Go server never checks) is kept, lossily, rather than failing the request.
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    /// `structuredMetadata = 3`.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// `name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// `seconds = 1`.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `nanos = 2`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

fn decode_protobuf(body: &[u8], now: EventTime) -> Result<Vec<Stream>, LokiError> {
    let request = PushRequest::decode(body).map_err(|error| {
        LokiError::Invalid(format!(
            "the body is not a snappy-compressed protobuf logproto.PushRequest: {error}"
        ))
    })?;
    request
        .streams
        .into_iter()
        .enumerate()
        .map(|(s, stream)| {
            let at = |error: String| LokiError::Invalid(format!("streams[{s}]: {error}"));
            let labels = parse_labels(&stream.labels).map_err(at)?;
            let entries = stream
                .entries
                .into_iter()
                .enumerate()
                .map(|(e, entry)| {
                    let time = match entry.timestamp {
                        None => now,
                        Some(t) => time_of_timestamp(t)
                            .map_err(|error| format!("entries[{e}]: {error}"))?,
                    };
                    Ok(LogEntry {
                        time,
                        line: into_text(entry.line),
                        metadata: entry
                            .structured_metadata
                            .into_iter()
                            .map(|pair| (pair.name, pair.value))
                            .collect(),
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(at)?;
            Ok(Stream { labels, entries })
        })
        .collect()
}

/// Bytes as text, invalid UTF-8 replaced.
fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

fn time_of_timestamp(t: Timestamp) -> Result<EventTime, String> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|&n| n < 1_000_000_000)
        .ok_or_else(|| format!("timestamp nanos {} is not in 0..1000000000", t.nanos))?;
    let secs =
        u64::try_from(t.seconds).map_err(|_| format!("timestamp {}s is before 1970", t.seconds))?;
    time_of(secs, nanos)
}

/// A time an event may have: flumen's times are 32-bit seconds (to the year 2106).
fn time_of(secs: u64, nanos: u32) -> Result<EventTime, String> {
    if secs > u64::from(u32::MAX) {
        return Err(format!("timestamp {secs}s is past the year 2106"));
    }
    Ok(EventTime::new(secs, nanos))
}

/// A time from Unix nanoseconds.
fn time_of_nanos(nanos: u64) -> Result<EventTime, String> {
    time_of(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
}

/// Reads a Prometheus label string, `{job="api", level="info"}` (`{}` has none).
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| format!("labels {text:?}: {why}");
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| bad("expected {name=\"value\", ...}"))?;
    let mut labels = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad(
                "a label name must be letters, digits and _, not starting with a digit",
            ));
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| bad(&format!("expected = after {name}")))?
            .trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| bad(&format!("the value of {name} must be quoted")))?;
        let (value, after) =
            quoted_value(rest).ok_or_else(|| bad(&format!("the value of {name} is not closed")))?;
        labels.push((name.to_owned(), value));
        rest = after.trim_start();
        match rest.strip_prefix(',') {
            Some(after_comma) => rest = after_comma.trim_start(),
            None if rest.is_empty() => {}
            None => return Err(bad(&format!("expected , after the value of {name}"))),
        }
    }
    Ok(labels)
}

/// A quoted value's text up to its closing quote, escapes (`\"`, `\\`, `\n`) undone, and what
/// follows the quote.
fn quoted_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// JSON

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

/// A stream in either JSON form: `stream` and `values`, or the legacy `labels` and `entries`.
#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    values: Vec<JsonValue>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    entries: Vec<LegacyEntry>,
}

/// `[timestamp, line]` or `[timestamp, line, {structured metadata}]`.
struct JsonValue {
    nanos: u64,
    line: String,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The legacy form's entry: an RFC 3339 `ts` and a `line`.
#[derive(Deserialize)]
struct LegacyEntry {
    ts: String,
    line: String,
}

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(JsonValueVisitor)
    }
}

struct JsonValueVisitor;

impl<'de> Visitor<'de> for JsonValueVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[\"<unix nanoseconds>\", \"<line>\"] or [\"<unix nanoseconds>\", \"<line>\", {structured metadata}]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        let nanos: Nanos = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let line: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let metadata = seq.next_element()?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(JsonValue {
            nanos: nanos.0,
            line,
            metadata,
        })
    }
}

/// Unix nanoseconds: a string of digits, as Loki asks, or a JSON integer.
struct Nanos(u64);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NanosVisitor;
        impl Visitor<'_> for NanosVisitor {
            type Value = Nanos;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timestamp in Unix nanoseconds, as a string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Nanos, E> {
                text.trim().parse().map(Nanos).map_err(|_| {
                    E::custom(format!(
                        "timestamp {text:?} is not a number of Unix nanoseconds"
                    ))
                })
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Nanos, E> {
                Ok(Nanos(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Nanos, E> {
                Err(E::custom(format!("timestamp {n} is before 1970")))
            }
        }
        deserializer.deserialize_any(NanosVisitor)
    }
}

fn decode_json(body: &[u8]) -> Result<Vec<Stream>, LokiError> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|error| {
        LokiError::Invalid(format!("the body is not a Loki JSON push: {error}"))
    })?;
    push.streams
        .into_iter()
        .enumerate()
        .map(|(s, stream)| {
            stream_of_json(stream)
                .map_err(|error| LokiError::Invalid(format!("streams[{s}]: {error}")))
        })
        .collect()
}

fn stream_of_json(stream: JsonStream) -> Result<Stream, String> {
    let labels = match (stream.stream, stream.labels) {
        (Some(map), _) => string_pairs(map).map_err(|error| format!("stream: {error}"))?,
        (None, Some(text)) => parse_labels(&text)?,
        (None, None) => Vec::new(),
    };
    let mut entries = Vec::with_capacity(stream.values.len() + stream.entries.len());
    for (v, value) in stream.values.into_iter().enumerate() {
        let at = |error: String| format!("values[{v}]: {error}");
        entries.push(LogEntry {
            time: time_of_nanos(value.nanos).map_err(at)?,
            line: value.line,
            metadata: match value.metadata {
                Some(map) => string_pairs(map).map_err(at)?,
                None => Vec::new(),
            },
        });
    }
    for (e, entry) in stream.entries.into_iter().enumerate() {
        let time = time_of_rfc3339(&entry.ts).map_err(|error| format!("entries[{e}]: {error}"))?;
        entries.push(LogEntry {
            time,
            line: entry.line,
            metadata: Vec::new(),
        });
    }
    Ok(Stream { labels, entries })
}

/// A JSON object of labels or metadata as text pairs: numbers and booleans as their text.
fn string_pairs(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, String> {
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => Ok((name, text)),
            serde_json::Value::Number(n) => Ok((name, n.to_string())),
            serde_json::Value::Bool(b) => Ok((name, b.to_string())),
            other => Err(format!(
                "{name}: a label's value must be a string, not {other}"
            )),
        })
        .collect()
}

fn time_of_rfc3339(text: &str) -> Result<EventTime, String> {
    let time = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|error| format!("ts {text:?} is not an RFC 3339 time: {error}"))?;
    let secs =
        u64::try_from(time.timestamp()).map_err(|_| format!("ts {text:?} is before 1970"))?;
    time_of(secs, time.timestamp_subsec_nanos())
}

// ---------------------------------------------------------------------------------------------
// Streams to events

/// The events of one tag, in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEvents {
    /// The tag.
    pub tag: String,
    /// Its events.
    pub events: Batches,
}

/// The events of `streams`, grouped by the tag `tag_of` gives each stream's labels, in the
/// order the tags first appear. `canonical` fills the canonical fields of a record (it is
/// called on each stream's labels, then again on an entry's record when it has structured
/// metadata), and the tag is chosen from the stream's canonical labels.
pub fn push_events(
    streams: &[Stream],
    limits: &Limits,
    mut tag_of: impl FnMut(&Record) -> String,
    mut canonical: impl FnMut(&mut Record),
) -> Result<Vec<TagEvents>, LokiError> {
    let mut groups: Vec<TagEvents> = Vec::new();
    let mut size = 0usize;
    let mut record_bytes = Vec::new();
    for stream in streams {
        let mut labels = Record::new();
        put_pairs(&mut labels, &stream.labels);
        canonical(&mut labels);
        let tag = tag_of(&labels);
        let group = match groups.iter().position(|group| group.tag == tag) {
            Some(index) => index,
            None => {
                groups.push(TagEvents {
                    tag,
                    events: Batches::default(),
                });
                groups.len() - 1
            }
        };
        for entry in &stream.entries {
            let mut record = labels.clone();
            if !entry.metadata.is_empty() {
                put_pairs(&mut record, &entry.metadata);
                canonical(&mut record);
            }
            record.insert("message", entry.line.as_str());
            record_bytes.clear();
            record.write_msgpack(&mut record_bytes);
            size = size.saturating_add(record_bytes.len() + 16);
            if size > limits.max_events {
                return Err(LokiError::TooLarge(format!(
                    "the request's events, each carrying its stream's labels, come to more than {} bytes: send fewer lines per request",
                    limits.max_events
                )));
            }
            groups[group].events.push(entry.time, &record_bytes);
        }
    }
    for group in &mut groups {
        group.events.close();
    }
    groups.retain(|group| group.events.count > 0);
    Ok(groups)
}

/// Sets each pair as a string field; reserved names go into the `attributes` map.
fn put_pairs(record: &mut Record, pairs: &[(String, String)]) {
    for (name, value) in pairs {
        if RESERVED.contains(&name.as_str()) {
            put_attribute(record, name, value);
        } else {
            record.insert(name.as_str(), value.as_str());
        }
    }
}

fn put_attribute(record: &mut Record, name: &str, value: &str) {
    let entry = (name.to_owned(), Value::from(value));
    match record.get_mut("attributes") {
        Some(Value::Map(map)) => match map.iter_mut().find(|(key, _)| key == name) {
            Some(slot) => *slot = entry,
            None => map.push(entry),
        },
        _ => record.insert("attributes", Value::Map(vec![entry])),
    }
}

#[cfg(test)]
mod tests;
