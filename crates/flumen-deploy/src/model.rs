//! What the catalogue holds: deployments, what is asked of it, and the checks every request
//! passes before it reaches the database.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use flumen_parse::Level;
use serde_json::{Map, Value};

/// The longest deployment id.
pub const MAX_ID_LEN: usize = 128;
/// The longest service, environment, version, commit or `started_by`.
pub const MAX_FIELD_LEN: usize = 256;
/// The longest finishing message.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The most bytes of metadata, as JSON.
pub const MAX_METADATA_BYTES: usize = 64 << 10;
/// The most deployments one list request returns.
pub const MAX_PAGE: usize = 500;

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Started, not finished.
    Running,
    /// Finished well.
    Succeeded,
    /// Finished badly.
    Failed,
    /// Stopped before it finished (a signal, a person).
    Cancelled,
}

impl Status {
    /// Every status, running first.
    pub const ALL: [Status; 4] = [
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// True once the deployment has finished.
    pub fn is_final(self) -> bool {
        self != Status::Running
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                Invalid(format!(
                    "status {text:?} is none of running, succeeded, failed, cancelled"
                ))
            })
    }
}

/// A request that does not pass the checks, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A request over a size limit (metadata), and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It does not pass the checks.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Something in it is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
}

/// A deployment as the catalogue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: String,
    pub tenant: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub commit: Option<String>,
    pub started_by: Option<String>,
    pub metadata: Map<String, Value>,
    /// How long its events are kept, when not the tenant's default.
    pub retention: Option<Duration>,
    pub status: Status,
    pub message: Option<String>,
    /// Unix nanoseconds.
    pub started_at: u64,
    pub finished_at: Option<u64>,
    /// The log record of its finish marker, on the node that finished it.
    pub finish_record: Option<u64>,
}

impl Deployment {
    /// The value of one of its properties, as attribution rules name them: `service`,
    /// `environment`, `version`, `commit`, `started_by`, or `metadata.KEY` (scalars only).
    pub fn property(&self, name: &str) -> Option<String> {
        let text = |v: &Option<String>| v.clone();
        match name {
            "id" => Some(self.id.clone()),
            "service" => text(&self.service),
            "environment" => text(&self.environment),
            "version" => text(&self.version),
            "commit" => text(&self.commit),
            "started_by" => text(&self.started_by),
            _ => match self.metadata.get(name.strip_prefix("metadata.")?)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }
    }
}

/// A deployment to start.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    /// Generated when absent.
    pub id: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub commit: Option<String>,
    pub started_by: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// A duration such as `30d` or `12h`.
    pub retention: Option<String>,
}

impl NewDeployment {
    /// The deployment of `tenant` these fields start at `now` (Unix nanoseconds), once every
    /// field is checked; the id is generated when none is given.
    pub fn check(self, tenant: &str, now: u64) -> Result<Deployment, Refusal> {
        let id = match self.id {
            Some(id) => {
                check_id(&id)?;
                id
            }
            None => generate_id(),
        };
        let field = |name: &str, value: Option<String>| -> Result<Option<String>, Invalid> {
            let Some(value) = value else { return Ok(None) };
            if value.len() > MAX_FIELD_LEN {
                return Err(Invalid(format!(
                    "{name} is {} bytes long; at most {MAX_FIELD_LEN} are allowed",
                    value.len()
                )));
            }
            if value.chars().any(char::is_control) {
                return Err(Invalid(format!("{name} holds control characters")));
            }
            Ok(Some(value).filter(|v| !v.is_empty()))
        };
        let metadata = match self.metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(Invalid("metadata must be a JSON object".into()).into()),
        };
        let metadata_len = serde_json::to_vec(&metadata).map_or(0, |v| v.len());
        if metadata_len > MAX_METADATA_BYTES {
            return Err(Refusal::TooLarge(format!(
                "metadata is {metadata_len} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed"
            )));
        }
        let retention = self
            .retention
            .map(|text| {
                humantime::parse_duration(&text)
                    .map_err(|e| Invalid(format!("retention {text:?}: {e}")))
                    .and_then(|d| {
                        if d < Duration::from_secs(60) {
                            Err(Invalid(format!("retention {text:?} is under a minute")))
                        } else {
                            Ok(d)
                        }
                    })
            })
            .transpose()?;
        Ok(Deployment {
            id,
            tenant: tenant.to_owned(),
            service: field("service", self.service)?,
            environment: field("environment", self.environment)?,
            version: field("version", self.version)?,
            commit: field("commit", self.commit)?,
            started_by: field("started_by", self.started_by)?,
            metadata,
            retention,
            status: Status::Running,
            message: None,
            started_at: now,
            finished_at: None,
            finish_record: None,
        })
    }
}

/// How a deployment finished.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    pub status: String,
    pub message: Option<String>,
}

impl Finish {
    /// Its final status and message, checked.
    pub fn check(&self) -> Result<(Status, Option<String>), Invalid> {
        let status: Status = self.status.parse()?;
        if !status.is_final() {
            return Err(Invalid(
                "a deployment finishes as succeeded, failed or cancelled".into(),
            ));
        }
        if let Some(message) = &self.message
            && message.len() > MAX_MESSAGE_LEN
        {
            return Err(Invalid(format!(
                "message is {} bytes long; at most {MAX_MESSAGE_LEN} are allowed",
                message.len()
            )));
        }
        Ok((status, self.message.clone().filter(|m| !m.is_empty())))
    }
}

/// Checks a deployment id: a letter or digit, then letters, digits, `.`, `_` and `-`, at most
/// [`MAX_ID_LEN`] in all — nothing a path, a URL or a query would read differently.
pub fn check_id(id: &str) -> Result<(), Invalid> {
    let bytes = id.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Invalid(format!(
            "deployment id {:?} is not 1 to {MAX_ID_LEN} letters, digits, '.', '_' or '-' starting with a letter or digit",
            truncated(id, 80)
        )))
    }
}

fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A new id: `d-` and 16 hexadecimal digits.
pub fn generate_id() -> String {
    format!("d-{:016x}", fastrand::u64(..))
}

/// Which deployments a list asks for, newest started first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub tenant: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub status: Option<Status>,
    /// Started at or after (Unix nanoseconds).
    pub started_from: Option<u64>,
    /// Started before.
    pub started_before: Option<u64>,
    pub limit: usize,
    /// Where the previous page ended.
    pub after: Option<PageCursor>,
}

/// Where a page of deployments ended: the last one's start and id. Its text form is
/// `<started_at>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub started_at: u64,
    pub id: String,
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.started_at, self.id)
    }
}

impl FromStr for PageCursor {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid(format!(
                "cursor {:?} is not one a list returned",
                truncated(text, 80)
            ))
        };
        let (started_at, id) = text.split_once('.').ok_or_else(bad)?;
        let started_at = started_at.parse().map_err(|_| bad())?;
        check_id(id).map_err(|_| bad())?;
        Ok(Self {
            started_at,
            id: id.to_owned(),
        })
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub deployments: Vec<Deployment>,
    /// Set when more may follow.
    pub next: Option<PageCursor>,
}

/// The events counted towards a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// By level (`info`, `error`, ..., [`level_name`](crate::level_name)); `""` for events
    /// without one.
    pub by_level: BTreeMap<String, u64>,
    /// Unix nanoseconds of the earliest and latest event.
    pub first_event: Option<u64>,
    pub last_event: Option<u64>,
}

impl EventCounts {
    /// Every event counted.
    pub fn total(&self) -> u64 {
        self.by_level.values().sum()
    }

    /// Events at level error or worse.
    pub fn errors(&self) -> u64 {
        [Level::Error, Level::Fatal]
            .map(crate::level_name)
            .iter()
            .filter_map(|level| self.by_level.get(*level))
            .sum()
    }

    /// Adds `events` events at `level`, the earliest at `first` and the latest at `last`.
    pub fn add(&mut self, level: &str, events: u64, first: u64, last: u64) {
        *self.by_level.entry(level.to_owned()).or_default() += events;
        self.first_event = Some(self.first_event.map_or(first, |f| f.min(first)));
        self.last_event = Some(self.last_event.map_or(last, |l| l.max(last)));
    }

    /// Adds what `other` counted.
    pub fn merge(&mut self, other: &EventCounts) {
        for (level, events) in &other.by_level {
            *self.by_level.entry(level.clone()).or_default() += events;
        }
        for (mine, theirs, pick) in [
            (
                &mut self.first_event,
                other.first_event,
                u64::min as fn(u64, u64) -> u64,
            ),
            (&mut self.last_event, other.last_event, u64::max),
        ] {
            if let Some(theirs) = theirs {
                *mine = Some(mine.map_or(theirs, |m| pick(m, theirs)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_in_paths_urls_and_sql() {
        for good in ["d-42", "api.2026-12-03_1", "A", &"x".repeat(MAX_ID_LEN)] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            ".hidden",
            "-x",
            "' OR 1=1 --",
            "a;DROP TABLE deployments",
            "a b",
            "ü",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_deployment_is_checked() {
        let checked = NewDeployment {
            service: Some("api".into()),
            environment: Some(String::new()),
            metadata: Some(serde_json::json!({"pr": 7})),
            retention: Some("30d".into()),
            ..Default::default()
        }
        .check("t", 7)
        .unwrap();
        assert!(checked.id.starts_with("d-") && checked.id.len() == 18);
        assert_eq!((checked.status, checked.started_at), (Status::Running, 7));
        assert_eq!(checked.environment, None, "empty is absent");
        assert_eq!(checked.retention, Some(Duration::from_secs(30 * 86400)));

        let too_big = NewDeployment {
            metadata: Some(serde_json::json!({"blob": "x".repeat(MAX_METADATA_BYTES)})),
            ..Default::default()
        };
        assert!(
            matches!(too_big.check("t", 0), Err(Refusal::TooLarge(m)) if m.contains("metadata"))
        );
        let not_object = NewDeployment {
            metadata: Some(serde_json::json!([1])),
            ..Default::default()
        };
        assert!(not_object.check("t", 0).is_err());
        let bad_retention = NewDeployment {
            retention: Some("soon".into()),
            ..Default::default()
        };
        assert!(bad_retention.check("t", 0).is_err());
    }

    #[test]
    fn finishing_needs_a_final_status() {
        let finish = |status: &str| Finish {
            status: status.into(),
            message: None,
        };
        assert_eq!(finish("failed").check().unwrap().0, Status::Failed);
        assert!(finish("running").check().is_err());
        assert!(finish("done").check().is_err());
    }

    #[test]
    fn cursors_read_back() {
        let cursor = PageCursor {
            started_at: 17,
            id: "a.b".into(),
        };
        assert_eq!(cursor.to_string().parse::<PageCursor>().unwrap(), cursor);
        assert!("x.y".parse::<PageCursor>().is_err());
        assert!("1./etc".parse::<PageCursor>().is_err());
    }

    #[test]
    fn counts_merge() {
        let mut a = EventCounts::default();
        a.add("info", 2, 10, 20);
        let mut b = EventCounts::default();
        b.add("error", 1, 5, 15);
        a.merge(&b);
        assert_eq!((a.total(), a.errors()), (3, 1));
        assert_eq!((a.first_event, a.last_event), (Some(5), Some(20)));
    }
}
