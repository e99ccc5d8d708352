//! flumen's processing steps: what happens to events between a source and the durable log.
//!
//! The configuration lists **filters** (`[[filters]]`), each with a tag pattern and a `type`:
//! `parse` (see `flumen_parse`), `multiline`, `join_partial`, `enrich`, `keep`, `drop`,
//! `min_level`, `fields`, `redact`, `sample`, `rate_limit`. A [`Pipeline`] is the compiled
//! list, shared by every connection; a [`Session`] runs it for one input stream and keeps the
//! state of the joining steps (multiline groups, Docker's split lines), which hold events back
//! until they are complete or their flush timeout passes.
//!
//! Steps run before events reach the log, so a secret redacted here is never stored, and
//! nothing is lost to a step: a line that does not parse is kept and marked, joining steps
//! release every event they take, and only filters the operator configured (keep, drop,
//! min_level, sample, rate_limit) remove events — counted per filter.

#![deny(missing_docs)]

pub mod attribute;
pub mod enrich;
pub mod fields;
mod joiner;
pub mod multiline;
pub mod partial;
mod pipeline;
pub mod rate_limit;
pub mod redact;
pub mod sample;

pub use joiner::{Joiner, Numbered};
pub use pipeline::{
    FilterConfig, FilterError, MinLevelConfig, Pipeline, Released, SelectConfig, Session,
    StepConfig,
};
