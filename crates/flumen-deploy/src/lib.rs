//! flumen's deployments: a deployment is something flumen knows — started, finished with a
//! status, with its events counted — not just a field on events.
//!
//! - `model.rs`: deployments, what is asked of the catalogue, and the checks every request
//!   passes first (ids safe in paths and SQL, sizes bounded).
//! - `catalogue.rs`: the database — SQLite in the data directory by default, PostgreSQL to share
//!   it between nodes — through sqlx's `any` driver, with versioned migrations run on first use.
//!   A database that is away makes calls fail with `Unavailable`, never blocks ingest.
//! - `counter.rs`: a reader of the durable log that counts each event naming a known
//!   deployment (`deployment_id`) by level, writing the sums with its log position in one
//!   transaction.
//!
//! HTTP, marker events and live streams are the server's (`flumen-server`'s `deployments`).

mod catalogue;
mod counter;
mod model;

pub use catalogue::{Catalogue, CatalogueError, describe_url};
pub use counter::{DEPLOYMENT_FIELD, DeploymentCounter, MARKER_TAG, level_name};
pub use model::{
    Deployment, EventCounts, Finish, Invalid, ListFilter, MAX_ID_LEN, MAX_METADATA_BYTES, MAX_PAGE,
    NewDeployment, Page, PageCursor, Refusal, Status, check_id, generate_id,
};
