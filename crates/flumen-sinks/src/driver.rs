//! The delivery loop every output runs: read the log, keep what is routed here, batch, deliver,
//! retry, dead-letter, move the cursor.
//!
//! The cursor only moves past a batch once the sink delivered it (or it was dead-lettered), so
//! after a crash an output resumes at the first batch it had not finished: delivery is
//! at-least-once. A failing destination holds only this output back; the others read on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flumen_event::BatchRef;
use flumen_event::record::Record;
use flumen_wal::{Position, Read, WalReader};
use metrics::{Counter, Gauge};
use tokio::sync::watch;
use tokio::task::JoinSet;
// The runtime's clock: paused in tests, so waits are checked without waiting.
use tokio::time::Instant;

use super::dead_letter::DeadLetter;
use super::{Delivery, DeliveryError, Outcome, Sink, entries_of_batch};
use crate::config::{BatchConfig, RetryConfig};
use flumen_routing::{Decision, OutputId, RouteCache, RouteTable};

/// When outputs should stop: `None` while running; `Some(deadline)` once flumen is shutting
/// down — deliver what the log holds, and give up on a batch still failing at the deadline.
pub type StopSignal = watch::Receiver<Option<std::time::Instant>>;

/// One output's delivery loop.
#[derive(Debug)]
pub struct OutputTask {
    id: OutputId,
    reader: WalReader,
    routes: RouteCache,
    batch: BatchConfig,
    /// The sinks not delivering now; a delivery takes one and gives it back when done, so there
    /// are as many deliveries in flight at most as the output has sinks.
    idle: Vec<Sink>,
    courier: Arc<Courier>,
    /// The log position up to which everything is delivered (the persisted cursor).
    committed: Position,
}

/// What every delivery of one output shares: its name, retry policy, dead letters and metrics.
#[derive(Debug)]
struct Courier {
    name: String,
    retry: RetryConfig,
    dead_letter: DeadLetter,
    metrics: OutputMetrics,
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

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Every event was delivered or dead-lettered.
    Done,
    /// Shutting down with events still undelivered: the cursor stays before them.
    Abandoned,
}

/// The deliveries handed to sinks and not yet finished, and the log position after each, in
/// the order they were read: the cursor moves only past a run of finished ones at the front,
/// so a delivery that finishes early never lets the cursor skip one still in flight.
#[derive(Debug, Default)]
struct InFlight {
    /// `(ticket, log position after the delivery, finished)`, oldest first.
    order: VecDeque<(u64, Position, bool)>,
    running: JoinSet<(u64, Sink, Finish)>,
    next_ticket: u64,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Starts delivering `delivery` (the log up to `end`) with `sink`.
    fn start(
        &mut self,
        courier: &Arc<Courier>,
        sink: Sink,
        delivery: Delivery,
        end: Position,
        stop: &StopSignal,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.order.push_back((ticket, end, false));
        let (courier, mut stop) = (courier.clone(), stop.clone());
        self.running.spawn(async move {
            let mut sink = sink;
            let finish = courier.deliver(&mut sink, delivery, &mut stop).await;
            (ticket, sink, finish)
        });
    }

    /// Records that the delivery `ticket` is done, and returns the log position the cursor may
    /// move to now, if the oldest deliveries are all done.
    fn finish(&mut self, ticket: u64) -> Option<Position> {
        if let Some(entry) = self.order.iter_mut().find(|(t, _, _)| *t == ticket) {
            entry.2 = true;
        }
        let mut committable = None;
        while let Some(&(_, end, true)) = self.order.front() {
            committable = Some(end);
            self.order.pop_front();
        }
        committable
    }
}

/// A delivery task that ended; a panic in a sink is the driver's own (a bug), so it goes on.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a delivery task was cancelled: {error}"),
    }
}

/// How many log records one read takes at most.
const READ_RECORDS: usize = 1024;

impl OutputTask {
    /// The output `id` reading through `reader`, delivering with `sinks`: one delivery in
    /// flight per sink (at least one sink is needed).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: OutputId,
        sinks: Vec<Sink>,
        reader: WalReader,
        routes: Arc<RouteTable>,
        batch: BatchConfig,
        retry: RetryConfig,
        dead_letter: DeadLetter,
    ) -> Self {
        assert!(!sinks.is_empty(), "an output needs a sink");
        let name = id.name();
        Self {
            committed: reader.position(),
            reader,
            routes: RouteCache::new(routes),
            batch,
            idle: sinks,
            courier: Arc::new(Courier {
                metrics: OutputMetrics::new(&name),
                name: name.to_string(),
                retry,
                dead_letter,
            }),
            id,
        }
    }

    /// Runs until stopped (see [`StopSignal`]), or until the log cannot be read: that error is
    /// returned. Deliveries in flight at a stop finish, or are abandoned at its deadline.
    pub async fn run(mut self, mut stop: StopSignal) -> Result<(), flumen_wal::WalError> {
        let mut delivery = Delivery::default();
        let mut linger_until: Option<Instant> = None;
        let mut in_flight = InFlight::default();
        loop {
            while let Some(result) = in_flight.running.try_join_next() {
                if self.settle(joined(result), &mut in_flight).await == Finish::Abandoned {
                    return Ok(());
                }
            }
            // The next delivery is gathered only once a sink is free to take it: reading further
            // ahead would hold batches in memory, and read the log, for no one.
            let sink_free = !self.idle.is_empty();
            let mut caught_up = false;
            if sink_free && !self.is_full(&delivery) {
                caught_up = self.read_into(&mut delivery).await?;
            }
            if delivery.is_empty() && in_flight.is_empty() {
                // Everything read was routed elsewhere, or delivered: move the cursor past it.
                self.commit(self.reader.position()).await;
            }
            self.report_backlog();
            let stopping = stop.borrow().is_some();
            let full = self.is_full(&delivery);
            if !delivery.is_empty() && caught_up && !stopping {
                // Caught up with a partial batch: give more events a moment to join it.
                linger_until.get_or_insert_with(|| Instant::now() + self.batch.timeout);
            }
            let lingered = stopping || linger_until.is_some_and(|until| Instant::now() >= until);
            let ready = !delivery.is_empty() && (full || (caught_up && lingered));
            if ready && let Some(sink) = self.idle.pop() {
                let end = self.reader.position();
                in_flight.start(
                    &self.courier,
                    sink,
                    std::mem::take(&mut delivery),
                    end,
                    &stop,
                );
                linger_until = None;
                continue;
            }
            if sink_free && !full && !caught_up {
                continue;
            }
            if caught_up && stopping && delivery.is_empty() && in_flight.is_empty() {
                return Ok(());
            }
            let linger = linger_until.filter(|_| sink_free);
            tokio::select! {
                woke = self.reader.wait(), if sink_free && caught_up && !full => if woke.is_err() { return Ok(()) },
                _ = sleep_until_some(linger) => {}
                Some(result) = in_flight.running.join_next() => {
                    if self.settle(joined(result), &mut in_flight).await == Finish::Abandoned {
                        return Ok(());
                    }
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// Reads the next records of the log into `delivery`, keeping those routed to this output;
    /// true when there was nothing to read (caught up with the log).
    async fn read_into(&mut self, delivery: &mut Delivery) -> Result<bool, flumen_wal::WalError> {
        let max_bytes = self.batch.max_bytes.as_u64() as usize;
        let read = self
            .reader
            .read(READ_RECORDS, max_bytes.saturating_sub(delivery.bytes as usize).max(1))
            .await
            .inspect_err(|error| {
                tracing::error!(message = "Output stopped: its log cannot be read.", output = %self.courier.name, %error);
            })?;
        let records = match read {
            Read::Records(records) => records,
            Read::Removed { from, to } => {
                tracing::warn!(message = "Records were removed from the log before this output read them.", output = %self.courier.name, skipped = to.since(from));
                return Ok(false);
            }
        };
        let caught_up = records.is_empty();
        for record in records {
            let Ok(batch) = BatchRef::parse(&record.payload) else {
                tracing::error!(message = "Skipping an unreadable batch from the log.", output = %self.courier.name, seq = record.position.get());
                continue;
            };
            let decision = self.routes.decide(batch.label, batch.tag);
            let chosen = if !decision.may_reach(self.id) {
                None
            } else if !decision.by_content() {
                Some((record.payload.clone(), batch.entry_count))
            } else {
                events_for_output(&record.payload, &batch, &decision, self.id)
            };
            if let Some((payload, events)) = chosen {
                delivery.push(record.position.get(), payload, events);
            }
        }
        Ok(caught_up)
    }

    /// True when `delivery` is as large as one delivery may be.
    fn is_full(&self, delivery: &Delivery) -> bool {
        delivery.events >= self.batch.max_events as u64
            || delivery.bytes >= self.batch.max_bytes.as_u64()
    }

    /// Takes back the sink of a delivery that ended, and moves the cursor as far as the
    /// deliveries before it allow.
    async fn settle(
        &mut self,
        (ticket, sink, finish): (u64, Sink, Finish),
        in_flight: &mut InFlight,
    ) -> Finish {
        self.idle.push(sink);
        if finish == Finish::Done
            && let Some(end) = in_flight.finish(ticket)
        {
            self.commit(end).await;
        }
        finish
    }

    /// Persists the cursor at `next` (the first log position not delivered), unless it is
    /// there already.
    async fn commit(&mut self, next: Position) {
        if next <= self.committed {
            return;
        }
        if let Err(error) = self.reader.commit(next).await {
            // Not fatal: the next commit retries, and a crash meanwhile only means redelivery.
            tracing::warn!(message = "Failed to persist an output's cursor.", output = %self.courier.name, %error);
        }
        self.committed = next;
    }

    /// Everything in the log not delivered yet, including what is read and being retried.
    fn report_backlog(&self) {
        let backlog = self.reader.durable_end().since(self.committed);
        self.courier.metrics.backlog.set(backlog as f64);
    }
}

/// Sleeps until `until`, or forever without one.
async fn sleep_until_some(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

impl Courier {
    /// Delivers `delivery` with `sink`, retrying only what failed: a part its destination
    /// refused for good is dead-lettered at once, the rest is retried — not before the wait
    /// the destination asked for — until it is delivered or the retry budget is spent (then
    /// it is dead-lettered too). Delivered and dead-lettered events are counted as they go.
    async fn deliver(&self, sink: &mut Sink, delivery: Delivery, stop: &mut StopSignal) -> Finish {
        let started = Instant::now();
        let mut pending = delivery;
        let mut attempt = 0u32;
        loop {
            let Some(outcome) = deliver_before_deadline(sink, &pending, stop).await else {
                return Finish::Abandoned;
            };
            let undelivered = outcome.undelivered(&pending);
            self.count_delivered(&pending, &undelivered);
            let out_of_time = started.elapsed() >= self.retry.max_duration;
            let Some((rest, error)) = self.dead_letter_or_keep(undelivered, out_of_time) else {
                return Finish::Done;
            };
            pending = rest;
            self.metrics.retries.increment(1);
            let asked = outcome
                .wait()
                .unwrap_or_default()
                .min(self.retry.max_backoff);
            let wait = backoff(&self.retry, attempt).max(asked);
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
                return Finish::Abandoned;
            }
        }
    }

    /// Counts what an attempt at `attempted` delivered: all but `undelivered`.
    fn count_delivered(&self, attempted: &Delivery, undelivered: &[(Delivery, &DeliveryError)]) {
        let (lost_events, lost_bytes) = undelivered.iter().fold((0, 0), |(e, b), (part, _)| {
            (e + part.events, b + part.bytes)
        });
        self.metrics
            .events
            .increment(attempted.events.saturating_sub(lost_events));
        self.metrics
            .bytes
            .increment(attempted.bytes.saturating_sub(lost_bytes));
    }

    /// Dead-letters the undelivered parts that retrying cannot help (all of them once
    /// `out_of_time`), and returns the others, as one delivery to retry, with an error of
    /// theirs; `None` when nothing is left to retry.
    fn dead_letter_or_keep(
        &self,
        undelivered: Vec<(Delivery, &DeliveryError)>,
        out_of_time: bool,
    ) -> Option<(Delivery, String)> {
        let mut retry = Vec::new();
        let mut last_error = None;
        for (part, error) in undelivered {
            if (!error.retryable || out_of_time) && self.dead_letter(&part, error) {
                continue;
            }
            retry.push(part);
            last_error = Some(error.message.clone());
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

/// One attempt at `delivery`; `None` when flumen's shutdown deadline came first.
async fn deliver_before_deadline(
    sink: &mut Sink,
    delivery: &Delivery,
    stop: &StopSignal,
) -> Option<Outcome> {
    let deadline = stop.borrow().map(Instant::from_std);
    match deadline {
        None => Some(sink.deliver(delivery).await),
        Some(deadline) => tokio::time::timeout_at(deadline, sink.deliver(delivery))
            .await
            .ok(),
    }
}

/// Waits until `wake`; false when flumen's shutdown deadline comes first (after waiting for it).
async fn wait_unless_stopping(wake: Instant, stop: &mut StopSignal) -> bool {
    loop {
        let deadline = stop.borrow().map(Instant::from_std);
        if let Some(deadline) = deadline.filter(|d| *d <= wake) {
            tokio::time::sleep_until(deadline).await;
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return true,
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
    output: OutputId,
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
    use crate::scripted::{Attempt, ScriptedSink, numbered};
    use crate::{DeliveryError, Items};

    const SECOND: Duration = Duration::from_secs(1);

    /// A courier retrying for up to a minute, from 1 s up to 4 s apart, dead-lettering into `dir`.
    fn courier(dir: &std::path::Path) -> Courier {
        Courier {
            name: "out".into(),
            retry: RetryConfig {
                initial_backoff: SECOND,
                max_backoff: 4 * SECOND,
                max_duration: 60 * SECOND,
            },
            dead_letter: DeadLetter::new(dir, "out"),
            metrics: OutputMetrics::new("out"),
        }
    }

    /// Delivers 10 events (seconds 0 to 9) through a sink answering `answers`; returns how the
    /// delivery finished, the sink's attempts and the dead-letter file's lines.
    async fn deliver_scripted(
        answers: Vec<Option<Outcome>>,
        stop: Option<Duration>,
    ) -> (Finish, Vec<Attempt>, Vec<serde_json::Value>) {
        let dir = tempfile::tempdir().unwrap();
        let courier = courier(dir.path());
        let (sink, attempts) = ScriptedSink::new(answers);
        let mut sink = Sink::Scripted(sink);
        let deadline = stop.map(|after| (Instant::now() + after).into_std());
        let (_stop, mut stop) = watch::channel(deadline);
        let finish = courier.deliver(&mut sink, numbered(2, 5), &mut stop).await;
        let dead = std::fs::read_to_string(courier.dead_letter.path()).unwrap_or_default();
        let dead = dead
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let attempts = attempts.lock().unwrap().clone();
        (finish, attempts, dead)
    }

    fn retryable(items: Items, message: &str) -> Option<Outcome> {
        Some(Outcome::delivered().fail(items, DeliveryError::retryable(message)))
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_items_that_failed_are_retried() {
        let (finish, attempts, dead) =
            deliver_scripted(vec![retryable(Items::positions([2, 3, 8]), "busy")], None).await;
        assert_eq!(finish, Finish::Done);
        let seconds: Vec<_> = attempts.iter().map(|a| a.seconds.clone()).collect();
        assert_eq!(seconds, [(0..10).collect(), vec![2, 3, 8]]);
        assert!(dead.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_items_are_dead_lettered_at_once_with_their_reason() {
        // Like a bulk answer: two items refused for good, three throttled, the rest taken.
        let answer = Outcome::delivered()
            .fail(
                Items::positions([1, 6]),
                DeliveryError::permanent("mapping error on field x"),
            )
            .fail(Items::range(7..10), DeliveryError::retryable("429"));
        let (finish, attempts, dead) = deliver_scripted(vec![Some(answer)], None).await;
        assert_eq!(finish, Finish::Done);
        let seconds: Vec<_> = attempts.iter().map(|a| a.seconds.clone()).collect();
        assert_eq!(seconds, [(0..10).collect(), vec![7, 8, 9]]);
        let dead: Vec<(u64, &str)> = dead
            .iter()
            .map(|line| {
                let time = line["time"].as_str().unwrap();
                let second = chrono::DateTime::parse_from_rfc3339(time)
                    .unwrap()
                    .timestamp();
                (second as u64, line["error"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            dead,
            [
                (1, "mapping error on field x"),
                (6, "mapping error on field x")
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_waited_out_and_capped_by_max_backoff() {
        let busy = |wait| Some(Outcome::from(DeliveryError::retryable("503")).retry_after(wait));
        let (finish, attempts, _) =
            deliver_scripted(vec![busy(3 * SECOND), busy(3600 * SECOND)], None).await;
        assert_eq!(finish, Finish::Done);
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
        // The first backoff is 0.5 to 1 s, the second 1 to 2 s: the destination's wait is longer.
        assert_eq!(gaps, [3 * SECOND, 4 * SECOND]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_still_failing_at_the_shutdown_deadline_is_abandoned() {
        let start = Instant::now();
        let failing = (0..100).map(|_| retryable(Items::All, "down")).collect();
        let (finish, attempts, dead) = deliver_scripted(failing, Some(10 * SECOND)).await;
        assert_eq!(finish, Finish::Abandoned);
        assert_eq!(start.elapsed(), 10 * SECOND);
        assert!(attempts.len() > 1 && attempts.iter().all(|a| a.at - start < 10 * SECOND));
        assert!(dead.is_empty(), "kept in the log for the next start");

        // A destination that never answers is left at the deadline too.
        let start = Instant::now();
        let (finish, _, _) = deliver_scripted(vec![None], Some(10 * SECOND)).await;
        assert_eq!(finish, Finish::Abandoned);
        assert_eq!(start.elapsed(), 10 * SECOND);
    }

    #[test]
    fn the_cursor_waits_for_the_oldest_delivery_in_flight() {
        let mut in_flight = InFlight::default();
        let at = Position::new;
        in_flight
            .order
            .extend([(0, at(10), false), (1, at(20), false), (2, at(30), false)]);
        assert_eq!(
            in_flight.finish(1),
            None,
            "the one before is still on its way"
        );
        assert_eq!(in_flight.finish(0), Some(at(20)));
        assert_eq!(in_flight.finish(2), Some(at(30)));
        assert!(in_flight.is_empty());
    }

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
