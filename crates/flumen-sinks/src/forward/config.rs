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

impl ForwardServerConfig {
    /// A server at `address` (`host:port`), with the default weight, not a standby.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            weight: default_weight(),
            standby: false,
        }
    }
}

impl ForwardOutputConfig {
    /// An output to `servers` with every other setting at its default.
    pub fn new(servers: Vec<ForwardServerConfig>) -> Self {
        Self {
            servers,
            require_ack: default_require_ack(),
            ack_timeout: default_ack_timeout(),
            connect_timeout: default_connect_timeout(),
            recover_wait: default_recover_wait(),
            compression: FileCompression::default(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
        }
    }

    /// Checks what the types alone cannot; the error starts with the key.
    pub fn check(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("servers: at least one server is needed".into());
        }
        if self.servers.iter().all(|s| s.weight == 0) {
            return Err("servers: every weight is 0".into());
        }
        Ok(())
    }
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
