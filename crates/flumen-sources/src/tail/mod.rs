//! The tail source: follows log files, as Fluent Bit's `tail` and Vector's `file` do, and stores
//! every line exactly once — across rotations, truncations and crashes.
//!
//! ```toml
//! [sources.app]
//! type = "tail"
//! paths = ["/var/log/app/*.log"]
//! exclude = ["*.gz"]
//! tag = "app.*"            # `*` becomes the file's path: app.var.log.app.api.log
//! ```
//!
//! Each line becomes one event, `{"log": "<the line>", "filename": "<the path>"}`, timed when it
//! was read, under the source's tag. The `log` field is Fluent Bit's and Docker's, so the same
//! filters (multiline, parse) apply to tailed files and to Docker's records.
//!
//! # Configuration
//!
//! | key | default | |
//! |---|---|---|
//! | `paths` | required | Glob patterns (`*`, `?`, `[a-z]`, `**` for any depth) of the files to follow. Relative patterns are relative to flumen's working directory. Files that appear later are picked up. |
//! | `exclude` | `[]` | Glob patterns of files not to follow; a pattern without `/` is matched against the file name (`*.gz`), one with `/` against the whole path. |
//! | `tag` | `"tail"` | The events' tag. A `*` in it is replaced by the file's path with `/` turned into `.` (Fluent Bit's `Tag tail.*`). |
//! | `label` | `""` | The route label. |
//! | `read_from` | `"beginning"` | Where to start in files found at the source's first start (no position file): `beginning` or `end`. Files found later, and every file once a position file exists, are read from their beginning (or their saved position), so nothing written while flumen was down is lost. |
//! | `field` | `"log"` | The field holding the line. |
//! | `path_field` | `"filename"` | The field holding the file's path (the multiline filter tells streams apart by it); `""` leaves it out. |
//! | `max_line_size` | `"64KiB"` | The longest line; see `long_lines`. At least 16 bytes, at most 16 MiB. |
//! | `long_lines` | `"split"` | What to do with longer lines: `split` (pieces of `max_line_size`, nothing lost) or `skip` (dropped, counted). |
//! | `position_file` | `<data_dir>/tail/<source>.pos` | Where positions are kept. |
//! | `position_interval` | `"1s"` | How often positions are written (when they moved), and at shutdown. |
//! | `poll_interval` | `"1s"` | How often the patterns are matched again and every file is checked for growth: the fallback for what inotify does not report (network file systems, a full event queue, inotify off). |
//! | `rotate_wait` | `"5s"` | How long a file that was renamed away or deleted is still read after its last growth before it is closed (Fluent Bit's `Rotate_Wait`). |
//! | `ignore_older` | none | Files found without a position whose last change is older than this are not read until they change again; then from where they ended (Vector's `ignore_older_secs`). |
//! | `inotify` | `true` | Watch the patterns' directories with inotify; `false` polls only. |
//!
//! # How files are followed
//!
//! - **Discovery**: the patterns are matched at start, on every inotify event in their
//!   directories, and every `poll_interval`. Symbolic links are followed. A path that is a
//!   directory or not a regular file is reported once (warning) and skipped; if it becomes a
//!   file later it is followed.
//! - **Identity**: a file is its device and inode, plus a fingerprint (CRC32C of its first
//!   256 bytes, fewer while it is shorter) and a generation, so that a reused inode number or
//!   a file truncated and written again (even with the same first bytes) is new content. The
//!   name does not matter: a file renamed to another matching name is the same file, and its
//!   events keep the `filename` and tag of the name it had when it was opened.
//! - **Rename-and-create rotation**: the renamed file stays open and is read to its end; it is
//!   closed once it has not grown for `rotate_wait`. The new file at the old name is read from
//!   its beginning.
//! - **Truncation and copytruncate**: a file shorter than what was read, or whose first bytes
//!   changed, was truncated. If a copy of it (same first bytes, the same last bytes read — up
//!   to 256, at the same offset —, at least as long as what was read, another inode, in the
//!   same directory and not matched by `paths`) is there — what logrotate's `copytruncate`
//!   makes — the unread end is read from the copy. The last bytes read tell the copy apart
//!   from older copies that start alike (a fixed header) and make a file whose first line was
//!   short when it was first read recognisable; before any of its lines are stored, a copy is
//!   only taken on a fingerprint of at least 64 bytes. Then the file is
//!   read again from its beginning. A copy that `paths` does match is a file of its own, read
//!   whole: keep copies out of `paths` (the usual `app.log` and `app.log.1`), or expect their
//!   lines twice.
//! - **Lines**: a line ends with `\n` (`\r\n` too). A last line without its newline is not
//!   read until the newline comes, or the file is closed after rotation. Lines over
//!   `max_line_size` are split or skipped (`long_lines`); lines that are not UTF-8 are kept,
//!   with U+FFFD in place of the bytes that are not. A file whose first bytes hold NUL bytes
//!   and are not UTF-8 (gzip, an executable) is binary: reported as an error once, not read.
//! - **Restarts**: a file renamed away or copied and truncated while flumen was down is looked
//!   for, by inode and fingerprint (and for a copy, the last bytes stored), in the directory
//!   where it was and in the patterns' directories, and its unread end is read.
//!
//! # Exactly once
//!
//! Lines are appended to the log in chunks, each the whole lines of one read from one file
//! (a partial last line is never appended: it is read again with its newline), with a chunk id
//! naming the file's identity, the byte range and a CRC32C of the range's last bytes (up to
//! 256), `tail:<source>:<dev>:<ino>:<fingerprint>:<generation>:<start>-<end>:<check>` (see
//! `positions`).
//! Once a chunk is durable (its [`ChunkAck`](crate::ingest::chunks::ChunkAck) resolves — for lines a multiline filter
//! holds, once the joined event is durable), its end becomes the file's committed offset. The
//! position file stores committed offsets, written atomically every `position_interval`, with
//! a sequence number of the log from which every later chunk of this source is found.
//!
//! After a crash, the positions saved lag behind what the log holds. On start, the source reads
//! the log's batch headers from that sequence number on and takes, per file, the end of the last
//! chunk stored: the file resumes at the greater of the two. A line is thus neither lost (only
//! durable ranges count) nor stored twice (every durable range is known), without the chunk's
//! contents having to be the same when read again — the events' time is the time of reading.
//!
//! Limits of the promise: a chunk whose lines a joining filter held when flumen crashed is
//! stored without its id (`Ingest` cannot vouch for it), so those lines may be stored again; a
//! file rotated twice while flumen was down is lost when `paths` does not match the rotated
//! names (the middle one is never seen), as with every tailer; the log segments read back on
//! start must not have been removed, which they are only once every output has delivered them
//! and a newer segment exists. Lines a joining filter holds at a graceful stop are not stored
//! then: they are read again, and joined, at the next start.
//!
//! Metrics (label `source`): `flumen_tail_files` (files open), `flumen_tail_read_bytes_total`,
//! `flumen_tail_rotations_total` (`kind`: `moved` — renamed away or deleted — or `truncated`),
//! `flumen_tail_long_lines_total`, `flumen_tail_invalid_utf8_lines_total`,
//! `flumen_tail_errors_total` (`kind`: `not_a_file`, `open`, `read`, `binary`, `rejected`,
//! `position_file`); the events themselves count in `flumen_source_events_total`.

mod lines;
mod positions;
mod tailer;

mod config;
pub use config::{GlobPattern, LongLines, ReadFrom, TailConfig};

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;

use super::SourceShared;

/// The configuration, checked and made ready to use.
#[derive(Debug)]
struct Settings {
    /// Absolute patterns.
    patterns: Vec<glob::Pattern>,
    /// Excluded: (pattern, matched against the file name only).
    exclude: Vec<(glob::Pattern, bool)>,
    /// Directories to watch: (directory, recursively).
    watch_dirs: Vec<(PathBuf, bool)>,
    tag: String,
    label: String,
    read_from: ReadFrom,
    field: String,
    path_field: String,
    max_line: usize,
    long_lines: LongLines,
    position_file: Option<PathBuf>,
    position_interval: Duration,
    poll_interval: Duration,
    rotate_wait: Duration,
    ignore_older: Option<Duration>,
    inotify: bool,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Settings {
    fn new(config: &TailConfig) -> Result<Self, String> {
        let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
        let mut patterns = Vec::new();
        let mut watch_dirs: Vec<(PathBuf, bool)> = Vec::new();
        for pattern in &config.paths {
            let absolute: PathBuf = cwd.join(pattern.as_str()).components().collect();
            let text = absolute
                .to_str()
                .ok_or_else(|| format!("paths: {:?} is not UTF-8", pattern.as_str()))?;
            patterns.push(
                glob::Pattern::new(text).map_err(|e| format!("paths: {:?}: {e}", pattern.text))?,
            );
            let (dir, recursive) = watch_dir(&absolute);
            if !watch_dirs.iter().any(|(d, r)| *d == dir && *r == recursive) {
                watch_dirs.push((dir, recursive));
            }
        }
        let exclude = config
            .exclude
            .iter()
            .map(|p| {
                let by_name = !p.text.contains('/');
                let pattern = if by_name {
                    p.pattern.clone()
                } else {
                    let absolute: PathBuf = cwd.join(p.as_str()).components().collect();
                    glob::Pattern::new(&absolute.to_string_lossy())
                        .map_err(|e| format!("exclude: {:?}: {e}", p.text))?
                };
                Ok((pattern, by_name))
            })
            .collect::<Result<_, String>>()?;
        if config.tag.is_empty() {
            return Err("tag: cannot be empty".into());
        }
        if config.field.is_empty() {
            return Err("field: cannot be empty".into());
        }
        if config.field == config.path_field {
            return Err("field and path_field must differ".into());
        }
        let max_line = config.max_line_size.as_u64();
        if !(16..=16 * 1024 * 1024).contains(&max_line) {
            return Err(format!(
                "max_line_size: {} is not between 16 B and 16 MiB",
                config.max_line_size
            ));
        }
        for (name, interval) in [
            ("poll_interval", config.poll_interval),
            ("position_interval", config.position_interval),
        ] {
            if interval < Duration::from_millis(10) {
                return Err(format!("{name}: must be at least 10ms"));
            }
        }
        Ok(Self {
            patterns,
            exclude,
            watch_dirs,
            tag: config.tag.clone(),
            label: config.label.clone(),
            read_from: config.read_from,
            field: config.field.clone(),
            path_field: config.path_field.clone(),
            max_line: max_line as usize,
            long_lines: config.long_lines,
            position_file: config.position_file.clone(),
            position_interval: config.position_interval,
            poll_interval: config.poll_interval,
            rotate_wait: config.rotate_wait,
            ignore_older: config.ignore_older,
            inotify: config.inotify,
        })
    }

    /// True if `path` is one of the files to follow.
    fn matches(&self, path: &Path) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches_path_with(path, MATCH))
            && !self.excluded(path)
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude.iter().any(|(pattern, by_name)| {
            if *by_name {
                path.file_name()
                    .is_some_and(|name| pattern.matches_with(&name.to_string_lossy(), MATCH))
            } else {
                pattern.matches_path_with(path, MATCH)
            }
        })
    }

    /// The tag of the file at `path`.
    fn tag_of(&self, path: &Path) -> String {
        if !self.tag.contains('*') {
            return self.tag.clone();
        }
        let text = path.to_string_lossy();
        let dotted = text.trim_start_matches('/').replace('/', ".");
        self.tag.replace('*', &dotted)
    }
}

/// The directory a pattern's files are in, and whether files may be below it (a wildcard in a
/// directory part): the part before the first component with a wildcard.
fn watch_dir(pattern: &Path) -> (PathBuf, bool) {
    let components: Vec<Component> = pattern.components().collect();
    let wild = |c: &Component| {
        c.as_os_str()
            .to_string_lossy()
            .contains(['*', '?', '[', ']'])
    };
    let first_wild = components.iter().position(wild);
    match first_wild {
        Some(index) => {
            let dir: PathBuf = components[..index].iter().collect();
            (dir, index + 1 < components.len())
        }
        None => {
            let dir: PathBuf = components[..components.len().saturating_sub(1)]
                .iter()
                .collect();
            (dir, false)
        }
    }
}

/// A tail source, checked and ready to run.
#[derive(Debug)]
pub struct TailSource {
    name: Arc<str>,
    settings: Arc<Settings>,
}

impl TailSource {
    /// Checks what `config` names (the patterns, the sizes); nothing is opened before
    /// [`TailSource::run`].
    pub async fn bind(name: &str, config: &TailConfig) -> std::io::Result<Self> {
        let settings = Settings::new(config).map_err(std::io::Error::other)?;
        Ok(Self {
            name: name.into(),
            settings: Arc::new(settings),
        })
    }

    /// None: the tail source does not listen.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Follows the files until `stop` turns true, then waits for what it appended to be
    /// durable and saves the positions.
    pub async fn run(self, shared: SourceShared, stop: watch::Receiver<bool>) {
        tailer::run(self.name, self.settings, shared, stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<TailConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_checks() {
        let c = config("paths = [\"/var/log/*.log\"]").unwrap();
        assert_eq!(c.tag, "tail");
        assert_eq!(c.field, "log");
        assert_eq!(c.path_field, "filename");
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(c.max_line_size, ByteSize::kib(64));
        assert!(c.inotify);
        assert!(config("paths = []").unwrap_err().contains("at least one"));
        assert!(config("paths = [\"/var/log/[.log\"]").is_err());
        assert!(config("paths = [\"/x\"]\nread_from = \"middle\"").is_err());
        let small = config("paths = [\"/x\"]\nmax_line_size = \"4B\"").unwrap();
        assert!(small.validate().unwrap_err().starts_with("max_line_size"));
        let same = config("paths = [\"/x\"]\nfield = \"filename\"").unwrap();
        assert!(same.validate().is_err());
    }

    #[test]
    fn patterns_match_paths_and_exclusions_names() {
        let c = config(
            "paths = [\"/var/log/app/*.log\", \"/srv/**/out.txt\"]\nexclude = [\"old-*\", \"/var/log/app/skip.log\"]",
        )
        .unwrap();
        let s = Settings::new(&c).unwrap();
        assert!(s.matches(Path::new("/var/log/app/api.log")));
        assert!(!s.matches(Path::new("/var/log/app/api.log.1")));
        assert!(!s.matches(Path::new("/var/log/app/sub/api.log")));
        assert!(!s.matches(Path::new("/var/log/app/old-api.log")));
        assert!(!s.matches(Path::new("/var/log/app/skip.log")));
        assert!(s.matches(Path::new("/srv/a/b/out.txt")));
        assert_eq!(
            s.watch_dirs,
            [
                (PathBuf::from("/var/log/app"), false),
                (PathBuf::from("/srv"), true)
            ]
        );
    }

    #[test]
    fn a_star_in_the_tag_becomes_the_path() {
        let c = config("paths = [\"/x\"]\ntag = \"tail.*\"").unwrap();
        let s = Settings::new(&c).unwrap();
        assert_eq!(
            s.tag_of(Path::new("/var/log/app.log")),
            "tail.var.log.app.log"
        );
        let c = config("paths = [\"/x\"]\ntag = \"app\"").unwrap();
        assert_eq!(Settings::new(&c).unwrap().tag_of(Path::new("/a/b")), "app");
    }
}
