//! A sink that answers as a test tells it to, and remembers what it was handed: for testing
//! the driver's decisions (what to retry, when, what to dead-letter), not a protocol.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use flumen_event::{BatchBuilder, EventTime, TenantId};
use tokio::time::Instant;

use crate::{Delivery, Outcome};

/// One attempt the sink saw: when, and the events' times in seconds (tests number events by
/// their time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: Instant,
    pub seconds: Vec<u64>,
}

/// Answers each attempt with the next scripted outcome (`None`: never answers); once the
/// script is used up, takes everything.
#[derive(Debug, Default)]
pub struct ScriptedSink {
    answers: VecDeque<Option<Outcome>>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl ScriptedSink {
    /// A sink answering with `answers`, in order, and where its attempts will be listed.
    pub fn new(
        answers: impl IntoIterator<Item = Option<Outcome>>,
    ) -> (Self, Arc<Mutex<Vec<Attempt>>>) {
        let sink = Self {
            answers: answers.into_iter().collect(),
            attempts: Arc::default(),
        };
        let attempts = sink.attempts.clone();
        (sink, attempts)
    }

    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let seconds = delivery
            .events()
            .map(|(_, entry)| entry.time.secs)
            .collect();
        self.attempts.lock().unwrap().push(Attempt {
            at: Instant::now(),
            seconds,
        });
        match self.answers.pop_front() {
            Some(Some(outcome)) => outcome,
            Some(None) => std::future::pending().await,
            None => Outcome::delivered(),
        }
    }
}

/// A delivery of `batches` batches of `per_batch` events, numbered by their time in seconds.
pub(crate) fn numbered(batches: u64, per_batch: u64) -> Delivery {
    let builder = BatchBuilder::new(TenantId::default_tenant(), "").unwrap();
    let mut delivery = Delivery::default();
    for seq in 0..batches {
        let mut entries = Vec::new();
        for n in seq * per_batch..(seq + 1) * per_batch {
            flumen_event::entry::write_entry(&mut entries, EventTime::new(n, 0), &[0x80]);
        }
        let count = per_batch as u32;
        let batch = builder.encode("t", b"", count, &entries).unwrap();
        delivery.push(seq, batch.into(), count);
    }
    delivery
}
