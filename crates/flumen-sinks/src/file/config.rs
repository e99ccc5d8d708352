//! `type = "file"`: the file output's settings.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

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
