//! Sans-I/O decoders for what senders speak to flumen.
//!
//! - [`forward`]: the Fluentd Forward Protocol v1 — Message, Forward, PackedForward and
//!   CompressedPackedForward frames, EventTime, options, acks and heartbeats. The Docker fluentd
//!   logging driver, Fluent Bit, Fluentd and the fluent-logger libraries speak it.
//! - [`http`]: request bodies of Fluentd's `in_http` input (JSON, JSON arrays, NDJSON, msgpack,
//!   `json=`/`msgpack=` form and query parameters).
//! - [`loki`]: Grafana Loki push bodies (protobuf with snappy, JSON, gzip) and their streams as
//!   events.
//! - [`batches`]: a request's entries split into the batches a source stores one log record
//!   each.
//!
//! Every decoder takes bytes and returns validated entries (see `flumen_event::entry`) or an
//! error that says what was wrong; none touches a socket, so each is fuzzed on its own
//! (`fuzz/`). Decoders never trust a length they read: every size is checked against a limit
//! before memory is committed.

#![deny(missing_docs)]

pub mod batches;
pub mod forward;
pub mod http;
pub mod loki;
