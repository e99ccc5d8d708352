//! Searching the store: log queries newest or oldest first with a cursor to continue, label
//! names and values.
//!
//! A search prunes before it reads: files and chunks outside the time range, chunks whose
//! labels fail the selector's matchers on labels, and chunks whose index filter says they
//! hold no event with the value an equality matcher on an indexed field asks for. It reads
//! the chunks left in time order (newest last event first, or oldest first event first),
//! keeps the best `limit` events in a heap, and stops as soon as no chunk left can hold a
//! better one. Every event it returns passed the whole selector on its decoded record.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use flumen_event::record::Record;
use flumen_select::{EvalError, MatchOp, MetricEval, MetricQuery, Selector, Series};

use crate::Store;
use crate::catalog::FileEntry;
use crate::format::{Block, ChunkDecoder, ChunkMeta, EventRef, index_key};
use crate::position::EventPosition;

/// Which end of the time range a search starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first (Loki's default, `backward`).
    #[default]
    Backward,
    /// Oldest first.
    Forward,
}

/// Where a search stopped: the last event it returned, by time and log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SearchCursor {
    /// The event's time, Unix nanoseconds.
    pub time_ns: u64,
    /// The event's position.
    pub position: EventPosition,
}

impl fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.time_ns, self.position)
    }
}

/// A text that is not a search cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a search cursor (expected the `next` value of an earlier answer)")]
pub struct BadSearchCursor;

impl FromStr for SearchCursor {
    type Err = BadSearchCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (time, position) = text.split_once(':').ok_or(BadSearchCursor)?;
        Ok(Self {
            time_ns: time.parse().map_err(|_| BadSearchCursor)?,
            position: position.parse().map_err(|_| BadSearchCursor)?,
        })
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Whose events.
    pub tenant: String,
    /// Which events.
    pub query: Selector,
    /// From this time (Unix nanoseconds, inclusive)...
    pub start_ns: u64,
    /// ... to this one (exclusive).
    pub end_ns: u64,
    /// At most this many events (capped by the store's `max_limit`).
    pub limit: usize,
    /// Newest or oldest first.
    pub direction: Direction,
    /// Continue after this event (the previous answer's `next`).
    pub after: Option<SearchCursor>,
}

/// A scan in log order (see [`Store::scan_log_order`]).
#[derive(Debug, Clone)]
pub struct LogOrderRequest {
    /// Whose events.
    pub tenant: String,
    /// Which events.
    pub query: Selector,
    /// From the event after this one (`None`: from the first).
    pub after: Option<EventPosition>,
    /// Up to events of this log record, excluded (where the caller reads the log itself).
    pub before_record: u64,
    /// At most this many events (capped by the store's `max_limit`).
    pub limit: usize,
}

/// One event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEvent {
    /// Its log position.
    pub position: EventPosition,
    /// Its time, Unix nanoseconds.
    pub time_ns: u64,
    /// Its tag.
    pub tag: String,
    /// Its record, msgpack, as received.
    pub record: Vec<u8>,
    /// Its stream's labels.
    pub labels: Arc<Vec<(String, String)>>,
    /// Its line, after the query's `line_format` if it has one.
    pub line: String,
    /// The labels the query's parsers extracted (`| json`, `| logfmt`, ...).
    pub extracted: Vec<(String, String)>,
}

impl SearchResult {
    /// Takes `events` as the answer: a full page (`limit` of them) has a cursor to the next.
    fn take_page(&mut self, events: Vec<FoundEvent>, limit: usize) {
        if events.len() == limit {
            self.next = events.last().map(FoundEvent::cursor);
        }
        self.events = events;
    }
}

impl FoundEvent {
    fn cursor(&self) -> SearchCursor {
        SearchCursor {
            time_ns: self.time_ns,
            position: self.position,
        }
    }
}

/// Why a search returned less than it could have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncated {
    /// It ran out of time (`query_timeout`).
    Timeout,
}

/// What a search read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Chunks in the tenant's files overlapping the time range.
    pub chunks_in_range: u64,
    /// Chunks read and decompressed.
    pub chunks_read: u64,
    /// Compressed bytes read.
    pub bytes_read: u64,
    /// Bytes after decompression.
    pub bytes_decompressed: u64,
    /// Events looked at.
    pub events_scanned: u64,
    /// Chunks skipped as damaged.
    pub corrupt_chunks: u64,
}

impl ScanStats {
    /// Adds what another reader read.
    fn merge(&mut self, other: ScanStats) {
        self.chunks_in_range += other.chunks_in_range;
        self.chunks_read += other.chunks_read;
        self.bytes_read += other.bytes_read;
        self.bytes_decompressed += other.bytes_decompressed;
        self.events_scanned += other.events_scanned;
        self.corrupt_chunks += other.corrupt_chunks;
    }
}

/// A search's answer.
#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    /// The events, in the direction asked.
    pub events: Vec<FoundEvent>,
    /// Where to continue when the limit was reached.
    pub next: Option<SearchCursor>,
    /// What was read.
    pub stats: ScanStats,
    /// Set when the answer is incomplete.
    pub truncated: Option<Truncated>,
}

/// One metric query over a time range.
#[derive(Debug, Clone)]
pub struct MetricRequest {
    /// Whose events.
    pub tenant: String,
    /// The query (`sum by (level) (count_over_time({...}[1m]))`).
    pub query: MetricQuery,
    /// The first step's time, Unix nanoseconds.
    pub start_ns: u64,
    /// The last step's time at the latest.
    pub end_ns: u64,
    /// The time between steps.
    pub step_ns: u64,
}

/// A metric query's answer.
#[derive(Debug, Clone, Default)]
pub struct MetricResult {
    /// The series, sorted by labels.
    pub series: Vec<Series>,
    /// What was read.
    pub stats: ScanStats,
    /// Set when the answer is incomplete.
    pub truncated: Option<Truncated>,
}

/// One stream's share of the store in a time range (see [`Store::streams`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream's labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its chunks overlapping the range.
    pub chunks: u64,
    /// The events in them.
    pub events: u64,
    /// Their bytes before compression.
    pub bytes: u64,
}

/// How many threads read a query's chunks at most (fewer on a machine with fewer cores).
const READ_THREADS: usize = 4;
/// How many chunks each reader may read ahead of the caller.
const READ_AHEAD: usize = 2;

/// A chunk to read.
struct Candidate<'a> {
    file: &'a Arc<FileEntry>,
    chunk: &'a ChunkMeta,
}

impl Store {
    /// Runs a search. Blocking: call it from a thread allowed to block.
    pub fn search(&self, request: &SearchRequest) -> SearchResult {
        let started = Instant::now();
        let limit = request.limit.clamp(1, self.config.max_limit);
        let catalog = self.catalog.snapshot();
        let mut result = SearchResult::default();
        let mut candidates = self.candidates(
            catalog.files(&request.tenant),
            &request.query,
            request.start_ns,
            request.end_ns,
            &mut result.stats,
        );
        // A page after a cursor needs no chunk entirely on the cursor's far side.
        if let Some(after) = request.after {
            candidates.retain(|c| match request.direction {
                Direction::Backward => c.chunk.min_time <= after.time_ns,
                Direction::Forward => c.chunk.max_time >= after.time_ns,
            });
        }
        match request.direction {
            Direction::Backward => candidates.sort_by_key(|c| Reverse(c.chunk.max_time)),
            Direction::Forward => candidates.sort_by_key(|c| c.chunk.min_time),
        }
        let prefilter = RawPrefilter::new(&request.query);
        let mut best = TopK::new(limit);
        // The worst kept event's time once `limit` are kept, for the readers to skip what
        // cannot beat it without building it (a time equal to it may still win on position).
        let bound = AtomicU64::new(match request.direction {
            Direction::Backward => 0,
            Direction::Forward => u64::MAX,
        });
        let select = |candidate: &Candidate<'_>, block: Block, stats: &mut ScanStats| {
            let mut found = Vec::new();
            if prefilter.rules_out_chunk(candidate.chunk, &block) {
                return found;
            }
            let labels = Arc::new(candidate.chunk.labels.clone());
            let bound = bound.load(Ordering::Relaxed);
            for i in 0..block.len() {
                let event = block.get(i);
                stats.events_scanned += 1;
                if event.time_ns < request.start_ns || event.time_ns >= request.end_ns {
                    continue;
                }
                let key = SearchCursor {
                    time_ns: event.time_ns,
                    position: event.position,
                };
                let wanted = match (request.direction, request.after) {
                    (Direction::Backward, Some(after)) => key < after,
                    (Direction::Forward, Some(after)) => key > after,
                    (_, None) => true,
                } && match request.direction {
                    Direction::Backward => key.time_ns >= bound,
                    Direction::Forward => key.time_ns <= bound,
                };
                if wanted {
                    found.extend(select_event(&event, &request.query, &prefilter, &labels));
                }
            }
            found
        };
        let hopeless = |best: &TopK<Rank>, candidate: &Candidate<'_>| {
            best.worst().is_some_and(|worst| match request.direction {
                Direction::Backward => candidate.chunk.max_time < worst.cursor.time_ns,
                Direction::Forward => candidate.chunk.min_time > worst.cursor.time_ns,
            })
        };
        result
            .stats
            .merge(scan_in_order(&candidates, true, select, |i, found| {
                if hopeless(&best, &candidates[i]) {
                    return false;
                }
                if started.elapsed() > self.config.query_timeout {
                    result.truncated = Some(Truncated::Timeout);
                    return false;
                }
                for event in found {
                    let rank = Rank {
                        cursor: event.cursor(),
                        direction: request.direction,
                    };
                    best.offer(rank, event);
                }
                if let Some(worst) = best.worst() {
                    bound.store(worst.cursor.time_ns, Ordering::Relaxed);
                }
                true
            }));
        result.take_page(best.into_sorted(), limit);
        result
    }

    /// The events the query selects after `request.after`, in log order (by position), up to
    /// `limit`: how a live stream catches up on what the log no longer holds. Blocking.
    pub fn scan_log_order(&self, request: &LogOrderRequest) -> SearchResult {
        let started = Instant::now();
        let limit = request.limit.clamp(1, self.config.max_limit);
        let catalog = self.catalog.snapshot();
        let mut result = SearchResult::default();
        let after = request.after.unwrap_or_default();
        let mut candidates = self.candidates(
            catalog.files(&request.tenant),
            &request.query,
            0,
            u64::MAX,
            &mut result.stats,
        );
        let before = request.before_record;
        candidates.retain(|c| {
            let (first, last) = (c.chunk.first_position(), c.chunk.last_position());
            (request.after.is_none() || last > after) && first.record.get() < before
        });
        candidates.sort_by_key(|c| c.chunk.first_position());
        let prefilter = RawPrefilter::new(&request.query);
        let mut best = TopK::new(limit);
        let select = |candidate: &Candidate<'_>, block: Block, stats: &mut ScanStats| {
            let mut found = Vec::new();
            if prefilter.rules_out_chunk(candidate.chunk, &block) {
                return found;
            }
            let labels = Arc::new(candidate.chunk.labels.clone());
            for i in 0..block.len() {
                let event = block.get(i);
                stats.events_scanned += 1;
                let wanted = (request.after.is_none() || event.position > after)
                    && event.position.record.get() < before;
                if wanted {
                    found.extend(select_event(&event, &request.query, &prefilter, &labels));
                }
            }
            found
        };
        result
            .stats
            .merge(scan_in_order(&candidates, true, select, |i, found| {
                let first = candidates[i].chunk.first_position();
                if best.worst().is_some_and(|last| *last < first) {
                    return false;
                }
                if started.elapsed() > self.config.query_timeout {
                    result.truncated = Some(Truncated::Timeout);
                    return false;
                }
                for event in found {
                    best.offer(event.position, event);
                }
                true
            }));
        result.take_page(best.into_sorted(), limit);
        result
    }

    /// Runs a metric query: every matching event in the steps' windows is counted. Blocking.
    pub fn metric(&self, request: &MetricRequest) -> Result<MetricResult, EvalError> {
        let started = Instant::now();
        let range = u64::try_from(request.query.range_ns()).unwrap_or(0);
        let clamp = |ns: u64| i64::try_from(ns).unwrap_or(i64::MAX);
        let mut eval = MetricEval::new(
            &request.query,
            clamp(request.start_ns),
            clamp(request.end_ns),
            clamp(request.step_ns),
        )?;
        // The first step looks back one range.
        let (from, to) = (
            request.start_ns.saturating_sub(range),
            request.end_ns.saturating_add(1),
        );
        let selector = request.query.selector();
        let catalog = self.catalog.snapshot();
        let mut result = MetricResult::default();
        let candidates = self.candidates(
            catalog.files(&request.tenant),
            selector,
            from,
            to,
            &mut result.stats,
        );
        let prefilter = RawPrefilter::new(selector);
        // Counting a stream selector whose matchers are all on labels needs no record: each
        // candidate chunk's events are all selected, and the head has their times and sizes.
        let labels_decide = selector
            .stream_matchers()
            .iter()
            .all(|m| self.config.labels.iter().any(|l| l == m.name()));
        let heads_only = eval.counts_streams() && labels_decide;
        // The readers pick out, from each chunk, what the evaluation needs: each event's
        // time and size (heads only), or the events the selector may select, decoded.
        let pick = |candidate: &Candidate<'_>, block: Block, stats: &mut ScanStats| {
            stats.events_scanned += block.len() as u64;
            let in_range = |time: u64| (from..to).contains(&time);
            if heads_only {
                let sizes = (0..block.len())
                    .filter(|&i| in_range(block.time(i)))
                    .map(|i| (clamp(block.time(i)), block.record_len(i)))
                    .collect();
                return Picked::Sizes(sizes);
            }
            if prefilter.rules_out_chunk(candidate.chunk, &block) {
                return Picked::Events(Vec::new());
            }
            let events = (0..block.len())
                .map(|i| block.get(i))
                .filter(|e| in_range(e.time_ns) && !prefilter.rejects(e.record))
                .filter_map(|e| {
                    let record = Record::decode(e.record).ok()?;
                    Some((clamp(e.time_ns), e.tag.to_owned(), record, e.record.len()))
                })
                .collect();
            Picked::Events(events)
        };
        let mut failed = None;
        result.stats.merge(scan_in_order(
            &candidates,
            !heads_only,
            pick,
            |i, picked| {
                if started.elapsed() > self.config.query_timeout {
                    result.truncated = Some(Truncated::Timeout);
                    return false;
                }
                let labels: Vec<(&str, &str)> = candidates[i]
                    .chunk
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let pushed = match picked {
                    Picked::Sizes(sizes) => eval.push_stream(&labels, sizes),
                    Picked::Events(events) => {
                        events.iter().try_for_each(|(time, tag, record, len)| {
                            eval.push(*time, &labels, tag, record, *len)
                        })
                    }
                };
                match pushed {
                    Ok(()) => true,
                    Err(error) => {
                        failed = Some(error);
                        false
                    }
                }
            },
        ));
        if let Some(error) = failed {
            return Err(error);
        }
        result.series = eval.finish();
        Ok(result)
    }

    /// What the catalog says, without reading chunks, about the streams the selector's matchers
    /// may select in `[start_ns, end_ns)`: per stream (label set), its chunks, events and bytes
    /// before compression. Stream matchers on labels are exact; on indexed fields they use the
    /// chunks' filters (rarely, a chunk without the value is counted); line filters and later
    /// stages are not applied. For Loki's `series`, `index/stats` and `index/volume`.
    pub fn streams(
        &self,
        tenant: &str,
        selector: &Selector,
        start_ns: u64,
        end_ns: u64,
    ) -> Vec<StreamStats> {
        let catalog = self.catalog.snapshot();
        let mut stats = ScanStats::default();
        let mut streams: BTreeMap<&[(String, String)], StreamStats> = BTreeMap::new();
        for candidate in self.candidates(
            catalog.files(tenant),
            selector,
            start_ns,
            end_ns,
            &mut stats,
        ) {
            let chunk = candidate.chunk;
            let entry = streams.entry(&chunk.labels).or_insert_with(|| StreamStats {
                labels: chunk.labels.clone(),
                ..StreamStats::default()
            });
            entry.chunks += 1;
            entry.events += u64::from(chunk.count);
            entry.bytes += u64::from(chunk.raw_len);
        }
        streams.into_values().collect()
    }

    /// The chunks of `files` in the time range that the selector's matchers do not rule out.
    fn candidates<'a>(
        &self,
        files: &'a [Arc<FileEntry>],
        query: &Selector,
        start_ns: u64,
        end_ns: u64,
        stats: &mut ScanStats,
    ) -> Vec<Candidate<'a>> {
        let labels = &self.config.labels;
        let indexed = &self.config.indexed_fields;
        // Equality matchers on indexed fields, as index keys; a match on "" means "absent",
        // which a filter cannot rule out.
        let wanted_keys: Vec<u64> = query
            .stream_matchers()
            .iter()
            .filter(|m| m.op() == MatchOp::Eq && !m.value().is_empty())
            .filter(|m| indexed.iter().any(|f| f == m.name()))
            .map(|m| index_key(m.name(), m.value()))
            .collect();
        let label_matchers: Vec<_> = query
            .stream_matchers()
            .iter()
            .filter(|m| labels.iter().any(|l| l == m.name()))
            .collect();
        let mut out = Vec::new();
        for file in files.iter().filter(|f| f.overlaps(start_ns, end_ns)) {
            for chunk in &file.footer.chunks {
                if chunk.min_time >= end_ns || chunk.max_time < start_ns {
                    continue;
                }
                stats.chunks_in_range += 1;
                if !label_matchers
                    .iter()
                    .all(|m| m.matches_text(chunk.label(m.name())))
                {
                    continue;
                }
                if !wanted_keys.iter().all(|&k| chunk.may_contain(k)) {
                    continue;
                }
                out.push(Candidate { file, chunk });
            }
        }
        out
    }
}

/// What a query rules out from a record's bytes, before decoding it: a line (a string
/// `message`, `log` or `msg`) without a literal the query requires, and a top-level string
/// field that differs from the value an equality matcher wants. Anything it cannot tell from
/// the bytes (a line that is not a string, a field that is a number) it leaves to the decoded
/// record, so it never rejects an event the query would select.
#[derive(Debug)]
pub struct RawPrefilter<'q> {
    literals: Vec<memchr::memmem::Finder<'q>>,
    /// Field names (top level, not `tag`) and the values `=` matchers want.
    names: Vec<String>,
    wanted: Vec<&'q str>,
}

impl<'q> RawPrefilter<'q> {
    pub fn new(query: &'q Selector) -> Self {
        let (names, wanted) = query
            .stream_matchers()
            .iter()
            .filter(|m| m.op() == MatchOp::Eq && m.name() != "tag" && !m.name().contains('.'))
            .map(|m| (m.name().to_owned(), m.value()))
            .unzip();
        Self {
            literals: query
                .required_literals()
                .into_iter()
                .map(memchr::memmem::Finder::new)
                .collect(),
            names,
            wanted,
        }
    }

    /// True when the query can select no event of the chunk: every event's line is a string
    /// field, and the chunk's body (every record, as received) lacks a required literal.
    fn rules_out_chunk(&self, chunk: &ChunkMeta, block: &Block) -> bool {
        chunk.string_lines && self.literals.iter().any(|f| f.find(block.body()).is_none())
    }

    /// True when the query cannot select the event with this record.
    pub fn rejects(&self, record: &[u8]) -> bool {
        self.lacks_a_literal(record) || self.differs_in_a_field(record)
    }

    fn lacks_a_literal(&self, record: &[u8]) -> bool {
        !self.literals.is_empty()
            && crate::fields::line_bytes(record)
                .is_some_and(|line| self.literals.iter().any(|f| f.find(line).is_none()))
    }

    fn differs_in_a_field(&self, record: &[u8]) -> bool {
        if self.names.is_empty() {
            return false;
        }
        // A missing field reads as "", which only a matcher for "" accepts.
        let mut seen = [FieldSeen::Missing; 8];
        crate::fields::scan_raw_fields(record, &self.names, |i, value| {
            if let Some(slot) = seen.get_mut(i) {
                *slot = match value {
                    flumen_event::msgpack::Value::Str(bytes)
                        if bytes == self.wanted[i].as_bytes() =>
                    {
                        FieldSeen::Same
                    }
                    flumen_event::msgpack::Value::Str(_) => FieldSeen::Different,
                    _ => FieldSeen::Unknown,
                };
            }
        });
        seen.iter()
            .zip(&self.wanted)
            .any(|(seen, wanted)| match seen {
                FieldSeen::Different => true,
                FieldSeen::Missing => !wanted.is_empty(),
                FieldSeen::Same | FieldSeen::Unknown => false,
            })
    }
}

/// What the raw prefilter found of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldSeen {
    Missing,
    Same,
    Different,
    /// Not a string: only the decoded record can tell.
    Unknown,
}

/// The event `event` as found, when the query selects it (`labels` are its stream's).
fn select_event(
    event: &EventRef<'_>,
    query: &Selector,
    prefilter: &RawPrefilter<'_>,
    labels: &Arc<Vec<(String, String)>>,
) -> Option<FoundEvent> {
    if prefilter.rejects(event.record) {
        return None;
    }
    let record = Record::decode(event.record).ok()?;
    let processed = query.process(event.tag, &record)?;
    Some(FoundEvent {
        position: event.position,
        time_ns: event.time_ns,
        tag: event.tag.to_owned(),
        record: event.record.to_vec(),
        labels: labels.clone(),
        line: processed.line.into_owned(),
        extracted: processed.labels,
    })
}

/// The best `limit` events by a key, the smaller the better: a heap whose top is the worst kept.
struct TopK<K> {
    limit: usize,
    heap: BinaryHeap<Kept<K>>,
}

impl<K: Ord> TopK<K> {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit + 1),
        }
    }

    /// The worst key kept, once `limit` events are.
    fn worst(&self) -> Option<&K> {
        (self.heap.len() >= self.limit)
            .then(|| self.heap.peek().map(|kept| &kept.0))
            .flatten()
    }

    /// Keeps `event` if it beats the worst kept.
    fn offer(&mut self, key: K, event: FoundEvent) {
        if self.worst().is_some_and(|worst| key >= *worst) {
            return;
        }
        self.heap.push(Kept(key, event));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    /// The events kept, best first.
    fn into_sorted(self) -> Vec<FoundEvent> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|kept| kept.1)
            .collect()
    }
}

/// An event in a [`TopK`], ordered by its key alone.
struct Kept<K>(K, FoundEvent);

impl<K: Ord> PartialEq for Kept<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K: Ord> Eq for Kept<K> {}

impl<K: Ord> PartialOrd for Kept<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K: Ord> Ord for Kept<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// A search's rank of an event: the smaller, the better (newer for newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rank {
    cursor: SearchCursor,
    direction: Direction,
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match self.direction {
            Direction::Backward => other.cursor.cmp(&self.cursor),
            Direction::Forward => self.cursor.cmp(&other.cursor),
        }
    }
}

/// What a metric query's readers pick out of one chunk.
enum Picked {
    /// Each event's time and record size (for counting a stream selector).
    Sizes(Vec<(i64, usize)>),
    /// The events the selector may select: time, tag, record, record size.
    Events(Vec<(i64, String, Record, usize)>),
}

/// Reads `candidates` on up to [`READ_THREADS`] threads, runs `work` on each chunk read (with
/// its records when `with_body`) on the thread that read it, and hands the results to `take`
/// in the candidates' order, on the calling thread; `take` returns false to stop there.
/// Returns what the readers read.
fn scan_in_order<T: Send>(
    candidates: &[Candidate<'_>],
    with_body: bool,
    work: impl Fn(&Candidate<'_>, Block, &mut ScanStats) -> T + Sync,
    mut take: impl FnMut(usize, T) -> bool,
) -> ScanStats {
    let threads = READ_THREADS
        .min(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(candidates.len());
    if threads == 0 {
        return ScanStats::default();
    }
    std::thread::scope(|scope| {
        let mut results = Vec::with_capacity(threads);
        let mut readers = Vec::with_capacity(threads);
        for first in 0..threads {
            // Reader `first` reads candidates first, first + threads, ...; a small queue lets
            // it read ahead while the caller takes what the others read.
            let (send, receive) = sync_channel::<Option<T>>(READ_AHEAD);
            results.push(receive);
            let work = &work;
            readers.push(scope.spawn(move || {
                let mut reader = ChunkReader::default();
                let mut stats = ScanStats::default();
                for candidate in candidates.iter().skip(first).step_by(threads) {
                    let done = reader
                        .read(candidate, with_body, &mut stats)
                        .map(|block| work(candidate, block, &mut stats));
                    if send.send(done).is_err() {
                        break; // The caller has stopped.
                    }
                }
                stats
            }));
        }
        for i in 0..candidates.len() {
            match results[i % threads].recv() {
                Ok(Some(done)) => {
                    if !take(i, done) {
                        break;
                    }
                }
                Ok(None) => {} // Damaged: reported and counted by the reader.
                Err(_) => break,
            }
        }
        // Readers waiting to hand over a result see the queues closed and stop.
        drop(results);
        let mut stats = ScanStats::default();
        for reader in readers {
            match reader.join() {
                Ok(read) => stats.merge(read),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        stats
    })
}

/// Reads chunks, keeping each file open and one decoder for the search.
struct ChunkReader {
    open: HashMap<u64, std::fs::File>,
    decoder: ChunkDecoder,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
            decoder: ChunkDecoder::new().expect("a zstd decompression context"),
        }
    }
}

impl ChunkReader {
    /// Reads a chunk, with its records (`with_body`) or its head alone.
    fn read(
        &mut self,
        candidate: &Candidate<'_>,
        with_body: bool,
        stats: &mut ScanStats,
    ) -> Option<Block> {
        let file = candidate.file;
        let handle = match self.open.entry(file.footer.seq) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match file.open() {
                Ok(handle) => e.insert(handle),
                Err(error) => {
                    report_corrupt_chunk(&file.path, &error);
                    stats.corrupt_chunks += 1;
                    return None;
                }
            },
        };
        let chunk = candidate.chunk;
        match self.decoder.read(handle, chunk, with_body) {
            Ok(block) => {
                stats.chunks_read += 1;
                if with_body {
                    stats.bytes_read += u64::from(chunk.len);
                    stats.bytes_decompressed += u64::from(chunk.raw_len);
                } else {
                    stats.bytes_read += u64::from(chunk.head_len);
                    stats.bytes_decompressed += u64::from(chunk.head_raw_len);
                }
                Some(block)
            }
            Err(error) => {
                report_corrupt_chunk(&file.path, &error);
                stats.corrupt_chunks += 1;
                None
            }
        }
    }
}

/// Logs and counts a chunk that cannot be read.
pub(crate) fn report_corrupt_chunk(path: &Path, error: &std::io::Error) {
    tracing::error!(message = "A store chunk is damaged; skipped.", path = %path.display(), %error);
    metrics::counter!("flumen_store_corrupt_chunks_total").increment(1);
}

#[cfg(test)]
mod tests {
    use flumen_event::record::{Record, Value};

    use super::*;

    /// The prefilter only ever rejects what the query would not select.
    #[test]
    fn the_raw_prefilter_never_rejects_an_event_the_query_selects() {
        let records = [
            vec![
                ("service", Value::from("api")),
                ("message", Value::from("a timeout")),
            ],
            vec![
                ("service", Value::from("web")),
                ("message", Value::from("ok")),
            ],
            vec![
                ("status", Value::UInt(503)),
                ("log", Value::from("upstream timeout")),
            ],
            vec![("message", Value::UInt(7)), ("service", Value::from("api"))],
            vec![("other", Value::from("x"))],
            vec![(
                "service",
                Value::Map(vec![("a".into(), Value::from("api"))]),
            )],
            vec![("msg", Value::from("m timeout")), ("log", Value::from("l"))],
        ];
        let queries = [
            r#"{service="api"}"#,
            r#"{service=""}"#,
            r#"{status="503"}"#,
            r#"{} |= "timeout""#,
            r#"{service="api"} |= "timeout""#,
            r#"{} |= "7""#,
            r#"{} |= "upstream" |= "timeout""#,
            r#"{other="x", service=""}"#,
            r#"{} | json | line_format "{{.service}}" |= "api""#,
        ];
        let mut rejected = 0;
        for query in queries {
            let selector = Selector::parse(query).unwrap();
            let prefilter = RawPrefilter::new(&selector);
            for fields in &records {
                let record = Record::from(
                    fields
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect::<Vec<_>>(),
                );
                let mut raw = Vec::new();
                record.write_msgpack(&mut raw);
                if prefilter.rejects(&raw) {
                    rejected += 1;
                    assert!(!selector.matches("t", &record), "{query} on {record:?}");
                }
            }
        }
        assert!(rejected > 10, "the prefilter rejects something: {rejected}");
    }
}
