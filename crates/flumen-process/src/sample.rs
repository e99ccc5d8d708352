//! Sampling: keep every warning and error, and a fraction of the rest, per service.
//!
//! An event whose level (the `level_field`, default `level`, read with [`Level::parse`]) is at
//! or above `keep_level` (default `WARN`) is always kept. Every other event — those without a
//! level too — is kept at its service's rate: `by_service[service]`, else `rate` (default
//! 0.1). The service is the `service_field` (default `service`; a dotted path reaches into
//! maps); events without one share the rate of the service `""`.
//!
//! Which events are kept is deterministic, as with Vector's `sample` transform:
//!
//! - with a `key_field` (say `trace_id`), an event is kept when a hash of that field's value
//!   (seeded with `seed`, default 0) falls under the rate, so all events of one trace are kept
//!   or dropped together, on every flumen that uses the same seed — and a trace kept in a
//!   service sampled at 1% is also kept in the services sampled at 10%. Events without the
//!   field are counted as below.
//! - otherwise each service has a counter, and exactly ⌈n × rate⌉ of its first n sampled
//!   events are kept, spread evenly: the first, then one every 1/rate (at 0.1 the 1st, 11th,
//!   21st…; at 0.3 the 1st, 4th, 7th, 11th…).
//!
//! A rate of 1 keeps everything, 0 drops everything below `keep_level`. The sampler is shared by
//! every session (`&self`, a lock around the counters). Counters are kept for up to 100,000
//! services; past that they all start again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use flumen_event::record::{Event, Value};
use flumen_parse::Level;
use serde::Deserialize;

/// Rates are held as parts per billion (so decimal rates are exact).
const SCALE: u64 = 1_000_000_000;

/// The most services with their own counter.
const MAX_COUNTERS: usize = 100_000;

/// Configuration of the sampling step: one `[[filters]]` table without `type`, `match` and
/// `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// The fraction of events kept, 0 to 1 (default 0.1).
    pub rate: f64,
    /// Rates of particular services.
    pub by_service: BTreeMap<String, f64>,
    /// The field naming the service (default `service`).
    pub service_field: String,
    /// Events at or above this level are always kept (default `WARN`).
    pub keep_level: Level,
    /// The field holding the level (default `level`).
    pub level_field: String,
    /// When set, events are kept or dropped by a hash of this field (a trace id).
    pub key_field: Option<String>,
    /// Seeds the hash of `key_field` (default 0).
    pub seed: u64,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            rate: 0.1,
            by_service: BTreeMap::new(),
            service_field: "service".to_owned(),
            keep_level: Level::Warn,
            level_field: flumen_parse::level::LEVEL_FIELD.to_owned(),
            key_field: None,
            seed: 0,
        }
    }
}

/// A sampler shared by every session.
#[derive(Debug)]
pub struct Sampler {
    rate: u64,
    by_service: HashMap<String, u64>,
    service_field: String,
    keep_level: Level,
    level_field: String,
    key_field: Option<String>,
    seed: u64,
    /// Sampled events seen per service.
    counters: Mutex<HashMap<String, u64>>,
}

fn scaled(key: &str, rate: f64) -> Result<u64, String> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{key}: must be between 0 and 1, not {rate}"));
    }
    Ok((rate * SCALE as f64).round() as u64)
}

impl Sampler {
    /// Checks `config`; errors name the key at fault.
    pub fn new(config: &SampleConfig) -> Result<Self, String> {
        let rate = scaled("rate", config.rate)?;
        let by_service = config
            .by_service
            .iter()
            .map(|(service, rate)| {
                Ok((
                    service.clone(),
                    scaled(&format!("by_service.{service}"), *rate)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        if config.service_field.is_empty() {
            return Err("service_field: must not be empty".to_owned());
        }
        if config.level_field.is_empty() {
            return Err("level_field: must not be empty".to_owned());
        }
        if config.key_field.as_deref() == Some("") {
            return Err("key_field: must not be empty".to_owned());
        }
        Ok(Self {
            rate,
            by_service,
            service_field: config.service_field.clone(),
            keep_level: config.keep_level,
            level_field: config.level_field.clone(),
            key_field: config.key_field.clone(),
            seed: config.seed,
            counters: Mutex::new(HashMap::new()),
        })
    }

    /// Whether to keep `event`.
    pub fn keep(&self, event: &Event) -> bool {
        let record = &event.record;
        if let Some(level) = record
            .get_path(&self.level_field)
            .and_then(|v| Level::parse(&v.to_text()))
            && level >= self.keep_level
        {
            return true;
        }
        let service = record.get_path(&self.service_field).map(Value::to_text);
        let service = service.as_deref().unwrap_or("");
        let rate = self.by_service.get(service).copied().unwrap_or(self.rate);
        if rate >= SCALE {
            return true;
        }
        if rate == 0 {
            return false;
        }
        if let Some(key) = self.key_field.as_deref().and_then(|f| record.get_path(f)) {
            let h = hash(self.seed, key.to_text().as_bytes());
            // The hash scaled to 0..SCALE.
            return (u128::from(h) * u128::from(SCALE)) >> 64 < u128::from(rate);
        }
        let n = {
            let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            match counters.get_mut(service) {
                Some(n) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    if counters.len() >= MAX_COUNTERS {
                        counters.clear();
                    }
                    counters.insert(service.to_owned(), 1);
                    0
                }
            }
        };
        // Keep the n-th when ⌈n·rate⌉ < ⌈(n+1)·rate⌉: ⌈N·rate⌉ of the first N, evenly.
        let ceil = |n: u64| (u128::from(n) * u128::from(rate)).div_ceil(u128::from(SCALE));
        ceil(n) < ceil(n + 1)
    }
}

/// A stable 64-bit hash (FNV-1a, then the SplitMix64 finaliser to spread the bits).
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
