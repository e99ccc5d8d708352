//! The delivery loop every output runs: read the log, keep what is routed here, batch, deliver,
//! retry, dead-letter, move the cursor.
//!
//! The cursor only moves past a batch once the sink delivered it (or it was dead-lettered), so
//! after a crash an output resumes at the first batch it had not finished: delivery is
//! at-least-once. A failing destination holds only this output back; the others read on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flumen_event::BatchRef;
use flumen_event::record::Record;
use flumen_wal::{Position, Read, WalReader};
use metrics::{Counter, Gauge};
use tokio::sync::watch;

use super::dead_letter::DeadLetter;
use super::{Delivery, DeliveryError, Sink, Undelivered, entries_of_batch};
use crate::config::{BatchConfig, RetryConfig};
use flumen_routing::{Decision, RouteCache, RouteTable};

/// When outputs should stop: `None` while running; `Some(deadline)` once flumen is shutting
/// down — deliver what the log holds, and give up on a batch still failing at the deadline.
pub type StopSignal = watch::Receiver<Option<Instant>>;

/// One output's delivery loop.
#[derive(Debug)]
pub struct OutputTask {
    name: String,
    index: usize,
    sink: Sink,
    reader: WalReader,
    routes: RouteCache,
    batch: BatchConfig,
    retry: RetryConfig,
    dead_letter: DeadLetter,
    metrics: OutputMetrics,
    /// The log position up to which everything is delivered (the persisted cursor).
    committed: Position,
}

#[derive(Debug)]
struct OutputMetrics {
    events: Counter,
    bytes: Counter,
    retries: Counter,
    dead_lettered: Counter,
    backlog: Gauge,
}

impl OutputMetrics {
    fn new(output: &str) -> Self {
        let name = output.to_owned();
        Self {
            events: metrics::counter!("flumen_output_events_total", "output" => name.clone()),
            bytes: metrics::counter!("flumen_output_bytes_total", "output" => name.clone()),
            retries: metrics::counter!("flumen_output_retries_total", "output" => name.clone()),
            dead_lettered: metrics::counter!("flumen_output_dead_lettered_events_total", "output" => name.clone()),
            backlog: metrics::gauge!("flumen_output_backlog_batches", "output" => name),
        }
    }
}

enum Outcome {
    /// Every event was delivered or dead-lettered.
    Finished,
    /// Shutting down with the batch still undelivered: the cursor stays before it.
    Abandoned,
}

/// How many log records one read takes at most.
const READ_RECORDS: usize = 1024;

impl OutputTask {
    /// An output `name`, at `index` in the route table, reading through `reader`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        index: usize,
        sink: Sink,
        reader: WalReader,
        routes: Arc<RouteTable>,
        batch: BatchConfig,
        retry: RetryConfig,
        dead_letter: DeadLetter,
    ) -> Self {
        Self {
            committed: reader.position(),
            name: name.to_owned(),
            index,
            sink,
            reader,
            routes: RouteCache::new(routes),
            batch,
            retry,
            dead_letter,
            metrics: OutputMetrics::new(name),
        }
    }

    /// Runs until stopped (see [`StopSignal`]), or until the log cannot be read: that error is
    /// returned.
    pub async fn run(mut self, mut stop: StopSignal) -> Result<(), flumen_wal::WalError> {
        let max_bytes = self.batch.max_bytes.as_u64() as usize;
        let mut delivery = Delivery::default();
        let mut linger_until: Option<Instant> = None;
        loop {
            let read = self.reader.read(
                READ_RECORDS,
                max_bytes.saturating_sub(delivery.bytes as usize).max(1),
            );
            let records = match read.await {
                Ok(Read::Records(records)) => records,
                Ok(Read::Removed { from, to }) => {
                    tracing::warn!(message = "Records were removed from the log before this output read them.", output = %self.name, skipped = to.since(from));
                    continue;
                }
                Err(error) => {
                    tracing::error!(message = "Output stopped: its log cannot be read.", output = %self.name, %error);
                    return Err(error);
                }
            };
            let caught_up = records.is_empty();
            for record in records {
                let Ok(batch) = BatchRef::parse(&record.payload) else {
                    tracing::error!(message = "Skipping an unreadable batch from the log.", output = %self.name, seq = record.position.get());
                    continue;
                };
                let decision = self.routes.decide(batch.label, batch.tag);
                let chosen = if !decision.may_reach(self.index) {
                    None
                } else if !decision.by_content() {
                    Some((record.payload.clone(), batch.entry_count))
                } else {
                    events_for_output(&record.payload, &batch, &decision, self.index)
                };
                if let Some((payload, events)) = chosen {
                    delivery.push(record.position.get(), payload, events);
                }
            }
            self.report_backlog();
            let stopping = stop.borrow().is_some();
            if delivery.is_empty() {
                // Everything read was routed elsewhere: move the cursor past it.
                if self.reader.position() > self.committed {
                    self.commit().await;
                }
                if caught_up {
                    if stopping {
                        return Ok(());
                    }
                    tokio::select! {
                        woke = self.reader.wait() => if woke.is_err() { return Ok(()) },
                        _ = stop.changed() => {}
                    }
                }
                continue;
            }
            let full = delivery.events >= self.batch.max_events as u64
                || delivery.bytes >= max_bytes as u64;
            if !full && !caught_up {
                continue;
            }
            if !full && !stopping {
                // Caught up with a partial batch: give more events a moment to join it.
                let until =
                    *linger_until.get_or_insert_with(|| Instant::now() + self.batch.timeout);
                if Instant::now() < until {
                    tokio::select! {
                        _ = self.reader.wait() => continue,
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            let ready = std::mem::take(&mut delivery);
            if let Outcome::Abandoned = self.deliver_with_retries(ready, &mut stop).await {
                return Ok(());
            }
            self.commit().await;
            linger_until = None;
        }
    }

    /// Persists the cursor at the reader's position.
    async fn commit(&mut self) {
        let next = self.reader.position();
        if let Err(error) = self.reader.commit(next).await {
            // Not fatal: the next commit retries, and a crash meanwhile only means redelivery.
            tracing::warn!(message = "Failed to persist an output's cursor.", output = %self.name, %error);
        }
        self.committed = next;
    }

    /// Everything in the log not delivered yet, including what is read and being retried.
    fn report_backlog(&self) {
        let backlog = self.reader.durable_end().since(self.committed);
        self.metrics.backlog.set(backlog as f64);
    }

    /// Delivers `delivery`, retrying only what failed: a part its destination refused for good
    /// is dead-lettered at once, the rest is retried until it is delivered or the retry budget
    /// is spent (then it is dead-lettered too). Delivered and dead-lettered events are counted
    /// as they go.
    async fn deliver_with_retries(&mut self, delivery: Delivery, stop: &mut StopSignal) -> Outcome {
        let started = Instant::now();
        let mut pending = delivery;
        let mut attempt = 0u32;
        loop {
            let (events, bytes) = (pending.events, pending.bytes);
            let Some(result) = self.deliver_before_deadline(&pending, stop).await else {
                return Outcome::Abandoned;
            };
            let parts = match result {
                Ok(()) => Vec::new(),
                Err(undelivered) => undelivered.into_parts(pending),
            };
            self.count_delivered(events, bytes, &parts);
            let out_of_time = started.elapsed() >= self.retry.max_duration;
            let Some((rest, error)) = self.dead_letter_or_keep(parts, out_of_time) else {
                return Outcome::Finished;
            };
            pending = rest;
            self.report_backlog();
            self.metrics.retries.increment(1);
            let wait = backoff(&self.retry, attempt);
            attempt = attempt.saturating_add(1);
            tracing::warn!(
                message = "Delivery failed; retrying.",
                output = %self.name,
                attempt,
                events = pending.events,
                wait_ms = wait.as_millis() as u64,
                %error,
            );
            if !wait_unless_stopping(Instant::now() + wait, stop).await {
                return Outcome::Abandoned;
            }
        }
    }

    /// One attempt at `delivery`; `None` when flumen's shutdown deadline came first.
    async fn deliver_before_deadline(
        &mut self,
        delivery: &Delivery,
        stop: &StopSignal,
    ) -> Option<Result<(), Undelivered>> {
        let deadline = *stop.borrow();
        match deadline {
            None => Some(self.sink.deliver(delivery).await),
            Some(deadline) => tokio::time::timeout_at(deadline.into(), self.sink.deliver(delivery))
                .await
                .ok(),
        }
    }

    /// Counts what an attempt at `events` events of `bytes` bytes delivered: all but `undelivered`.
    fn count_delivered(&self, events: u64, bytes: u64, undelivered: &[(Delivery, DeliveryError)]) {
        let (lost_events, lost_bytes) = undelivered.iter().fold((0, 0), |(e, b), (part, _)| {
            (e + part.events, b + part.bytes)
        });
        self.metrics
            .events
            .increment(events.saturating_sub(lost_events));
        self.metrics
            .bytes
            .increment(bytes.saturating_sub(lost_bytes));
    }

    /// Dead-letters the undelivered parts that retrying cannot help (all of them once
    /// `out_of_time`), and returns the others, as one delivery to retry, with an error of
    /// theirs; `None` when nothing is left to retry.
    fn dead_letter_or_keep(
        &self,
        undelivered: Vec<(Delivery, DeliveryError)>,
        out_of_time: bool,
    ) -> Option<(Delivery, DeliveryError)> {
        let mut retry = Vec::new();
        let mut last_error = None;
        for (part, error) in undelivered {
            if (!error.retryable || out_of_time) && self.dead_letter(&part, &error) {
                continue;
            }
            retry.push(part);
            last_error = Some(error);
        }
        Some((Delivery::merged(retry), last_error?))
    }

    /// Appends `part` to the dead-letter file and counts it; false when that failed too (the
    /// part is then retried rather than lost).
    fn dead_letter(&self, part: &Delivery, error: &DeliveryError) -> bool {
        match self.dead_letter.write(part, &error.message) {
            Ok(()) => {
                tracing::error!(
                    message = "Gave up on events; wrote them to the dead-letter file.",
                    output = %self.name,
                    events = part.events,
                    path = %self.dead_letter.path().display(),
                    %error,
                );
                self.metrics.dead_lettered.increment(part.events);
                true
            }
            Err(dl_error) => {
                tracing::error!(message = "Failed to write dead letters; retrying the events.", output = %self.name, %dl_error);
                false
            }
        }
    }
}

/// Waits until `wake`; false when flumen's shutdown deadline comes first (after waiting for it).
async fn wait_unless_stopping(wake: Instant, stop: &mut StopSignal) -> bool {
    loop {
        let deadline = *stop.borrow();
        if let Some(deadline) = deadline.filter(|d| *d <= wake) {
            tokio::time::sleep_until(deadline.into()).await;
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => return true,
            _ = stop.changed() => {}
        }
    }
}

/// Exponential backoff with "equal jitter": half the step is fixed, half random, so that many
/// outputs failing together do not retry in lockstep.
fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let step = retry
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(retry.max_backoff);
    step / 2 + step.mul_f64(fastrand::f64() / 2.0)
}

/// The part of a batch whose events content routing sends to `output`: the whole batch when
/// every event goes there, `None` when none does.
fn events_for_output(
    payload: &Bytes,
    batch: &BatchRef<'_>,
    decision: &Decision,
    output: usize,
) -> Option<(Bytes, u32)> {
    entries_of_batch(payload, batch, |entry| match Record::decode(entry.record) {
        Ok(record) => decision
            .outputs_for_event(batch.tag, &record)
            .contains(&output),
        Err(error) => {
            // The log holds validated records only, so this is a bug.
            tracing::error!(message = "Skipping an event whose record cannot be read.", tag = batch.tag, %error);
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let retry = RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_duration: Duration::from_secs(60),
        };
        for attempt in 0..30 {
            let step = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(2));
            let wait = backoff(&retry, attempt);
            assert!(
                wait >= step / 2 && wait <= step,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
