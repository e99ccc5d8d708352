//! `type = "file"`: the file output's settings.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::PathTemplate;
use crate::config::{BatchConfig, FileCompression, RetryConfig};

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutputConfig {
    /// Path template: `{{tag}}` is the event's tag, `{{tag[N]}}` its N-th dot-separated part,
    /// and strftime specifiers (`%Y`, `%m`, `%d`, `%H`...) the event's time in UTC.
    pub path: String,
    /// `none` or `gzip` (which adds `.gz` to the path unless it ends with it).
    #[serde(default)]
    pub compression: FileCompression,
    /// Rotate a file once it reaches this size.
    #[serde(default)]
    pub rotate_size: Option<ByteSize>,
    /// Rotate a file once it has been open this long.
    #[serde(default, with = "humantime_serde")]
    pub rotate_interval: Option<Duration>,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl FileOutputConfig {
    /// Checks the settings and compiles the path template, once; the error starts with the
    /// key (`path: ...`).
    pub fn check(&self) -> Result<FileSinkSpec, String> {
        let gzip = self.compression == FileCompression::Gzip;
        let mut template = PathTemplate::parse(&self.path).map_err(|m| format!("path: {m}"))?;
        if gzip && !self.path.ends_with(".gz") {
            template = template.followed_by(".gz");
        }
        Ok(FileSinkSpec {
            template,
            gzip,
            rotate_size: self.rotate_size.map(|s| s.as_u64()),
            rotate_interval: self.rotate_interval,
        })
    }
}

/// A file output's checked settings, its path template compiled: what the sink is built from.
#[derive(Debug, Clone)]
pub struct FileSinkSpec {
    pub(super) template: PathTemplate,
    pub(super) gzip: bool,
    pub(super) rotate_size: Option<u64>,
    pub(super) rotate_interval: Option<Duration>,
}
