//! Attribution: the `deployment` step gives an event without a `deployment_id` the id of the
//! deployment it comes from, matched on other fields — a container label, a version field,
//! the Docker container name — so that containers that know nothing of flumen are counted
//! towards, searched and streamed with their deployment.
//!
//! ```toml
//! [[filters]]
//! type = "deployment"
//! match = "docker.**"
//! # event field (a dotted path) = deployment property: all must be equal
//! fields = { container_name = "metadata.container", "labels.app" = "service" }
//! late = "1m"
//! ```
//!
//! Properties are `service`, `environment`, `version`, `commit`, `started_by` and
//! `metadata.KEY`. An event is attributed to a deployment whose properties all equal the
//! event's fields and that was running at the event's time, or had finished at most `late`
//! before it; when several are, to the one started last. The deployments come from the
//! server's catalogue through a [`DeploymentDirectory`] shared by every `deployment` step.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flumen_event::record::{Event, Value};
use serde::Deserialize;

/// The field that names an event's deployment.
pub const DEPLOYMENT_ID: &str = "deployment_id";

/// The deployment properties a rule may name, besides `metadata.KEY`.
pub const PROPERTIES: [&str; 5] = ["service", "environment", "version", "commit", "started_by"];

/// The longest `late`: the server keeps deployments finished this long ago in the directory.
pub const MAX_LATE: Duration = Duration::from_secs(3600);

/// The `deployment` step's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    /// Event field (dotted path) → deployment property; all must be equal.
    pub fields: BTreeMap<String, String>,
    /// How long after its finish a deployment still takes events (default 1m).
    #[serde(default = "default_late", with = "humantime_serde")]
    pub late: Duration,
}

fn default_late() -> Duration {
    Duration::from_secs(60)
}

/// A deployment as attribution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDeployment {
    /// Its id.
    pub id: String,
    /// The values of the properties rules name ([`DeploymentDirectory::properties`]).
    pub properties: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub started_at: u64,
    /// Unix nanoseconds; `None` while it runs.
    pub finished_at: Option<u64>,
}

/// The deployments events may be attributed to, kept current by the server.
#[derive(Debug, Default)]
pub struct DeploymentDirectory {
    /// The property names rules use, sorted.
    properties: Vec<String>,
    deployments: RwLock<Arc<Vec<KnownDeployment>>>,
}

impl DeploymentDirectory {
    pub(crate) fn new(mut properties: Vec<String>) -> Self {
        properties.sort();
        properties.dedup();
        Self {
            properties,
            deployments: RwLock::default(),
        }
    }

    /// The properties each [`KnownDeployment`] must carry.
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// The deployments are exactly these.
    pub fn replace(&self, deployments: Vec<KnownDeployment>) {
        *self.deployments.write().expect("deployment directory lock") = Arc::new(deployments);
    }

    /// Adds a deployment or updates the one with its id.
    pub fn upsert(&self, deployment: KnownDeployment) {
        let mut deployments = self.deployments.write().expect("deployment directory lock");
        let mut updated: Vec<KnownDeployment> = deployments
            .iter()
            .filter(|d| d.id != deployment.id)
            .cloned()
            .collect();
        updated.push(deployment);
        *deployments = Arc::new(updated);
    }

    fn snapshot(&self) -> Arc<Vec<KnownDeployment>> {
        self.deployments
            .read()
            .expect("deployment directory lock")
            .clone()
    }
}

/// A compiled `deployment` step.
#[derive(Debug)]
pub struct Attributor {
    /// (event field, property) pairs.
    fields: Vec<(String, String)>,
    late_ns: u64,
    directory: Arc<DeploymentDirectory>,
}

impl Attributor {
    /// Checks `config`; the directory is the pipeline's.
    pub(crate) fn new(
        config: &AttributeConfig,
        directory: Arc<DeploymentDirectory>,
    ) -> Result<Self, String> {
        if config.late > MAX_LATE {
            return Err(format!(
                "late: at most {} (deployments finished longer ago are no longer looked up)",
                humantime_serde::re::humantime::format_duration(MAX_LATE)
            ));
        }
        if config.fields.is_empty() {
            return Err(
                "fields: name at least one event field and the deployment property it must equal"
                    .into(),
            );
        }
        for (field, property) in &config.fields {
            if field.is_empty() {
                return Err("fields: an empty event field name".into());
            }
            check_property(property)?;
        }
        Ok(Self {
            fields: config
                .fields
                .iter()
                .map(|(f, p)| (f.clone(), p.clone()))
                .collect(),
            late_ns: u64::try_from(config.late.as_nanos()).unwrap_or(u64::MAX),
            directory,
        })
    }

    /// Gives `event` the id of its deployment, if it has none and one matches.
    pub fn apply(&self, event: &mut Event) {
        if event.record.get(DEPLOYMENT_ID).is_some() {
            return;
        }
        let deployments = self.directory.snapshot();
        if deployments.is_empty() {
            return;
        }
        let mut values = Vec::with_capacity(self.fields.len());
        for (field, _) in &self.fields {
            match event.record.get_path(field) {
                Some(value @ (Value::Str(_) | Value::Int(_) | Value::UInt(_) | Value::Bool(_))) => {
                    values.push(value.to_text())
                }
                // Without every field, no deployment matches.
                _ => return,
            }
        }
        let time = u64::try_from(event.time.as_unix_nanos()).unwrap_or(u64::MAX);
        let found = deployments
            .iter()
            .filter(|d| {
                time >= d.started_at
                    && d.finished_at
                        .is_none_or(|end| time <= end.saturating_add(self.late_ns))
            })
            .filter(|d| {
                self.fields
                    .iter()
                    .zip(&values)
                    .all(|((_, property), value)| {
                        d.properties.get(property).map(String::as_str) == Some(value.as_ref())
                    })
            })
            .max_by_key(|d| (d.started_at, &d.id));
        if let Some(deployment) = found {
            event
                .record
                .insert(DEPLOYMENT_ID, Value::from(deployment.id.as_str()));
        }
    }
}

/// Checks a property name a rule uses.
fn check_property(property: &str) -> Result<(), String> {
    let metadata_key = property
        .strip_prefix("metadata.")
        .is_some_and(|key| !key.is_empty());
    if PROPERTIES.contains(&property) || metadata_key {
        Ok(())
    } else {
        Err(format!(
            "fields: {property:?} is not a deployment property ({}, or metadata.KEY)",
            PROPERTIES.join(", ")
        ))
    }
}

/// The property names `filters`' `deployment` steps use.
pub(crate) fn properties_of<'a>(configs: impl Iterator<Item = &'a AttributeConfig>) -> Vec<String> {
    configs.flat_map(|c| c.fields.values().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::EventTime;
    use flumen_event::record::Record;

    fn directory() -> Arc<DeploymentDirectory> {
        let directory = Arc::new(DeploymentDirectory::new(vec![
            "metadata.container".into(),
            "service".into(),
        ]));
        let known =
            |id: &str, container: &str, started: u64, finished: Option<u64>| KnownDeployment {
                id: id.into(),
                properties: [
                    ("metadata.container".to_owned(), container.to_owned()),
                    ("service".to_owned(), "api".to_owned()),
                ]
                .into(),
                started_at: started * 1_000_000_000,
                finished_at: finished.map(|f| f * 1_000_000_000),
            };
        directory.replace(vec![
            known("d-old", "api-1", 100, Some(200)),
            known("d-new", "api-1", 300, None),
            known("d-web", "web-1", 100, None),
        ]);
        directory
    }

    fn attribute(record: Vec<(&str, Value)>, at_secs: u64) -> Option<String> {
        let config = AttributeConfig {
            fields: [("container_name".to_owned(), "metadata.container".to_owned())].into(),
            late: Duration::from_secs(60),
        };
        let attributor = Attributor::new(&config, directory()).unwrap();
        let mut event = Event {
            metadata: None,
            time: EventTime::new(at_secs, 0),
            record: Record::from(
                record
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Vec<_>>(),
            ),
        };
        attributor.apply(&mut event);
        event
            .record
            .get(DEPLOYMENT_ID)
            .map(|v| v.to_text().into_owned())
    }

    #[test]
    fn an_event_goes_to_the_deployment_running_at_its_time() {
        let api = || vec![("container_name", Value::from("api-1"))];
        assert_eq!(attribute(api(), 150).as_deref(), Some("d-old"));
        assert_eq!(attribute(api(), 250).as_deref(), Some("d-old"), "late");
        assert_eq!(attribute(api(), 270), None, "after late");
        assert_eq!(attribute(api(), 400).as_deref(), Some("d-new"));
        assert_eq!(attribute(api(), 50), None, "before any");
        let web = vec![("container_name", Value::from("web-1"))];
        assert_eq!(attribute(web, 150).as_deref(), Some("d-web"));
        let other = vec![("container_name", Value::from("db-1"))];
        assert_eq!(attribute(other, 150), None);
    }

    #[test]
    fn an_event_that_names_its_deployment_keeps_it() {
        let named = vec![
            ("container_name", Value::from("api-1")),
            (DEPLOYMENT_ID, Value::from("d-own")),
        ];
        assert_eq!(attribute(named, 400).as_deref(), Some("d-own"));
        assert_eq!(attribute(vec![], 400), None, "no field, no match");
    }

    #[test]
    fn rules_name_known_properties() {
        let directory = Arc::new(DeploymentDirectory::default());
        let config = |property: &str| AttributeConfig {
            fields: [("f".to_owned(), property.to_owned())].into(),
            late: Duration::ZERO,
        };
        assert!(Attributor::new(&config("version"), directory.clone()).is_ok());
        assert!(Attributor::new(&config("metadata.pod"), directory.clone()).is_ok());
        assert!(Attributor::new(&config("metadata."), directory.clone()).is_err());
        assert!(Attributor::new(&config("colour"), directory).is_err());
    }
}
