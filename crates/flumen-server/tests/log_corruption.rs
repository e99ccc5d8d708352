//! A server over a damaged log: a corrupt record costs that record only (skipped, counted in
//! `/metrics`), never the records after it or the start; and `/readyz` tells when an output
//! stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flumen_event::entry::write_entry;
use flumen_event::{BatchBuilder, EventTime, TenantId};
use flumen_server::{Server, ServerSpec};
use flumen_wal::{Persistence, Wal, WalConfig};

mod common;

use common::{all_to_file, fields, http_get, metric_sum, metrics, wait_for_lines};

/// Starts a server on `dir/data` with `body`, rendering `/metrics`.
async fn start(dir: &Path, body: &str) -> Server {
    let text = format!(
        "data_dir = {:?}\nshutdown_timeout = \"3s\"\n[api]\naddress = \"127.0.0.1:0\"\n{body}",
        dir.join("data")
    );
    let config = ServerSpec::parse(&text, "test.toml").unwrap();
    Server::start(&config, Some(metrics().clone()))
        .await
        .unwrap()
}

/// The log's directory under the server's data directory.
fn log_dir(dir: &Path) -> PathBuf {
    dir.join("data").join("wal")
}

/// A segment file of the log, by its first sequence number.
fn segment(dir: &Path, first_seq: u64) -> PathBuf {
    log_dir(dir).join(format!("{first_seq:020}.wal"))
}

/// Writes what an earlier run of flumen left: `count` batches of one event each (`line <i>`,
/// padded so that each fills a segment of its own: record `i` is segment `i`), none delivered
/// yet by `output`.
async fn leave_a_log(dir: &Path, output: &str, count: u64) {
    let wal = Wal::open(WalConfig {
        persistence: Persistence::Always,
        segment_size: 1024,
        max_size: 1 << 30,
        ..WalConfig::new(log_dir(dir))
    })
    .unwrap();
    let _undelivered = wal.reader(output).unwrap();
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    for i in 0..count {
        let mut entries = Vec::new();
        let record = fields(&[("log", &format!("line {i}")), ("pad", &"x".repeat(600))]);
        write_entry(&mut entries, EventTime::new(1_700_000_000 + i, 0), &record);
        let chunk_id = format!("chunk-{i}");
        let batch = builder
            .encode("app", chunk_id.as_bytes(), 1, &entries)
            .unwrap();
        wal.append(batch).await.unwrap().durable().await.unwrap();
    }
    wal.shutdown().await;
    assert!(segment(dir, count - 1).exists(), "one record per segment");
}

/// Flips a byte in the payload of the only record of segment `first_seq`; returns the
/// record's size on disk (header included).
fn corrupt_the_record_of(dir: &Path, first_seq: u64) -> u64 {
    let path = segment(dir, first_seq);
    let mut bytes = std::fs::read(&path).unwrap();
    // The segment's header (16 bytes), the record's header (16 bytes), then its payload.
    bytes[16 + 16 + 40] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    bytes.len() as u64 - 16
}

/// The value of the metric `name` (no labels) in a `/metrics` page.
fn metric(page: &str, name: &str) -> Option<u64> {
    metric_sum(page, name, &[]).map(|value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_over_a_corrupt_record_in_a_sealed_segment_delivers_every_other_record_and_counts_it()
 {
    let dir = tempfile::tempdir().unwrap();
    leave_a_log(dir.path(), "file", 20).await;
    // The second-newest segment: sealed, and one the chunk ledger reads back at start.
    let corrupt_bytes = corrupt_the_record_of(dir.path(), 18);

    let out = dir.path().join("out.log");
    let server = start(dir.path(), &all_to_file(&out)).await;
    let lines = wait_for_lines(&out, 19).await;
    let delivered: Vec<String> = lines
        .iter()
        .map(|l| l["record"]["log"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..20)
        .filter(|&i| i != 18)
        .map(|i| format!("line {i}"))
        .collect();
    assert_eq!(delivered, expected);

    let (status, page) = http_get(server.api_addr(), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&page, "flumen_log_corrupt_records_total"), Some(1));
    assert_eq!(
        metric(&page, "flumen_log_corrupt_bytes_total"),
        Some(corrupt_bytes)
    );
    assert_eq!(http_get(server.api_addr(), "/readyz").0, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_whose_records_were_removed_before_it_read_them_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    leave_a_log(dir.path(), "file", 6).await;
    // The oldest segments are gone (removed under `when_full = "drop_oldest"` by an earlier
    // run, say): the output's cursor is before the oldest record left.
    for first in 0..3 {
        std::fs::remove_file(segment(dir.path(), first)).unwrap();
    }

    let out = dir.path().join("out.log");
    let server = start(dir.path(), &all_to_file(&out)).await;
    let lines = wait_for_lines(&out, 3).await;
    let delivered: Vec<&str> = lines
        .iter()
        .map(|l| l["record"]["log"].as_str().unwrap())
        .collect();
    assert_eq!(delivered, ["line 3", "line 4", "line 5"]);
    assert_eq!(http_get(server.api_addr(), "/readyz").0, 200);
    server.shutdown().await;
}

/// An HTTP server that holds its answer to the first request until told to answer, and
/// answers every later request at once.
struct HeldDestination {
    addr: SocketAddr,
    first_request: mpsc::Receiver<()>,
    answer: mpsc::Sender<()>,
}

impl HeldDestination {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived, first_request) = mpsc::channel();
        let (answer, go) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream);
                if !read_request(&mut reader) {
                    continue;
                }
                if n == 0 {
                    let _ = arrived.send(());
                    if go.recv_timeout(Duration::from_secs(10)).is_err() {
                        return;
                    }
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self {
            addr,
            first_request,
            answer,
        }
    }
}

/// Reads one request's head and body; false if the connection ended first.
fn read_request(reader: &mut BufReader<TcpStream>) -> bool {
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_naming_an_output_that_stopped() {
    let dir = tempfile::tempdir().unwrap();
    leave_a_log(dir.path(), "hook", 3).await;
    let destination = HeldDestination::start();
    let server = start(
        dir.path(),
        &format!(
            "[outputs.hook]\ntype = \"webhook\"\nurl = \"http://{}/\"\n\
             batch = {{ max_events = 1, max_bytes = \"1B\", timeout = \"10ms\" }}\n\
             [[routes]]\nmatch = [\"**\"]\noutputs = [\"hook\"]\n",
            destination.addr
        ),
    )
    .await;
    // The output delivers record 0 (segment 0) and waits for the answer...
    destination
        .first_request
        .recv_timeout(Duration::from_secs(10))
        .expect("the output delivers the first record");
    assert_eq!(http_get(server.api_addr(), "/readyz").0, 200);
    // ...while the segment it reads next disappears: it cannot read on.
    std::fs::remove_file(segment(dir.path(), 1)).unwrap();
    destination.answer.send(()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = http_get(server.api_addr(), "/readyz");
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("output hook stopped"), "{body}");
    server.shutdown().await;
}
