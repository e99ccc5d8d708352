//! Enrichment: static fields, fields from tag parts, the canonical fields, and `received_at`.
//!
//! Senders name the same facts differently — `deploymentId`, `deployment_id`, `app`,
//! `service.name`, Docker's `/container_name`, ECS's `/ecs-<family>-<revision>-<container>-<id>`.
//! The live stream, search and routing filter by one set of names, so this step copies whatever
//! the sender used into the **canonical fields** ([`CANONICAL_FIELDS`]) when they are absent;
//! the sender's own fields stay as they were.

use std::collections::BTreeMap;

use flumen_event::EventTime;
use flumen_event::record::{Event, Record, Value};
use flumen_parse::level::LEVEL_FIELD;
use flumen_parse::{DEFAULT_LEVEL_FIELDS, Level};
use serde::Deserialize;

/// The canonical fields and, for each, the names senders use for it, tried in order (dotted
/// names walk nested maps). The canonical name itself comes first: a sender that uses it wins.
pub const CANONICAL_FIELDS: &[(&str, &[&str])] = &[
    (
        "deployment_id",
        &[
            "deployment_id",
            "deploymentId",
            "deployment.id",
            "deploy_id",
            "kubernetes.labels.deployment_id",
        ],
    ),
    (
        "service",
        &[
            "service",
            "service_name",
            "serviceName",
            "service.name",
            "app",
            "application",
            "app_name",
            "kubernetes.labels.app.kubernetes.io/name",
            "kubernetes.labels.app",
            "com.docker.compose.service",
        ],
    ),
    (
        "environment",
        &[
            "environment",
            "env",
            "deployment.environment",
            "deployment_environment",
            "stage",
        ],
    ),
    (
        "version",
        &[
            "version",
            "service.version",
            "app_version",
            "kubernetes.labels.app.kubernetes.io/version",
        ],
    ),
    (
        "host",
        &["host", "hostname", "host.name", "kubernetes.host"],
    ),
    (
        "container_id",
        &[
            "container_id",
            "containerId",
            "container.id",
            "kubernetes.docker_id",
        ],
    ),
    (
        "container_name",
        &[
            "container_name",
            "containerName",
            "container.name",
            "kubernetes.container_name",
        ],
    ),
];

/// The `enrich` step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Fields set on every event (`set = { cluster = "eu-1" }`); they replace what the sender
    /// sent only with `overwrite = true`.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Whether `set` replaces fields the event already has.
    #[serde(default)]
    pub overwrite: bool,
    /// Fields taken from parts of the tag: `tag_parts = { service = 1 }` sets `service` to
    /// `api` for the tag `docker.api.prod`; negative indexes count from the end (-1 is the last).
    #[serde(default)]
    pub tag_parts: BTreeMap<String, i64>,
    /// Whether to fill the canonical fields from the names senders use (default true).
    #[serde(default = "yes")]
    pub canonical: bool,
    /// The field that gets the time flumen received the event (RFC 3339); `""` turns it off.
    #[serde(default = "default_received_at")]
    pub received_at: String,
}

fn yes() -> bool {
    true
}

fn default_received_at() -> String {
    "received_at".to_owned()
}

/// The compiled `enrich` step.
#[derive(Debug)]
pub struct Enrich {
    set: Vec<(String, Value)>,
    overwrite: bool,
    tag_parts: Vec<(String, i64)>,
    canonical: bool,
    received_at: Option<String>,
}

impl Enrich {
    /// Compiles `config`.
    pub fn new(config: &EnrichConfig) -> Result<Self, String> {
        if let Some((field, _)) = config.tag_parts.iter().find(|(_, i)| **i == i64::MIN) {
            return Err(format!("tag_parts.{field}: index out of range"));
        }
        Ok(Self {
            set: config
                .set
                .iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect(),
            overwrite: config.overwrite,
            tag_parts: config
                .tag_parts
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            canonical: config.canonical,
            received_at: Some(config.received_at.clone()).filter(|f| !f.is_empty()),
        })
    }

    /// Enriches one event of `tag`, received at `received_at`. What the sender said comes
    /// first: canonical fields are filled from the sender's own names before static and
    /// tag-derived values fill what is still missing.
    pub fn apply(&self, tag: &str, event: &mut Event, received_at: &str) {
        let record = &mut event.record;
        if self.canonical {
            fill_canonical(record);
        }
        for (field, value) in &self.set {
            if self.overwrite {
                record.insert(field.clone(), value.clone());
            } else {
                record.insert_if_absent(field, value.clone());
            }
        }
        for (field, index) in &self.tag_parts {
            if let Some(part) = tag_part(tag, *index) {
                record.insert_if_absent(field, part);
            }
        }
        if let Some(field) = &self.received_at {
            record.insert(field.clone(), received_at);
        }
    }
}

/// The text `received_at` gets for an event received now.
pub fn received_at_now() -> String {
    EventTime::now().to_string()
}

/// Part `index` of a dotted tag; negative counts from the end.
fn tag_part(tag: &str, index: i64) -> Option<&str> {
    let parts: Vec<&str> = tag.split('.').collect();
    let i = if index < 0 {
        parts.len().checked_sub(index.unsigned_abs() as usize)?
    } else {
        index as usize
    };
    parts.get(i).copied()
}

/// Copies the first alias present into each absent canonical field, reads ECS container names,
/// strips Docker's leading `/` from container names, and normalises the level.
pub fn fill_canonical(record: &mut Record) {
    for (canonical, aliases) in CANONICAL_FIELDS {
        if record.get(canonical).is_some() {
            continue;
        }
        let found = aliases
            .iter()
            .find_map(|alias| record.get_path(alias))
            .filter(|v| !matches!(v, Value::Null | Value::Map(_) | Value::Array(_)))
            .cloned();
        if let Some(value) = found {
            record.insert(*canonical, value);
        }
    }
    if let Some(Value::Str(name)) = record.get_mut("container_name")
        && let Some(stripped) = name.strip_prefix('/')
    {
        *name = stripped.to_owned();
    }
    if let Some(ecs) = record
        .get("container_name")
        .and_then(Value::as_str)
        .and_then(EcsContainerName::parse)
    {
        let (service, revision) = (ecs.container.to_owned(), ecs.revision.to_owned());
        record.insert_if_absent("service", service);
        record.insert_if_absent("version", revision);
    }
    normalise_level(record);
}

/// Writes the canonical level into `level` from the first level-like field, when it reads as
/// one; a level nobody recognises is left as it was.
pub fn normalise_level(record: &mut Record) {
    if let Some(level) = level_of(record) {
        record.insert(LEVEL_FIELD, level.as_str());
    }
}

/// The level of the first level-like field (`level`, `severity`, `lvl`, ... as parsers look
/// for them), when it reads as one.
pub fn level_of(record: &Record) -> Option<Level> {
    match DEFAULT_LEVEL_FIELDS
        .iter()
        .find_map(|alias| record.get(alias))?
    {
        Value::Int(n) => u32::try_from(*n).ok().and_then(Level::from_number),
        Value::UInt(n) => u32::try_from(*n).ok().and_then(Level::from_number),
        other => Level::parse(&other.to_text()),
    }
}

/// The parts of a container name ECS gives: `ecs-<family>-<revision>-<container>-<id>`.
#[derive(Debug, PartialEq, Eq)]
struct EcsContainerName<'a> {
    family: &'a str,
    revision: &'a str,
    container: &'a str,
}

impl<'a> EcsContainerName<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let rest = name.strip_prefix("ecs-")?;
        // The id is the last part, hex; the revision is the first all-digit part after the
        // family (families may contain dashes and digits, e.g. `svc-2-apache`).
        let (head, id) = rest.rsplit_once('-')?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let parts: Vec<&str> = head.split('-').collect();
        let at = (1..parts.len().saturating_sub(1))
            .find(|&i| !parts[i].is_empty() && parts[i].bytes().all(|b| b.is_ascii_digit()))?;
        let family_len: usize = parts[..at].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
        let container_start = family_len + 1 + parts[at].len() + 1;
        Some(Self {
            family: &head[..family_len],
            revision: parts[at],
            container: &head[container_start..],
        })
    }
}

/// A configured value (TOML, through serde_json's model) as a record value.
pub fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            Value::Map(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fields: &[(&str, &str)]) -> Event {
        Event {
            time: EventTime::new(1, 0),
            record: Record::from(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                    .collect::<Vec<_>>(),
            ),
            metadata: None,
        }
    }

    fn text<'a>(event: &'a Event, field: &str) -> Option<std::borrow::Cow<'a, str>> {
        event.record.get(field).map(Value::to_text)
    }

    #[test]
    fn the_seeds_ecs_container_name_gives_service_and_version() {
        // The record the seed's Docker driver sends from ECS.
        let mut e = event(&[
            ("log", "hello"),
            ("source", "stdout"),
            (
                "container_id",
                "6d33ade920a96179205e01c3a17d6e7f3eb98f0d5bb2b494383250220e7f443c",
            ),
            (
                "container_name",
                "/ecs-service-2-apache-d492a08f9480c2fcca01",
            ),
        ]);
        fill_canonical(&mut e.record);
        assert_eq!(
            text(&e, "container_name").unwrap(),
            "ecs-service-2-apache-d492a08f9480c2fcca01"
        );
        assert_eq!(text(&e, "service").unwrap(), "apache");
        assert_eq!(text(&e, "version").unwrap(), "2");
        assert_eq!(
            EcsContainerName::parse("ecs-my-app-12-web-worker-aa11").unwrap(),
            EcsContainerName {
                family: "my-app",
                revision: "12",
                container: "web-worker"
            }
        );
        assert_eq!(EcsContainerName::parse("ecs-nodigits-web-aa11"), None);
        assert_eq!(EcsContainerName::parse("web-1"), None);
    }

    #[test]
    fn aliases_fill_absent_canonical_fields_only() {
        let mut e = event(&[
            ("deploymentId", "d-42"),
            ("app", "checkout"),
            ("service", "api"),
            ("env", "prod"),
            ("severity", "warning"),
        ]);
        fill_canonical(&mut e.record);
        assert_eq!(text(&e, "deployment_id").unwrap(), "d-42");
        assert_eq!(
            text(&e, "service").unwrap(),
            "api",
            "the canonical name wins"
        );
        assert_eq!(text(&e, "environment").unwrap(), "prod");
        assert_eq!(text(&e, "level").unwrap(), "WARN");
        assert_eq!(text(&e, "deploymentId").unwrap(), "d-42", "originals stay");
    }

    #[test]
    fn static_fields_tag_parts_and_received_at() {
        let enrich = Enrich::new(&EnrichConfig {
            set: [("cluster".to_owned(), serde_json::json!("eu-1"))].into(),
            overwrite: false,
            tag_parts: [("service".to_owned(), 1), ("environment".to_owned(), -1)].into(),
            canonical: true,
            received_at: "received_at".into(),
        })
        .unwrap();
        let mut e = event(&[("cluster", "mine")]);
        enrich.apply("docker.api.prod", &mut e, "2026-01-01T00:00:00Z");
        assert_eq!(text(&e, "cluster").unwrap(), "mine");
        assert_eq!(text(&e, "service").unwrap(), "api");
        assert_eq!(text(&e, "environment").unwrap(), "prod");
        let mut e = event(&[("env", "staging")]);
        enrich.apply("docker.api.prod", &mut e, "2026-01-01T00:00:00Z");
        assert_eq!(
            text(&e, "environment").unwrap(),
            "staging",
            "the sender's own name for it beats the tag"
        );
        assert_eq!(text(&e, "received_at").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(tag_part("a", -2), None);
        assert_eq!(tag_part("a", 3), None);
    }
}
