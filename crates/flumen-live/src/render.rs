//! How an event looks to a client: flumen's event object (the search API's NDJSON lines, the
//! live streams' messages) and Loki's stream element (Loki's `tail`).

use std::io::Write;

use flumen_event::EventTime;
use flumen_event::json::{write_json_str, write_string_map, write_value};
use flumen_event::msgpack::Reader;
use flumen_store::{EventPosition, FoundEvent};

/// The shape a subscription's events are rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// flumen's event object: see [`write_event`].
    Event,
    /// One element of Loki's `streams`: see [`write_loki_stream`].
    Loki,
}

impl Format {
    /// Renders `event` in this format.
    pub fn render(self, event: &EventView<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + event.record.len() * 2);
        match self {
            Self::Event => write_event(&mut out, event),
            Self::Loki => write_loki_stream(&mut out, event),
        }
        out
    }
}

/// What a client is shown of one event, borrowed from wherever it was found (the log, or the
/// store).
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// Its log position, the cursor a client resumes after.
    pub position: EventPosition,
    /// Its time, Unix nanoseconds.
    pub time_ns: u64,
    pub tag: &'a str,
    /// Its record, msgpack.
    pub record: &'a [u8],
    /// Its stream labels, sorted by name.
    pub labels: &'a [(String, String)],
    /// Its line after the query's pipeline.
    pub line: &'a str,
    /// The labels the query's parsers extracted; they win over stream labels of the same name.
    pub extracted: &'a [(String, String)],
}

impl<'a> From<&'a FoundEvent> for EventView<'a> {
    fn from(event: &'a FoundEvent) -> Self {
        Self {
            position: event.position,
            time_ns: event.time_ns,
            tag: &event.tag,
            record: &event.record,
            labels: &event.labels,
            line: &event.line,
            extracted: &event.extracted,
        }
    }
}

/// Appends `{"time":…,"time_ns":…,"position":…,"tag":…,"labels":{…},"line":…,"record":{…}}`.
/// A record that is not valid msgpack is rendered `{}`.
pub fn write_event(out: &mut Vec<u8>, event: &EventView<'_>) {
    let time = EventTime::new(
        event.time_ns / 1_000_000_000,
        (event.time_ns % 1_000_000_000) as u32,
    );
    write!(
        out,
        "{{\"time\":\"{time}\",\"time_ns\":{},\"position\":\"{}\",\"tag\":",
        event.time_ns, event.position
    )
    .expect("Vec write");
    write_json_str(out, event.tag.as_bytes());
    out.extend_from_slice(b",\"labels\":");
    write_labels(out, event);
    out.extend_from_slice(b",\"line\":");
    write_json_str(out, event.line.as_bytes());
    out.extend_from_slice(b",\"record\":");
    let start = out.len();
    if write_value(out, &mut Reader::new(event.record), 0).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
    out.push(b'}');
}

/// Appends Loki's `{"stream":{labels},"values":[["<unix ns>","<line>"]]}`: one entry per
/// element, as Loki's own `tail` sends them.
pub fn write_loki_stream(out: &mut Vec<u8>, event: &EventView<'_>) {
    out.extend_from_slice(b"{\"stream\":");
    write_labels(out, event);
    write!(out, ",\"values\":[[\"{}\",", event.time_ns).expect("Vec write");
    write_json_str(out, event.line.as_bytes());
    out.extend_from_slice(b"]]}");
}

/// The stream labels and the extracted ones as one JSON object, extracted winning.
fn write_labels(out: &mut Vec<u8>, event: &EventView<'_>) {
    let shadowed = |name: &str| event.extracted.iter().any(|(n, _)| n == name);
    let labels = event.labels.iter().filter(|(name, _)| !shadowed(name));
    write_string_map(out, labels.chain(event.extracted));
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::record::{Record, Value};
    use flumen_wal::Position;

    fn view<'a>(
        record: &'a [u8],
        labels: &'a [(String, String)],
        extracted: &'a [(String, String)],
    ) -> EventView<'a> {
        EventView {
            position: EventPosition::new(Position::new(7), 2),
            time_ns: 1_796_299_200_000_000_001,
            tag: "app.\"api\"",
            record,
            labels,
            line: "GET /\n done",
            extracted,
        }
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn an_event_is_one_json_object_with_its_position_and_labels() {
        let mut record = Vec::new();
        Record::from(vec![
            ("log".to_owned(), Value::from("GET /\n done")),
            ("status".to_owned(), Value::from(200i64)),
        ])
        .write_msgpack(&mut record);
        let labels = [pair("level", "info"), pair("service", "api")];
        let extracted = [pair("level", "warn"), pair("path", "/")];
        let text = Format::Event.render(&view(&record, &labels, &extracted));
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time": "2026-12-03T12:00:00.000000001Z",
                "time_ns": 1_796_299_200_000_000_001u64,
                "position": "7.2",
                "tag": "app.\"api\"",
                "labels": {"service": "api", "level": "warn", "path": "/"},
                "line": "GET /\n done",
                "record": {"log": "GET /\n done", "status": 200},
            })
        );
    }

    #[test]
    fn a_record_that_is_not_msgpack_renders_empty() {
        let text = Format::Event.render(&view(&[0xc1], &[], &[]));
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(json["record"], serde_json::json!({}));
    }

    #[test]
    fn a_loki_element_holds_one_entry_with_the_time_as_text() {
        let labels = [pair("service", "api")];
        let text = Format::Loki.render(&view(&[0x80], &labels, &[]));
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "stream": {"service": "api"},
                "values": [["1796299200000000001", "GET /\n done"]],
            })
        );
    }
}
