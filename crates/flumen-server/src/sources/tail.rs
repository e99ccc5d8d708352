//! Tailing files, with a position file (being written).

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::sync::watch;

use super::SourceShared;

/// `type = "tail"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// The route label of this source's events.
    #[serde(default)]
    pub label: String,
}

/// A tail source.
#[derive(Debug)]
pub struct TailSource {}

impl TailSource {
    /// Checks what `config` names.
    pub async fn bind(_name: &str, _config: &TailConfig) -> std::io::Result<Self> {
        Err(std::io::Error::other("the tail source is not built yet"))
    }

    /// Files have no address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// Takes events until `stop` turns true.
    pub async fn run(self, _shared: SourceShared, _stop: watch::Receiver<bool>) {}
}
