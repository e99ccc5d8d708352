//! flumen's pipeline.
//!
//! ```text
//!  senders ──► sources ──► durable log (flumen-wal) ──► output drivers ──► sinks ──► destinations
//!              (forward,    append, group commit,       one cursor each:    (stdout, file,
//!               http)       ack once durable            route, batch,        forward, null)
//!                                                       retry, dead-letter
//! ```
//!
//! - [`config`]: the TOML configuration, parsed then validated, and the embedded default.
//! - [`sources`]: listeners that decode what senders send and append it to the log.
//! - [`routing`]: Fluentd tag patterns and the ordered route table.
//! - [`outputs`]: the shared delivery driver and the sinks.
//! - [`api`]: health, readiness and metrics over HTTP.
//! - [`topology`]: starts it all from a configuration and stops it without losing anything.
//!
//! This crate does not parse command lines or install global state (loggers, the metrics
//! recorder); the `flumen` binary does.

#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod topology;

pub use flumen_routing as routing;
pub use flumen_sinks as outputs;
pub use flumen_sources as sources;

pub use config::Config;
pub use topology::Server;
