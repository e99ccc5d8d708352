//! The tracer record: how the sender lays it out and frames it, and how the receiver finds its
//! fields again.
//!
//! A record is a msgpack map shaped like what the Docker fluentd driver sends, plus the tracer
//! fields: `{container_id, container_name, source, run, conn, seq, sent_ns, log}`. Only `seq`
//! and `sent_ns` change from one record to the next; both are fixed-width `uint64`s, so the
//! sender copies a template and patches them.

use flumen_codec::forward::{Compression, encode_packed_forward, write_message};
use flumen_event::EventTime;
use flumen_event::entry::write_entry;
use flumen_event::msgpack::{Reader, Value};

use super::Mode;

/// Where a chunk's records come from: the tracer template, or a generated corpus.
pub trait Records {
    /// Appends record `seq` (first sent at `sent_ns`) and returns its event time.
    fn write(&self, out: &mut Vec<u8>, seq: u64, sent_ns: u64) -> EventTime;
}

impl Records for Template {
    fn write(&self, out: &mut Vec<u8>, seq: u64, sent_ns: u64) -> EventTime {
        self.write_record(out, seq, sent_ns);
        EventTime::new(sent_ns / 1_000_000_000, (sent_ns % 1_000_000_000) as u32)
    }
}

/// A record template for one connection.
#[derive(Debug, Clone)]
pub struct Template {
    /// Everything up to the `seq` value.
    head: Vec<u8>,
    /// The `sent_ns` key.
    middle: Vec<u8>,
    /// The `log` key and value; records take them in turn, by `seq`.
    tails: Vec<Vec<u8>>,
}

const LOG_LINE: &str = "GET /api/v1/items?page=2 200 ";

fn str_header_len(len: usize) -> usize {
    match len {
        0..32 => 1,
        32..256 => 2,
        256..65536 => 3,
        _ => 5,
    }
}

impl Template {
    /// A template whose records come out at about `size` bytes.
    pub fn new(run: &str, conn: u32, size: usize) -> Self {
        let w = "Vec write";
        let mut head = Vec::new();
        rmp::encode::write_map_len(&mut head, 8).expect(w);
        for (key, value) in [
            (
                "container_id",
                "4f1a9c2b7d3e8f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718",
            ),
            ("container_name", "/bench-web-1"),
            ("source", "stdout"),
            ("run", run),
        ] {
            rmp::encode::write_str(&mut head, key).expect(w);
            rmp::encode::write_str(&mut head, value).expect(w);
        }
        rmp::encode::write_str(&mut head, "conn").expect(w);
        rmp::encode::write_uint(&mut head, u64::from(conn)).expect(w);
        rmp::encode::write_str(&mut head, "seq").expect(w);
        let mut middle = Vec::new();
        rmp::encode::write_str(&mut middle, "sent_ns").expect(w);
        let mut tail = Vec::new();
        rmp::encode::write_str(&mut tail, "log").expect(w);
        let fixed = head.len() + 9 + middle.len() + 9 + tail.len();
        let room = size.saturating_sub(fixed);
        let log_len = [1, 2, 3, 5]
            .into_iter()
            .map(|h| room.saturating_sub(h))
            .find(|&len| str_header_len(len) + len == room)
            .unwrap_or(0)
            .max(LOG_LINE.len());
        let mut log = String::with_capacity(log_len);
        log.push_str(LOG_LINE);
        log.extend(std::iter::repeat_n('x', log_len - LOG_LINE.len()));
        rmp::encode::write_str(&mut tail, &log).expect(w);
        Self {
            head,
            middle,
            tails: vec![tail],
        }
    }

    /// The same template with the `log` field taken from `lines` in turn (real log lines, for
    /// benchmarks of parsing filters) instead of padding.
    pub fn with_lines(mut self, lines: &[String]) -> Self {
        if !lines.is_empty() {
            self.tails = lines
                .iter()
                .map(|line| {
                    let mut tail = Vec::new();
                    rmp::encode::write_str(&mut tail, "log").expect("Vec write");
                    rmp::encode::write_str(&mut tail, line).expect("Vec write");
                    tail
                })
                .collect();
        }
        self
    }

    /// The same template with a `deployment_id` field, `d-<seq mod deployments>`, before the
    /// `log` field (none when `deployments` is 0).
    pub fn with_deployments(mut self, deployments: u32) -> Self {
        if deployments == 0 {
            return self;
        }
        // One more field in the map: the head starts with its fixmap header.
        debug_assert_eq!(self.head[0] & 0xf0, 0x80);
        self.head[0] += 1;
        let logs = std::mem::take(&mut self.tails);
        self.tails = (0..deployments as usize)
            .map(|d| {
                let mut tail = Vec::new();
                rmp::encode::write_str(&mut tail, "deployment_id").expect("Vec write");
                rmp::encode::write_str(&mut tail, &format!("d-{d}")).expect("Vec write");
                tail.extend_from_slice(&logs[d % logs.len()]);
                tail
            })
            .collect();
        self
    }

    /// Appends the record with this `seq` and `sent_ns`.
    pub fn write_record(&self, out: &mut Vec<u8>, seq: u64, sent_ns: u64) {
        out.extend_from_slice(&self.head);
        out.push(0xcf);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&self.middle);
        out.push(0xcf);
        out.extend_from_slice(&sent_ns.to_be_bytes());
        out.extend_from_slice(&self.tails[(seq % self.tails.len() as u64) as usize]);
    }

    /// The size of every record, bytes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.head.len() + 9 + self.middle.len() + 9 + self.tails[0].len()
    }
}

/// Encodes the `n` records from `seq` on, sent at `sent_ns`, as the bytes of one chunk in
/// `mode` (in message mode: `n` frames back to back, each with `chunk` when given).
#[allow(clippy::too_many_arguments)]
pub fn encode_chunk(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    records: &dyn Records,
    mode: Mode,
    tag: &str,
    seq: u64,
    n: u32,
    sent_ns: u64,
    chunk: Option<&str>,
) {
    out.clear();
    scratch.clear();
    let mut record = Vec::new();
    match mode {
        Mode::Message => {
            for i in 0..u64::from(n) {
                scratch.clear();
                let time = records.write(scratch, seq + i, sent_ns);
                write_message(out, tag, time, scratch, chunk);
            }
        }
        Mode::Packed | Mode::Compressed => {
            for i in 0..u64::from(n) {
                record.clear();
                let time = records.write(&mut record, seq + i, sent_ns);
                scratch.push(0x92);
                time.write_msgpack(scratch);
                scratch.extend_from_slice(&record);
            }
            let compression = match mode {
                Mode::Compressed => Compression::Gzip,
                _ => Compression::None,
            };
            encode_packed_forward(out, tag, scratch, n, chunk, compression);
        }
        Mode::Forward => {
            let w = "Vec write";
            rmp::encode::write_array_len(out, 3).expect(w);
            rmp::encode::write_str(out, tag).expect(w);
            rmp::encode::write_array_len(out, n).expect(w);
            for i in 0..u64::from(n) {
                scratch.clear();
                let time = records.write(scratch, seq + i, sent_ns);
                write_entry(out, time, scratch);
            }
            rmp::encode::write_map_len(out, 1 + u32::from(chunk.is_some())).expect(w);
            rmp::encode::write_str(out, "size").expect(w);
            rmp::encode::write_uint(out, u64::from(n)).expect(w);
            if let Some(chunk) = chunk {
                rmp::encode::write_str(out, "chunk").expect(w);
                rmp::encode::write_str(out, chunk).expect(w);
            }
        }
    }
}

/// The tracer fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub run: &'a [u8],
    pub conn: u64,
    pub seq: u64,
    pub sent_ns: u64,
}

fn uint(value: Value<'_>) -> Option<u64> {
    match value {
        Value::UInt(n) => Some(n),
        Value::Int(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Finds `run` (a string), `conn`, `seq` and `sent_ns` (non-negative integers) among a record's
/// top-level fields; `None` when one is missing or of another type.
pub fn tracer_fields(record: &[u8]) -> Option<Fields<'_>> {
    let mut r = Reader::new(record);
    let Ok(Value::Map(pairs)) = r.read() else {
        return None;
    };
    let (mut run, mut conn, mut seq, mut sent_ns) = (None, None, None, None);
    for _ in 0..pairs {
        let key = r.skip_value().ok()?;
        let key = Reader::new(key).read_str_or_bin().ok();
        match key {
            Some(b"run") => run = Some(r.read_str_or_bin().ok()?),
            Some(b"conn") => conn = Some(uint(r.read().ok()?)?),
            Some(b"seq") => seq = Some(uint(r.read().ok()?)?),
            Some(b"sent_ns") => sent_ns = Some(uint(r.read().ok()?)?),
            _ => {
                r.skip_value().ok()?;
            }
        }
        if let (Some(run), Some(conn), Some(seq), Some(sent_ns)) = (run, conn, seq, sent_ns) {
            return Some(Fields {
                run,
                conn,
                seq,
                sent_ns,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_codec::forward::{Decoded, Limits, decode_frame};
    use flumen_event::EntryIter;

    #[test]
    fn records_have_the_asked_size_and_their_fields() {
        for size in [0, 150, 200, 250, 300, 1000, 70_000] {
            let t = Template::new("abc", 7, size);
            let mut rec = Vec::new();
            t.write_record(&mut rec, 42, 1_700_000_000_123_456_789);
            assert_eq!(rec.len(), t.len());
            if size >= 200 {
                assert_eq!(rec.len(), size, "size {size}");
            }
            assert_eq!(
                tracer_fields(&rec),
                Some(Fields {
                    run: b"abc",
                    conn: 7,
                    seq: 42,
                    sent_ns: 1_700_000_000_123_456_789
                })
            );
        }
    }

    #[test]
    fn records_take_their_deployment_by_seq() {
        let t = Template::new("abc", 7, 200).with_deployments(3);
        for seq in [0, 1, 5] {
            let mut rec = Vec::new();
            t.write_record(&mut rec, seq, 1);
            let record = flumen_event::record::Record::decode(&rec).unwrap();
            let deployment = record.get("deployment_id").and_then(|v| v.as_str());
            assert_eq!(deployment, Some(format!("d-{}", seq % 3).as_str()));
            assert_eq!(tracer_fields(&rec).map(|f| f.seq), Some(seq));
            assert!(record.get("log").is_some());
        }
    }

    #[test]
    fn records_without_the_fields_are_foreign() {
        let mut rec = Vec::new();
        rmp::encode::write_map_len(&mut rec, 2).unwrap();
        rmp::encode::write_str(&mut rec, "run").unwrap();
        rmp::encode::write_str(&mut rec, "x").unwrap();
        rmp::encode::write_str(&mut rec, "seq").unwrap();
        rmp::encode::write_uint(&mut rec, 1).unwrap();
        assert_eq!(tracer_fields(&rec), None);
        let mut bad = Vec::new();
        rmp::encode::write_map_len(&mut bad, 4).unwrap();
        for (k, v) in [("run", 1), ("conn", 1), ("seq", 1), ("sent_ns", 1)] {
            rmp::encode::write_str(&mut bad, k).unwrap();
            rmp::encode::write_uint(&mut bad, v).unwrap();
        }
        assert_eq!(tracer_fields(&bad), None, "run must be a string");
    }

    #[test]
    fn every_mode_decodes_to_the_records() {
        let t = Template::new("r", 1, 200);
        for mode in [Mode::Packed, Mode::Compressed, Mode::Message, Mode::Forward] {
            let (mut out, mut scratch) = (Vec::new(), Vec::new());
            encode_chunk(
                &mut out,
                &mut scratch,
                &t,
                mode,
                "t",
                10,
                3,
                5_000_000_001,
                Some("id"),
            );
            let mut seqs = Vec::new();
            let mut rest = &out[..];
            while !rest.is_empty() {
                let (Decoded::Frame(frame), used) =
                    decode_frame(rest, &Limits::default()).unwrap().unwrap()
                else {
                    panic!("heartbeat")
                };
                assert_eq!(frame.chunk, Some(&b"id"[..]), "{mode:?}");
                for entry in EntryIter::new(&frame.entries) {
                    let entry = entry.unwrap();
                    assert_eq!(entry.time, EventTime::new(5, 1));
                    let f = tracer_fields(entry.record).unwrap();
                    assert_eq!((f.run, f.conn, f.sent_ns), (&b"r"[..], 1, 5_000_000_001));
                    seqs.push(f.seq);
                }
                rest = &rest[used..];
            }
            assert_eq!(seqs, [10, 11, 12], "{mode:?}");
        }
    }
}
