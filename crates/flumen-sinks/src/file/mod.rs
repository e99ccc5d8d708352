//! The file output: JSON lines (as the stdout output writes them) in files named by a template
//! of the tag and the event time, rotated by size and age, optionally gzip-compressed.
//!
//! A file is rotated by renaming it with a UTC timestamp (`app.log` → `app.log.20261121T120000`,
//! `app.log.gz` → `app.20261121T120000.log.gz`) and starting a new one under the template's
//! name, so tools can keep following the current name. With gzip, every delivery is appended as
//! its own gzip member: the file is valid (and `zcat`-able) after every write.

mod config;
pub use config::{FileOutputConfig, FileSinkSpec};

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::format::{Item, StrftimeItems};
use flumen_event::EventTime;

use crate::template::{Token, split_placeholders};
use crate::{Delivery, DeliveryError, Items, Outcome, render_event};

/// A path template: literal text with strftime specifiers, `{{tag}}` and `{{tag[N]}}`.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    parts: Vec<Piece>,
    uses_time: bool,
}

#[derive(Debug, Clone)]
enum Piece {
    /// Text, possibly with strftime specifiers.
    Text(String),
    /// The whole tag.
    Tag,
    /// One dot-separated part of the tag.
    TagPart(usize),
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("the path is empty".into());
        }
        let mut parts = Vec::new();
        for token in split_placeholders(template) {
            parts.push(match token? {
                Token::Text(text) => Piece::Text(text.to_owned()),
                Token::Placeholder(name) => match name.trim() {
                    "tag" => Piece::Tag,
                    name => {
                        let index = name
                            .strip_prefix("tag[")
                            .and_then(|n| n.strip_suffix(']'))
                            .and_then(|n| n.trim().parse().ok())
                            .ok_or_else(|| format!("unknown placeholder {{{{{name}}}}}: use {{{{tag}}}} or {{{{tag[N]}}}}"))?;
                        Piece::TagPart(index)
                    }
                },
            });
        }
        let mut uses_time = false;
        for part in &parts {
            if let Piece::Text(text) = part {
                if StrftimeItems::new(text).any(|item| matches!(item, Item::Error)) {
                    return Err(format!("invalid strftime specifier in {text:?}"));
                }
                uses_time |= text.contains('%');
            }
        }
        Ok(Self { parts, uses_time })
    }

    /// This template with literal `text` after it (no placeholders or strftime specifiers in
    /// it are expanded).
    pub fn followed_by(mut self, text: &str) -> Self {
        self.parts.push(Piece::Text(text.replace('%', "%%")));
        self
    }

    /// The path for an event with `tag` at `time`.
    pub fn render(&self, tag: &str, time: EventTime) -> PathBuf {
        let datetime = time.to_datetime().unwrap_or_default();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Piece::Text(text) if text.contains('%') => {
                    out.push_str(&datetime.format(text).to_string())
                }
                Piece::Text(text) => out.push_str(text),
                Piece::Tag => out.push_str(&path_safe(tag)),
                Piece::TagPart(n) => out.push_str(&path_safe(tag.split('.').nth(*n).unwrap_or(""))),
            }
        }
        PathBuf::from(out)
    }
}

/// A tag is sender-controlled: it must not climb out of the directory it is put in.
fn path_safe(text: &str) -> String {
    match text {
        "" => "_".to_owned(),
        "." | ".." => text.replace('.', "_"),
        _ => text.replace(['/', '\0'], "_"),
    }
}

struct OpenFile {
    file: File,
    size: u64,
    opened: Instant,
}

/// The lines of one delivery bound for one file.
#[derive(Default)]
struct FileLines {
    bytes: Vec<u8>,
    /// For each event, its position in the delivery and where its line ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl FileLines {
    /// The positions of the events whose lines do not fit in the first `written` bytes.
    fn events_after(&self, written: usize) -> Vec<usize> {
        self.ends
            .iter()
            .filter(|(_, end)| *end > written)
            .map(|(position, _)| *position)
            .collect()
    }
}

/// A write that failed after the first `written` bytes of its lines were in files.
struct WriteFailure {
    written: usize,
    error: std::io::Error,
}

/// Appends `bytes` to `open`, or, if that fails, cuts the file back to its previous length:
/// a partial line or gzip member left behind would have the next write appended after it,
/// corrupting the file (a gzip file would stop being readable from there).
fn append(open: &mut OpenFile, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // The length now rather than the one counted since the file was opened: another program
    // may have truncated it (copytruncate) meanwhile, and cutting back must not extend it.
    let before = open.file.metadata()?.len();
    match open.file.write_all(bytes) {
        Ok(()) => {
            open.size = before + bytes.len() as u64;
            Ok(())
        }
        Err(error) => {
            if let Err(cut) = open.file.set_len(before) {
                tracing::error!(
                    message = "A failed write could not be cut back out of its file: it ends with a partial line or gzip member.",
                    path = %path.display(),
                    size = before,
                    %cut,
                );
            }
            Err(error)
        }
    }
}

/// The delivery error for a failed write to `path`: permanent when writing the same events to
/// the same file again cannot succeed (the name is too long or invalid, the file cannot grow,
/// a directory is in the way), so that they are dead-lettered at once instead of holding up
/// the output for the whole retry budget; retryable otherwise (a full disk, permissions).
fn delivery_error(path: &Path, error: &std::io::Error) -> DeliveryError {
    use std::io::ErrorKind;
    let message = format!("{}: {error}", path.display());
    match error.kind() {
        ErrorKind::InvalidFilename
        | ErrorKind::InvalidInput
        | ErrorKind::FileTooLarge
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory => DeliveryError::permanent(message),
        _ => DeliveryError::retryable(message),
    }
}

/// Writes events to files.
pub struct FileSink {
    template: PathTemplate,
    gzip: bool,
    rotate_size: Option<u64>,
    rotate_interval: Option<Duration>,
    open: HashMap<PathBuf, OpenFile>,
    /// The last path rendered per tag, and the second it was rendered for.
    paths: HashMap<String, (u64, PathBuf)>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// Files kept open at once; past this, all are closed and reopened on demand.
const MAX_OPEN_FILES: usize = 256;

impl FileSink {
    /// A sink for a configuration, checked here (servers build from a [`FileSinkSpec`]).
    pub fn new(config: &FileOutputConfig) -> Result<Self, String> {
        Ok(Self::from_spec(config.check()?))
    }

    /// A sink for checked settings.
    pub fn from_spec(spec: FileSinkSpec) -> Self {
        Self {
            template: spec.template,
            gzip: spec.gzip,
            rotate_size: spec.rotate_size,
            rotate_interval: spec.rotate_interval,
            open: HashMap::new(),
            paths: HashMap::new(),
        }
    }

    fn path_for(&mut self, tag: &str, time: EventTime) -> &PathBuf {
        let second = if self.template.uses_time {
            time.secs
        } else {
            0
        };
        if self
            .paths
            .get(tag)
            .is_none_or(|(cached_second, _)| *cached_second != second)
        {
            let path = self.template.render(tag, time);
            if self.paths.len() >= MAX_OPEN_FILES * 16 {
                self.paths.clear();
            }
            self.paths.insert(tag.to_owned(), (second, path));
        }
        &self.paths[tag].1
    }

    /// Writes a delivery, file by file; blocking file I/O (the caller runs it where blocking
    /// is allowed). A file that fails takes only its own unwritten events with it.
    pub(crate) fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let mut outcome = Outcome::delivered();
        for (path, lines) in self.lines_by_file(delivery) {
            if let Err(failure) = self.write(&path, &lines.bytes) {
                let unwritten = Items::positions(lines.events_after(failure.written));
                outcome = outcome.fail(unwritten, delivery_error(&path, &failure.error));
            }
        }
        outcome
    }

    /// The delivery's events as JSON lines, gathered by the file they go to.
    fn lines_by_file(&mut self, delivery: &Delivery) -> HashMap<PathBuf, FileLines> {
        let mut files: HashMap<PathBuf, FileLines> = HashMap::new();
        for (position, (tag, entry)) in delivery.events().enumerate() {
            let path = self.path_for(tag, entry.time);
            // Events of a delivery mostly share a path: it is copied once, for the first.
            if !files.contains_key(path) {
                files.insert(path.clone(), FileLines::default());
            }
            let lines = files.get_mut(path).expect("inserted above");
            render_event(&mut lines.bytes, tag, &entry);
            lines.ends.push((position, lines.bytes.len()));
        }
        files
    }

    /// Appends whole lines to `path`, rotating first when the file is too old, and between
    /// lines whenever the next ones would take it past `rotate_size` — a delivery larger than
    /// the limit is spread over several files rather than overshooting it. On failure, says
    /// how much of `lines` is in files: a write that fails is cut back out of its file.
    fn write(&mut self, path: &Path, lines: &[u8]) -> Result<(), WriteFailure> {
        let mut rest = lines;
        let failed_after = |rest: &[u8], error| WriteFailure {
            written: lines.len() - rest.len(),
            error,
        };
        let max_age = self.rotate_interval;
        let too_old = |open: &OpenFile| max_age.is_some_and(|max| open.opened.elapsed() >= max);
        if self.open.get(path).is_some_and(too_old) {
            self.open.remove(path);
            rotate_or_keep(path);
        }
        while !rest.is_empty() {
            let size = self
                .open_file(path)
                .map_err(|e| failed_after(rest, e))?
                .size;
            let take = match self.rotate_size {
                None => rest.len(),
                Some(max) => match whole_lines_within(rest, max.saturating_sub(size)) {
                    0 if size > 0 => {
                        self.open.remove(path);
                        if rotate_or_keep(path) {
                            continue;
                        }
                        // Kept: the rest goes on into the full file rather than nowhere.
                        rest.len()
                    }
                    // A single line longer than the limit goes alone into a fresh file.
                    0 => first_line_len(rest),
                    n => n,
                },
            };
            let bytes = if self.gzip {
                Cow::Owned(gzip_member(&rest[..take]).map_err(|e| failed_after(rest, e))?)
            } else {
                Cow::Borrowed(&rest[..take])
            };
            let open = self.open_file(path).map_err(|e| failed_after(rest, e))?;
            if let Err(error) = append(open, path, &bytes) {
                self.open.remove(path);
                return Err(failed_after(rest, error));
            }
            rest = &rest[take..];
        }
        Ok(())
    }

    /// The open file at `path`, opened (and its directory created) if need be.
    fn open_file(&mut self, path: &Path) -> std::io::Result<&mut OpenFile> {
        if !self.open.contains_key(path) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.open.clear();
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            let size = file.metadata()?.len();
            self.open.insert(
                path.to_owned(),
                OpenFile {
                    file,
                    size,
                    opened: Instant::now(),
                },
            );
        }
        Ok(self.open.get_mut(path).expect("opened above"))
    }
}

/// The length of the longest prefix of `lines` made of whole lines and at most `room` bytes.
fn whole_lines_within(lines: &[u8], room: u64) -> usize {
    let limit = lines.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    if limit == lines.len() {
        return limit;
    }
    lines[..limit]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

fn first_line_len(lines: &[u8]) -> usize {
    lines
        .iter()
        .position(|&b| b == b'\n')
        .map_or(lines.len(), |i| i + 1)
}

fn gzip_member(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    gz.write_all(data)?;
    gz.finish()
}

/// Rotates `path` (see [`rotate`]); true if it did. A file that cannot be rotated (its name
/// with a timestamp added is too long, say) is kept and written on: rotation only tidies up,
/// and must not cost the lines their file.
fn rotate_or_keep(path: &Path) -> bool {
    match rotate(path) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(message = "Cannot rotate a file; writing on to it.", path = %path.display(), %error);
            false
        }
    }
}

/// Renames a full file out of the way, with a UTC timestamp before its `.gz` (if any).
fn rotate(path: &Path) -> std::io::Result<()> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let (stem, ext) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, ".gz"),
        None => (name, ""),
    };
    for n in 0u32.. {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let target = path.with_file_name(format!("{stem}.{stamp}{suffix}{ext}"));
        if !target.exists() {
            return fs::rename(path, target);
        }
    }
    unreachable!("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tag_parts_and_time() {
        let t = PathTemplate::parse("/var/log/{{tag[0]}}/%Y/%m/%d/{{ tag }}.log").unwrap();
        let path = t.render("frontend.web", EventTime::new(1_700_000_000, 0));
        assert_eq!(
            path,
            PathBuf::from("/var/log/frontend/2023/11/14/frontend.web.log")
        );
    }

    #[test]
    fn tags_cannot_escape_the_directory() {
        let t = PathTemplate::parse("/out/{{tag[1]}}/{{tag}}").unwrap();
        assert_eq!(
            t.render("a...", EventTime::default()),
            PathBuf::from("/out/_/a...")
        );
        assert_eq!(
            t.render("x/../../etc", EventTime::default()),
            PathBuf::from("/out/_/x_.._.._etc")
        );
    }

    /// A sink writing to `{{tag}}.log` (`.gz` with `gzip`) in `dir`, with `options`.
    fn sink_in(dir: &Path, gzip: bool, options: &str) -> FileSink {
        let compression = if gzip { "gzip" } else { "none" };
        let config: FileOutputConfig = toml::from_str(&format!(
            "path = {:?}\ncompression = {compression:?}\n{options}",
            dir.join("{{tag}}.log").display().to_string()
        ))
        .unwrap();
        FileSink::new(&config).unwrap()
    }

    /// A record with one field, `pad`, holding `pad`.
    fn padded(pad: &str) -> Vec<u8> {
        let mut record = Vec::new();
        rmp::encode::write_map_len(&mut record, 1).unwrap();
        rmp::encode::write_str(&mut record, "pad").unwrap();
        rmp::encode::write_str(&mut record, pad).unwrap();
        record
    }

    /// A delivery of one batch with tag `tag` and `records`, the i-th at second i.
    fn delivery_of(tag: &str, records: &[Vec<u8>]) -> Delivery {
        let mut entries = Vec::new();
        for (i, record) in (0..).zip(records) {
            flumen_event::entry::write_entry(&mut entries, EventTime::new(i, 0), record);
        }
        let builder =
            flumen_event::BatchBuilder::new(flumen_event::TenantId::default_tenant(), "").unwrap();
        let count = records.len() as u32;
        let mut delivery = Delivery::default();
        delivery.push(
            0,
            builder.encode(tag, b"", count, &entries).unwrap().into(),
            count,
        );
        delivery
    }

    #[test]
    fn a_delivery_larger_than_rotate_size_is_spread_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink_in(dir.path(), false, "rotate_size = \"2KiB\"");
        let records = vec![padded(&"p".repeat(200)); 50];
        assert!(sink.deliver(&delivery_of("big", &records)).is_delivered());

        let files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 5, "{files:?}");
        let mut lines = 0;
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            assert!(
                text.len() <= 2048,
                "{} has {} bytes",
                file.display(),
                text.len()
            );
            assert!(text.ends_with('\n'));
            lines += text.lines().count();
        }
        assert_eq!(lines, 50, "every event, once");
    }

    #[test]
    fn lines_for_a_file_that_cannot_be_rotated_are_written_to_it_anyway() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink_in(dir.path(), false, "rotate_size = \"1KiB\"");
        // `<tag>.log` fits in a file name; with a rotation stamp added it does not.
        let tag = "r".repeat(245);
        let records = vec![padded(&"p".repeat(200)); 10];
        for _ in 0..2 {
            assert!(sink.deliver(&delivery_of(&tag, &records)).is_delivered());
        }
        let text = fs::read_to_string(dir.path().join(format!("{tag}.log"))).unwrap();
        assert_eq!(text.lines().count(), 20, "every line, in the one file");
    }

    /// Set in the child process [`a_write_cut_short_by_the_file_size_limit_leaves_a_valid_gzip_file`]
    /// starts: the directory to write in.
    const LIMITED_CHILD_DIR: &str = "FLUMEN_TEST_FILE_SIZE_LIMITED_DIR";

    #[test]
    fn a_write_cut_short_by_the_file_size_limit_leaves_a_valid_gzip_file() {
        match std::env::var_os(LIMITED_CHILD_DIR) {
            Some(dir) => write_gzip_deliveries_past_the_file_size_limit(Path::new(&dir)),
            None => run_under_a_file_size_limit(
                "a_write_cut_short_by_the_file_size_limit_leaves_a_valid_gzip_file",
            ),
        }
    }

    /// Runs test `name` of this binary again in a child process whose files cannot grow past a
    /// few dozen KiB (RLIMIT_FSIZE, which is per process: the tests beside this one must not
    /// feel it), with SIGXFSZ ignored so that a write past the limit fails with EFBIG.
    fn run_under_a_file_size_limit(name: &str) {
        let dir = tempfile::tempdir().unwrap();
        let test = format!("{}::{name}", module_path!().split_once("::").unwrap().1);
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 64 && exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--nocapture", "--test-threads=1"])
            .env(LIMITED_CHILD_DIR, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the child test failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    }

    /// Gzip deliveries of incompressible lines until one fails at the file size limit, then a
    /// small one that fits again; the file must hold exactly the delivered lines, readable.
    fn write_gzip_deliveries_past_the_file_size_limit(dir: &Path) {
        let mut sink = sink_in(dir, true, "");
        let mut delivered = Vec::new();
        let mut failed = false;
        for round in 0..100 {
            let pads: Vec<String> = (0..20).map(|_| random_text(1000)).collect();
            let records: Vec<_> = pads.iter().map(|pad| padded(pad)).collect();
            let delivery = delivery_of("limited", &records);
            let outcome = sink.deliver(&delivery);
            match outcome.is_delivered() {
                true => delivered.extend(pads),
                false => {
                    let parts = outcome.undelivered(&delivery);
                    assert_eq!(parts.len(), 1, "round {round}");
                    let (part, error) = &parts[0];
                    assert_eq!(part.events, 20, "the whole delivery is undelivered");
                    assert!(!error.retryable, "a file that cannot grow: {error}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the file size limit was never reached");
        // The failed write was cut back out, so a small delivery fits again.
        assert!(
            sink.deliver(&delivery_of("limited", &[padded("after")]))
                .is_delivered()
        );
        delivered.push("after".to_owned());

        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(File::open(dir.join("limited.log.gz")).unwrap()),
            &mut text,
        )
        .expect("a valid gzip file");
        let pads: Vec<String> = text
            .lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                event["record"]["pad"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(pads, delivered, "every delivered line once, nothing else");
    }

    /// `len` random letters and digits: text gzip cannot shrink much.
    fn random_text(len: usize) -> String {
        std::iter::repeat_with(fastrand::alphanumeric)
            .take(len)
            .collect()
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(PathTemplate::parse("/x/{{tag").is_err());
        assert!(PathTemplate::parse("/x/{{host}}").is_err());
        assert!(PathTemplate::parse("").is_err());
    }
}
