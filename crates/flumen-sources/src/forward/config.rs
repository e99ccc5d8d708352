//! `type = "forward"`: the Forward source's settings.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::net::TlsConfig;

/// `type = "forward"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSourceConfig {
    /// Listen address (TCP and UDP).
    #[serde(default = "default_forward_address")]
    pub address: SocketAddr,
    /// Route label: only routes with this label apply (Fluentd's `@label`).
    #[serde(default)]
    pub label: String,
    /// The largest frame accepted; a larger one closes the connection. Also the most a
    /// compressed chunk may inflate to.
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: ByteSize,
    /// Close a connection gracefully once it is this old (at a frame boundary, after acking),
    /// so that senders reconnect through their load balancer.
    #[serde(default, with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Close a connection that sent nothing for this long.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// TLS on the TCP listener (Fluentd's `<transport tls>`): the server certificate and key,
    /// and the CAs of required client certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_forward_address() -> SocketAddr {
    "0.0.0.0:24224".parse().expect("valid address")
}

fn default_max_frame_size() -> ByteSize {
    ByteSize::mib(16)
}

impl ForwardSourceConfig {
    /// A source listening on `address`, with every other setting at its default.
    pub fn listening_on(address: SocketAddr) -> Self {
        Self {
            address,
            label: String::new(),
            max_frame_size: default_max_frame_size(),
            max_connection_age: None,
            idle_timeout: None,
            tls: None,
        }
    }
}
