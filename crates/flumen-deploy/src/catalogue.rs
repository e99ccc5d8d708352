//! The catalogue's database: SQLite in the data directory by default, or PostgreSQL, which a
//! cluster of flumen nodes shares. One SQL text serves both (sqlx's `any` driver, `$N`
//! placeholders, which SQLite reads too); the tests run against both.
//!
//! The database may be away (PostgreSQL restarting, the network): opening never waits for it.
//! Every call then fails with [`CatalogueError::Unavailable`] — the API answers 503 — and
//! works again once the database is back, with the migrations run first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;

use crate::model::{Deployment, EventCounts, Invalid, ListFilter, Page, PageCursor, Status};

/// The migrations, in order. A released migration is never edited: a change is a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "deployments",
    include_str!("../migrations/0001_deployments.sql"),
)];

/// How long a call waits for a connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a catalogue call failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The request does not pass the checks.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No deployment has this id.
    #[error("no deployment {0:?}")]
    NotFound(String),
    /// The request contradicts the deployment's state (it exists already, it has finished).
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or failed.
    #[error("the deployment catalogue is unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for CatalogueError {
    fn from(error: sqlx::Error) -> Self {
        CatalogueError::Unavailable(error.to_string())
    }
}

/// The deployment catalogue.
#[derive(Debug)]
pub struct Catalogue {
    pool: AnyPool,
    /// What the URL names, for logs (no password).
    describe: String,
    migrated: AtomicBool,
    migrating: Mutex<()>,
}

/// The database a catalogue URL names.
pub fn describe_url(url: &str) -> String {
    match url.split_once("://") {
        Some(("sqlite", rest)) => format!("SQLite {}", rest.split('?').next().unwrap_or(rest)),
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

impl Catalogue {
    /// A catalogue on the database at `url` (`sqlite://PATH?mode=rwc` or `postgres://...`).
    /// Does not connect: the first call does, and runs the migrations.
    pub fn open(url: &str) -> Result<Self, CatalogueError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite takes one writer at a time anyway, and waits for it (busy timeout).
            .max_connections(if sqlite { 4 } else { 8 })
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy(url)
            .map_err(|e| Invalid(format!("deployments database {url:?}: {e}")))?;
        Ok(Self {
            pool,
            describe: describe_url(url),
            migrated: AtomicBool::new(false),
            migrating: Mutex::new(()),
        })
    }

    /// The database, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Runs the migrations not run yet, once per process.
    pub async fn migrate(&self) -> Result<(), CatalogueError> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.migrating.lock().await;
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        let migrator = Migrator {
            migrations: MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        (*description).into(),
                        MigrationType::Simple,
                        (*sql).into(),
                        false,
                    )
                })
                .collect(),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| CatalogueError::Unavailable(format!("migrations: {e}")))?;
        self.migrated.store(true, Ordering::Release);
        tracing::info!(message = "Deployment catalogue ready.", database = %self.describe);
        Ok(())
    }

    /// The pool, once migrated.
    async fn ready(&self) -> Result<&AnyPool, CatalogueError> {
        self.migrate().await?;
        Ok(&self.pool)
    }

    /// Inserts a deployment that starts: an id taken already is a conflict.
    pub async fn create(&self, deployment: &Deployment) -> Result<(), CatalogueError> {
        let pool = self.ready().await?;
        let metadata = serde_json::to_string(&deployment.metadata).expect("a JSON map serializes");
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, tenant, service, environment, version, git_commit, \
             started_by, metadata, retention_secs, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&deployment.id)
        .bind(&deployment.tenant)
        .bind(&deployment.service)
        .bind(&deployment.environment)
        .bind(&deployment.version)
        .bind(&deployment.commit)
        .bind(&deployment.started_by)
        .bind(&metadata)
        .bind(deployment.retention.map(|d| d.as_secs() as i64))
        .bind(deployment.status.as_str())
        .bind(deployment.started_at as i64)
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(
                CatalogueError::Conflict(format!("deployment {:?} exists already", deployment.id)),
            ),
            Err(error) => Err(error.into()),
        }
    }

    /// Finishes a running deployment with `status`: exactly one of concurrent calls succeeds;
    /// the others get a conflict.
    pub async fn finish(
        &self,
        tenant: &str,
        id: &str,
        status: Status,
        message: Option<&str>,
        now: u64,
    ) -> Result<Deployment, CatalogueError> {
        let pool = self.ready().await?;
        let updated = sqlx::query(
            "UPDATE deployments SET status = $1, message = $2, finished_at = $3 \
             WHERE tenant = $4 AND id = $5 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(message)
        .bind(now as i64)
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await?;
        let deployment = self.get(tenant, id).await?;
        if updated.rows_affected() == 0 {
            return Err(CatalogueError::Conflict(format!(
                "deployment {id:?} finished already ({})",
                deployment.status
            )));
        }
        Ok(deployment)
    }

    /// Records where the finish marker of `id` is in this node's log.
    pub async fn set_finish_record(&self, id: &str, record: u64) -> Result<(), CatalogueError> {
        sqlx::query("UPDATE deployments SET finish_record = $1 WHERE id = $2")
            .bind(record as i64)
            .bind(id)
            .execute(self.ready().await?)
            .await?;
        Ok(())
    }

    /// One deployment.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Deployment, CatalogueError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(self.ready().await?)
        .await?;
        row.map(|row| deployment_of(&row))
            .transpose()?
            .ok_or_else(|| CatalogueError::NotFound(id.to_owned()))
    }

    /// A page of deployments, newest started first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Page, CatalogueError> {
        let pool = self.ready().await?;
        let mut args = Args::default();
        let mut sql = format!(
            "SELECT {COLUMNS} FROM deployments WHERE tenant = {}",
            args.text(&filter.tenant)
        );
        for (column, value) in [
            ("service", filter.service.as_deref()),
            ("environment", filter.environment.as_deref()),
            ("status", filter.status.map(Status::as_str)),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = {}", args.text(value)));
            }
        }
        if let Some(from) = filter.started_from {
            sql.push_str(&format!(" AND started_at >= {}", args.number(from)));
        }
        if let Some(before) = filter.started_before {
            sql.push_str(&format!(" AND started_at < {}", args.number(before)));
        }
        if let Some(after) = &filter.after {
            let (started, id) = (args.number(after.started_at), args.text(&after.id));
            sql.push_str(&format!(
                " AND (started_at < {started} OR (started_at = {started} AND id < {id}))"
            ));
        }
        let limit = filter.limit.clamp(1, crate::model::MAX_PAGE);
        sql.push_str(&format!(
            " ORDER BY started_at DESC, id DESC LIMIT {}",
            limit + 1
        ));
        let query = args.bind(sqlx::query(&sql));
        let rows = query.fetch_all(pool).await?;
        let mut deployments = rows
            .iter()
            .map(deployment_of)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if deployments.len() > limit {
            deployments.truncate(limit);
            deployments.last().map(|last| PageCursor {
                started_at: last.started_at,
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok(Page { deployments, next })
    }

    /// Deployments running, or finished at or after `finished_since` (Unix nanoseconds): those
    /// events may still be attributed and counted to.
    pub async fn active(&self, finished_since: u64) -> Result<Vec<Deployment>, CatalogueError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE status = 'running' OR finished_at >= $1"
        ))
        .bind(finished_since as i64)
        .fetch_all(self.ready().await?)
        .await?;
        rows.iter().map(deployment_of).collect()
    }

    /// Every deployment whose events are kept longer or shorter than its tenant's default:
    /// its id and how long.
    pub async fn retentions(&self) -> Result<HashMap<String, Duration>, CatalogueError> {
        let rows = sqlx::query(
            "SELECT id, retention_secs FROM deployments WHERE retention_secs IS NOT NULL",
        )
        .fetch_all(self.ready().await?)
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let secs: i64 = row.try_get(1)?;
                Ok((id, Duration::from_secs(secs.max(0) as u64)))
            })
            .collect()
    }

    /// The events counted towards each of `ids` (absent: none yet).
    pub async fn counts(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, EventCounts>, CatalogueError> {
        let mut counts: HashMap<String, EventCounts> = HashMap::new();
        if ids.is_empty() {
            return Ok(counts);
        }
        let slots: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT deployment_id, level, events, first_event, last_event \
             FROM deployment_events WHERE deployment_id IN ({})",
            slots.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(self.ready().await?).await? {
            let id: String = row.try_get(0)?;
            let level: String = row.try_get(1)?;
            let events: i64 = row.try_get(2)?;
            let first: i64 = row.try_get(3)?;
            let last: i64 = row.try_get(4)?;
            counts
                .entry(id)
                .or_default()
                .add(&level, events as u64, first as u64, last as u64);
        }
        Ok(counts)
    }

    /// Where `node` counts its log from next (`None`: it never counted).
    pub async fn counted_up_to(&self, node: &str) -> Result<Option<u64>, CatalogueError> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT next_record FROM deployment_counting WHERE node = $1")
                .bind(node)
                .fetch_optional(self.ready().await?)
                .await?;
        Ok(next.map(|n| n as u64))
    }

    /// Adds `counted` to the deployments' counts and records that `node` counted its log up
    /// to `next_record`, in one transaction: a crash counts nothing twice.
    pub async fn add_counts(
        &self,
        node: &str,
        next_record: u64,
        counted: &HashMap<String, EventCounts>,
    ) -> Result<(), CatalogueError> {
        let mut tx = self.ready().await?.begin().await?;
        for (id, counts) in counted {
            let (Some(first), Some(last)) = (counts.first_event, counts.last_event) else {
                continue;
            };
            for (level, events) in &counts.by_level {
                // The deployment may have been removed meanwhile: then nothing is added.
                sqlx::query(
                    "INSERT INTO deployment_events (deployment_id, level, events, first_event, last_event) \
                     SELECT id, $2, $3, $4, $5 FROM deployments WHERE id = $1 \
                     ON CONFLICT (deployment_id, level) DO UPDATE SET \
                     events = deployment_events.events + excluded.events, \
                     first_event = CASE WHEN excluded.first_event < deployment_events.first_event \
                       THEN excluded.first_event ELSE deployment_events.first_event END, \
                     last_event = CASE WHEN excluded.last_event > deployment_events.last_event \
                       THEN excluded.last_event ELSE deployment_events.last_event END",
                )
                .bind(id)
                .bind(level)
                .bind(*events as i64)
                .bind(first as i64)
                .bind(last as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO deployment_counting (node, next_record) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET next_record = excluded.next_record",
        )
        .bind(node)
        .bind(next_record as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The arguments of a query built piece by piece, each with its `$N` placeholder.
#[derive(Default)]
struct Args<'a>(Vec<Arg<'a>>);

enum Arg<'a> {
    Text(&'a str),
    Number(i64),
}

impl<'a> Args<'a> {
    fn push(&mut self, arg: Arg<'a>) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }

    fn text(&mut self, text: &'a str) -> String {
        self.push(Arg::Text(text))
    }

    fn number(&mut self, number: u64) -> String {
        self.push(Arg::Number(number as i64))
    }

    fn bind(
        self,
        mut query: sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments<'a>>,
    ) -> sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments<'a>> {
        for arg in self.0 {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Number(number) => query.bind(number),
            };
        }
        query
    }
}

const COLUMNS: &str = "id, tenant, service, environment, version, git_commit, started_by, \
    metadata, retention_secs, status, message, started_at, finished_at, finish_record";

fn deployment_of(row: &AnyRow) -> Result<Deployment, CatalogueError> {
    let damaged = |what: &str| CatalogueError::Unavailable(format!("a deployment row has {what}"));
    let metadata: String = row.try_get("metadata")?;
    let metadata = match serde_json::from_str(&metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(damaged("metadata that is not a JSON object")),
    };
    let status: String = row.try_get("status")?;
    let nanos = |column: &str| -> Result<Option<u64>, CatalogueError> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(|n| n as u64))
    };
    Ok(Deployment {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        service: row.try_get("service")?,
        environment: row.try_get("environment")?,
        version: row.try_get("version")?,
        commit: row.try_get("git_commit")?,
        started_by: row.try_get("started_by")?,
        metadata,
        retention: nanos("retention_secs")?.map(Duration::from_secs),
        status: status.parse().map_err(|_| damaged("an unknown status"))?,
        message: row.try_get("message")?,
        started_at: nanos("started_at")?.unwrap_or(0),
        finished_at: nanos("finished_at")?,
        finish_record: nanos("finish_record")?,
    })
}
