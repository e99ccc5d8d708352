//! Routing by tag, with Fluentd's `<match>` semantics.
//!
//! Routes are tried in order and the first whose label and patterns match decides where an
//! event goes; a route may name several outputs, each of which gets a copy (Fluentd's `copy`).
//! A source with a label (Fluentd's `@label`) only sees routes with that label; a source
//! without one only sees routes without one. A route may also have a `select`or (content
//! routing, `{level=~"ERROR|FATAL"}`): then only the events it matches take it, and the others
//! go on to the next route. Routes without selectors cost one lookup per batch; records are
//! decoded only for (label, tag) pairs that a selector route matches.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use flumen_event::record::Record;
pub use flumen_event::tag::{PatternError, TagPattern};
use flumen_select::Selector;

/// One route as configured and validated: no TOML in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Applies only to sources with this label ("" for sources without one).
    pub label: String,
    /// Fluentd tag patterns.
    pub patterns: Vec<String>,
    /// Only events this selector matches take the route.
    pub select: Option<String>,
    /// The outputs that each get a copy, by name.
    pub outputs: Vec<String>,
}

#[derive(Debug)]
struct Route {
    label: String,
    patterns: Vec<TagPattern>,
    select: Option<Selector>,
    outputs: Arc<[usize]>,
}

/// Where the events of one (label, tag) go.
///
/// Routes are tried in order. Routes with a selector are *candidates*: an event takes the first
/// whose selector matches it; the first route without a selector takes every event no
/// candidate took (the `fallback`). A decision without candidates routes whole batches
/// without looking at records.
#[derive(Debug, Default)]
pub struct Decision {
    candidates: Vec<(Selector, Arc<[usize]>)>,
    fallback: Arc<[usize]>,
}

impl Decision {
    /// True when no route matches: the events have nowhere to go.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty() && self.fallback.is_empty()
    }

    /// True when the decision depends on each event's record.
    pub fn by_content(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// True when some events of this (label, tag) may reach `output`.
    pub fn may_reach(&self, output: usize) -> bool {
        self.fallback.contains(&output) || self.candidates.iter().any(|(_, o)| o.contains(&output))
    }

    /// The outputs one event goes to.
    pub fn outputs_for_event(&self, tag: &str, record: &Record) -> &[usize] {
        self.candidates
            .iter()
            .find(|(selector, _)| selector.matches(tag, record))
            .map_or(&self.fallback, |(_, outputs)| outputs)
    }
}

/// The compiled routes; outputs are referred to by their index in the `output_names` the table
/// was made with.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Compiles validated routes; `output_names` fixes each output's index.
    pub fn new(routes: &[RouteSpec], output_names: &[String]) -> Result<Self, String> {
        let compiled = routes
            .iter()
            .map(|r| {
                let patterns = r
                    .patterns
                    .iter()
                    .map(|p| TagPattern::parse(p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let select = r
                    .select
                    .as_ref()
                    .map(|s| Selector::parse(s))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let outputs = r
                    .outputs
                    .iter()
                    .filter_map(|o| output_names.iter().position(|n| n == o))
                    .collect();
                Ok(Route {
                    label: r.label.clone(),
                    patterns,
                    select,
                    outputs,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { routes: compiled })
    }

    /// Where events with this label and tag go.
    pub fn decide(&self, label: &str, tag: &str) -> Decision {
        let mut decision = Decision::default();
        let matching = self
            .routes
            .iter()
            .filter(|r| r.label == label && r.patterns.iter().any(|p| p.matches(tag)));
        for route in matching {
            match &route.select {
                Some(selector) => decision
                    .candidates
                    .push((selector.clone(), route.outputs.clone())),
                None => {
                    decision.fallback = route.outputs.clone();
                    break;
                }
            }
        }
        decision
    }
}

/// Routing decisions by label, then by tag.
type Decisions = HashMap<Box<str>, HashMap<Box<str>, Arc<Decision>>>;

/// A per-task memo of routing decisions: tags repeat, so each (label, tag) is matched once.
/// Lookups borrow the label and tag; only a new decision allocates.
#[derive(Debug)]
pub struct RouteCache {
    table: Arc<RouteTable>,
    /// label → tag → decision.
    decisions: Decisions,
    remembered: usize,
    /// The label and tag bytes the memo holds, plus a fixed cost per decision.
    remembered_bytes: usize,
}

impl RouteCache {
    /// The most decisions remembered before the memo starts over (bounds memory when senders
    /// invent tags).
    const CAPACITY: usize = 4096;
    /// The most bytes of labels and tags remembered before the memo starts over: senders'
    /// tags may be up to 64 KiB each, and every connection has its own memo.
    const CAPACITY_BYTES: usize = 256 * 1024;
    /// What one decision costs besides its label and tag (maps' slots, the shared decision).
    const DECISION_COST: usize = 64;

    /// A memo over `table`.
    pub fn new(table: Arc<RouteTable>) -> Self {
        Self {
            table,
            decisions: HashMap::new(),
            remembered: 0,
            remembered_bytes: 0,
        }
    }

    /// Where events with `label` and `tag` go.
    pub fn decide(&mut self, label: &str, tag: &str) -> Arc<Decision> {
        if let Some(hit) = self.decisions.get(label).and_then(|tags| tags.get(tag)) {
            return hit.clone();
        }
        let cost = label.len() + tag.len() + Self::DECISION_COST;
        if self.remembered >= Self::CAPACITY || self.remembered_bytes + cost > Self::CAPACITY_BYTES
        {
            self.decisions.clear();
            self.remembered = 0;
            self.remembered_bytes = 0;
        }
        let decision = Arc::new(self.table.decide(label, tag));
        self.decisions
            .entry(label.into())
            .or_default()
            .insert(tag.into(), decision.clone());
        self.remembered += 1;
        self.remembered_bytes += cost;
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route table of `routes`, and the names of its outputs by index (sorted, as the
    /// configuration orders them).
    fn table(routes: &[RouteSpec]) -> (RouteTable, Vec<String>) {
        let mut names: Vec<String> = routes.iter().flat_map(|r| r.outputs.clone()).collect();
        names.sort();
        names.dedup();
        (RouteTable::new(routes, &names).unwrap(), names)
    }

    fn route(label: &str, patterns: &[&str], select: Option<&str>, outputs: &[&str]) -> RouteSpec {
        RouteSpec {
            label: label.to_owned(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            select: select.map(str::to_owned),
            outputs: outputs.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn first_route_wins_and_labels_separate_routes() {
        let (table, names) = table(&[
            route("", &["health*"], None, &["discard"]),
            route("mainstream", &["frontend*"], None, &["front", "back"]),
            route("mainstream", &["**"], None, &["back"]),
        ]);
        let named = |label: &str, tag: &str| -> Vec<&str> {
            table
                .decide(label, tag)
                .fallback
                .iter()
                .map(|&i| names[i].as_str())
                .collect()
        };
        assert_eq!(named("", "healthcheck"), ["discard"]);
        assert_eq!(named("mainstream", "healthcheck"), ["back"]);
        assert_eq!(named("mainstream", "frontend-web"), ["front", "back"]);
        assert_eq!(
            named("mainstream", "frontend.web"),
            ["back"],
            "* is one tag part"
        );
        assert_eq!(named("mainstream", "backend.db"), ["back"]);
        assert!(named("", "frontend.web").is_empty());
    }

    #[test]
    fn selector_routes_take_the_events_they_match_and_pass_the_rest_on() {
        let (table, names) = table(&[
            route(
                "",
                &["app.**"],
                Some(r#"{level=~"ERROR|FATAL"}"#),
                &["alerts", "store"],
            ),
            route("", &["app.**"], Some(r#"{service="auth"}"#), &["audit"]),
            route("", &["**"], None, &["store"]),
        ]);
        let index = |name: &str| names.iter().position(|n| n == name).unwrap();
        let decision = table.decide("", "app.web");
        assert!(decision.by_content());
        let record = |level: &str, service: &str| {
            Record::from(vec![
                ("level".to_owned(), level.into()),
                ("service".to_owned(), service.into()),
            ])
        };
        let to = |level: &str, service: &str| -> Vec<&str> {
            decision
                .outputs_for_event("app.web", &record(level, service))
                .iter()
                .map(|&i| names[i].as_str())
                .collect()
        };
        assert_eq!(to("ERROR", "auth"), ["alerts", "store"], "first match wins");
        assert_eq!(to("INFO", "auth"), ["audit"]);
        assert_eq!(to("INFO", "web"), ["store"]);
        assert!(decision.may_reach(index("audit")));
        let other = table.decide("", "sys.kernel");
        assert!(!other.by_content());
        assert!(!other.may_reach(index("alerts")));
        assert!(table.decide("x", "app.web").is_empty());
    }

    #[test]
    fn the_decision_memo_holds_at_most_256_kib_of_tags() {
        let (table, _) = table(&[route("", &["**"], None, &["store"])]);
        let mut cache = RouteCache::new(Arc::new(table));
        for n in 0..100 {
            let tag = format!("{n}.{}", "t".repeat(60_000));
            assert!(!cache.decide("", &tag).is_empty());
            let held: usize = cache
                .decisions
                .values()
                .flat_map(|tags| tags.keys())
                .map(|tag| tag.len())
                .sum();
            assert!(
                held <= RouteCache::CAPACITY_BYTES,
                "{held} bytes of tags after {n}"
            );
        }
    }
}
