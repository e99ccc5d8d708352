//! Deployments at run time: the catalogue (`flumen-deploy`), the events flumen logs when a
//! deployment starts and finishes, the counter that attributes durable events to
//! deployments, and the ends of deployment-scoped live streams.
//!
//! Starting a deployment writes it to the catalogue, then logs a `deployment_started` event
//! (tag `flumen.deployment`). Finishing claims it in the catalogue (exactly one finish wins),
//! then logs `deployment_finished` and records that event's log position: a live stream
//! scoped to the deployment ends once it has read through that record, so it carries every
//! event logged before the finish. If flumen stops between the claim and the position, the
//! streams end at the log's end as it is when they learn of the finish.
//!
//! Every few seconds the deployments still running (or finished within [`LATE`]) are read
//! back from the catalogue: the counter counts their events, and streams learn of finishes
//! made by another node sharing the database. Every half minute, and when a deployment with a
//! retention of its own starts, the store learns which deployments it keeps longer or shorter
//! than their tenant; until it first has, it removes nothing by age (see `flumen-store`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flumen_deploy::{
    Catalogue, CatalogueError, Deployment, DeploymentCounter, EventCounts, ListFilter, MARKER_TAG,
    Page, Status,
};
use flumen_event::batch::BatchBuilder;
use flumen_event::record::{Record, Value};
use flumen_event::{EventTime, TenantId, entry};
use flumen_live::StreamEnd;
use flumen_process::attribute::{DeploymentDirectory, KnownDeployment};
use flumen_store::Store;
use flumen_wal::{Position, Wal};
use tokio::sync::watch;

/// How long after its finish a deployment's events are still counted and attributed (they
/// may arrive late).
pub const LATE: Duration = flumen_process::attribute::MAX_LATE;
/// How often the running deployments are read back from the catalogue.
const REFRESH: Duration = Duration::from_secs(2);
/// How often the store's map of deployments' retention is read back: as often as the store
/// applies retention.
const RETENTION_REFRESH: Duration = Duration::from_secs(30);

/// The deployments of one flumen.
#[derive(Debug)]
pub struct Deployments {
    catalogue: Arc<Catalogue>,
    counter: Arc<DeploymentCounter>,
    wal: Arc<Wal>,
    /// The ends of the deployments that live streams wait on, by id.
    ends: Mutex<HashMap<String, watch::Sender<Option<StreamEnd>>>>,
    /// What the pipeline's `deployment` steps attribute events to, when it has any.
    directory: Option<Arc<DeploymentDirectory>>,
    /// The store whose retention deployments may change, when there is one.
    store: Option<Arc<Store>>,
    /// What this node started and finished lately, for the refresh not to undo it.
    local: Mutex<LocalChanges>,
}

/// The deployments this node started or finished, numbered in order, until a refresh has read
/// them back from the catalogue. A refresh whose read began before a start would otherwise
/// replace the counter's and the directory's sets with an answer that lacks the new
/// deployment, and its events would go uncounted and unattributed until the next refresh.
#[derive(Debug, Default)]
struct LocalChanges {
    last: u64,
    changes: HashMap<String, (u64, Deployment)>,
}

impl LocalChanges {
    /// Notes `deployment` as this node has just written it to the catalogue.
    fn record(&mut self, deployment: &Deployment) {
        self.last += 1;
        self.changes
            .insert(deployment.id.clone(), (self.last, deployment.clone()));
    }

    /// The mark of a refresh about to read the catalogue.
    fn mark(&self) -> u64 {
        self.last
    }

    /// The changes made after `mark`. Those up to it were written before the read began, so
    /// its answer holds them: they are forgotten.
    fn after(&mut self, mark: u64) -> Vec<Deployment> {
        self.changes.retain(|_, (number, _)| *number > mark);
        self.changes.values().map(|(_, d)| d.clone()).collect()
    }
}

impl Deployments {
    /// Deployments kept in `catalogue`, marked in `wal`, known to `directory`, their own
    /// retention applied by `store`.
    pub fn new(
        catalogue: Arc<Catalogue>,
        wal: Arc<Wal>,
        directory: Option<Arc<DeploymentDirectory>>,
        store: Option<Arc<Store>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            catalogue,
            counter: Arc::new(DeploymentCounter::default()),
            wal,
            ends: Mutex::new(HashMap::new()),
            directory,
            store,
            local: Mutex::default(),
        })
    }

    /// Tells the store which deployments it keeps longer or shorter than their tenant.
    async fn refresh_retention(&self) -> Result<(), CatalogueError> {
        if let Some(store) = &self.store {
            store.set_deployment_retention(self.catalogue.retentions().await?);
        }
        Ok(())
    }

    /// Tells the counter and attribution of `deployment`, which this node has just started or
    /// finished, and keeps it for the next refresh: under the lock the refresh holds while it
    /// replaces their sets, so that the change lands either in its answer or after it.
    fn note_local_change(&self, deployment: &Deployment) {
        let mut local = self.local.lock().expect("local deployment changes lock");
        local.record(deployment);
        self.counter.know(&deployment.id);
        if let Some(directory) = &self.directory {
            directory.upsert(known(directory, deployment));
        }
    }

    /// The catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Runs the counter and the refresh until `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        node: String,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.counter.clone().run(
            self.catalogue.clone(),
            self.wal.clone(),
            node,
            stop.clone(),
        ));
        tasks.spawn(self.clone().refresh(stop));
        tasks
    }

    /// Makes `active`, read from the catalogue after `mark`, and what this node changed since,
    /// the deployments that count and are attributed to; returns them.
    fn know_only(&self, mut active: Vec<Deployment>, mark: u64) -> Vec<Deployment> {
        let mut local = self.local.lock().expect("local deployment changes lock");
        let newer = local.after(mark);
        active.retain(|d| !newer.iter().any(|n| n.id == d.id));
        active.extend(newer);
        self.counter
            .know_only(active.iter().map(|d| d.id.clone()).collect::<HashSet<_>>());
        if let Some(directory) = &self.directory {
            directory.replace(active.iter().map(|d| known(directory, d)).collect());
        }
        active
    }

    async fn refresh(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut reported = false;
        let mut retention_due = Instant::now();
        loop {
            let since = now_ns().saturating_sub(LATE.as_nanos() as u64);
            let mark = self
                .local
                .lock()
                .expect("local deployment changes lock")
                .mark();
            let active = self.catalogue.active(since).await;
            metrics::gauge!("flumen_deployment_catalogue_up")
                .set(f64::from(u8::from(active.is_ok())));
            match active {
                Ok(active) => {
                    reported = false;
                    let active = self.know_only(active, mark);
                    for deployment in active.iter().filter(|d| d.status.is_final()) {
                        self.announce_end(deployment);
                    }
                    if Instant::now() >= retention_due && self.refresh_retention().await.is_ok() {
                        retention_due = Instant::now() + RETENTION_REFRESH;
                    }
                }
                // Once per outage: the API's 503s say the rest.
                Err(error) if !reported => {
                    reported = true;
                    tracing::warn!(message = "The deployment catalogue is unavailable; ingest goes on.", %error);
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Starts a deployment and logs its start.
    pub async fn start(&self, deployment: Deployment) -> Result<Deployment, CatalogueError> {
        self.catalogue.create(&deployment).await?;
        self.note_local_change(&deployment);
        if deployment.retention.is_some()
            && let Err(error) = self.refresh_retention().await
        {
            // Started all the same: the next refresh tells the store.
            tracing::warn!(message = "The store could not learn a new deployment's retention yet.", id = %deployment.id, %error);
        }
        metrics::counter!("flumen_deployments_started_total").increment(1);
        let started = format!(
            "deployment {} of {} started",
            deployment.id,
            describe(&deployment)
        );
        if let Err(error) = self.mark(&deployment, "deployment_started", &started).await {
            tracing::warn!(message = "The deployment's start could not be logged.", deployment = %deployment.id, %error);
        }
        Ok(deployment)
    }

    /// Finishes a running deployment, logs the finish, and ends its live streams once they
    /// have sent what was logged before it.
    pub async fn finish(
        &self,
        id: &str,
        status: Status,
        message: Option<&str>,
    ) -> Result<Deployment, CatalogueError> {
        let mut deployment = self
            .catalogue
            .finish(TenantId::DEFAULT_NAME, id, status, message, now_ns())
            .await?;
        let mut finished = format!("deployment {id} {status}");
        if let Some(message) = message {
            finished.push_str(": ");
            finished.push_str(message);
        }
        match self
            .mark(&deployment, "deployment_finished", &finished)
            .await
        {
            Ok(record) => {
                deployment.finish_record = Some(record.get());
                if let Err(error) = self.catalogue.set_finish_record(id, record.get()).await {
                    tracing::warn!(message = "Where the deployment's finish is in the log was not saved.", deployment = %id, %error);
                }
            }
            Err(error) => {
                tracing::warn!(message = "The deployment's finish could not be logged.", deployment = %id, %error)
            }
        }
        self.note_local_change(&deployment);
        self.announce_end(&deployment);
        metrics::counter!("flumen_deployments_finished_total", "status" => status.as_str())
            .increment(1);
        Ok(deployment)
    }

    /// One deployment, with its counts.
    pub async fn get(&self, id: &str) -> Result<(Deployment, EventCounts), CatalogueError> {
        let deployment = self.catalogue.get(TenantId::DEFAULT_NAME, id).await?;
        let mut counts = self.counts(&[deployment.id.as_str()]).await?;
        Ok((deployment, counts.remove(id).unwrap_or_default()))
    }

    /// A page of deployments, with their counts.
    pub async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<(Page, HashMap<String, EventCounts>), CatalogueError> {
        let page = self.catalogue.list(filter).await?;
        let ids: Vec<&str> = page.deployments.iter().map(|d| d.id.as_str()).collect();
        let counts = self.counts(&ids).await?;
        Ok((page, counts))
    }

    /// What the catalogue counted, and what the counter has not written yet.
    async fn counts(&self, ids: &[&str]) -> Result<HashMap<String, EventCounts>, CatalogueError> {
        let mut counts = self.catalogue.counts(ids).await?;
        for id in ids {
            if let Some(pending) = self.counter.pending(id) {
                counts.entry((*id).to_owned()).or_default().merge(&pending);
            }
        }
        Ok(counts)
    }

    /// Where a stream of `deployment` ends: known now if it has finished, otherwise once it
    /// does.
    pub fn stream_end(&self, deployment: &Deployment) -> watch::Receiver<Option<StreamEnd>> {
        if deployment.status.is_final() {
            return watch::channel(Some(self.end_of(deployment))).1;
        }
        let mut ends = self.ends.lock().expect("stream ends lock");
        ends.retain(|_, end| end.receiver_count() > 0);
        ends.entry(deployment.id.clone())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Tells the streams waiting on `deployment` (finished) where they end.
    fn announce_end(&self, deployment: &Deployment) {
        let end = self
            .ends
            .lock()
            .expect("stream ends lock")
            .remove(&deployment.id);
        if let Some(end) = end {
            end.send_replace(Some(self.end_of(deployment)));
        }
    }

    fn end_of(&self, deployment: &Deployment) -> StreamEnd {
        let through = match deployment.finish_record {
            Some(record) => Position::new(record),
            // Its finish was never logged here: everything logged so far.
            None => Position::new(self.wal.durable_end().get().saturating_sub(1)),
        };
        let message = serde_json::json!({
            "type": "end",
            "deployment_id": deployment.id,
            "status": deployment.status.as_str(),
            "message": deployment.message,
            "finished_at": deployment.finished_at.map(rfc3339),
        });
        StreamEnd {
            through,
            message: message.to_string(),
        }
    }

    /// Logs a marker event of `deployment`; returns its log record once durable.
    async fn mark(
        &self,
        deployment: &Deployment,
        event: &str,
        message: &str,
    ) -> Result<Position, Box<dyn std::error::Error + Send + Sync>> {
        let level = if deployment.status == Status::Failed {
            "error"
        } else {
            "info"
        };
        let mut fields = vec![
            ("event".to_owned(), Value::from(event)),
            ("message".to_owned(), Value::from(message)),
            ("level".to_owned(), Value::from(level)),
            (
                "deployment_id".to_owned(),
                Value::from(deployment.id.as_str()),
            ),
            ("status".to_owned(), Value::from(deployment.status.as_str())),
        ];
        for (key, value) in [
            ("service", &deployment.service),
            ("environment", &deployment.environment),
            ("version", &deployment.version),
            ("commit", &deployment.commit),
            ("started_by", &deployment.started_by),
        ] {
            if let Some(value) = value {
                fields.push((key.to_owned(), Value::from(value.as_str())));
            }
        }
        let mut record = Vec::new();
        Record::from(fields).write_msgpack(&mut record);
        let mut entries = Vec::new();
        entry::write_entry(&mut entries, EventTime::now(), &record);
        let payload =
            BatchBuilder::new(TenantId::default(), "")?.encode(MARKER_TAG, b"", 1, &entries)?;
        Ok(self.wal.append(payload).await?.durable().await?)
    }
}

/// `deployment` as attribution sees it: the properties its rules name.
fn known(directory: &DeploymentDirectory, deployment: &Deployment) -> KnownDeployment {
    KnownDeployment {
        id: deployment.id.clone(),
        properties: directory
            .properties()
            .iter()
            .filter_map(|name| Some((name.clone(), deployment.property(name)?)))
            .collect(),
        started_at: deployment.started_at,
        finished_at: deployment.finished_at,
    }
}

/// "api 1.4.2 to staging by alice", with what is known.
fn describe(deployment: &Deployment) -> String {
    let mut text = deployment.service.clone().unwrap_or_else(|| "?".into());
    if let Some(version) = &deployment.version {
        text.push(' ');
        text.push_str(version);
    }
    if let Some(environment) = &deployment.environment {
        text.push_str(" to ");
        text.push_str(environment);
    }
    if let Some(by) = &deployment.started_by {
        text.push_str(" by ");
        text.push_str(by);
    }
    text
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> u64 {
    u64::try_from(EventTime::now().as_unix_nanos()).unwrap_or(u64::MAX)
}

/// Unix nanoseconds as RFC 3339 with nanoseconds, as events show their time.
pub fn rfc3339(ns: u64) -> String {
    EventTime::new(ns / 1_000_000_000, (ns % 1_000_000_000) as u32).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(id: &str) -> Deployment {
        Deployment {
            id: id.to_owned(),
            tenant: TenantId::DEFAULT_NAME.to_owned(),
            service: None,
            environment: None,
            version: None,
            commit: None,
            started_by: None,
            metadata: serde_json::Map::new(),
            retention: None,
            status: Status::Running,
            message: None,
            started_at: 0,
            finished_at: None,
            finish_record: None,
        }
    }

    #[test]
    fn a_refresh_keeps_the_changes_made_after_its_read_began_and_forgets_the_others() {
        let mut local = LocalChanges::default();
        local.record(&deployment("d-before"));
        let mark = local.mark();
        local.record(&deployment("d-during"));
        let newer: Vec<String> = local.after(mark).into_iter().map(|d| d.id).collect();
        assert_eq!(newer, ["d-during"]);
        // The next refresh's read began after both: its answer holds them.
        let next = local.mark();
        assert!(local.after(next).is_empty());
        assert!(local.changes.is_empty());
    }
}
