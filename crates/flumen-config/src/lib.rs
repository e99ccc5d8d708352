//! flumen's configuration: what to run, read from one TOML file or built in code, validated once
//! into a [`ServerSpec`].
//!
//! ```text
//!  TOML text ──serde──► ServerConfig ──check──► ServerSpec ──► flumen_server::Server::start
//!  (file.rs: errors      (plain values,          (no TOML types; the filter pipeline, file
//!   name file and line)   settings.rs)             path templates and webhook settings
//!                                                  compiled once, check.rs)
//! ```
//!
//! [`ServerSpec::parse`] deserializes the raw file (serde rejects unknown keys and wrong types
//! with the line and the key), then [`ServerConfig::check`] checks what types cannot: that
//! routes name outputs that exist, that patterns compile, that sizes fit together. Every error
//! from a file names the file and the line. `flumen run` builds a [`ServerConfig`] in code and
//! checks it the same way. The reference documentation is `docs/configuration.md`; the doc
//! comments here say the same.
//!
//! With no file at all, flumen runs [`DEFAULT_CONFIG`].

#![deny(missing_docs)]

mod check;
mod file;
mod settings;
mod spec;

pub use check::{InvalidConfig, Key};
pub use file::ConfigError;
pub use settings::{
    ApiConfig, DeploymentsConfig, LogConfig, PersistenceMode, RouteConfig, ServerConfig, WhenFull,
};
pub use spec::ServerSpec;

pub use flumen_sinks::config::{BatchConfig, OutputConfig, OutputSpec, RetryConfig, SinkSpec};
pub use flumen_sources::SourceConfig;

/// The configuration `flumen serve` runs when given no file.
pub const DEFAULT_CONFIG: &str = r#"# flumen's embedded default: Forward on 24224, Fluentd-style HTTP on 9880, the API on
# 8080, data in ./flumen-data, every event kept in the embedded store and searchable
# (`flumen query`, GET /api/v1/query, Loki's query API).
data_dir = "./flumen-data"

[store]
# labels = ["tag", "service", "environment", "level"]
# indexed_fields = ["deployment_id", "request_id", "trace_id", "container_id"]

[store.retention]
max_age = "7d"

[api]
address = "0.0.0.0:8080"

[sources.forward]
type = "forward"
address = "0.0.0.0:24224"

[sources.http]
type = "http"
address = "0.0.0.0:9880"
"#;

#[cfg(test)]
mod tests;
