//! The configuration as written: plain values, deserialized from TOML or built in code, not yet
//! checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use flumen_process::FilterConfig;
use flumen_sinks::OutputConfig;
use flumen_sources::SourceConfig;
use serde::Deserialize;

/// The whole configuration, before [`ServerConfig::check`](crate::ServerConfig::check).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where flumen keeps its durable log, cursors, dead letters and identity.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The durable log between inputs and outputs.
    #[serde(default)]
    pub log: LogConfig,
    /// The operations API: health, readiness, metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// Inputs, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Outputs, by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Routes, tried in order: an event goes to the outputs of the first route that matches.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Processing steps, in order, between the sources and the log.
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
    /// How long a graceful shutdown may take to drain outputs.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The embedded store, when the section is present (the embedded default has it).
    #[serde(default)]
    pub store: Option<StoreSettings>,
    /// The deployment catalogue.
    #[serde(default)]
    pub deployments: DeploymentsConfig,
}

/// `[deployments]`: the deployment catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentsConfig {
    /// `"sqlite"` (a file in the data directory), a `sqlite://PATH` or `postgres://...` URL,
    /// or `"off"`.
    pub database: String,
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        Self {
            database: "sqlite".into(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./flumen-data")
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// When appends to the log are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceMode {
    /// fsync before every acknowledgement (appends waiting together share one fsync).
    Always,
    /// fsync every `fsync_interval`, and at once when an append is waited on before it is
    /// synced; acknowledgements wait for an fsync covering their events, not for the interval.
    #[default]
    Interval,
    /// Leave it to the operating system: survives a crash of flumen, not of the machine.
    Os,
}

/// What inputs do when the log is at `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading sockets and answer HTTP 503 until outputs catch up. Nothing is dropped.
    #[default]
    Block,
    /// Drop new events (acknowledged, counted) until there is room; what is stored stays.
    DropNewest,
    /// Remove the oldest segment of the log, even if outputs have not delivered it, to take
    /// new events (counted).
    DropOldest,
}

/// `[log]`: the durable log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `always`, `interval` or `os`.
    pub persistence: PersistenceMode,
    /// With `persistence = "interval"`: how often to fsync.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// The most disk the log may use.
    pub max_size: ByteSize,
    /// The size at which a segment file is closed and a new one started.
    pub segment_size: ByteSize,
    /// What happens when the log is full.
    pub when_full: WhenFull,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            persistence: PersistenceMode::Interval,
            fsync_interval: Duration::from_millis(100),
            max_size: ByteSize::gib(2),
            segment_size: ByteSize::mib(64),
            when_full: WhenFull::Block,
        }
    }
}

/// `[api]`: the operations endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address for `/healthz`, `/readyz` and `/metrics`.
    pub address: SocketAddr,
    /// Live streams (`/api/v1/stream`, `/api/v1/tail`, Loki's `tail`) open at once; more are
    /// refused (HTTP 429, or WebSocket close code 4429).
    pub max_live_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            address: "0.0.0.0:8080".parse().expect("valid address"),
            max_live_streams: 20_000,
        }
    }
}

/// `[[routes]]`: where events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Applies only to sources with this label (none: sources without a label).
    #[serde(default)]
    pub label: Option<String>,
    /// Fluentd tag patterns: `*` one tag part, `**` zero or more parts, `{a,b}` either.
    #[serde(rename = "match")]
    pub patterns: Vec<String>,
    /// Only events this selector matches take the route (`{level=~"ERROR|FATAL"}`, see
    /// `flumen_select`); the others go on to the next route that matches their tag.
    #[serde(default)]
    pub select: Option<String>,
    /// Every output here gets a copy.
    pub outputs: Vec<String>,
}

impl RouteConfig {
    /// The route as the route table takes it.
    pub(crate) fn to_spec(&self) -> flumen_routing::RouteSpec {
        flumen_routing::RouteSpec {
            label: self.label.clone().unwrap_or_default(),
            patterns: self.patterns.clone(),
            select: self.select.clone(),
            outputs: self.outputs.clone(),
        }
    }
}

/// `[store]`: the embedded, searchable store of every event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `false` turns the store off while keeping the section.
    pub enabled: bool,
    /// Where its files are; default `<data_dir>/store`.
    pub dir: Option<PathBuf>,
    /// The fields whose values make a stream: few values each (not ids).
    pub labels: Vec<String>,
    /// Fields of any cardinality, indexed per chunk so that equality on them is fast.
    pub indexed_fields: Vec<String>,
    /// Events are searchable at most this long after they are durable in the log.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Events gathered before a flush at the latest (memory the store uses).
    pub flush_size: ByteSize,
    /// zstd level, 1 to 19.
    pub compression_level: i32,
    /// How long events are kept: `max_age` and `max_size`.
    pub retention: RetentionSettings,
    /// Retention by tenant, overriding `retention`.
    pub tenants: BTreeMap<String, TenantStoreSettings>,
    /// The most events one search returns.
    pub max_limit: usize,
    /// How long one search may run.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let store = flumen_store::StoreConfig::new("");
        Self {
            enabled: true,
            dir: None,
            labels: store.labels,
            indexed_fields: store.indexed_fields,
            flush_interval: store.flush_interval,
            flush_size: ByteSize::b(store.flush_size as u64),
            compression_level: store.compression_level,
            retention: RetentionSettings {
                max_age: store.retention.max_age,
                max_size: None,
            },
            tenants: BTreeMap::new(),
            max_limit: store.max_limit,
            query_timeout: store.query_timeout,
        }
    }
}

/// `[store.retention]`, `[store.tenants.NAME.retention]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Partitions (hours) older than this are removed (`7d`, `12h`).
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// The oldest partitions are removed while the tenant's files are bigger than this.
    pub max_size: Option<ByteSize>,
}

/// `[store.tenants.NAME]`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantStoreSettings {
    /// The tenant's retention.
    pub retention: RetentionSettings,
}
