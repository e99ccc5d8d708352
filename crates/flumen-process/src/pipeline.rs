//! The pipeline: the configured steps in order, compiled once, and the per-stream sessions
//! that run them.

use std::sync::Arc;
use std::time::Instant;

use flumen_event::record::Event;
use flumen_event::tag::TagPattern;
use flumen_parse::{Level, ParseConfig, Parser};
use flumen_select::Selector;
use metrics::Counter;
use serde::Deserialize;

use crate::attribute::{AttributeConfig, Attributor, DeploymentDirectory, properties_of};
use crate::enrich::{Enrich, EnrichConfig, level_of, received_at_now};
use crate::fields::{FieldEdits, FieldsConfig};
use crate::joiner::{Joiner, Numbered};
use crate::multiline::{Multiline, MultilineConfig};
use crate::partial::{PartialConfig, PartialJoin};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::redact::{RedactConfig, Redactor};
use crate::sample::{SampleConfig, Sampler};

/// One `[[filters]]` table: which tags it applies to, and what it does.
#[derive(Debug, Clone, Deserialize)]
pub struct FilterConfig {
    /// The name in metrics and logs (default: its position and type, `2:parse`).
    #[serde(default)]
    pub name: Option<String>,
    /// Tag patterns, with the routes' Fluentd semantics (default: every tag).
    #[serde(rename = "match", default = "every_tag")]
    pub tags: Vec<String>,
    /// The step.
    #[serde(flatten)]
    pub step: StepConfig,
}

fn every_tag() -> Vec<String> {
    vec!["**".to_owned()]
}

/// What a filter does, by its `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepConfig {
    /// Parse a field into fields (`flumen_parse`).
    Parse(ParseConfig),
    /// Join stack traces and other multiline messages.
    Multiline(MultilineConfig),
    /// Join the Docker driver's split long lines.
    JoinPartial(PartialConfig),
    /// Add static, tag-derived, canonical and `received_at` fields.
    Enrich(EnrichConfig),
    /// Keep only the events a selector matches.
    Keep(SelectConfig),
    /// Drop the events a selector matches.
    Drop(SelectConfig),
    /// Drop events below a level.
    MinLevel(MinLevelConfig),
    /// Remove, rename and copy fields.
    Fields(FieldsConfig),
    /// Replace secrets.
    Redact(RedactConfig),
    /// Keep a fraction of low-level events.
    Sample(SampleConfig),
    /// Cap events per key and window.
    RateLimit(RateLimitConfig),
    /// Give events without a `deployment_id` the one of the deployment they match.
    Deployment(AttributeConfig),
}

impl StepConfig {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Parse(_) => "parse",
            Self::Multiline(_) => "multiline",
            Self::JoinPartial(_) => "join_partial",
            Self::Enrich(_) => "enrich",
            Self::Keep(_) => "keep",
            Self::Drop(_) => "drop",
            Self::MinLevel(_) => "min_level",
            Self::Fields(_) => "fields",
            Self::Redact(_) => "redact",
            Self::Sample(_) => "sample",
            Self::RateLimit(_) => "rate_limit",
            Self::Deployment(_) => "deployment",
        }
    }
}

/// The `keep` and `drop` steps' configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// A selector (`{service="api"} |= "timeout"`, see `flumen_select`).
    pub select: String,
}

/// The `min_level` step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinLevelConfig {
    /// The least severe level kept.
    pub level: Level,
    /// Whether events without a recognisable level are kept (default true: nothing is dropped
    /// for lack of a level).
    #[serde(default = "keep_unknown")]
    pub keep_unknown: bool,
}

fn keep_unknown() -> bool {
    true
}

/// A filter that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("filter {name}: {message}")]
pub struct FilterError {
    /// Its position in `filters`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug)]
enum StepKind {
    Parse(Parser),
    Join(JoinSpec),
    Enrich(Enrich),
    Keep(Selector),
    Drop(Selector),
    MinLevel(MinLevelConfig),
    Fields(FieldEdits),
    Redact(Redactor),
    Sample(Sampler),
    RateLimit(RateLimiter),
    Attribute(Attributor),
}

#[derive(Debug)]
enum JoinSpec {
    Multiline(Arc<Multiline>),
    Partial(Arc<PartialJoin>),
    #[cfg(test)]
    Test,
}

impl JoinSpec {
    fn joiner(&self) -> Box<dyn Joiner> {
        match self {
            Self::Multiline(spec) => spec.joiner(),
            Self::Partial(spec) => spec.joiner(),
            #[cfg(test)]
            Self::Test => Box::<tests::UntilSemicolon>::default(),
        }
    }
}

#[derive(Debug)]
struct Step {
    tags: Vec<TagPattern>,
    kind: StepKind,
    /// Events the step removed (filters, sampling, rate limits).
    dropped: Counter,
    /// Events the step could not process and kept as they were, marked (parse errors).
    errors: Counter,
    /// Secrets replaced.
    redactions: Counter,
}

impl Step {
    fn applies_to(&self, tag: &str) -> bool {
        self.tags.iter().any(|p| p.matches(tag))
    }
}

/// The compiled filters, shared by every session.
#[derive(Debug, Default)]
pub struct Pipeline {
    steps: Vec<Step>,
    /// The deployments its `deployment` steps attribute events to, when it has such steps.
    deployments: Option<Arc<DeploymentDirectory>>,
}

impl Pipeline {
    /// Compiles `filters` in order.
    pub fn new(filters: &[FilterConfig]) -> Result<Self, FilterError> {
        let attributing = filters.iter().filter_map(|f| match &f.step {
            StepConfig::Deployment(config) => Some(config),
            _ => None,
        });
        let properties = properties_of(attributing.clone());
        let deployments =
            (attributing.count() > 0).then(|| Arc::new(DeploymentDirectory::new(properties)));
        let steps = filters
            .iter()
            .enumerate()
            .map(|(index, filter)| {
                let name = filter
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{index}:{}", filter.step.type_name()));
                let fail = |message: String| FilterError {
                    index,
                    name: name.clone(),
                    message,
                };
                let tags = filter
                    .tags
                    .iter()
                    .map(|t| TagPattern::parse(t).map_err(|e| fail(format!("match: {e}"))))
                    .collect::<Result<_, _>>()?;
                let kind = compile(&filter.step, deployments.as_ref()).map_err(fail)?;
                Ok(Step {
                    tags,
                    kind,
                    dropped: metrics::counter!("flumen_filter_dropped_events_total", "filter" => name.clone()),
                    errors: metrics::counter!("flumen_filter_errors_total", "filter" => name.clone()),
                    redactions: metrics::counter!("flumen_filter_redactions_total", "filter" => name.clone()),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { steps, deployments })
    }

    /// The deployments its `deployment` steps attribute events to, for the server to keep
    /// current; `None` without such steps.
    pub fn deployment_directory(&self) -> Option<&Arc<DeploymentDirectory>> {
        self.deployments.as_ref()
    }

    /// True when some filter joins events (`multiline`, `join_partial`) and so may hold them
    /// back until a flush timeout: only then need a source watch for [`Session::flush_due`].
    pub fn may_hold(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step.kind, StepKind::Join(_)))
    }

    /// True when some filter applies to `tag` (otherwise events pass untouched and need not
    /// be decoded).
    pub fn applies_to(&self, tag: &str) -> bool {
        self.steps.iter().any(|s| s.applies_to(tag))
    }

    /// A session: the state of joining steps for one stream of input (a connection, a file).
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            joiners: self
                .steps
                .iter()
                .map(|s| match &s.kind {
                    StepKind::Join(spec) => Some(spec.joiner()),
                    _ => None,
                })
                .collect(),
            pipeline: self.clone(),
            next_seq: 0,
        }
    }
}

fn compile(
    step: &StepConfig,
    deployments: Option<&Arc<DeploymentDirectory>>,
) -> Result<StepKind, String> {
    Ok(match step {
        StepConfig::Parse(c) => StepKind::Parse(Parser::new(c)?),
        StepConfig::Multiline(c) => {
            StepKind::Join(JoinSpec::Multiline(Arc::new(Multiline::new(c)?)))
        }
        StepConfig::JoinPartial(c) => {
            StepKind::Join(JoinSpec::Partial(Arc::new(PartialJoin::new(c)?)))
        }
        StepConfig::Enrich(c) => StepKind::Enrich(Enrich::new(c)?),
        StepConfig::Keep(c) => StepKind::Keep(selector(&c.select)?),
        StepConfig::Drop(c) => StepKind::Drop(selector(&c.select)?),
        StepConfig::MinLevel(c) => StepKind::MinLevel(c.clone()),
        StepConfig::Fields(c) => StepKind::Fields(FieldEdits::new(c)?),
        StepConfig::Redact(c) => StepKind::Redact(Redactor::new(c)?),
        StepConfig::Sample(c) => StepKind::Sample(Sampler::new(c)?),
        StepConfig::RateLimit(c) => StepKind::RateLimit(RateLimiter::new(c)?),
        StepConfig::Deployment(c) => StepKind::Attribute(Attributor::new(
            c,
            deployments
                .expect("made for pipelines with deployment steps")
                .clone(),
        )?),
    })
}

fn selector(text: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|e| format!("select: {e}"))
}

/// Runs the pipeline over one input stream, keeping the state of its joining steps.
///
/// Input events are numbered in arrival order. A joining step may hold events back; every
/// input numbered below [`Session::released_below`] has left the session (as itself, inside a
/// joined event, or dropped by a filter), which is what a source needs to know before telling
/// a sender its events are stored.
#[derive(Debug)]
pub struct Session {
    pipeline: Arc<Pipeline>,
    joiners: Vec<Option<Box<dyn Joiner>>>,
    next_seq: u64,
}

/// Events released for one tag.
pub type Released = Vec<(String, Vec<Event>)>;

impl Session {
    /// Runs `events` of `tag` through every step that applies; returns the events of `tag`
    /// that come out now (which may include events held from earlier calls).
    pub fn process(&mut self, tag: &str, events: Vec<Event>, now: Instant) -> Vec<Event> {
        let first = self.next_seq;
        self.next_seq += events.len() as u64;
        let numbered = (first..).zip(events).collect();
        let received_at = received_at_now();
        self.run(0, tag, numbered, now, &received_at)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// Releases held groups whose flush timeout has passed, run through the steps after the
    /// one that held them.
    pub fn flush_due(&mut self, now: Instant) -> Released {
        self.flush(now, |joiner, out| joiner.flush_due(now, out))
    }

    /// Releases every held group (the stream is ending).
    pub fn flush_all(&mut self) -> Released {
        self.flush(Instant::now(), |joiner, out| joiner.flush_all(out))
    }

    /// When [`Session::flush_due`] next has something to release.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.joiners
            .iter()
            .flatten()
            .filter_map(|j| j.next_deadline())
            .min()
    }

    /// True when an input event numbered in `seqs` may still be held by a joining step
    /// (see [`Joiner::holds`]); once false, all of them have left the session — as
    /// themselves, inside joined events, or dropped by a filter.
    pub fn holds(&self, seqs: std::ops::Range<u64>) -> bool {
        self.joiners.iter().flatten().any(|j| j.holds(seqs.clone()))
    }

    /// How many input events the session has taken.
    pub fn taken(&self) -> u64 {
        self.next_seq
    }

    fn flush(
        &mut self,
        now: Instant,
        mut release: impl FnMut(&mut dyn Joiner, &mut Vec<(String, Numbered)>),
    ) -> Released {
        let received_at = received_at_now();
        let mut released: Released = Vec::new();
        for index in 0..self.joiners.len() {
            let Some(joiner) = self.joiners[index].as_mut() else {
                continue;
            };
            let mut out = Vec::new();
            release(joiner.as_mut(), &mut out);
            for (tag, events) in group_by_tag(out) {
                let events = self.run(index + 1, &tag, events, now, &received_at);
                if events.is_empty() {
                    continue;
                }
                let events = events.into_iter().map(|(_, e)| e);
                match released.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, list)) => list.extend(events),
                    None => released.push((tag, events.collect())),
                }
            }
        }
        released
    }

    fn run(
        &mut self,
        from: usize,
        tag: &str,
        mut events: Vec<Numbered>,
        now: Instant,
        received_at: &str,
    ) -> Vec<Numbered> {
        let pipeline = self.pipeline.clone();
        for (index, step) in pipeline.steps.iter().enumerate().skip(from) {
            if events.is_empty() {
                break;
            }
            if !step.applies_to(tag) {
                continue;
            }
            let before = events.len();
            match &step.kind {
                StepKind::Join(_) => {
                    let joiner = self.joiners[index].as_mut().expect("joiners match steps");
                    let mut out = Vec::with_capacity(events.len());
                    for event in events {
                        joiner.push(tag, event, now, &mut out);
                    }
                    events = out;
                    continue;
                }
                StepKind::Parse(parser) => {
                    let failed = events
                        .iter_mut()
                        .map(|(_, e)| parser.apply(e))
                        .filter(Result::is_err)
                        .count();
                    step.errors.increment(failed as u64);
                }
                StepKind::Enrich(enrich) => {
                    for (_, e) in &mut events {
                        enrich.apply(tag, e, received_at);
                    }
                }
                StepKind::Keep(selector) => {
                    events.retain(|(_, e)| selector.matches(tag, &e.record))
                }
                StepKind::Drop(selector) => {
                    events.retain(|(_, e)| !selector.matches(tag, &e.record))
                }
                StepKind::MinLevel(config) => events.retain(|(_, e)| match level_of(&e.record) {
                    Some(level) => level >= config.level,
                    None => config.keep_unknown,
                }),
                StepKind::Fields(edits) => {
                    for (_, e) in &mut events {
                        edits.apply(&mut e.record);
                    }
                }
                StepKind::Redact(redactor) => {
                    let replaced: usize = events.iter_mut().map(|(_, e)| redactor.apply(e)).sum();
                    step.redactions.increment(replaced as u64);
                }
                StepKind::Sample(sampler) => events.retain(|(_, e)| sampler.keep(e)),
                StepKind::RateLimit(limiter) => events.retain(|(_, e)| limiter.keep(tag, e, now)),
                StepKind::Attribute(attributor) => {
                    for (_, e) in &mut events {
                        attributor.apply(e);
                    }
                }
            }
            step.dropped.increment((before - events.len()) as u64);
        }
        events
    }
}

/// Groups released events by tag, keeping their order within each tag.
fn group_by_tag(out: Vec<(String, Numbered)>) -> Vec<(String, Vec<Numbered>)> {
    let mut groups: Vec<(String, Vec<Numbered>)> = Vec::new();
    for (tag, event) in out {
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, list)) => list.push(event),
            None => groups.push((tag, vec![event])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flumen_event::EventTime;
    use flumen_event::record::{Record, Value};

    use super::*;

    /// Joins lines until one ends with `;`, or until 1 s passes.
    #[derive(Debug, Default)]
    pub(super) struct UntilSemicolon {
        held: Option<(String, Numbered, Instant)>,
    }

    impl Joiner for UntilSemicolon {
        fn push(
            &mut self,
            tag: &str,
            (seq, event): Numbered,
            now: Instant,
            out: &mut Vec<Numbered>,
        ) {
            let line = event
                .record
                .get("log")
                .map(|v| v.to_text().into_owned())
                .unwrap_or_default();
            let (seq, mut event) = match self.held.take() {
                Some((_, (first, mut held), _)) => {
                    let joined = format!("{}\n{line}", held.record.get("log").unwrap().to_text());
                    held.record.insert("log", joined);
                    (first, held)
                }
                None => (seq, event),
            };
            if line.ends_with(';') {
                event.record.insert("joined", true);
                out.push((seq, event));
            } else {
                self.held = Some((tag.to_owned(), (seq, event), now + Duration::from_secs(1)));
            }
        }

        fn flush_due(&mut self, now: Instant, out: &mut Vec<(String, Numbered)>) {
            if self.held.as_ref().is_some_and(|(_, _, due)| *due <= now) {
                self.flush_all(out);
            }
        }

        fn flush_all(&mut self, out: &mut Vec<(String, Numbered)>) {
            if let Some((tag, event, _)) = self.held.take() {
                out.push((tag, event));
            }
        }

        fn next_deadline(&self) -> Option<Instant> {
            self.held.as_ref().map(|(_, _, due)| *due)
        }

        fn holds(&self, seqs: std::ops::Range<u64>) -> bool {
            // Cautious: the held group is taken to run from its first line to the newest.
            self.held
                .as_ref()
                .is_some_and(|(_, (first, _), _)| *first < seqs.end)
        }
    }

    fn line(text: &str) -> Event {
        Event {
            time: EventTime::new(1, 0),
            record: Record::from(vec![("log".to_owned(), Value::from(text))]),
            metadata: None,
        }
    }

    fn filters(toml_like: serde_json::Value) -> Vec<FilterConfig> {
        serde_json::from_value(toml_like).unwrap()
    }

    fn logs(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.record.get("log").unwrap().to_text().into_owned())
            .collect()
    }

    /// A pipeline whose first step is the test joiner, followed by `rest`.
    fn with_joiner(rest: serde_json::Value) -> Session {
        let mut pipeline = Pipeline::new(&filters(rest)).unwrap();
        pipeline.steps.insert(
            0,
            Step {
                tags: vec![TagPattern::parse("**").unwrap()],
                kind: StepKind::Join(JoinSpec::Test),
                dropped: Counter::noop(),
                errors: Counter::noop(),
                redactions: Counter::noop(),
            },
        );
        Arc::new(pipeline).session()
    }

    #[test]
    fn held_events_keep_their_inputs_unreleased_until_they_leave() {
        let mut session = with_joiner(serde_json::json!([
            {"type": "fields", "copy": {"log": "copied"}}
        ]));
        let now = Instant::now();
        let out = session.process("app", vec![line("a;"), line("b")], now);
        assert_eq!(logs(&out), ["a;"]);
        assert_eq!(
            out[0].record.get("copied"),
            Some(&Value::from("a;")),
            "later steps ran"
        );
        assert_eq!(session.taken(), 2);
        assert!(!session.holds(0..1));
        assert!(session.holds(1..2), "`b` is held");
        let out = session.process("app", vec![line("c;"), line("d")], now);
        assert_eq!(logs(&out), ["b\nc;"]);
        assert!(!session.holds(0..3));
        assert!(session.holds(3..4));
        assert_eq!(session.next_deadline(), Some(now + Duration::from_secs(1)));
        assert!(session.flush_due(now).is_empty());
        let released = session.flush_due(now + Duration::from_secs(1));
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].0, "app");
        assert_eq!(logs(&released[0].1), ["d"]);
        assert_eq!(
            released[0].1[0].record.get("copied"),
            Some(&Value::from("d"))
        );
        assert!(!session.holds(0..4));
        assert_eq!(session.next_deadline(), None);
    }

    #[test]
    fn filters_drop_what_they_are_told_to_and_nothing_else() {
        let pipeline = Arc::new(
            Pipeline::new(&filters(serde_json::json!([
                {"type": "drop", "select": "{} |= \"healthcheck\""},
                {"type": "min_level", "level": "info"},
                {"type": "keep", "match": ["app.**"], "select": "{service!=\"noisy\"}"},
            ])))
            .unwrap(),
        );
        let mut session = pipeline.session();
        let event = |log: &str, level: &str, service: &str| Event {
            time: EventTime::new(1, 0),
            record: Record::from(vec![
                ("log".to_owned(), Value::from(log)),
                ("level".to_owned(), Value::from(level)),
                ("service".to_owned(), Value::from(service)),
            ]),
            metadata: None,
        };
        let out = session.process(
            "app.web",
            vec![
                event("GET /healthcheck", "info", "web"),
                event("debug detail", "debug", "web"),
                event("no level known", "", "web"),
                event("served", "I", "web"),
                event("chatter", "warn", "noisy"),
            ],
            Instant::now(),
        );
        assert_eq!(logs(&out), ["no level known", "served"]);
        let out = session.process(
            "sys",
            vec![event("chatter", "warn", "noisy")],
            Instant::now(),
        );
        assert_eq!(logs(&out), ["chatter"], "keep applies to app.** only");
        assert!(pipeline.applies_to("sys"));
    }

    #[test]
    fn configuration_errors_name_the_filter() {
        let error = Pipeline::new(&filters(serde_json::json!([
            {"type": "fields", "remove": ["a"]},
            {"type": "keep", "select": "{service="}
        ])))
        .unwrap_err();
        assert_eq!(error.index, 1);
        assert_eq!(error.name, "1:keep");
        assert!(error.message.starts_with("select: "), "{}", error.message);
        let error = Pipeline::new(&filters(serde_json::json!([
            {"type": "fields", "name": "tidy", "match": ["{a"], "remove": ["a"]}
        ])))
        .unwrap_err();
        assert_eq!(error.name, "tidy");
        assert!(error.message.starts_with("match: "), "{}", error.message);
    }
}
