//! The tail source inside one process: files in a temporary directory, every event to a file
//! output, servers stopped and started again on the same data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::*;

/// A tail source over `<dir>/logs/*.log` (with `extra` options), everything to `<dir>/out.log`.
fn config(dir: &Path, extra: &str) -> String {
    let poll = if extra.contains("poll_interval") {
        ""
    } else {
        "poll_interval = \"100ms\"\n"
    };
    format!(
        "[sources.files]\ntype = \"tail\"\npaths = [{:?}]\n{poll}\
         position_interval = \"100ms\"\nrotate_wait = \"300ms\"\n{extra}\n{}\
         [[routes]]\nmatch = [\"**\"]\noutputs = [\"file\"]\n",
        dir.join("logs").join("*.log").display().to_string(),
        file_output(&dir.join("out.log")),
    )
}

fn logs(dir: &Path) -> PathBuf {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    logs
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).unwrap();
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> impl Iterator<Item = String> + use<> {
    let prefix = prefix.to_owned();
    range.map(move |i| format!("{prefix} line {i:05} {}", "x".repeat(60)))
}

/// The `log` fields of the output, once `count` lines are there and no more came for a moment.
async fn logged(dir: &Path, count: usize) -> Vec<String> {
    let out = dir.join("out.log");
    let lines = wait_for_lines(&out, count).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = wait_for_lines(&out, count).await;
    assert_eq!(lines.len(), again.len(), "more lines arrived late");
    again
        .iter()
        .map(|l| l["record"]["log"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every expected line exactly once, in any order.
fn assert_once(got: &[String], expected: impl IntoIterator<Item = String>) {
    let mut got = got.to_vec();
    let mut expected: Vec<String> = expected.into_iter().collect();
    got.sort();
    expected.sort();
    let dups: Vec<_> = got.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(
        dups.is_empty(),
        "duplicated: {:?}",
        &dups[..dups.len().min(5)]
    );
    let missing: Vec<_> = expected.iter().filter(|l| !got.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(got.len(), expected.len(), "unexpected lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_files_from_the_beginning_and_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    append(&logs.join("a.log"), numbered("a", 0..100));
    append(&logs.join("b.log"), numbered("b", 0..50));
    std::fs::write(logs.join("partial.log"), "no newline yet").unwrap();
    std::fs::write(logs.join("other.txt"), "not matched\n").unwrap();
    let server = start(dir.path(), &config(dir.path(), "tag = \"tail.*\"")).await;
    let lines = wait_for_lines(&dir.path().join("out.log"), 150).await;
    let a = lines
        .iter()
        .find(|l| l["record"]["log"].as_str().unwrap().starts_with("a line"))
        .unwrap();
    let a_path = logs.join("a.log").display().to_string();
    assert_eq!(a["record"]["filename"], a_path.as_str());
    assert_eq!(
        a["tag"],
        format!("tail.{}", a_path.trim_start_matches('/').replace('/', "."))
    );
    append(&logs.join("a.log"), numbered("a", 100..120));
    let mut partial = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("partial.log"))
        .unwrap();
    partial.write_all(b", now complete\r\n").unwrap();
    let got = logged(dir.path(), 171).await;
    assert_once(
        &got,
        numbered("a", 0..120)
            .chain(numbered("b", 0..50))
            .chain(["no newline yet, now complete".to_owned()]),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_what_was_there_at_the_first_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    append(&logs.join("a.log"), numbered("old", 0..10));
    let server = start(dir.path(), &config(dir.path(), "read_from = \"end\"")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&logs.join("a.log"), numbered("new", 0..5));
    // A file that appears later is read from its beginning.
    append(&logs.join("later.log"), numbered("later", 0..5));
    let got = logged(dir.path(), 10).await;
    assert_once(&got, numbered("new", 0..5).chain(numbered("later", 0..5)));
    server.shutdown().await;
    // Written while stopped: read after the restart, not skipped.
    append(&logs.join("a.log"), numbered("down", 0..5));
    let server = start(dir.path(), &config(dir.path(), "read_from = \"end\"")).await;
    let got = logged(dir.path(), 15).await;
    assert_once(
        &got,
        numbered("new", 0..5)
            .chain(numbered("later", 0..5))
            .chain(numbered("down", 0..5)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_new_directories_are_found_by_a_recursive_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let text = config(dir.path(), "").replace(
        &format!("{:?}", logs.join("*.log").display().to_string()),
        &format!("{:?}", logs.join("**").join("*.log").display().to_string()),
    );
    let server = start(dir.path(), &text).await;
    let deep = logs.join("app").join("2026");
    std::fs::create_dir_all(&deep).unwrap();
    append(&deep.join("x.log"), numbered("deep", 0..20));
    append(&logs.join("top.log"), numbered("top", 0..20));
    let got = logged(dir.path(), 40).await;
    assert_once(&got, numbered("deep", 0..20).chain(numbered("top", 0..20)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_reads_the_old_file_to_its_end_and_the_new_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    append(&app, numbered("gen0", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 100).await;
    let mut expected: Vec<String> = numbered("gen0", 0..100).collect();
    for generation in 1..4 {
        // The writer still holds the old file: its last lines land after the rename.
        let mut old = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
        std::fs::rename(&app, logs.join(format!("app.log.{generation}"))).unwrap();
        let tail: String = numbered(&format!("late{generation}"), 0..30)
            .map(|l| l + "\n")
            .collect();
        old.write_all(tail.as_bytes()).unwrap();
        expected.extend(numbered(&format!("late{generation}"), 0..30));
        append(&app, numbered(&format!("gen{generation}"), 0..50));
        expected.extend(numbered(&format!("gen{generation}"), 0..50));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let got = logged(dir.path(), expected.len()).await;
    assert_once(&got, expected);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_unread_end_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    append(&app, numbered("first", 0..100));
    // The source reads slowly enough (one poll) that the copy is needed.
    let server = start(
        dir.path(),
        &config(dir.path(), "inotify = false\npoll_interval = \"500ms\""),
    )
    .await;
    wait_for_lines(&dir.path().join("out.log"), 100).await;
    append(&app, numbered("unread", 0..40));
    std::fs::copy(&app, logs.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, numbered("after", 0..200));
    let got = logged(dir.path(), 340).await;
    assert_once(
        &got,
        numbered("first", 0..100)
            .chain(numbered("unread", 0..40))
            .chain(numbered("after", 0..200)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_read_again_from_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    append(&app, numbered("before", 0..50));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 50).await;
    std::fs::write(&app, "").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&app, numbered("after", 0..10));
    let got = logged(dir.path(), 60).await;
    assert_once(
        &got,
        numbered("before", 0..50).chain(numbered("after", 0..10)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_split_or_skipped_and_bad_bytes_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let text = format!(
        "{}\n[sources.skipping]\ntype = \"tail\"\npaths = [{:?}]\nmax_line_size = \"16B\"\nlong_lines = \"skip\"\ntag = \"skipped\"\n",
        config(dir.path(), "max_line_size = \"16B\""),
        logs.join("*.skip").display().to_string()
    );
    let mut bytes = b"short\n".to_vec();
    bytes.extend_from_slice(&[b'y'; 40]);
    bytes.extend_from_slice(b"\ncaf\xe9 \xff ok\n");
    std::fs::write(logs.join("a.log"), &bytes).unwrap();
    std::fs::write(logs.join("b.skip"), &bytes).unwrap();
    let server = start(dir.path(), &text).await;
    let lines = wait_for_lines(&dir.path().join("out.log"), 7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = wait_for_lines(&dir.path().join("out.log"), lines.len()).await;
    let of = |tag: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["tag"] == tag)
            .map(|l| l["record"]["log"].as_str().unwrap().to_owned())
            .collect()
    };
    let y16 = "y".repeat(16);
    assert_eq!(
        of("tail"),
        ["short", &y16, &y16, "yyyyyyyy", "caf\u{fffd} \u{fffd} ok"]
    );
    assert_eq!(of("skipped"), ["short", "caf\u{fffd} \u{fffd} ok"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_and_a_binary_file_leave_the_rest_working() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    std::fs::create_dir(logs.join("dir.log")).unwrap();
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03];
    gzip.extend_from_slice(&[0xff, 0x00, 0xfe, 0x81, 0x00, b'\n', 0x00]);
    std::fs::write(logs.join("binary.log"), &gzip).unwrap();
    append(&logs.join("good.log"), numbered("good", 0..10));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    let got = logged(dir.path(), 10).await;
    assert_once(&got, numbered("good", 0..10));
    // A followed file replaced by a directory: the rest goes on; a file there later is read.
    std::fs::remove_file(logs.join("good.log")).unwrap();
    std::fs::create_dir(logs.join("good.log")).unwrap();
    append(&logs.join("other.log"), numbered("other", 0..10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::remove_dir(logs.join("good.log")).unwrap();
    append(&logs.join("good.log"), numbered("again", 0..5));
    let got = logged(dir.path(), 25).await;
    assert_once(
        &got,
        numbered("good", 0..10)
            .chain(numbered("other", 0..10))
            .chain(numbered("again", 0..5)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_without_repeating_or_losing_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    append(&app, numbered("one", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 100).await;
    server.shutdown().await;
    append(&app, numbered("two", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    append(&app, numbered("three", 0..100));
    let got = logged(dir.path(), 300).await;
    assert_once(
        &got,
        numbered("one", 0..100)
            .chain(numbered("two", 0..100))
            .chain(numbered("three", 0..100)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_lagging_behind_the_log_are_caught_up_from_the_log() {
    // What a crash leaves: a position file older than what the log holds.
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    let positions = dir.path().join("data").join("tail").join("files.pos");
    append(&app, numbered("one", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = std::fs::read(&positions).unwrap();
    append(&app, numbered("two", 0..100));
    append(&logs.join("new.log"), numbered("new", 0..50));
    wait_for_lines(&dir.path().join("out.log"), 250).await;
    server.shutdown().await;
    std::fs::write(&positions, &early).unwrap();
    let server = start(dir.path(), &config(dir.path(), "")).await;
    append(&app, numbered("three", 0..10));
    let got = logged(dir.path(), 260).await;
    assert_once(
        &got,
        numbered("one", 0..100)
            .chain(numbered("two", 0..100))
            .chain(numbered("new", 0..50))
            .chain(numbered("three", 0..10)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_corrupt_position_file_starts_over_from_what_the_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    let positions = dir.path().join("data").join("tail").join("files.pos");
    append(&app, numbered("one", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 100).await;
    server.shutdown().await;
    std::fs::remove_file(&positions).unwrap();
    let server = start(dir.path(), &config(dir.path(), "")).await;
    append(&app, numbered("two", 0..10));
    let got = logged(dir.path(), 110).await;
    assert_once(&got, numbered("one", 0..100).chain(numbered("two", 0..10)));
    server.shutdown().await;
    assert!(positions.exists(), "written again");
    std::fs::write(&positions, b"{ not json").unwrap();
    let server = start(dir.path(), &config(dir.path(), "")).await;
    append(&app, numbered("three", 0..10));
    let got = logged(dir.path(), 120).await;
    assert_once(
        &got,
        numbered("one", 0..100)
            .chain(numbered("two", 0..10))
            .chain(numbered("three", 0..10)),
    );
    server.shutdown().await;
    assert!(positions.with_extension("pos.corrupt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotated_while_stopped_are_read_to_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let renamed = logs.join("renamed.log");
    let copied = logs.join("copied.log");
    append(&renamed, numbered("r0", 0..100));
    append(&copied, numbered("c0", 0..100));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 200).await;
    server.shutdown().await;
    // While stopped: more lines, then rename-and-create and copytruncate.
    append(&renamed, numbered("r1", 0..50));
    std::fs::rename(&renamed, logs.join("renamed.log.1")).unwrap();
    append(&renamed, numbered("r2", 0..20));
    append(&copied, numbered("c1", 0..50));
    std::fs::copy(&copied, logs.join("copied.log.1")).unwrap();
    std::fs::write(&copied, "").unwrap();
    append(&copied, numbered("c2", 0..20));
    let server = start(dir.path(), &config(dir.path(), "")).await;
    let got = logged(dir.path(), 340).await;
    assert_once(
        &got,
        ["r0", "c0"]
            .into_iter()
            .flat_map(|p| numbered(p, 0..100))
            .chain(["r1", "c1"].into_iter().flat_map(|p| numbered(p, 0..50)))
            .chain(["r2", "c2"].into_iter().flat_map(|p| numbered(p, 0..20))),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiline_filter_joins_a_java_trace_in_a_tailed_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let trace = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/multiline/java-exception.log"),
    )
    .unwrap();
    // Two files written line by line, interleaved: each file is its own stream.
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let filters = "[[filters]]\ntype = \"multiline\"\nmode = \"java\"\nflush_timeout = \"500ms\"\n";
    let server = start(dir.path(), &format!("{}{filters}", config(dir.path(), ""))).await;
    for line in trace.lines() {
        append(&a, [line.to_owned()]);
        append(&b, [line.to_owned()]);
    }
    let lines = logged(dir.path(), 14).await;
    assert_eq!(lines.len(), 14, "{lines:#?}");
    let all: Vec<&str> = trace.lines().collect();
    let joined = all[4..=17].join("\n");
    assert_eq!(lines.iter().filter(|l| **l == joined).count(), 2);
    assert_eq!(
        lines.iter().filter(|l| **l == all[19..].join("\n")).count(),
        2
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_again_with_the_same_first_bytes_is_new_content() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let app = logs.join("app.log");
    // A header longer than the fingerprint, the same in every generation of the file.
    let header = format!("HEADER {}", "h".repeat(300));
    append(
        &app,
        [header.clone()]
            .into_iter()
            .chain(numbered("before", 0..20)),
    );
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 21).await;
    std::fs::write(&app, "").unwrap();
    append(
        &app,
        [header.clone()].into_iter().chain(numbered("after", 0..10)),
    );
    wait_for_lines(&dir.path().join("out.log"), 32).await;
    server.shutdown().await;
    let server = start(dir.path(), &config(dir.path(), "")).await;
    append(&app, numbered("after", 10..15));
    let mut got = logged(dir.path(), 37).await;
    let headers = got.iter().filter(|l| **l == header).count();
    assert_eq!(headers, 2);
    got.retain(|l| *l != header);
    assert_once(
        &got,
        numbered("before", 0..20).chain(numbered("after", 0..15)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_unchanged_for_longer_than_ignore_older_are_read_once_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    let old = logs.join("old.log");
    append(&old, numbered("stale", 0..5));
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    append(&logs.join("new.log"), numbered("fresh", 0..5));
    let server = start(dir.path(), &config(dir.path(), "ignore_older = \"1h\"")).await;
    let got = logged(dir.path(), 5).await;
    assert_once(&got, numbered("fresh", 0..5));
    append(&old, numbered("revived", 0..3));
    let got = logged(dir.path(), 8).await;
    assert_once(
        &got,
        numbered("fresh", 0..5).chain(numbered("revived", 0..3)),
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_files_are_followed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = logs(dir.path());
    // Kept under the usual 1,024 open files of a test process.
    for f in 0..500 {
        append(
            &logs.join(format!("f{f:03}.log")),
            numbered(&format!("f{f:03}"), 0..4),
        );
    }
    let server = start(dir.path(), &config(dir.path(), "")).await;
    wait_for_lines(&dir.path().join("out.log"), 2000).await;
    for f in 0..500 {
        append(
            &logs.join(format!("f{f:03}.log")),
            numbered(&format!("f{f:03}"), 4..5),
        );
    }
    let got = logged(dir.path(), 2500).await;
    assert_once(
        &got,
        (0..500).flat_map(|f| numbered(&format!("f{f:03}"), 0..5)),
    );
    server.shutdown().await;
}
