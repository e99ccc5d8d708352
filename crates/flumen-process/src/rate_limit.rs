//! Rate limits: at most `events` per `window` for each key.
//!
//! The key is the tag and the values of `key_fields` (default `service`; dotted paths reach
//! into maps; a missing field is a value of its own). Each key has a token bucket that holds
//! `events` tokens and refills at `events` per `window` — the generic cell rate algorithm
//! Vector's `throttle` transform uses (`threshold`, `window_secs`). So a quiet key may send a
//! burst of `events` at once, and then one more every `window / events`; a key that keeps
//! sending faster than that has `events` per `window` kept and the rest dropped.
//!
//! Keys are kept for up to `max_keys` (default 10,000). When a new key arrives and there is no
//! room, the keys whose buckets are full again (idle for a whole window, so forgetting them
//! changes nothing) are dropped; if that is not enough, the tenth of the keys seen least
//! recently are.
//!
//! The limiter is shared by every session (`&self`, one lock); the caller passes the time so
//! tests can use explicit `Instant`s. Times that go backwards are taken as no time passing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flumen_event::record::Event;
use serde::Deserialize;

/// Configuration of the rate-limit step: one `[[filters]]` table without `type`, `match` and
/// `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The fields that, with the tag, make the key (default `["service"]`).
    #[serde(default = "default_key_fields")]
    pub key_fields: Vec<String>,
    /// Events kept per window and key (required, at least 1).
    pub events: u32,
    /// The window (default 1s).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// The most keys tracked (default 10,000).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_key_fields() -> Vec<String> {
    vec!["service".to_owned()]
}

fn default_window() -> Duration {
    Duration::from_secs(1)
}

fn default_max_keys() -> usize {
    10_000
}

impl RateLimitConfig {
    /// `events` per `window`, other keys at their defaults.
    pub fn new(events: u32, window: Duration) -> Self {
        Self {
            key_fields: default_key_fields(),
            events,
            window,
            max_keys: default_max_keys(),
        }
    }
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// The theoretical arrival time: when the bucket is full again.
    full_at: Instant,
    last_seen: Instant,
}

/// A rate limiter shared by every session.
#[derive(Debug)]
pub struct RateLimiter {
    key_fields: Vec<String>,
    /// Time one token takes to come back.
    interval: Duration,
    /// How far ahead of now `full_at` may be for an event to be kept.
    tolerance: Duration,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Checks `config`; errors name the key at fault.
    pub fn new(config: &RateLimitConfig) -> Result<Self, String> {
        if config.events == 0 {
            return Err("events: must be at least 1".to_owned());
        }
        if config.window.is_zero() {
            return Err("window: must be more than 0".to_owned());
        }
        if config.max_keys == 0 {
            return Err("max_keys: must be at least 1".to_owned());
        }
        let interval = config.window / config.events;
        if interval.is_zero() {
            return Err("events: more than one per nanosecond of window".to_owned());
        }
        Ok(Self {
            key_fields: config.key_fields.clone(),
            interval,
            tolerance: config.window - interval,
            max_keys: config.max_keys,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Whether to keep `event`, seen at `now`.
    pub fn keep(&self, tag: &str, event: &Event, now: Instant) -> bool {
        let mut key = String::with_capacity(tag.len() + 16);
        key.push_str(tag);
        for field in &self.key_fields {
            key.push('\0');
            match event.record.get_path(field) {
                Some(value) => key.push_str(&value.to_text()),
                None => key.push('\u{1}'),
            }
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(&key) {
            Some(bucket) => bucket,
            None => {
                if buckets.len() >= self.max_keys {
                    self.make_room(&mut buckets, now);
                }
                buckets.entry(key).or_insert(Bucket {
                    full_at: now,
                    last_seen: now,
                })
            }
        };
        bucket.last_seen = bucket.last_seen.max(now);
        let full_at = bucket.full_at.max(now);
        if full_at.saturating_duration_since(now) > self.tolerance {
            return false;
        }
        bucket.full_at = full_at + self.interval;
        true
    }

    /// How many keys are tracked.
    pub fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn make_room(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        buckets.retain(|_, b| b.full_at > now);
        if buckets.len() < self.max_keys {
            return;
        }
        let evict = (self.max_keys / 10).max(1);
        let mut seen: Vec<Instant> = buckets.values().map(|b| b.last_seen).collect();
        let (_, cutoff, _) = seen.select_nth_unstable(evict - 1);
        let cutoff = *cutoff;
        buckets.retain(|_, b| b.last_seen > cutoff);
    }
}
