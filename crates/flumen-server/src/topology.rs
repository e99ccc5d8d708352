//! Wiring: turns a checked [`ServerSpec`] into running sources, the log and outputs, and
//! takes them down in the order that loses nothing.
//!
//! Start: open the log (recovering it), open every output's cursor, start the outputs, bind
//! every listener (a port that cannot be bound stops the start), then report ready.
//! Stop, all within `shutdown_timeout`: not ready; sources stop accepting, finish the frames
//! they read and acknowledge them (sources still busy at half the timeout find the log closed
//! to appends, and are stopped at three quarters); the log syncs and closes; outputs deliver
//! what the log holds until caught up or until the deadline, and persist their cursors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use flumen_live::{LiveConfig, LiveHub};
use flumen_store::Store;
use flumen_wal::Wal;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{Api, ApiState, StoppedOutputs};
use flumen_routing::OutputId;
use flumen_sinks::Sink;
use flumen_sinks::dead_letter::DeadLetter;
use flumen_sinks::driver::OutputTask;
use flumen_sources::ingest::chunks::ChunkLedger;
use flumen_sources::loki::{LokiConfig, LokiPush};
use flumen_sources::{BoundSource, SourceShared};

use flumen_config::ServerSpec;
use flumen_deploy::Catalogue;

use crate::deployments::Deployments;

/// The source name of Loki pushes to the API port, in metrics and logs.
const LOKI_PUSH_SOURCE: &str = "api-loki-push";

/// How many recent Forward chunk ids are remembered to recognise resends.
const CHUNK_IDS_REMEMBERED: usize = 65_536;

/// A running flumen.
#[derive(Debug)]
pub struct Server {
    api_state: Arc<ApiState>,
    api: Api,
    source_addrs: HashMap<String, SocketAddr>,
    stop_sources: watch::Sender<bool>,
    stop_outputs: watch::Sender<Option<Instant>>,
    sources: JoinSet<()>,
    outputs: JoinSet<()>,
    /// The store's writer thread, when the store is on.
    store_writer: Option<std::thread::JoinHandle<()>>,
    /// The deployments' counter and refresh, when deployments are on.
    deployment_tasks: JoinSet<()>,
    stop_deployments: watch::Sender<bool>,
    shutdown_timeout: Duration,
}

impl Server {
    /// Starts everything the spec describes. `metrics` renders `/metrics`.
    pub async fn start(
        spec: &ServerSpec,
        metrics: Option<PrometheusHandle>,
    ) -> anyhow::Result<Self> {
        let data_dir = spec.data_dir();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let wal_config = spec.wal().clone();
        let wal_dir = wal_config.dir.clone();
        let wal = tokio::task::spawn_blocking(move || Wal::open(wal_config))
            .await?
            .with_context(|| format!("cannot open the log in {}", wal_dir.display()))?;
        let wal = Arc::new(wal);
        let stats = wal.stats();
        tracing::info!(message = "Log open.", dir = %wal_dir.display(), records = stats.durable_end.since(stats.first), bytes = stats.size_bytes);

        let node_id = node_id(data_dir)?;
        let output_names: Vec<String> = spec.outputs().keys().cloned().collect();
        let mut readers: Vec<&str> = output_names.iter().map(String::as_str).collect();
        if spec.store().is_some() {
            readers.push(flumen_store::LOG_READER);
        }
        wal.retain_readers(&readers)?;
        let routes = spec.routes().clone();

        // Read before any output runs: a running output may remove the segments being read.
        let chunks = {
            let wal = wal.clone();
            tokio::task::spawn_blocking(move || ChunkLedger::rebuild(&wal, CHUNK_IDS_REMEMBERED))
                .await?
                .context("cannot read recent chunk ids back from the log")?
        };
        tracing::info!(
            message = "Chunk ids remembered from the log.",
            count = chunks.len()
        );
        let (stop_outputs, outputs_stop) = watch::channel(None);
        let stopped_outputs = Arc::new(StoppedOutputs::default());
        let mut outputs = JoinSet::new();
        for name in &output_names {
            let output = &spec.outputs()[name];
            let reader = wal
                .reader(name)
                .with_context(|| format!("output {name}: cannot open its cursor"))?;
            // One sink per delivery in flight.
            let sinks = (0..output.max_in_flight)
                .map(|_| Sink::build(name, &output.sink, &node_id))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("output {name}: {e}"))?;
            let task = OutputTask::new(
                OutputId::named(name),
                sinks,
                reader,
                routes.clone(),
                output.batch.clone(),
                output.retry.clone(),
                DeadLetter::new(data_dir, name),
            );
            let (stop, stopped, name) =
                (outputs_stop.clone(), stopped_outputs.clone(), name.clone());
            outputs.spawn(async move {
                if let Err(error) = task.run(stop).await {
                    stopped.record(&name, &error);
                }
            });
        }

        let store = match spec.store() {
            Some(config) => Some(
                start_store(
                    config.clone(),
                    spec.deployments_database().is_some(),
                    &wal,
                    outputs_stop.clone(),
                )
                .await
                .context("cannot start the store")?,
            ),
            None => None,
        };

        let shared = SourceShared {
            wal: wal.clone(),
            routes: routes.clone(),
            pipeline: spec.pipeline().clone(),
            chunks: Arc::new(chunks),
            data_dir: data_dir.to_owned(),
        };
        let (stop_sources, sources_stop) = watch::channel(false);
        let mut sources = JoinSet::new();
        let mut source_addrs = HashMap::new();
        for (name, source) in spec.sources() {
            let bound = BoundSource::bind(name, source)
                .await
                .with_context(|| format!("source {name}: cannot start"))?;
            if let Some(addr) = bound.local_addr() {
                tracing::info!(message = "Listening.", source = %name, address = %addr);
                source_addrs.insert(name.clone(), addr);
            }
            sources.spawn(bound.run(shared.clone(), sources_stop.clone()));
        }

        let closing = watch::Sender::new(false);
        let store_handle = store.as_ref().map(|(store, _)| store.clone());
        let live = LiveHub::start(
            wal.clone(),
            store_handle.clone(),
            closing.subscribe(),
            LiveConfig {
                labels: store_handle.as_ref().map_or_else(
                    || LiveConfig::default().labels,
                    |store| store.config().labels.clone(),
                ),
                max_streams: spec.max_live_streams(),
                ..LiveConfig::default()
            },
        );
        let deployments = match spec.deployments_database() {
            Some(url) => {
                let catalogue = Catalogue::open(url)
                    .map_err(|e| anyhow::anyhow!("cannot open the deployment catalogue: {e}"))?;
                tracing::info!(message = "Deployment catalogue.", database = %catalogue.describe());
                let directory = spec.pipeline().deployment_directory().cloned();
                Some(Deployments::new(
                    Arc::new(catalogue),
                    wal.clone(),
                    directory,
                    store_handle.clone(),
                ))
            }
            None => None,
        };
        let stop_deployments = watch::Sender::new(false);
        let deployment_tasks = match &deployments {
            Some(deployments) => deployments.spawn(node_id.clone(), stop_deployments.subscribe()),
            None => JoinSet::new(),
        };
        let api_state = Arc::new(ApiState {
            ready: false.into(),
            wal: wal.clone(),
            metrics,
            stopped_outputs,
            store: store_handle,
            closing,
            live,
            deployments,
        });
        // Loki's push API on the API port, as Loki serves it beside its query API.
        let loki_push = LokiPush::new(LOKI_PUSH_SOURCE, &LokiConfig::default(), &shared)
            .map_err(|e| anyhow::anyhow!("the API's Loki push route: {e}"))?;
        {
            let (push, stop) = (loki_push.clone(), sources_stop.clone());
            sources.spawn(async move { push.release_held_events(stop).await });
        }
        let api = Api::serve(spec.api_address(), api_state.clone(), loki_push.router()).await?;
        api_state.ready.store(true, Ordering::Relaxed);
        tracing::info!(message = "flumen is ready.");
        Ok(Self {
            api_state,
            api,
            source_addrs,
            stop_sources,
            stop_outputs,
            sources,
            outputs,
            store_writer: store.map(|(_, writer)| writer),
            deployment_tasks,
            stop_deployments,
            shutdown_timeout: spec.shutdown_timeout(),
        })
    }

    /// The address the API is bound to.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The address source `name` is bound to.
    pub fn source_addr(&self, name: &str) -> Option<SocketAddr> {
        self.source_addrs.get(name).copied()
    }

    /// Stops within `shutdown_timeout`, whatever senders and destinations do: nothing
    /// acknowledged is lost, and every output's cursor is saved.
    ///
    /// Sources get the first half of the timeout to finish the frames they read and send
    /// their acknowledgements. Sources still busy then are waiting for a full log or for a
    /// sender to read its acknowledgements: the log refuses appends (waiting ones fail, so the
    /// sources wake and acknowledge what is durable), and a quarter later whatever still runs
    /// is stopped where it is — its senders resend what was not acknowledged. Outputs deliver
    /// until the deadline.
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        let deadline = started + self.shutdown_timeout;
        self.api_state.ready.store(false, Ordering::Relaxed);
        self.api_state.closing.send_replace(true);
        tracing::info!(message = "Shutting down: no longer accepting events.", timeout = ?self.shutdown_timeout);
        let _ = self.stop_sources.send(true);
        if !join_all_until(&mut self.sources, started + self.shutdown_timeout / 2).await {
            tracing::warn!(
                message = "Sources are still waiting for the log or for their senders; the log refuses new events."
            );
            self.api_state.wal.close_appends();
            if !join_all_until(&mut self.sources, started + self.shutdown_timeout * 3 / 4).await {
                tracing::warn!(
                    message = "Stopping sources that did not finish; their senders resend what was not acknowledged."
                );
                abort_all(&mut self.sources).await;
            }
        }
        self.api_state.wal.shutdown().await;
        // Outputs give up a delivery a little before the deadline, so that saving their
        // cursors fits in it too.
        let grace = (self.shutdown_timeout / 8).min(STOP_GRACE);
        let _ = self.stop_outputs.send(Some(deadline - grace));
        if !join_all_until(&mut self.outputs, deadline).await {
            tracing::warn!(
                message = "Stopping outputs still delivering at the shutdown timeout; the log keeps what they did not deliver."
            );
            abort_all(&mut self.outputs).await;
        }
        // The store's writer got the same stop as outputs: it flushes what it gathered.
        if let Some(writer) = self.store_writer.take() {
            let joined = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout_at(deadline.into(), joined)
                .await
                .is_err()
            {
                tracing::warn!(
                    message = "The store is still flushing at the shutdown timeout; it reads those events from the log again at start."
                );
            }
        }
        // The counter writes what it counted; the rest is counted again from the log at start.
        self.stop_deployments.send_replace(true);
        if !join_all_until(&mut self.deployment_tasks, deadline).await {
            abort_all(&mut self.deployment_tasks).await;
        }
        self.api.stop(deadline).await;
        tracing::info!(message = "Stopped.");
    }
}

/// Opens the store and starts its writer on the log; it stops when `stop` holds a deadline.
/// With `deployments`, its retention by age waits until the catalogue has told it which
/// deployments are kept longer.
async fn start_store(
    config: flumen_store::StoreConfig,
    deployments: bool,
    wal: &Arc<Wal>,
    stop: watch::Receiver<Option<Instant>>,
) -> anyhow::Result<(Arc<Store>, std::thread::JoinHandle<()>)> {
    let dir = config.dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(config))
        .await?
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    if deployments {
        store.await_deployment_retention();
    }
    let reader = wal.reader(flumen_store::LOG_READER)?;
    let writer = store.spawn_writer(reader, tokio::runtime::Handle::current(), stop)?;
    Ok((store, writer))
}

/// At most how long before the shutdown deadline outputs give up a delivery, to save their
/// cursors in time (a file write in progress is not interrupted).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Waits for every task in `tasks` to end, until `deadline`; true if they all did.
async fn join_all_until(tasks: &mut JoinSet<()>, deadline: Instant) -> bool {
    tokio::time::timeout_at(deadline.into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

/// Stops every task in `tasks` at its next await and waits until they are gone.
async fn abort_all(tasks: &mut JoinSet<()>) {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// This node's identity: random at first start, kept in `<data_dir>/node-id` after.
fn node_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = format!("{:016x}", fastrand::u64(..));
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}
