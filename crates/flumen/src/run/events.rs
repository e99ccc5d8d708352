//! The records `flumen run` sends, as msgpack: one per line the command printed, and the two
//! lifecycle events.
//!
//! Every record carries the run's static fields (deployment, service, environment, version,
//! host, command, pid, run id, `--field`s), encoded once and copied after the per-event part.

use flumen_event::EventTime;
use flumen_event::msgpack;

/// Keys `flumen run` sets itself; `--field` may not use them.
pub const RESERVED_KEYS: &[&str] = &[
    "message",
    "source",
    "partial",
    "event",
    "deployment_id",
    "service",
    "environment",
    "version",
    "host",
    "command",
    "args",
    "cwd",
    "pid",
    "run_id",
    "exit_code",
    "signal",
    "core_dumped",
    "error",
    "duration_ms",
    "lines",
    "dropped_lines",
];

/// Which of the command's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A value of a lifecycle event's field.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    Uint(u64),
    Bool(bool),
    Strs(&'a [String]),
}

/// The fields every record of this run carries.
#[derive(Debug, Clone, Default)]
pub struct StaticFields {
    /// msgpack key/value pairs, back to back.
    bytes: Vec<u8>,
    pairs: u32,
}

impl StaticFields {
    /// Adds a string field (skipped when `value` is `None`).
    pub fn str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            write_str(&mut self.bytes, key);
            write_str(&mut self.bytes, value);
            self.pairs += 1;
        }
        self
    }

    /// Adds an unsigned integer field (skipped when `value` is `None`).
    pub fn uint(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        if let Some(value) = value {
            write_str(&mut self.bytes, key);
            rmp::encode::write_uint(&mut self.bytes, value).expect("Vec write");
            self.pairs += 1;
        }
        self
    }

    /// Appends one entry `[time, {message, source, partial?, ...static}]` for a line.
    pub fn write_line(
        &self,
        out: &mut Vec<u8>,
        time: EventTime,
        stream: Stream,
        text: &[u8],
        partial: bool,
    ) {
        out.push(0x92);
        time.write_msgpack(out);
        rmp::encode::write_map_len(out, 2 + u32::from(partial) + self.pairs).expect("Vec write");
        write_str(out, "message");
        write_str(out, &String::from_utf8_lossy(text));
        write_str(out, "source");
        write_str(out, stream.name());
        if partial {
            write_str(out, "partial");
            rmp::encode::write_bool(out, true).expect("Vec write");
        }
        out.extend_from_slice(&self.bytes);
    }

    /// A lifecycle record: `pairs` first, then the static fields.
    pub fn lifecycle_record(&self, pairs: &[(&str, Value<'_>)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.bytes.len());
        rmp::encode::write_map_len(&mut out, pairs.len() as u32 + self.pairs).expect("Vec write");
        for (key, value) in pairs {
            write_str(&mut out, key);
            match *value {
                Value::Str(s) => write_str(&mut out, s),
                Value::Uint(n) => {
                    rmp::encode::write_uint(&mut out, n).expect("Vec write");
                }
                Value::Bool(b) => rmp::encode::write_bool(&mut out, b).expect("Vec write"),
                Value::Strs(list) => {
                    rmp::encode::write_array_len(&mut out, list.len() as u32).expect("Vec write");
                    for s in list {
                        write_str(&mut out, s);
                    }
                }
            }
        }
        out.extend_from_slice(&self.bytes);
        out
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    msgpack::write_str(out, s.as_bytes());
}

/// The command line as a shell would read it back: arguments quoted where needed.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default tag: `deploy`, then the service and the environment as tag parts (the
/// `deploy.<service>.<environment>` layout the deployment streamer example routes on), each
/// reduced to letters, digits, `_` and `-`.
pub fn default_tag(service: Option<&str>, environment: Option<&str>) -> String {
    let mut tag = String::from("deploy");
    for part in [service, environment].into_iter().flatten() {
        tag.push('.');
        tag.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        }));
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::record::Record;

    fn decode(entry: &[u8]) -> serde_json::Value {
        let mut reader = flumen_event::msgpack::Reader::new(entry);
        let parsed = flumen_event::entry::read_entry(&mut reader).unwrap();
        let record = Record::decode(parsed.record).unwrap();
        serde_json::from_str(&record.to_json()).unwrap()
    }

    #[test]
    fn a_line_carries_its_source_and_the_static_fields() {
        let mut fields = StaticFields::default();
        fields
            .str("deployment_id", Some("d-42"))
            .str("version", None)
            .uint("pid", Some(7));
        let mut out = Vec::new();
        fields.write_line(
            &mut out,
            EventTime::new(1, 2),
            Stream::Stderr,
            b"bad \xff byte",
            true,
        );
        let json = decode(&out);
        assert_eq!(
            json,
            serde_json::json!({
                "message": "bad \u{fffd} byte",
                "source": "stderr",
                "partial": true,
                "deployment_id": "d-42",
                "pid": 7,
            })
        );
    }

    #[test]
    fn shell_join_quotes_what_needs_it() {
        let argv: Vec<String> = ["./deploy.sh", "--to=prod", "a b", "it's", ""]
            .map(String::from)
            .into();
        assert_eq!(
            shell_join(&argv),
            r#"./deploy.sh --to=prod 'a b' 'it'\''s' ''"#
        );
    }

    #[test]
    fn the_default_tag_is_made_of_safe_parts() {
        assert_eq!(default_tag(None, None), "deploy");
        assert_eq!(
            default_tag(Some("api"), Some("staging")),
            "deploy.api.staging"
        );
        assert_eq!(default_tag(Some("api"), None), "deploy.api");
        assert_eq!(default_tag(Some("my api.v2"), None), "deploy.my_api_v2");
    }
}
