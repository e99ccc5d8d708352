//! flumen's live streams: every event the moment it is durable, to every client whose query
//! selects it, with no gap and no duplicate however slow the client or however often it
//! reconnects.
//!
//! - [`LiveHub`] reads the log once for all subscribers that have caught up with it, finds
//!   the queries that can want each event through an index of their equality matchers, and
//!   renders each event once per query (`hub.rs`, `index.rs`).
//! - A [`Subscription`] is one client's stream: a backfill from the store, then the log read by
//!   itself until it has caught up, then the hub; when it falls behind it reads by itself
//!   again, from the store if the log has dropped what it needs (`subscription.rs`).
//! - [`render`] is how an event looks on the wire: flumen's event object, or Loki's stream.
//!
//! Transports (Server-Sent Events, WebSocket, Loki's `tail`) live in the server; they only
//! frame [`Message`]s. Events are shown once durable, so a position is never shown and then
//! lost in a crash; while a stream is open the log syncs every write at once
//! ([`flumen_wal::Wal::follow_closely`]), so durable comes within a disk sync.

mod hub;
mod index;
pub mod render;
mod subscription;

pub use hub::{LiveConfig, LiveHub, Rendered, TooManyStreams};
pub use render::{EventView, Format};
pub use subscription::{HEARTBEAT, Message, Start, StreamEnd, Subscription};
