//! The file output: JSON lines (as the stdout output writes them) in files named by a template
//! of the tag and the event time, rotated by size and age, optionally gzip-compressed.
//!
//! A file is rotated by renaming it with a UTC timestamp (`app.log` → `app.log.20261121T120000`,
//! `app.log.gz` → `app.20261121T120000.log.gz`) and starting a new one under the template's
//! name, so tools can keep following the current name. With gzip, every delivery is appended as
//! its own gzip member: the file is valid (and `zcat`-able) after every write.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::format::{Item, StrftimeItems};
use flumen_event::EventTime;

use super::template::{Token, split_placeholders};
use super::{Delivery, DeliveryError, render_event};
use crate::config::{FileCompression, FileOutputConfig};

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
    /// A sink for a validated configuration.
    pub fn new(config: &FileOutputConfig) -> Result<Self, String> {
        let gzip = config.compression == FileCompression::Gzip;
        let mut path = config.path.clone();
        if gzip && !path.ends_with(".gz") {
            path.push_str(".gz");
        }
        Ok(Self {
            template: PathTemplate::parse(&path)?,
            gzip,
            rotate_size: config.rotate_size.map(|s| s.as_u64()),
            rotate_interval: config.rotate_interval,
            open: HashMap::new(),
            paths: HashMap::new(),
        })
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

    /// Writes a delivery; blocking file I/O (the caller runs it where blocking is allowed).
    pub(crate) fn deliver(&mut self, delivery: &Delivery) -> Result<(), DeliveryError> {
        let mut lines: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        for (tag, entry) in delivery.events() {
            let path = self.path_for(tag, entry.time);
            // Events of a delivery mostly share a path: it is copied once, for the first.
            match lines.get_mut(path) {
                Some(buf) => render_event(buf, tag, &entry),
                None => {
                    let mut buf = Vec::new();
                    render_event(&mut buf, tag, &entry);
                    lines.insert(path.clone(), buf);
                }
            }
        }
        for (path, buf) in lines {
            self.write(&path, &buf)
                .map_err(|e| DeliveryError::retryable(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Appends whole lines to `path`, rotating first when the file is too old, and between
    /// lines whenever the next ones would take it past `rotate_size` — a delivery larger than
    /// the limit is spread over several files rather than overshooting it.
    fn write(&mut self, path: &Path, lines: &[u8]) -> std::io::Result<()> {
        let max_age = self.rotate_interval;
        let too_old = |open: &OpenFile| max_age.is_some_and(|max| open.opened.elapsed() >= max);
        if self.open.get(path).is_some_and(too_old) {
            self.open.remove(path);
            rotate(path)?;
        }
        let mut rest = lines;
        while !rest.is_empty() {
            let size = self.open_file(path)?.size;
            let take = match self.rotate_size {
                None => rest.len(),
                Some(max) => match whole_lines_within(rest, max.saturating_sub(size)) {
                    0 if size > 0 => {
                        self.open.remove(path);
                        rotate(path)?;
                        continue;
                    }
                    // A single line longer than the limit goes alone into a fresh file.
                    0 => first_line_len(rest),
                    n => n,
                },
            };
            let bytes = if self.gzip {
                Cow::Owned(gzip_member(&rest[..take])?)
            } else {
                Cow::Borrowed(&rest[..take])
            };
            let open = self.open_file(path)?;
            if let Err(error) = open.file.write_all(&bytes) {
                self.open.remove(path);
                return Err(error);
            }
            open.size += bytes.len() as u64;
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

    #[test]
    fn a_delivery_larger_than_rotate_size_is_spread_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let config: FileOutputConfig = toml::from_str(&format!(
            "path = {:?}\nrotate_size = \"2KiB\"",
            dir.path().join("{{tag}}.log").display().to_string()
        ))
        .unwrap();
        let mut sink = FileSink::new(&config).unwrap();
        let mut entries = Vec::new();
        let mut record = Vec::new();
        rmp::encode::write_map_len(&mut record, 1).unwrap();
        rmp::encode::write_str(&mut record, "pad").unwrap();
        rmp::encode::write_str(&mut record, &"p".repeat(200)).unwrap();
        for i in 0..50 {
            flumen_event::entry::write_entry(&mut entries, EventTime::new(i, 0), &record);
        }
        let builder =
            flumen_event::BatchBuilder::new(flumen_event::TenantId::default_tenant(), "").unwrap();
        let mut delivery = Delivery::default();
        delivery.push(
            0,
            builder.encode("big", b"", 50, &entries).unwrap().into(),
            50,
        );
        sink.deliver(&delivery).unwrap();

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
    fn bad_templates_are_refused() {
        assert!(PathTemplate::parse("/x/{{tag").is_err());
        assert!(PathTemplate::parse("/x/{{host}}").is_err());
        assert!(PathTemplate::parse("").is_err());
    }
}
