//! `type = "http"`: the HTTP source's settings.

use std::net::SocketAddr;

use bytesize::ByteSize;
use serde::Deserialize;

/// `type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Listen address.
    #[serde(default = "default_http_address")]
    pub address: SocketAddr,
    /// Route label: only routes with this label apply.
    #[serde(default)]
    pub label: String,
    /// The largest request body accepted (HTTP 413 past it).
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
}

fn default_http_address() -> SocketAddr {
    "0.0.0.0:9880".parse().expect("valid address")
}

fn default_max_body_size() -> ByteSize {
    ByteSize::mib(32)
}
