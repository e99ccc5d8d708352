//! `type = "forward"`: the forward output's settings.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{BatchConfig, FileCompression, RetryConfig};

/// One destination server of a forward output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardServerConfig {
    /// `host:port`.
    pub address: String,
    /// Share of the traffic relative to the other servers.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Only used when no other server is available.
    #[serde(default)]
    pub standby: bool,
}

fn default_weight() -> u32 {
    60
}

/// `type = "forward"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardOutputConfig {
    /// Destinations, load-balanced by weight, with failover.
    pub servers: Vec<ForwardServerConfig>,
    /// Ask for an acknowledgement of every chunk and resend on timeout (at-least-once). On by
    /// default: without it a chunk counts as delivered once written to the socket, and what
    /// the receiver loses after that is gone.
    #[serde(default = "default_require_ack")]
    pub require_ack: bool,
    /// How long to wait for an acknowledgement.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// How long to wait for a connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a failed server is left alone before it is tried again.
    #[serde(default = "default_recover_wait", with = "humantime_serde")]
    pub recover_wait: Duration,
    /// `none`, or `gzip` (CompressedPackedForward).
    #[serde(default)]
    pub compression: FileCompression,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_require_ack() -> bool {
    true
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_recover_wait() -> Duration {
    Duration::from_secs(10)
}
