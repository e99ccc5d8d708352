//! The tail source inside one process: files in a temporary directory, every event to a file
//! output, servers stopped and started again on the same data directory.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::*;
use flumen_server::Server;

/// A tail source over `<dir>/logs/*.log` (with `extra` options), everything to `<dir>/out.log`.
fn config(dir: &Path, extra: &str) -> String {
    let poll = if extra.contains("poll_interval") {
        ""
    } else {
        "poll_interval = \"100ms\"\n"
    };
    format!(
        "[sources.files]\ntype = \"tail\"\npaths = [{:?}]\n{poll}\
         position_interval = \"100ms\"\nrotate_wait = \"300ms\"\n{extra}\n{}",
        dir.join("logs").join("*.log").display().to_string(),
        all_to_file(&dir.join("out.log")),
    )
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

fn numbered(prefix: &str, range: Range<u32>) -> impl Iterator<Item = String> + use<> {
    let prefix = prefix.to_owned();
    range.map(move |i| format!("{prefix} line {i:05} {}", "x".repeat(60)))
}

/// The [`numbered`] lines of each (prefix, range), one run after the other.
fn runs(runs: &[(&str, Range<u32>)]) -> Vec<String> {
    runs.iter()
        .flat_map(|(prefix, range)| numbered(prefix, range.clone()))
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

/// One test's directory: the tailed files in `logs/`, the output in `out.log`, the server's
/// data in `data/`.
struct Files {
    dir: tempfile::TempDir,
    logs: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        Self { dir, logs }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The file `name` in `logs/`.
    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// The tail source's position file.
    fn positions(&self) -> PathBuf {
        self.dir().join("data").join("tail").join("files.pos")
    }

    /// A server with the tail source of [`config`] and its `extra` options.
    async fn start(&self, extra: &str) -> Server {
        start(self.dir(), &config(self.dir(), extra)).await
    }

    /// [`Files::start`], then [`Files::wait`] for `count` lines.
    async fn start_and_wait(&self, extra: &str, count: usize) -> Server {
        let server = self.start(extra).await;
        self.wait(count).await;
        server
    }

    /// The output's lines, once `count` are there.
    async fn wait(&self, count: usize) -> Vec<serde_json::Value> {
        wait_for_lines(&self.dir().join("out.log"), count).await
    }

    /// The `log` fields of the output, once `count` lines are there and no more came for a
    /// moment.
    async fn logged(&self, count: usize) -> Vec<String> {
        let lines = self.wait(count).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = self.wait(count).await;
        assert_eq!(lines.len(), again.len(), "more lines arrived late");
        again
            .iter()
            .map(|l| l["record"]["log"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Once as many lines as `expected` holds are in the output (and no more came): every
    /// expected line exactly once, in any order.
    async fn assert_logged(&self, expected: impl IntoIterator<Item = String>) {
        let expected: Vec<String> = expected.into_iter().collect();
        let got = self.logged(expected.len()).await;
        assert_once(&got, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_files_from_the_beginning_and_follows_them() {
    let files = Files::new();
    append(&files.log("a.log"), numbered("a", 0..100));
    append(&files.log("b.log"), numbered("b", 0..50));
    std::fs::write(files.log("partial.log"), "no newline yet").unwrap();
    std::fs::write(files.log("other.txt"), "not matched\n").unwrap();
    let server = files.start("tag = \"tail.*\"").await;
    let lines = files.wait(150).await;
    let a = lines
        .iter()
        .find(|l| l["record"]["log"].as_str().unwrap().starts_with("a line"))
        .unwrap();
    let a_path = files.log("a.log").display().to_string();
    assert_eq!(a["record"]["filename"], a_path.as_str());
    assert_eq!(
        a["tag"],
        format!("tail.{}", a_path.trim_start_matches('/').replace('/', "."))
    );
    append(&files.log("a.log"), numbered("a", 100..120));
    let mut partial = std::fs::OpenOptions::new()
        .append(true)
        .open(files.log("partial.log"))
        .unwrap();
    partial.write_all(b", now complete\r\n").unwrap();
    let mut expected = runs(&[("a", 0..120), ("b", 0..50)]);
    expected.push("no newline yet, now complete".to_owned());
    files.assert_logged(expected).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_what_was_there_at_the_first_start_only() {
    let files = Files::new();
    append(&files.log("a.log"), numbered("old", 0..10));
    let server = files.start("read_from = \"end\"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&files.log("a.log"), numbered("new", 0..5));
    // A file that appears later is read from its beginning.
    append(&files.log("later.log"), numbered("later", 0..5));
    files
        .assert_logged(runs(&[("new", 0..5), ("later", 0..5)]))
        .await;
    server.shutdown().await;
    // Written while stopped: read after the restart, not skipped.
    append(&files.log("a.log"), numbered("down", 0..5));
    let server = files.start("read_from = \"end\"").await;
    files
        .assert_logged(runs(&[("new", 0..5), ("later", 0..5), ("down", 0..5)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_in_new_directories_are_found_by_a_recursive_pattern() {
    let files = Files::new();
    let text = config(files.dir(), "").replace(
        &format!("{:?}", files.log("*.log").display().to_string()),
        &format!("{:?}", files.log("**").join("*.log").display().to_string()),
    );
    let server = start(files.dir(), &text).await;
    let deep = files.log("app").join("2026");
    std::fs::create_dir_all(&deep).unwrap();
    append(&deep.join("x.log"), numbered("deep", 0..20));
    append(&files.log("top.log"), numbered("top", 0..20));
    files
        .assert_logged(runs(&[("deep", 0..20), ("top", 0..20)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_reads_the_old_file_to_its_end_and_the_new_one_whole() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, numbered("gen0", 0..100));
    let server = files.start_and_wait("", 100).await;
    let mut expected: Vec<String> = numbered("gen0", 0..100).collect();
    for generation in 1..4 {
        // The writer still holds the old file: its last lines land after the rename.
        let mut old = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
        std::fs::rename(&app, files.log(&format!("app.log.{generation}"))).unwrap();
        let tail: String = numbered(&format!("late{generation}"), 0..30)
            .map(|l| l + "\n")
            .collect();
        old.write_all(tail.as_bytes()).unwrap();
        expected.extend(numbered(&format!("late{generation}"), 0..30));
        append(&app, numbered(&format!("gen{generation}"), 0..50));
        expected.extend(numbered(&format!("gen{generation}"), 0..50));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    files.assert_logged(expected).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_unread_end_from_the_copy() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, numbered("first", 0..100));
    // The source reads slowly enough (one poll) that the copy is needed.
    let server = files
        .start_and_wait("inotify = false\npoll_interval = \"500ms\"", 100)
        .await;
    append(&app, numbered("unread", 0..40));
    std::fs::copy(&app, files.log("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&app, numbered("after", 0..200));
    files
        .assert_logged(runs(&[
            ("first", 0..100),
            ("unread", 0..40),
            ("after", 0..200),
        ]))
        .await;
    server.shutdown().await;
}

/// Copies and truncates `path` as logrotate's `copytruncate` does: the copy is `<path>.<n>`.
fn copy_truncate(path: &Path, n: u32) {
    let copy = path.with_extension(format!("log.{n}"));
    std::fs::copy(path, copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// A first line shorter than the first bytes a copy is otherwise recognised by (64).
const SHORT_FIRST_LINE: &str = "started";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_file_copied_and_truncated_while_read_keeps_its_unread_end() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, [SHORT_FIRST_LINE.to_owned()]);
    // The source reads slowly enough (one poll) that the copy is needed.
    let server = files
        .start_and_wait("inotify = false\npoll_interval = \"500ms\"", 1)
        .await;
    append(&app, numbered("unread", 0..40));
    copy_truncate(&app, 1);
    append(&app, numbered("after", 0..20));
    let mut expected = vec![SHORT_FIRST_LINE.to_owned()];
    expected.extend(runs(&[("unread", 0..40), ("after", 0..20)]));
    files.assert_logged(expected).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_file_copied_and_truncated_while_stopped_keeps_its_unread_end() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, [SHORT_FIRST_LINE.to_owned()]);
    files.start_and_wait("", 1).await.shutdown().await;
    append(&app, numbered("unread", 0..40));
    copy_truncate(&app, 1);
    append(&app, numbered("after", 0..20));
    let server = files.start("").await;
    let mut expected = vec![SHORT_FIRST_LINE.to_owned()];
    expected.extend(runs(&[("unread", 0..40), ("after", 0..20)]));
    files.assert_logged(expected).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_holding_the_lines_read_is_told_from_older_copies_with_the_same_start() {
    // Every generation of the file starts with the same header, longer than the fingerprint:
    // only the lines read tell the right copy from the older ones.
    let files = Files::new();
    let app = files.log("app.log");
    let header = format!("HEADER {}", "h".repeat(300));
    for n in 1..=4 {
        let older: Vec<String> = [header.clone()]
            .into_iter()
            .chain(numbered(&format!("older{n}"), 0..100))
            .collect();
        append(&files.log(&format!("app.log.{n}")), older);
    }
    append(
        &app,
        [header.clone()].into_iter().chain(numbered("read", 0..10)),
    );
    files.start_and_wait("", 11).await.shutdown().await;
    append(&app, numbered("unread", 0..40));
    copy_truncate(&app, 5);
    append(&app, numbered("after", 0..20));
    let server = files.start("").await;
    let mut expected = vec![header];
    expected.extend(runs(&[
        ("read", 0..10),
        ("unread", 0..40),
        ("after", 0..20),
    ]));
    files.assert_logged(expected).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_is_read_again_from_its_beginning() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, numbered("before", 0..50));
    let server = files.start_and_wait("", 50).await;
    std::fs::write(&app, "").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&app, numbered("after", 0..10));
    files
        .assert_logged(runs(&[("before", 0..50), ("after", 0..10)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_split_or_skipped_and_bad_bytes_replaced() {
    let files = Files::new();
    let text = format!(
        "{}\n[sources.skipping]\ntype = \"tail\"\npaths = [{:?}]\nmax_line_size = \"16B\"\nlong_lines = \"skip\"\ntag = \"skipped\"\n",
        config(files.dir(), "max_line_size = \"16B\""),
        files.log("*.skip").display().to_string()
    );
    let mut bytes = b"short\n".to_vec();
    bytes.extend_from_slice(&[b'y'; 40]);
    bytes.extend_from_slice(b"\ncaf\xe9 \xff ok\n");
    std::fs::write(files.log("a.log"), &bytes).unwrap();
    std::fs::write(files.log("b.skip"), &bytes).unwrap();
    let server = start(files.dir(), &text).await;
    let lines = files.wait(7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = files.wait(lines.len()).await;
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
    let files = Files::new();
    std::fs::create_dir(files.log("dir.log")).unwrap();
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03];
    gzip.extend_from_slice(&[0xff, 0x00, 0xfe, 0x81, 0x00, b'\n', 0x00]);
    std::fs::write(files.log("binary.log"), &gzip).unwrap();
    append(&files.log("good.log"), numbered("good", 0..10));
    let server = files.start("").await;
    files.assert_logged(numbered("good", 0..10)).await;
    // A followed file replaced by a directory: the rest goes on; a file there later is read.
    std::fs::remove_file(files.log("good.log")).unwrap();
    std::fs::create_dir(files.log("good.log")).unwrap();
    append(&files.log("other.log"), numbered("other", 0..10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::remove_dir(files.log("good.log")).unwrap();
    append(&files.log("good.log"), numbered("again", 0..5));
    files
        .assert_logged(runs(&[("good", 0..10), ("other", 0..10), ("again", 0..5)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_without_repeating_or_losing_a_line() {
    let files = Files::new();
    let app = files.log("app.log");
    append(&app, numbered("one", 0..100));
    files.start_and_wait("", 100).await.shutdown().await;
    append(&app, numbered("two", 0..100));
    let server = files.start("").await;
    append(&app, numbered("three", 0..100));
    files
        .assert_logged(runs(&[("one", 0..100), ("two", 0..100), ("three", 0..100)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_lagging_behind_the_log_are_caught_up_from_the_log() {
    // What a crash leaves: a position file older than what the log holds.
    let files = Files::new();
    let app = files.log("app.log");
    let positions = files.positions();
    append(&app, numbered("one", 0..100));
    let server = files.start_and_wait("", 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = std::fs::read(&positions).unwrap();
    append(&app, numbered("two", 0..100));
    append(&files.log("new.log"), numbered("new", 0..50));
    files.wait(250).await;
    server.shutdown().await;
    std::fs::write(&positions, &early).unwrap();
    let server = files.start("").await;
    append(&app, numbered("three", 0..10));
    files
        .assert_logged(runs(&[
            ("one", 0..100),
            ("two", 0..100),
            ("new", 0..50),
            ("three", 0..10),
        ]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_corrupt_position_file_starts_over_from_what_the_log_holds() {
    let files = Files::new();
    let app = files.log("app.log");
    let positions = files.positions();
    append(&app, numbered("one", 0..100));
    files.start_and_wait("", 100).await.shutdown().await;
    std::fs::remove_file(&positions).unwrap();
    let server = files.start("").await;
    append(&app, numbered("two", 0..10));
    files
        .assert_logged(runs(&[("one", 0..100), ("two", 0..10)]))
        .await;
    server.shutdown().await;
    assert!(positions.exists(), "written again");
    std::fs::write(&positions, b"{ not json").unwrap();
    let server = files.start("").await;
    append(&app, numbered("three", 0..10));
    files
        .assert_logged(runs(&[("one", 0..100), ("two", 0..10), ("three", 0..10)]))
        .await;
    server.shutdown().await;
    assert!(positions.with_extension("pos.corrupt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_rotated_while_stopped_are_read_to_their_end() {
    let files = Files::new();
    let renamed = files.log("renamed.log");
    let copied = files.log("copied.log");
    append(&renamed, numbered("r0", 0..100));
    append(&copied, numbered("c0", 0..100));
    files.start_and_wait("", 200).await.shutdown().await;
    // While stopped: more lines, then rename-and-create and copytruncate.
    append(&renamed, numbered("r1", 0..50));
    std::fs::rename(&renamed, files.log("renamed.log.1")).unwrap();
    append(&renamed, numbered("r2", 0..20));
    append(&copied, numbered("c1", 0..50));
    std::fs::copy(&copied, files.log("copied.log.1")).unwrap();
    std::fs::write(&copied, "").unwrap();
    append(&copied, numbered("c2", 0..20));
    let server = files.start("").await;
    files
        .assert_logged(runs(&[
            ("r0", 0..100),
            ("c0", 0..100),
            ("r1", 0..50),
            ("c1", 0..50),
            ("r2", 0..20),
            ("c2", 0..20),
        ]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiline_filter_joins_a_java_trace_in_a_tailed_file() {
    let files = Files::new();
    let trace = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/multiline/java-exception.log"),
    )
    .unwrap();
    // Two files written line by line, interleaved: each file is its own stream.
    let (a, b) = (files.log("a.log"), files.log("b.log"));
    let filters = "[[filters]]\ntype = \"multiline\"\nmode = \"java\"\nflush_timeout = \"500ms\"\n";
    let server = start(
        files.dir(),
        &format!("{}{filters}", config(files.dir(), "")),
    )
    .await;
    for line in trace.lines() {
        append(&a, [line.to_owned()]);
        append(&b, [line.to_owned()]);
    }
    let lines = files.logged(14).await;
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
    let files = Files::new();
    let app = files.log("app.log");
    // A header longer than the fingerprint, the same in every generation of the file.
    let header = format!("HEADER {}", "h".repeat(300));
    append(
        &app,
        [header.clone()]
            .into_iter()
            .chain(numbered("before", 0..20)),
    );
    let server = files.start_and_wait("", 21).await;
    std::fs::write(&app, "").unwrap();
    append(
        &app,
        [header.clone()].into_iter().chain(numbered("after", 0..10)),
    );
    files.wait(32).await;
    server.shutdown().await;
    let server = files.start("").await;
    append(&app, numbered("after", 10..15));
    let mut got = files.logged(37).await;
    let headers = got.iter().filter(|l| **l == header).count();
    assert_eq!(headers, 2);
    got.retain(|l| *l != header);
    assert_once(&got, runs(&[("before", 0..20), ("after", 0..15)]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_unchanged_for_longer_than_ignore_older_are_read_once_they_change() {
    let files = Files::new();
    let old = files.log("old.log");
    append(&old, numbered("stale", 0..5));
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    append(&files.log("new.log"), numbered("fresh", 0..5));
    let server = files.start("ignore_older = \"1h\"").await;
    files.assert_logged(numbered("fresh", 0..5)).await;
    append(&old, numbered("revived", 0..3));
    files
        .assert_logged(runs(&[("fresh", 0..5), ("revived", 0..3)]))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_files_are_followed_at_once() {
    let files = Files::new();
    // Kept under the usual 1,024 open files of a test process.
    for f in 0..500 {
        append(
            &files.log(&format!("f{f:03}.log")),
            numbered(&format!("f{f:03}"), 0..4),
        );
    }
    let server = files.start_and_wait("", 2000).await;
    for f in 0..500 {
        append(
            &files.log(&format!("f{f:03}.log")),
            numbered(&format!("f{f:03}"), 4..5),
        );
    }
    files
        .assert_logged((0..500).flat_map(|f| numbered(&format!("f{f:03}"), 0..5)))
        .await;
    server.shutdown().await;
}
