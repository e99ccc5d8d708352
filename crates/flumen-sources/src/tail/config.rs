//! `type = "tail"`: the file tail's settings.
use super::*;

/// `type = "tail"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// Glob patterns of the files to follow.
    #[serde(deserialize_with = "non_empty")]
    pub paths: Vec<GlobPattern>,
    /// Glob patterns of files not to follow.
    #[serde(default)]
    pub exclude: Vec<GlobPattern>,
    /// The events' tag; `*` becomes the file's path with `/` as `.`.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// The route label of this source's events.
    #[serde(default)]
    pub label: String,
    /// Where files found at the first start are read from.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// The field holding the line.
    #[serde(default = "default_field")]
    pub field: String,
    /// The field holding the file's path ("" for none).
    #[serde(default = "default_path_field")]
    pub path_field: String,
    /// The longest line.
    #[serde(default = "default_max_line_size")]
    pub max_line_size: ByteSize,
    /// What to do with longer lines.
    #[serde(default)]
    pub long_lines: LongLines,
    /// Where positions are kept (default `<data_dir>/tail/<source>.pos`).
    #[serde(default)]
    pub position_file: Option<PathBuf>,
    /// How often positions are written.
    #[serde(default = "default_second", with = "humantime_serde")]
    pub position_interval: Duration,
    /// How often patterns are matched again and files checked without an inotify event.
    #[serde(default = "default_second", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a rotated-away file is still read after it last grew.
    #[serde(default = "default_rotate_wait", with = "humantime_serde")]
    pub rotate_wait: Duration,
    /// Files without a position unchanged for longer are not read until they change.
    #[serde(default, with = "humantime_serde")]
    pub ignore_older: Option<Duration>,
    /// Use inotify (else poll only).
    #[serde(default = "default_true")]
    pub inotify: bool,
}

impl TailConfig {
    /// Checks what the types alone cannot (sizes, intervals, field names); the error names the
    /// key.
    pub fn validate(&self) -> Result<(), String> {
        Settings::new(self).map(drop)
    }
}

fn default_tag() -> String {
    "tail".into()
}

fn default_field() -> String {
    "log".into()
}

fn default_path_field() -> String {
    "filename".into()
}

fn default_max_line_size() -> ByteSize {
    ByteSize::kib(64)
}

fn default_second() -> Duration {
    Duration::from_secs(1)
}

fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_true() -> bool {
    true
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GlobPattern>, D::Error> {
    let patterns = Vec::<GlobPattern>::deserialize(d)?;
    if patterns.is_empty() {
        return Err(serde::de::Error::custom("at least one pattern is needed"));
    }
    Ok(patterns)
}

/// Where files found at the first start are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From their first line (Vector's default): nothing already written is lost.
    #[default]
    Beginning,
    /// From their end (Fluent Bit's default): only lines written from now on.
    End,
}

/// What to do with a line longer than `max_line_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongLines {
    /// Cut it into pieces of `max_line_size` bytes, each its own event.
    #[default]
    Split,
    /// Drop it (counted in `flumen_tail_long_lines_total`).
    Skip,
}

/// A glob pattern, checked when the configuration is read.
#[derive(Debug, Clone)]
pub struct GlobPattern {
    pub(super) text: String,
    pub(super) pattern: glob::Pattern,
}

impl GlobPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for GlobPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom("a pattern cannot be empty"));
        }
        let pattern = glob::Pattern::new(&text)
            .map_err(|e| serde::de::Error::custom(format!("pattern {text:?}: {e}")))?;
        Ok(Self { text, pattern })
    }
}
