//! flumen's pipeline.
//!
//! ```text
//!  senders ──► sources ──► durable log (flumen-wal) ──► output drivers ──► sinks ──► destinations
//!              (forward,    append, group commit,       one cursor each:    (stdout, file,
//!               http)       ack once durable            route, batch,        forward, null)
//!                                                       retry, dead-letter
//! ```
//!
//! - `flumen-config`: the configuration, checked into a [`ServerSpec`] that [`Server::start`]
//!   takes.
//! - [`sources`] (the `flumen-sources` crate): listeners that decode what senders send and
//!   append it to the log.
//! - `flumen-routing`: Fluentd tag patterns and the ordered route table.
//! - [`outputs`] (the `flumen-sinks` crate): the shared delivery driver and the sinks.
//! - [`api`]: health, readiness and metrics over HTTP, with one mapping from errors to status
//!   codes.
//! - [`topology`]: starts it all from a spec and stops it without losing anything.
//!
//! This crate does not parse command lines or install global state (loggers, the metrics
//! recorder); the `flumen` binary does.

#![deny(missing_docs)]

pub mod api;
pub mod deployments;
pub mod topology;

pub use flumen_sinks as outputs;
pub use flumen_sources as sources;

pub use flumen_config::ServerSpec;
pub use topology::Server;
