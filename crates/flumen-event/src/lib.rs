//! flumen's event model.
//!
//! An event is a **tag** (`app.web`), a **time** with nanoseconds ([`EventTime`]), a **record**
//! (a msgpack map) and the **tenant** it belongs to ([`TenantId`]). Events travel in batches that
//! share a tag and a tenant ([`batch`]): exactly the shape of a Fluentd Forward `PackedForward`
//! chunk, which is how most senders deliver them.
//!
//! Records stay in the msgpack form they arrived in for as long as no step needs their fields:
//! routing by tag, the durable log and the forward output never decode a record. [`entry`] walks
//! the entries of a batch without allocating, and [`json`] renders them for text outputs.
//!
//! This crate is not a codec for any wire protocol (see `flumen-codec`) and knows nothing of
//! files or sockets.

#![deny(missing_docs)]

pub mod batch;
pub mod entry;
pub mod json;
pub mod msgpack;
pub mod record;
pub mod tag;
mod tenant;
mod time;

pub use batch::{BatchBuilder, BatchError, BatchRef};
pub use entry::{Entry, EntryIter};
pub use tenant::TenantId;
pub use time::EventTime;
