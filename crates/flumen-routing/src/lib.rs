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
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use flumen_event::record::Record;
pub use flumen_event::tag::{PatternError, TagPattern};
use flumen_select::Selector;

/// An output, named once and then compared as a number. The id of a name never changes while
/// the process runs, whatever outputs are added or removed around it (a reload keeps the ids
/// of the outputs it keeps), unlike the output's place in the configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputId(u32);

/// The names of all outputs ever named in this process, both ways: outputs are few and their
/// names short, so the table never needs to forget one.
#[derive(Default)]
struct OutputNames {
    ids: HashMap<Arc<str>, OutputId>,
    names: Vec<Arc<str>>,
}

fn output_names() -> std::sync::MutexGuard<'static, OutputNames> {
    static NAMES: OnceLock<Mutex<OutputNames>> = OnceLock::new();
    // The table is only ever added to, whole: a panic elsewhere cannot leave it half-updated.
    NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl OutputId {
    /// The id of the output called `name` (the same for the same name, every time).
    pub fn named(name: &str) -> Self {
        let mut table = output_names();
        if let Some(id) = table.ids.get(name) {
            return *id;
        }
        let id = OutputId(u32::try_from(table.names.len()).expect("fewer than 4 billion outputs"));
        let name: Arc<str> = name.into();
        table.names.push(name.clone());
        table.ids.insert(name, id);
        id
    }

    /// The output's name.
    pub fn name(self) -> Arc<str> {
        output_names().names[self.0 as usize].clone()
    }
}

impl fmt::Display for OutputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for OutputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputId({:?})", &*self.name())
    }
}

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
    outputs: Arc<[OutputId]>,
}

/// Where the events of one (label, tag) go.
///
/// Routes are tried in order. Routes with a selector are *candidates*: an event takes the first
/// whose selector matches it; the first route without a selector takes every event no
/// candidate took (the `fallback`). A decision without candidates routes whole batches
/// without looking at records.
#[derive(Debug, Default)]
pub struct Decision {
    candidates: Vec<(Selector, Arc<[OutputId]>)>,
    fallback: Arc<[OutputId]>,
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
    pub fn may_reach(&self, output: OutputId) -> bool {
        self.fallback.contains(&output) || self.candidates.iter().any(|(_, o)| o.contains(&output))
    }

    /// The outputs one event goes to.
    pub fn outputs_for_event(&self, tag: &str, record: &Record) -> &[OutputId] {
        self.candidates
            .iter()
            .find(|(selector, _)| selector.matches(tag, record))
            .map_or(&self.fallback, |(_, outputs)| outputs)
    }
}

/// A route that does not compile: which one (its index), where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// The route's index in the list.
    pub route: usize,
    /// The setting at fault.
    pub at: RouteKey,
    /// What is wrong with it.
    pub message: String,
}

/// Where in a route a [`RouteError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKey {
    /// The output with this index in `outputs`.
    Output(usize),
    /// The pattern with this index in `match`.
    Pattern(usize),
    /// The `select`or.
    Select,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.at {
            RouteKey::Output(_) => "outputs",
            RouteKey::Pattern(_) => "match",
            RouteKey::Select => "select",
        };
        write!(f, "routes[{}].{key}: {}", self.route, self.message)
    }
}

impl std::error::Error for RouteError {}

/// The compiled routes; outputs are referred to by their [`OutputId`].
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// True when the embedded store keeps every event, whatever the routes say.
    stored: bool,
}

impl RouteTable {
    /// Compiles `routes` to the outputs in `output_names`; the first output not among them, or
    /// pattern or selector that does not compile, is the error.
    pub fn new(routes: &[RouteSpec], output_names: &[String]) -> Result<Self, RouteError> {
        let compiled = routes
            .iter()
            .enumerate()
            .map(|(route, r)| {
                let outputs = r
                    .outputs
                    .iter()
                    .enumerate()
                    .map(|(output, o)| {
                        if output_names.contains(o) {
                            Ok(OutputId::named(o))
                        } else {
                            Err(RouteError {
                                route,
                                at: RouteKey::Output(output),
                                message: format!("no output is named {o:?}"),
                            })
                        }
                    })
                    .collect::<Result<_, _>>()?;
                let patterns = r
                    .patterns
                    .iter()
                    .enumerate()
                    .map(|(pattern, p)| {
                        TagPattern::parse(p).map_err(|e| RouteError {
                            route,
                            at: RouteKey::Pattern(pattern),
                            message: e.to_string(),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let select = r
                    .select
                    .as_ref()
                    .map(|s| Selector::parse(s))
                    .transpose()
                    .map_err(|e| RouteError {
                        route,
                        at: RouteKey::Select,
                        message: e.to_string(),
                    })?;
                Ok(Route {
                    label: r.label.clone(),
                    patterns,
                    select,
                    outputs,
                })
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(Self {
            routes: compiled,
            stored: false,
        })
    }

    /// The same table for a server whose embedded store keeps every event: sources then take
    /// every tag, routed or not.
    pub fn with_store(mut self) -> Self {
        self.stored = true;
        self
    }

    /// True when the embedded store keeps every event.
    pub fn stores_everything(&self) -> bool {
        self.stored
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True without any route: nothing goes anywhere.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
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

    /// True when events with this label and tag are kept by flumen: some route wants them, or
    /// the store keeps everything. Sources drop (and count) the others.
    pub fn keeps(&mut self, label: &str, tag: &str) -> bool {
        self.table.stores_everything() || !self.decide(label, tag).is_empty()
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

    /// The route table of `routes`, to every output they name.
    fn table(routes: &[RouteSpec]) -> RouteTable {
        let names: Vec<String> = routes.iter().flat_map(|r| r.outputs.clone()).collect();
        RouteTable::new(routes, &names).unwrap()
    }

    fn names(outputs: &[OutputId]) -> Vec<String> {
        outputs.iter().map(|id| id.name().to_string()).collect()
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
        let table = table(&[
            route("", &["health*"], None, &["discard"]),
            route("mainstream", &["frontend*"], None, &["front", "back"]),
            route("mainstream", &["**"], None, &["back"]),
        ]);
        let named = |label: &str, tag: &str| names(&table.decide(label, tag).fallback);
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
        let table = table(&[
            route(
                "",
                &["app.**"],
                Some(r#"{level=~"ERROR|FATAL"}"#),
                &["alerts", "store"],
            ),
            route("", &["app.**"], Some(r#"{service="auth"}"#), &["audit"]),
            route("", &["**"], None, &["store"]),
        ]);
        let decision = table.decide("", "app.web");
        assert!(decision.by_content());
        let record = |level: &str, service: &str| {
            Record::from(vec![
                ("level".to_owned(), level.into()),
                ("service".to_owned(), service.into()),
            ])
        };
        let to = |level: &str, service: &str| {
            names(decision.outputs_for_event("app.web", &record(level, service)))
        };
        assert_eq!(to("ERROR", "auth"), ["alerts", "store"], "first match wins");
        assert_eq!(to("INFO", "auth"), ["audit"]);
        assert_eq!(to("INFO", "web"), ["store"]);
        assert!(decision.may_reach(OutputId::named("audit")));
        let other = table.decide("", "sys.kernel");
        assert!(!other.by_content());
        assert!(!other.may_reach(OutputId::named("alerts")));
        assert!(table.decide("x", "app.web").is_empty());
    }

    #[test]
    fn an_output_keeps_its_id_when_others_come_and_go() {
        let before = table(&[route("", &["**"], None, &["kept", "removed"])]);
        let after = table(&[route("", &["**"], None, &["added", "kept"])]);
        // The output read through its id from the new table is the one the old table sent to.
        let kept = before.decide("", "t").fallback[0];
        assert!(after.decide("", "t").may_reach(kept));
        assert_eq!(names(&after.decide("", "t").fallback), ["added", "kept"]);
        assert!(
            !after
                .decide("", "t")
                .may_reach(before.decide("", "t").fallback[1])
        );
    }

    #[test]
    fn a_route_to_an_output_that_does_not_exist_is_refused() {
        let routes = [route("", &["**"], None, &["store", "gone"])];
        let error = RouteTable::new(&routes, &["store".to_owned()]).unwrap_err();
        assert_eq!((error.route, error.at), (0, RouteKey::Output(1)));
        assert_eq!(
            error.to_string(),
            "routes[0].outputs: no output is named \"gone\""
        );
    }

    #[test]
    fn the_decision_memo_holds_at_most_256_kib_of_tags() {
        let table = table(&[route("", &["**"], None, &["store"])]);
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
