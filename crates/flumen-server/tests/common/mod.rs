//! Helpers shared by the in-process end-to-end tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flumen_codec::forward::{Compression, decode_ack, encode_packed_forward};
use flumen_event::EventTime;
use flumen_event::entry::write_entry;
use flumen_server::{Server, ServerSpec};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub mod tls;

/// The usual client address, and a second one (every 127.0.0.0/8 address is loopback).
pub const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
pub const SECOND_CLIENT: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `to` from the local address `from`, so that a server sees two clients.
pub async fn connect_from(from: std::net::IpAddr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

pub fn record(i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, 2).unwrap();
    rmp::encode::write_str(&mut out, "log").unwrap();
    rmp::encode::write_str(&mut out, &format!("line {i}")).unwrap();
    rmp::encode::write_str(&mut out, "n").unwrap();
    rmp::encode::write_uint(&mut out, i).unwrap();
    out
}

/// A msgpack record of string fields.
pub fn fields(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, pairs.len() as u32).unwrap();
    for (k, v) in pairs {
        rmp::encode::write_str(&mut out, k).unwrap();
        rmp::encode::write_str(&mut out, v).unwrap();
    }
    out
}

/// A PackedForward chunk of `records`; the k-th is numbered `first + k` and happened at
/// 1_700_000_000 + that number seconds, that number × 7 nanoseconds.
pub fn packed(tag: &str, first: u64, records: &[Vec<u8>], chunk: Option<&str>) -> Vec<u8> {
    let mut entries = Vec::new();
    for (n, record) in (first..).zip(records) {
        write_entry(
            &mut entries,
            EventTime::new(1_700_000_000 + n, n as u32 * 7),
            record,
        );
    }
    let mut out = Vec::new();
    encode_packed_forward(
        &mut out,
        tag,
        &entries,
        records.len() as u32,
        chunk,
        Compression::None,
    );
    out
}

/// A PackedForward chunk of events `range` ([`record`]), with a chunk id when `chunk` is given.
pub fn chunk(tag: &str, range: std::ops::Range<u64>, chunk: Option<&str>) -> Vec<u8> {
    let records: Vec<_> = range.clone().map(record).collect();
    packed(tag, range.start, &records, chunk)
}

/// Waits up to `timeout` for the ack of chunk `id`; false if none came. Reads one byte at a
/// time so that the next ack stays in the socket for the next call.
pub fn read_ack(stream: &mut TcpStream, id: &str, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some((acked, _)) = decode_ack(&buf).unwrap() {
            assert_eq!(acked, id.as_bytes());
            return true;
        }
        let mut tmp = [0u8; 1];
        match stream.read(&mut tmp) {
            Ok(0) => panic!("connection closed before the ack"),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends a chunk with an id and waits for its ack.
pub fn send_acked(addr: SocketAddr, tag: &str, range: std::ops::Range<u64>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let id = format!("c-{}-{}", range.start, range.end);
    stream.write_all(&chunk(tag, range, Some(&id))).unwrap();
    assert!(
        read_ack(&mut stream, &id, Duration::from_secs(10)),
        "no ack"
    );
}

/// The spec of a test server with its data in `dir`, its API on a free port, and `body`.
pub fn spec(dir: &Path, body: &str) -> ServerSpec {
    let text = format!(
        "data_dir = {:?}\nshutdown_timeout = \"3s\"\n[api]\naddress = \"127.0.0.1:0\"\n{body}",
        dir.join("data")
    );
    ServerSpec::parse(&text, "test.toml").unwrap()
}

pub async fn start(dir: &Path, body: &str) -> Server {
    Server::start(&spec(dir, body), None).await.unwrap()
}

/// Reads the JSON lines of a file output, waiting until `count` lines are there. Only whole
/// lines count: the output may be writing the next one while it is read.
pub async fn wait_for_lines(path: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<serde_json::Value> = whole
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn file_output(path: &Path) -> String {
    format!(
        "[outputs.file]\ntype = \"file\"\npath = {:?}\nbatch = {{ timeout = \"10ms\" }}\n",
        path.display().to_string()
    )
}

/// A file output at `out` and a route that sends it every event.
pub fn all_to_file(out: &Path) -> String {
    format!(
        "{}[[routes]]\nmatch = [\"**\"]\noutputs = [\"file\"]\n",
        file_output(out)
    )
}

/// A forward source with `options`, every event to a file output at `out`.
pub fn forward_to_file(options: &str, out: &Path) -> String {
    format!(
        "[sources.fwd]\ntype = \"forward\"\naddress = \"127.0.0.1:0\"\n{options}\n{}",
        all_to_file(out)
    )
}

pub fn forward_source() -> &'static str {
    "[sources.fwd]\ntype = \"forward\"\naddress = \"127.0.0.1:0\"\n"
}

/// POSTs a JSON body; returns the HTTP status (0 if there was no answer).
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_exchange(addr, &request).0
}

/// GETs `path`: the status (0 if there was no answer) and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends one whole HTTP/1.1 request on a new connection and reads the answer to its end.
fn http_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The process-wide metrics recorder of this test binary, installed before its first server
/// starts (servers started without it record nothing).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("no other recorder");
        handle
    })
}

/// The sum of the series of metric `name` that carry (at least) `labels` in a Prometheus text
/// page; `None` when no series matches.
pub fn metric_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let labelled = series.is_empty() || series.starts_with('{');
            let matches = labels
                .iter()
                .all(|(key, wanted)| series.contains(&format!("{key}=\"{wanted}\"")));
            if !(labelled && matches) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .reduce(|sum, value| sum + value)
}

/// The value of counter `name` with (at least) `labels` in this binary's recorder; 0 when it
/// was never counted.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    metric_sum(&metrics().render(), name, labels).unwrap_or(0.0) as u64
}
