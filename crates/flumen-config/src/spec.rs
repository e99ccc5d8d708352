//! [`ServerSpec`]: a checked configuration, in the forms the server runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flumen_process::Pipeline;
use flumen_routing::RouteTable;
use flumen_sinks::OutputSpec;
use flumen_sources::SourceConfig;
use flumen_store::StoreConfig;
use flumen_wal::WalConfig;

/// Everything a server runs, checked, with no TOML in it: made only by
/// [`ServerConfig::check`](crate::ServerConfig::check) (or [`ServerSpec::parse`]), so a spec
/// is always valid. What checking compiled (the route table, the filter pipeline, file path
/// templates, webhook URLs, headers and templates) is kept here and not compiled again at start.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub(crate) data_dir: PathBuf,
    pub(crate) wal: WalConfig,
    pub(crate) api_address: SocketAddr,
    pub(crate) max_live_streams: usize,
    pub(crate) sources: BTreeMap<String, SourceConfig>,
    pub(crate) outputs: BTreeMap<String, OutputSpec>,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) store: Option<StoreConfig>,
    pub(crate) deployments_database: Option<String>,
}

/// The store lives in `<data_dir>/store` unless configured elsewhere.
pub(crate) fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// The deployment catalogue's SQLite database is `<data_dir>/deployments.db` unless
/// configured elsewhere.
pub(crate) fn sqlite_catalogue(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("deployments.db").display()
    )
}

/// The log lives in `<data_dir>/wal`.
pub(crate) fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

impl ServerSpec {
    /// The same spec with its data (the log with it) in `dir`: `flumen serve --data-dir`.
    pub fn with_data_dir(mut self, dir: PathBuf) -> Self {
        self.wal.dir = wal_dir(&dir);
        if let Some(store) = &mut self.store
            && store.dir == store_dir(&self.data_dir)
        {
            store.dir = store_dir(&dir);
        }
        if self.deployments_database.as_deref() == Some(&sqlite_catalogue(&self.data_dir)) {
            self.deployments_database = Some(sqlite_catalogue(&dir));
        }
        self.data_dir = dir;
        self
    }

    /// Where flumen keeps its durable log, cursors, dead letters and identity.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log's settings.
    pub fn wal(&self) -> &WalConfig {
        &self.wal
    }

    /// Where the operations API listens.
    pub fn api_address(&self) -> SocketAddr {
        self.api_address
    }

    /// How many live streams may be open at once.
    pub fn max_live_streams(&self) -> usize {
        self.max_live_streams
    }

    /// Inputs, by name; each carries its route label.
    pub fn sources(&self) -> &BTreeMap<String, SourceConfig> {
        &self.sources
    }

    /// Outputs, by name, with their delivery settings.
    pub fn outputs(&self) -> &BTreeMap<String, OutputSpec> {
        &self.outputs
    }

    /// The compiled routes, shared by every source and output.
    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// The compiled filters, shared by every source.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The embedded store's settings, when it is on.
    pub fn store(&self) -> Option<&StoreConfig> {
        self.store.as_ref()
    }

    /// The deployment catalogue's database URL, when deployments are on.
    pub fn deployments_database(&self) -> Option<&str> {
        self.deployments_database.as_deref()
    }

    /// How long a graceful shutdown may take.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}
