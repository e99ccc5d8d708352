//! Request bodies of Fluentd's `in_http` input, sans I/O.
//!
//! The tag comes from the URL path (the caller's job); this module turns the rest of a request
//! into entries, accepting what Fluentd's `in_http` accepts:
//!
//! - `Content-Type: application/json`: one JSON object, or an array of objects (a batch);
//! - `application/x-ndjson` (or `application/jsonl`): one JSON object per line;
//! - `application/msgpack` / `application/x-msgpack`: one map, or an array of maps;
//! - `application/x-www-form-urlencoded` (curl's `-d`): a `json=` or `msgpack=` field;
//! - a `json=` or `msgpack=` query parameter (the `GET /tag?json=...` health-check form).
//!
//! The event time is the `time` parameter (epoch seconds, fractions allowed); otherwise a JSON
//! record's numeric `time` field, which is taken out of the record as Fluentd does; otherwise
//! the time of receipt.
//!
//! What a request may cost is bounded by its size: JSON is decoded straight into msgpack (no
//! tree of values per record), the entries may take at most [`max_decoded_size`] of the
//! request's size, and they come split into batches of at most [`MAX_BATCH_EVENTS`] events or
//! about [`MAX_BATCH_BYTES`], which the caller stores as separate log records.

use crate::batches::Batches;
use flumen_event::EventTime;
use flumen_event::msgpack::{MsgpackError, Reader, Value};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use crate::batches::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS};

/// The most bytes of entries a request of `request_size` bytes (body and query) may decode to:
/// four times its size and 4 KiB. `[{},{},…]` (three bytes an event, twelve as an entry) just
/// fits; a msgpack array of empty maps (one byte an event) does not.
pub fn max_decoded_size(request_size: usize) -> usize {
    request_size.saturating_mul(4).saturating_add(4096)
}

/// A request as the HTTP layer saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRequest<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    /// The bytes the request carries events in: its body and its query.
    pub fn size(&self) -> usize {
        self.body.len() + self.query.map_or(0, str::len)
    }
}

/// Entries decoded from a request, in batches.
pub type HttpEvents = Batches;

/// Why a request was refused (the message is the response body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpBodyError {
    /// The JSON does not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The msgpack does not parse.
    #[error("invalid msgpack: {0}")]
    Msgpack(&'static str),
    /// Parsed, but not records.
    #[error("{0}")]
    NotRecords(&'static str),
    /// The `time` parameter is not a number of seconds.
    #[error("invalid time parameter {0:?}: expected epoch seconds")]
    Time(String),
    /// No body or parameter carried a record.
    #[error("no record: send a JSON or msgpack body, or a json= or msgpack= parameter")]
    Empty,
    /// A body of a type `in_http` does not take.
    #[error(
        "unsupported Content-Type {0:?}: use application/json, application/x-ndjson, application/msgpack or a json= form field"
    )]
    ContentType(String),
    /// The entries would take more than [`max_decoded_size`] of the request (HTTP 413).
    #[error(
        "the request decodes to more than {limit} bytes of events (4 times its {size} bytes and 4 KiB): send records with more in them, or fewer per request"
    )]
    TooLarge {
        /// The request's size.
        size: usize,
        /// The most its entries may take.
        limit: usize,
    },
}

enum Payload<'a> {
    Json(std::borrow::Cow<'a, [u8]>),
    Ndjson(&'a [u8]),
    Msgpack(std::borrow::Cow<'a, [u8]>),
}

/// Decodes a request into entries; `now` is the time of receipt.
pub fn decode_request(req: &HttpRequest<'_>, now: EventTime) -> Result<HttpEvents, HttpBodyError> {
    let mime = req
        .content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let mut params: Vec<(String, Vec<u8>)> = form_fields(req.query.unwrap_or("").as_bytes());
    if mime == "application/x-www-form-urlencoded" {
        params.extend(form_fields(req.body));
    }
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let time = match param("time") {
        Some(raw) => Some(parse_time_param(&raw)?),
        None => None,
    };
    let payload = if let Some(json) = param("json") {
        Payload::Json(json.into())
    } else if let Some(msgpack) = param("msgpack") {
        Payload::Msgpack(msgpack.into())
    } else if req.body.is_empty() || mime == "application/x-www-form-urlencoded" {
        return Err(HttpBodyError::Empty);
    } else {
        match mime.as_str() {
            "application/json" | "text/json" => Payload::Json(req.body.into()),
            m if m.ends_with("+json") => Payload::Json(req.body.into()),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Payload::Ndjson(req.body),
            "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
                Payload::Msgpack(req.body.into())
            }
            _ => return Err(HttpBodyError::ContentType(mime)),
        }
    };
    let mut events = EventsBuilder::new(req.size());
    match payload {
        Payload::Json(bytes) => JsonRecords::new(&mut events, time, now).body(&bytes)?,
        Payload::Ndjson(body) => {
            let mut records = JsonRecords::new(&mut events, time, now);
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                records.record(line).map_err(|e| match e {
                    HttpBodyError::Json(reason) => {
                        HttpBodyError::Json(format!("line {}: {reason}", n + 1))
                    }
                    other => other,
                })?;
            }
        }
        Payload::Msgpack(bytes) => push_msgpack_records(&mut events, &bytes, time.unwrap_or(now))?,
    }
    events.finish()
}

/// Collects a request's entries, split into batches, within the request's size budget.
struct EventsBuilder {
    events: Batches,
    size: usize,
    limit: usize,
}

impl EventsBuilder {
    fn new(request_size: usize) -> Self {
        Self {
            events: Batches::default(),
            size: request_size,
            limit: max_decoded_size(request_size),
        }
    }

    /// Adds the entry `[time, record]`; fails once the entries outgrow the request's budget.
    fn push(&mut self, time: EventTime, record: &[u8]) -> Result<(), HttpBodyError> {
        self.events.push(time, record);
        if self.events.entries.len() > self.limit {
            return Err(HttpBodyError::TooLarge {
                size: self.size,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<HttpEvents, HttpBodyError> {
        self.events.close();
        if self.events.count == 0 {
            return Err(HttpBodyError::Empty);
        }
        Ok(self.events)
    }
}

fn form_fields(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    // Values stay bytes: a msgpack= field is binary once percent-decoded.
    raw.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            (
                percent_decode(k).into_iter().map(char::from).collect(),
                percent_decode(v),
            )
        })
        .collect()
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space).collect()
}

fn parse_time_param(raw: &[u8]) -> Result<EventTime, HttpBodyError> {
    let text = String::from_utf8_lossy(raw);
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(EventTime::from_f64_secs)
        .ok_or_else(|| HttpBodyError::Time(text.into_owned()))
}

/// Turns JSON records into entries as serde reads them: each record is written as msgpack
/// into a scratch buffer, then added to the events.
struct JsonRecords<'e> {
    events: &'e mut EventsBuilder,
    /// The `time` parameter, which wins over records' `time` fields.
    time: Option<EventTime>,
    now: EventTime,
    writer: MsgpackWriter,
    /// Why decoding stopped, when it is not the JSON's fault.
    refusal: Option<HttpBodyError>,
}

impl<'e> JsonRecords<'e> {
    fn new(events: &'e mut EventsBuilder, time: Option<EventTime>, now: EventTime) -> Self {
        Self {
            events,
            time,
            now,
            writer: MsgpackWriter::default(),
            refusal: None,
        }
    }

    /// Decodes `json`, one object or an array of objects.
    fn body(&mut self, json: &[u8]) -> Result<(), HttpBodyError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let decoded = RecordsSeed::body(self)
            .deserialize(&mut de)
            .and_then(|()| de.end());
        self.result(decoded)
    }

    /// Decodes `json`, one object.
    fn record(&mut self, json: &[u8]) -> Result<(), HttpBodyError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let decoded = RecordsSeed::record(self)
            .deserialize(&mut de)
            .and_then(|()| de.end());
        self.result(decoded)
    }

    /// Stops decoding for `refusal`: the error serde carries up is replaced by it.
    fn refuse<E: de::Error>(&mut self, refusal: HttpBodyError) -> E {
        let error = E::custom(&refusal);
        self.refusal = Some(refusal);
        error
    }

    fn result(&mut self, decoded: Result<(), serde_json::Error>) -> Result<(), HttpBodyError> {
        match (self.refusal.take(), decoded) {
            (Some(refusal), _) => Err(refusal),
            (None, Ok(())) => Ok(()),
            (None, Err(error)) => Err(HttpBodyError::Json(error.to_string())),
        }
    }

    fn not_a_record<E: de::Error>(&mut self) -> E {
        self.refuse(HttpBodyError::NotRecords(
            "each record must be a JSON object",
        ))
    }

    /// Reads one record's fields into msgpack and adds it to the events.
    fn push_record<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let mut time = self.time;
        let take_time = time.is_none();
        self.writer.clear();
        let header = self.writer.open(Container::Map);
        let mut fields = 0;
        loop {
            let field_start = self.writer.len();
            if map.next_key_seed(ValueSeed(&mut self.writer))?.is_none() {
                break;
            }
            let is_time = self.writer.bytes_since(field_start) == TIME_KEY;
            let value_start = self.writer.len();
            map.next_value_seed(ValueSeed(&mut self.writer))?;
            if is_time
                && take_time
                && let Some(t) = self.writer.number_at(value_start)
            {
                // Fluentd takes a numeric `time` out of the record as the event's time.
                time = Some(t);
                self.writer.truncate(field_start);
                continue;
            }
            fields += 1;
        }
        self.writer.close(header, fields);
        let record = self.writer.finish();
        let pushed = self.events.push(time.unwrap_or(self.now), record);
        pushed.map_err(|refusal| self.refuse(refusal))
    }
}

/// `"time"` as a msgpack string.
const TIME_KEY: &[u8] = b"\xa4time";

/// A record (a JSON object) or, for a whole body, an array of records.
struct RecordsSeed<'a, 'e> {
    records: &'a mut JsonRecords<'e>,
    array_allowed: bool,
}

impl<'a, 'e> RecordsSeed<'a, 'e> {
    /// A whole JSON body: a record or an array of records.
    fn body(records: &'a mut JsonRecords<'e>) -> Self {
        Self {
            records,
            array_allowed: true,
        }
    }

    /// One record.
    fn record(records: &'a mut JsonRecords<'e>) -> Self {
        Self {
            records,
            array_allowed: false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.records.push_record(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.array_allowed {
            return Err(self.records.not_a_record());
        }
        while seq
            .next_element_seed(RecordsSeed::record(&mut *self.records))?
            .is_some()
        {}
        Ok(())
    }

    // Anything else is not a record: the message says so rather than serde's "invalid type".
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.records.not_a_record())
    }
}

/// Any JSON value, written as msgpack: key order kept, integers stay integers.
struct ValueSeed<'a>(&'a mut MsgpackWriter);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        rmp::encode::write_nil(&mut self.0.out).expect("Vec write");
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        rmp::encode::write_bool(&mut self.0.out, b).expect("Vec write");
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        rmp::encode::write_uint(&mut self.0.out, n).expect("Vec write");
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        rmp::encode::write_sint(&mut self.0.out, n).expect("Vec write");
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        rmp::encode::write_f64(&mut self.0.out, n).expect("Vec write");
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        rmp::encode::write_str(&mut self.0.out, s).expect("Vec write");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let header = self.0.open(Container::Array);
        let mut len = 0;
        while seq.next_element_seed(ValueSeed(&mut *self.0))?.is_some() {
            len += 1;
        }
        self.0.close(header, len);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let header = self.0.open(Container::Map);
        let mut len = 0;
        while map.next_key_seed(ValueSeed(&mut *self.0))?.is_some() {
            map.next_value_seed(ValueSeed(&mut *self.0))?;
            len += 1;
        }
        self.0.close(header, len);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Map,
}

/// A container header whose length was not known when it was written.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Where its placeholder is.
    at: usize,
    container: Container,
    len: u32,
}

/// The width of a placeholder header: a marker and a 32-bit length.
const PLACEHOLDER: usize = 5;

/// Writes one record as msgpack while serde reads its JSON.
///
/// JSON does not say how many items an array or object has before they come, and msgpack
/// needs it first: each container gets a 5-byte placeholder header, noted in `headers`, and
/// [`MsgpackWriter::finish`] copies the record once with each header at its smallest.
#[derive(Debug, Default)]
struct MsgpackWriter {
    out: Vec<u8>,
    headers: Vec<Header>,
    compact: Vec<u8>,
}

impl MsgpackWriter {
    fn clear(&mut self) {
        self.out.clear();
        self.headers.clear();
    }

    fn len(&self) -> usize {
        self.out.len()
    }

    fn bytes_since(&self, start: usize) -> &[u8] {
        &self.out[start..]
    }

    /// Drops what was written from `at` on (scalars only: no header is noted past `at`).
    fn truncate(&mut self, at: usize) {
        debug_assert!(self.headers.last().is_none_or(|h| h.at < at));
        self.out.truncate(at);
    }

    /// The number written at `at`, as an event time, if it is one.
    fn number_at(&self, at: usize) -> Option<EventTime> {
        let secs = match Reader::new(&self.out[at..]).read().ok()? {
            Value::UInt(n) => n as f64,
            Value::Int(n) => n as f64,
            Value::F64(n) => n,
            _ => return None,
        };
        EventTime::from_f64_secs(secs)
    }

    fn open(&mut self, container: Container) -> usize {
        self.headers.push(Header {
            at: self.out.len(),
            container,
            len: 0,
        });
        // The widest header of its kind, length to come: what is written reads as a
        // container, never as a scalar.
        let marker = match container {
            Container::Array => 0xdd,
            Container::Map => 0xdf,
        };
        self.out.extend_from_slice(&[marker, 0, 0, 0, 0]);
        self.headers.len() - 1
    }

    fn close(&mut self, header: usize, len: u32) {
        self.headers[header].len = len;
    }

    /// The record, each header at its smallest.
    fn finish(&mut self) -> &[u8] {
        self.compact.clear();
        let mut from = 0;
        for header in &self.headers {
            self.compact.extend_from_slice(&self.out[from..header.at]);
            match header.container {
                Container::Array => rmp::encode::write_array_len(&mut self.compact, header.len),
                Container::Map => rmp::encode::write_map_len(&mut self.compact, header.len),
            }
            .expect("Vec write");
            from = header.at + PLACEHOLDER;
        }
        self.compact.extend_from_slice(&self.out[from..]);
        &self.compact
    }
}

fn push_msgpack_records(
    events: &mut EventsBuilder,
    bytes: &[u8],
    time: EventTime,
) -> Result<(), HttpBodyError> {
    let bad = |e: MsgpackError| match e {
        MsgpackError::Incomplete => HttpBodyError::Msgpack("truncated value"),
        MsgpackError::Invalid(reason) => HttpBodyError::Msgpack(reason),
    };
    let mut r = Reader::new(bytes);
    let records = match r.clone().read().map_err(bad)? {
        Value::Array(n) => {
            r.read().map_err(bad)?;
            n
        }
        Value::Map(_) => 1,
        _ => {
            return Err(HttpBodyError::NotRecords(
                "msgpack body must be a map or an array of maps",
            ));
        }
    };
    for _ in 0..records {
        let record = r.read_map_raw().map_err(|e| match e {
            MsgpackError::Invalid(_) => {
                HttpBodyError::NotRecords("each msgpack record must be a map")
            }
            other => bad(other),
        })?;
        events.push(time, record)?;
    }
    if !r.is_empty() {
        return Err(HttpBodyError::Msgpack("trailing bytes after the records"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::EntryIter;
    use flumen_event::json::write_value;

    fn records(events: &HttpEvents) -> Vec<(EventTime, String)> {
        EntryIter::new(&events.entries)
            .map(|e| {
                let e = e.unwrap();
                let mut out = Vec::new();
                write_value(&mut out, &mut Reader::new(e.record), 0).unwrap();
                (e.time, String::from_utf8(out).unwrap())
            })
            .collect()
    }

    const NOW: EventTime = EventTime {
        secs: 100,
        nanos: 0,
    };

    fn req<'a>(ct: Option<&'a str>, query: Option<&'a str>, body: &'a [u8]) -> HttpRequest<'a> {
        HttpRequest {
            content_type: ct,
            query,
            body,
        }
    }

    #[test]
    fn health_check_query_from_the_seed() {
        let r = req(
            None,
            Some("json=%7B%22log%22%3A+%22health+check%22%7D"),
            b"",
        );
        let ev = decode_request(&r, NOW).unwrap();
        assert_eq!(
            records(&ev),
            vec![(NOW, r#"{"log":"health check"}"#.to_owned())]
        );
    }

    #[test]
    fn json_object_array_and_time() {
        let ev = decode_request(
            &req(
                Some("application/json"),
                None,
                br#"{"a":1,"b":[true,null]}"#,
            ),
            NOW,
        )
        .unwrap();
        assert_eq!(
            records(&ev),
            vec![(NOW, r#"{"a":1,"b":[true,null]}"#.to_owned())]
        );

        let body = br#"[{"x":"1","time":1700000000.5},{"x":"2"}]"#;
        let ev = decode_request(
            &req(Some("application/json; charset=utf-8"), None, body),
            NOW,
        )
        .unwrap();
        assert_eq!(
            records(&ev),
            vec![
                (
                    EventTime::new(1_700_000_000, 500_000_000),
                    r#"{"x":"1"}"#.to_owned()
                ),
                (NOW, r#"{"x":"2"}"#.to_owned()),
            ]
        );

        let ev = decode_request(
            &req(Some("application/json"), Some("time=42.25"), br#"{"a":1}"#),
            NOW,
        )
        .unwrap();
        assert_eq!(records(&ev)[0].0, EventTime::new(42, 250_000_000));
    }

    #[test]
    fn form_fields_and_ndjson() {
        let ev = decode_request(
            &req(
                Some("application/x-www-form-urlencoded"),
                None,
                b"json=%7B%22action%22%3A%22login%22%2C%22user%22%3A2%7D",
            ),
            NOW,
        )
        .unwrap();
        assert_eq!(records(&ev)[0].1, r#"{"action":"login","user":2}"#);

        let ev = decode_request(
            &req(
                Some("application/x-ndjson"),
                None,
                b"{\"n\":1}\n\n{\"n\":2}\n",
            ),
            NOW,
        )
        .unwrap();
        assert_eq!(ev.count, 2);
    }

    #[test]
    fn msgpack_body_and_form_field() {
        let mut one = Vec::new();
        rmp::encode::write_map_len(&mut one, 1).unwrap();
        rmp::encode::write_str(&mut one, "k").unwrap();
        rmp::encode::write_str(&mut one, "v").unwrap();
        let mut many = vec![0x92];
        many.extend_from_slice(&one);
        many.extend_from_slice(&one);
        assert_eq!(
            decode_request(&req(Some("application/msgpack"), None, &one), NOW)
                .unwrap()
                .count,
            1
        );
        assert_eq!(
            decode_request(&req(Some("application/x-msgpack"), None, &many), NOW)
                .unwrap()
                .count,
            2
        );

        let mut form = b"msgpack=".to_vec();
        form.extend(one.iter().flat_map(|b| format!("%{b:02X}").into_bytes()));
        let ev = decode_request(
            &req(Some("application/x-www-form-urlencoded"), None, &form),
            NOW,
        )
        .unwrap();
        assert_eq!(records(&ev)[0].1, r#"{"k":"v"}"#);
    }

    #[test]
    fn bad_bodies_say_why() {
        let cases: &[(HttpRequest<'_>, &str)] = &[
            (
                req(Some("application/json"), None, b"{\"a\":"),
                "invalid JSON",
            ),
            (
                req(Some("application/json"), None, b"[1,2]"),
                "must be a JSON object",
            ),
            (req(Some("application/json"), None, b"[]"), "no record"),
            (
                req(Some("application/msgpack"), None, &[0x01]),
                "map or an array of maps",
            ),
            (
                req(Some("application/msgpack"), None, &[0x81, 0xa1]),
                "truncated",
            ),
            (
                req(Some("text/plain"), None, b"hello"),
                "unsupported Content-Type",
            ),
            (
                req(None, Some("json=%7B%7D&time=yesterday"), b""),
                "invalid time parameter",
            ),
            (
                req(Some("application/x-ndjson"), None, b"{}\nnope\n"),
                "line 2",
            ),
            (req(None, None, b""), "no record"),
        ];
        for (r, expected) in cases {
            let err = decode_request(r, NOW).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} does not contain {expected}");
        }
    }

    #[test]
    fn json_values_keep_their_order_types_and_nesting() {
        // Containers of more than 15 items need wider msgpack headers than the smallest.
        let wide: Vec<String> = (0..20).map(|n| format!("\"k{n}\":{n}")).collect();
        let wide = format!("{{{}}}", wide.join(","));
        let long: Vec<String> = (0..70_000).map(|n| n.to_string()).collect();
        let long = format!("[{}]", long.join(","));
        let body = format!(
            r#"{{"z":-3,"a":[1.5,"s",null,true,{{}},[]],"wide":{wide},"long":{long},"big":18446744073709551615,"e":"\u00e9\n"}}"#
        );
        let ev =
            decode_request(&req(Some("application/json"), None, body.as_bytes()), NOW).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (time, rendered) = records(&ev).remove(0);
        assert_eq!(time, NOW);
        let rendered: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(rendered, expected);
        let keys: Vec<_> = rendered.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "wide", "long", "big", "e"], "key order");
    }

    #[test]
    fn a_numeric_time_field_is_taken_out_and_other_time_fields_stay() {
        let body =
            br#"[{"a":{"time":5},"time":1700000000,"b":2},{"time":"noon","c":3},{"time":[1]}]"#;
        let ev = decode_request(&req(Some("application/json"), None, body), NOW).unwrap();
        assert_eq!(
            records(&ev),
            vec![
                (
                    EventTime::new(1_700_000_000, 0),
                    r#"{"a":{"time":5},"b":2}"#.to_owned()
                ),
                (NOW, r#"{"time":"noon","c":3}"#.to_owned()),
                (NOW, r#"{"time":[1]}"#.to_owned()),
            ]
        );
        // With a time parameter, the field stays in the record.
        let ev = decode_request(
            &req(Some("application/json"), Some("time=7"), br#"{"time":1}"#),
            NOW,
        )
        .unwrap();
        assert_eq!(
            records(&ev),
            vec![(EventTime::new(7, 0), r#"{"time":1}"#.to_owned())]
        );
    }

    #[test]
    fn a_large_request_is_split_into_bounded_batches() {
        let mut body = b"[{}".to_vec();
        for _ in 1..10_000 {
            body.extend_from_slice(b",{}");
        }
        body.push(b']');
        let ev = decode_request(&req(Some("application/json"), None, &body), NOW).unwrap();
        let counts: Vec<u32> = ev.batches().map(|(count, _)| count).collect();
        assert_eq!(counts, [4096, 4096, 1808]);
        let joined: Vec<u8> = ev.batches().flat_map(|(_, e)| e.to_vec()).collect();
        assert_eq!(joined, ev.entries, "the batches are the entries, in order");

        // Records of 300 KiB: a batch closes once it reaches 1 MiB.
        let big = format!(r#"{{"log":"{}"}}"#, "x".repeat(300 << 10));
        let body = format!("[{big},{big},{big},{big},{big}]");
        let ev =
            decode_request(&req(Some("application/json"), None, body.as_bytes()), NOW).unwrap();
        let batches: Vec<(u32, usize)> = ev.batches().map(|(n, e)| (n, e.len())).collect();
        assert_eq!(batches.iter().map(|b| b.0).collect::<Vec<_>>(), [4, 1]);
        assert!(
            batches
                .iter()
                .all(|b| b.1 < MAX_BATCH_BYTES + (300 << 10) + 64)
        );
    }

    #[test]
    fn a_body_that_decodes_to_over_four_times_its_size_is_refused() {
        // One byte an empty map, twelve as an entry.
        let mut body = vec![0xdc, 0x10, 0x00];
        body.resize(3 + 0x1000, 0x80);
        let err = decode_request(&req(Some("application/msgpack"), None, &body), NOW).unwrap_err();
        assert!(matches!(err, HttpBodyError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("decodes to more than"), "{err}");

        // [{},{},…]: three bytes an event, twelve as an entry, just fits.
        let mut body = b"[{}".to_vec();
        for _ in 1..10_000 {
            body.extend_from_slice(b",{}");
        }
        body.push(b']');
        let ev = decode_request(&req(Some("application/json"), None, &body), NOW).unwrap();
        assert!(ev.entries.len() <= max_decoded_size(body.len()));
    }
}
