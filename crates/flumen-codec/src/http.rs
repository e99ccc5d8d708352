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

use flumen_event::EventTime;
use flumen_event::entry::write_entry;
use flumen_event::msgpack::{MsgpackError, Reader, Value};
use serde_json::Value as Json;

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

/// Entries decoded from a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpEvents {
    /// The entries, msgpack, laid end to end.
    pub entries: Vec<u8>,
    /// How many there are.
    pub count: u32,
}

/// Why a request was refused (HTTP 400; the message is the response body).
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
    let mut events = HttpEvents::default();
    match payload {
        Payload::Json(bytes) => {
            let value: Json =
                serde_json::from_slice(&bytes).map_err(|e| HttpBodyError::Json(e.to_string()))?;
            match value {
                Json::Array(records) => {
                    for record in records {
                        push_json_record(&mut events, record, time, now)?;
                    }
                }
                record => push_json_record(&mut events, record, time, now)?,
            }
        }
        Payload::Ndjson(body) => {
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = serde_json::from_slice(line)
                    .map_err(|e| HttpBodyError::Json(format!("line {}: {e}", n + 1)))?;
                push_json_record(&mut events, record, time, now)?;
            }
        }
        Payload::Msgpack(bytes) => push_msgpack_records(&mut events, &bytes, time.unwrap_or(now))?,
    }
    if events.count == 0 {
        return Err(HttpBodyError::Empty);
    }
    Ok(events)
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

fn push_json_record(
    events: &mut HttpEvents,
    record: Json,
    time: Option<EventTime>,
    now: EventTime,
) -> Result<(), HttpBodyError> {
    let Json::Object(mut map) = record else {
        return Err(HttpBodyError::NotRecords(
            "each record must be a JSON object",
        ));
    };
    let time = match time {
        Some(t) => t,
        None => match map
            .get("time")
            .and_then(Json::as_f64)
            .and_then(EventTime::from_f64_secs)
        {
            Some(t) => {
                map.shift_remove("time");
                t
            }
            None => now,
        },
    };
    let mut encoded = Vec::new();
    write_json(&mut encoded, &Json::Object(map));
    write_entry(&mut events.entries, time, &encoded);
    events.count += 1;
    Ok(())
}

/// Encodes a JSON value as msgpack, keeping key order; integers stay integers.
pub fn write_json(out: &mut Vec<u8>, value: &Json) {
    use rmp::encode as enc;
    match value {
        Json::Null => enc::write_nil(out).expect("Vec write"),
        Json::Bool(b) => enc::write_bool(out, *b).expect("Vec write"),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                enc::write_uint(out, u).expect("Vec write");
            } else if let Some(i) = n.as_i64() {
                enc::write_sint(out, i).expect("Vec write");
            } else {
                enc::write_f64(out, n.as_f64().unwrap_or(f64::NAN)).expect("Vec write");
            }
        }
        Json::String(s) => enc::write_str(out, s).expect("Vec write"),
        Json::Array(items) => {
            enc::write_array_len(out, items.len() as u32).expect("Vec write");
            items.iter().for_each(|item| write_json(out, item));
        }
        Json::Object(map) => {
            enc::write_map_len(out, map.len() as u32).expect("Vec write");
            for (k, v) in map {
                enc::write_str(out, k).expect("Vec write");
                write_json(out, v);
            }
        }
    }
}

fn push_msgpack_records(
    events: &mut HttpEvents,
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
        write_entry(&mut events.entries, time, record);
        events.count += 1;
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
        write_json(&mut one, &serde_json::json!({"k": "v"}));
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
}
