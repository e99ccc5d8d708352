//! The log's size accounting with several outputs: each output commits its own cursor and
//! removes the segments every output is past, often at the same moment as another.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;
use flumen_server::{Server, ServerSpec};

/// Records sent, in chunks of `CHUNK`: enough for a few hundred 16 KiB segments to be removed.
const RECORDS: u64 = 8_000;
const CHUNK: u64 = 50;

/// Two `null` outputs that deliver in small batches, so that both commit (and remove segments)
/// all the time, and 16 KiB segments, so that there are many to remove.
fn two_outputs_small_segments(dir: &Path) -> String {
    format!(
        "data_dir = {:?}\nshutdown_timeout = \"3s\"\n[api]\naddress = \"127.0.0.1:0\"\n\
         [log]\nsegment_size = \"16KiB\"\npersistence = \"os\"\n{}\
         [outputs.first]\ntype = \"null\"\nbatch = {{ max_events = 20, timeout = \"1ms\" }}\n\
         [outputs.second]\ntype = \"null\"\nbatch = {{ max_events = 20, timeout = \"1ms\" }}\n\
         [[routes]]\nmatch = [\"**\"]\noutputs = [\"first\", \"second\"]\n",
        dir.join("data"),
        forward_source(),
    )
}

/// The value of the gauge `name` in the API's `/metrics` text.
fn gauge(api: SocketAddr, name: &str) -> f64 {
    let (_, page) = http_get(api, "/metrics");
    metric_sum(&page, name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics:\n{page}"))
}

/// The bytes of the log's segment files.
fn segment_bytes_on_disk(wal_dir: &Path) -> u64 {
    std::fs::read_dir(wal_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension() == Some("wal".as_ref()))
        .map(|path| std::fs::metadata(path).map_or(0, |meta| meta.len()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outputs_removing_segments_at_once_never_wedge_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerSpec::parse(&two_outputs_small_segments(dir.path()), "test.toml").unwrap();
    let server = Server::start(&config, Some(metrics().clone()))
        .await
        .unwrap();
    let (source, api) = (server.source_addr("fwd").unwrap(), server.api_addr());

    // Every chunk must be acknowledged: a log that wrongly thinks itself full stops taking them.
    tokio::task::spawn_blocking(move || {
        for first in (0..RECORDS).step_by(CHUNK as usize) {
            send_acked(source, "app", first..first + CHUNK);
            assert_eq!(gauge(api, "flumen_log_full"), 0.0, "after record {first}");
        }
    })
    .await
    .unwrap();

    // Once both outputs are through, the size the log reports is what is on disk.
    let wal_dir = dir.path().join("data").join("wal");
    let settled = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (reported, on_disk) = (
                gauge(api, "flumen_log_size_bytes"),
                segment_bytes_on_disk(&wal_dir),
            );
            if reported == on_disk as f64 || Instant::now() > deadline {
                return (reported, on_disk);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(
        settled.0, settled.1 as f64,
        "reported size vs files on disk"
    );
    assert_eq!(gauge(api, "flumen_log_full"), 0.0);
    server.shutdown().await;
}
