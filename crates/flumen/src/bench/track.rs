//! The receivers' bookkeeping (the Forward receiver's and the live-tail subscribers'): which
//! sequence numbers of a (run, conn) arrived, a latency histogram, and the parts of a report
//! both receivers show.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

/// Sequence numbers per page: 2^16, a page is 8 KiB of bits. 100 M events in a sequence take
/// 1526 pages, 12.5 MiB; pages are only allocated where numbers arrived.
const PAGE_SHIFT: u32 = 16;
const PAGE_WORDS: usize = 1 << (PAGE_SHIFT - 6);

type Page = Box<[u64; PAGE_WORDS]>;

/// The sequence numbers seen on one (run, conn), as a sparse bitset.
#[derive(Debug, Default)]
pub struct SeqTracker {
    pages: HashMap<u64, Page>,
    /// Every event, duplicates included.
    pub received: u64,
    /// Distinct sequence numbers.
    pub unique: u64,
    /// Events whose sequence number had been seen before.
    pub duplicates: u64,
    /// New sequence numbers below the highest seen at the time (filled gaps, reordering).
    pub out_of_order: u64,
    /// The highest sequence number seen.
    pub max: Option<u64>,
}

impl SeqTracker {
    /// Records one event; true when its sequence number is new.
    pub fn record(&mut self, seq: u64) -> bool {
        self.received += 1;
        let page = self
            .pages
            .entry(seq >> PAGE_SHIFT)
            .or_insert_with(|| Box::new([0; PAGE_WORDS]));
        let bit = (seq & ((1 << PAGE_SHIFT) - 1)) as usize;
        let mask = 1u64 << (bit & 63);
        let word = &mut page[bit >> 6];
        if *word & mask != 0 {
            self.duplicates += 1;
            return false;
        }
        *word |= mask;
        self.unique += 1;
        match self.max {
            Some(max) if seq < max => self.out_of_order += 1,
            _ => self.max = Some(seq),
        }
        true
    }

    /// Sequence numbers below the highest seen that have not arrived. (Sequences start at 0.)
    pub fn missing(&self) -> u64 {
        // Every unique number is <= max, so unique <= max + 1.
        self.max.map_or(0, |max| max - (self.unique - 1))
    }

    fn has(&self, seq: u64) -> bool {
        self.pages.get(&(seq >> PAGE_SHIFT)).is_some_and(|page| {
            let bit = (seq & ((1 << PAGE_SHIFT) - 1)) as usize;
            page[bit >> 6] & (1 << (bit & 63)) != 0
        })
    }

    /// The first `limit` ranges of missing sequence numbers below the highest seen, inclusive.
    pub fn gaps(&self, limit: usize) -> Vec<(u64, u64)> {
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        let Some(max) = self.max else {
            return gaps;
        };
        let add = |seq: u64, gaps: &mut Vec<(u64, u64)>| match gaps.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            _ => gaps.push((seq, seq)),
        };
        let mut pages: Vec<u64> = self.pages.keys().copied().collect();
        pages.sort_unstable();
        let mut next = 0u64; // the first sequence number not yet looked at
        for p in pages {
            let start = p << PAGE_SHIFT;
            if start > next {
                // Whole pages without a single arrival.
                match gaps.last_mut() {
                    Some((_, end)) if *end + 1 == next => *end = start - 1,
                    _ => gaps.push((next, start - 1)),
                }
            }
            if gaps.len() > limit {
                break;
            }
            let page = &self.pages[&p];
            for (w, &word) in page.iter().enumerate() {
                if word == u64::MAX {
                    continue;
                }
                let base = start + (w as u64) * 64;
                for b in 0..64 {
                    let seq = base + b;
                    if seq > max {
                        break;
                    }
                    if word & (1 << b) == 0 {
                        add(seq, &mut gaps);
                    }
                }
                if gaps.len() > limit {
                    break;
                }
            }
            next = start.saturating_add(1 << PAGE_SHIFT);
        }
        debug_assert!(gaps.iter().all(|&(a, b)| !self.has(a) && !self.has(b)));
        gaps.truncate(limit);
        gaps
    }
}

/// A log-linear histogram of u64 values (nanoseconds): exact below 128, then 128 buckets per
/// power of two, so a percentile is within 0.8 % of the true value. 58 KiB.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) << SUB_BITS;

fn bucket(v: u64) -> usize {
    if v < SUB {
        v as usize
    } else {
        let e = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = e - SUB_BITS;
        (((e - SUB_BITS + 1) as usize) << SUB_BITS) + ((v >> shift) & (SUB - 1)) as usize
    }
}

/// The highest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) as u32 - 1;
    let mantissa = (i as u64 & (SUB - 1)) | SUB;
    (mantissa << shift) + ((1u64 << shift) - 1)
}

impl Histogram {
    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The largest value added.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max);
            }
        }
        self.max
    }
}

/// Which sequence numbers arrived, per run and connection: the books of the Forward receiver,
/// or of one live-tail subscriber.
#[derive(Debug, Default)]
pub struct SeqBooks {
    runs: HashMap<Vec<u8>, BTreeMap<u64, SeqTracker>>,
    /// Distinct events over all runs.
    pub unique: u64,
}

impl SeqBooks {
    /// Records events `seqs` of (`run`, `conn`); returns how many were new.
    pub fn record(&mut self, run: &[u8], conn: u64, seqs: impl IntoIterator<Item = u64>) -> u64 {
        // Looked up by slice first: a run's id is copied once, not per event.
        if !self.runs.contains_key(run) {
            self.runs.insert(run.to_vec(), BTreeMap::new());
        }
        let tracker = self
            .runs
            .get_mut(run)
            .expect("inserted")
            .entry(conn)
            .or_default();
        let new = seqs.into_iter().filter(|&seq| tracker.record(seq)).count() as u64;
        self.unique += new;
        new
    }

    /// Every run with its connections' reports, runs in order of their ids.
    pub fn reports(&self) -> Vec<(&[u8], Vec<ConnReport>)> {
        let mut runs: Vec<_> = self
            .runs
            .iter()
            .map(|(run, conns)| {
                let connections = conns
                    .iter()
                    .map(|(&conn, tracker)| ConnReport::of(conn, tracker))
                    .collect();
                (run.as_slice(), connections)
            })
            .collect();
        runs.sort_by(|a, b| a.0.cmp(b.0));
        runs
    }
}

/// How many missing ranges a report names per connection.
const GAPS_SHOWN: usize = 10;

/// What arrived of one (run, conn).
#[derive(Debug, Clone)]
pub struct ConnReport {
    pub conn: u64,
    pub received: u64,
    pub unique: u64,
    pub duplicated: u64,
    pub missing: u64,
    pub out_of_order: u64,
    pub max_seq: Option<u64>,
    /// The first missing ranges, inclusive.
    pub gaps: Vec<(u64, u64)>,
}

impl ConnReport {
    fn of(conn: u64, tracker: &SeqTracker) -> Self {
        Self {
            conn,
            received: tracker.received,
            unique: tracker.unique,
            duplicated: tracker.duplicates,
            missing: tracker.missing(),
            out_of_order: tracker.out_of_order,
            max_seq: tracker.max,
            gaps: tracker.gaps(GAPS_SHOWN),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "conn": self.conn,
            "received": self.received,
            "unique": self.unique,
            "duplicated": self.duplicated,
            "missing": self.missing,
            "out_of_order": self.out_of_order,
            "max_seq": self.max_seq,
            "first_gaps": self.gaps,
        })
    }

    /// One line: `  conn C: received …, unique …, duplicated …, missing …, highest seq …, gaps …`.
    pub fn to_text(&self) -> String {
        let mut line = format!(
            "  conn {}: received {}, unique {}, duplicated {}, missing {}, highest seq {}",
            self.conn,
            self.received,
            self.unique,
            self.duplicated,
            self.missing,
            self.max_seq.map_or("-".to_owned(), |m| m.to_string()),
        );
        if !self.gaps.is_empty() {
            let gaps: Vec<String> = self
                .gaps
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            let more = if self.gaps.len() == GAPS_SHOWN {
                ", ..."
            } else {
                ""
            };
            line += &format!(", gaps {}{more}", gaps.join(", "));
        }
        line
    }
}

/// Connections' counts added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub unique: u64,
    pub duplicated: u64,
    pub missing: u64,
    pub out_of_order: u64,
}

impl Counts {
    pub fn of<'a>(connections: impl IntoIterator<Item = &'a ConnReport>) -> Self {
        let mut sum = Self::default();
        for c in connections {
            sum += Self {
                received: c.received,
                unique: c.unique,
                duplicated: c.duplicated,
                missing: c.missing,
                out_of_order: c.out_of_order,
            };
        }
        sum
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.received += other.received;
        self.unique += other.unique;
        self.duplicated += other.duplicated;
        self.missing += other.missing;
        self.out_of_order += other.out_of_order;
    }
}

/// A latency histogram's percentiles, nanoseconds, as the reports show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Latency {
    pub fn of(histogram: &Histogram) -> Self {
        Self {
            p50: histogram.quantile(0.5),
            p90: histogram.quantile(0.9),
            p99: histogram.quantile(0.99),
            p999: histogram.quantile(0.999),
            max: histogram.max(),
        }
    }

    /// Milliseconds: `{"p50":…,"p90":…,"p99":…,"p99.9":…,"max":…}`.
    pub fn to_json(self) -> serde_json::Value {
        json!({
            "p50": ms(self.p50),
            "p90": ms(self.p90),
            "p99": ms(self.p99),
            "p99.9": ms(self.p999),
            "max": ms(self.max),
        })
    }

    /// `p50 … ms, p90 … ms, p99 … ms, p99.9 … ms, max … ms`.
    pub fn to_text(self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_without_loss() {
        let mut t = SeqTracker::default();
        for s in 0..200_000 {
            assert!(t.record(s));
        }
        assert_eq!(
            (t.received, t.unique, t.duplicates, t.missing()),
            (200_000, 200_000, 0, 0)
        );
        assert_eq!(t.out_of_order, 0);
        assert!(t.gaps(10).is_empty());
    }

    #[test]
    fn duplicates_are_counted_once_each() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 1, 2, 2, 3] {
            t.record(s);
        }
        assert_eq!(
            (t.received, t.unique, t.duplicates, t.missing()),
            (7, 4, 3, 0)
        );
    }

    #[test]
    fn gaps_below_the_highest_are_missing() {
        let mut t = SeqTracker::default();
        for s in (0..10).chain(15..20).chain(200_000..200_001) {
            t.record(s);
        }
        assert_eq!(t.max, Some(200_000));
        assert_eq!(t.missing(), 5 + (200_000 - 20));
        assert_eq!(t.gaps(10), vec![(10, 14), (20, 199_999)]);
        assert_eq!(t.gaps(1), vec![(10, 14)]);
        // A lone late arrival in the empty middle splits the long gap.
        t.record(70_000);
        assert_eq!(t.gaps(10), vec![(10, 14), (20, 69_999), (70_001, 199_999)]);
    }

    #[test]
    fn out_of_order_arrivals_fill_gaps() {
        let mut t = SeqTracker::default();
        for s in [0, 3, 1, 5, 4, 2] {
            assert!(t.record(s));
        }
        assert_eq!(t.out_of_order, 3); // 1, 4, 2 came after a higher one
        assert_eq!((t.unique, t.duplicates, t.missing()), (6, 0, 0));
        let mut late = SeqTracker::default();
        late.record(5);
        assert_eq!(late.missing(), 5);
        assert_eq!(late.gaps(10), vec![(0, 4)]);
    }

    #[test]
    fn huge_sequence_numbers_do_not_overflow() {
        let mut t = SeqTracker::default();
        t.record(u64::MAX);
        t.record(0);
        assert_eq!(t.missing(), u64::MAX - 1);
        assert_eq!(t.gaps(3), vec![(1, u64::MAX - 1)]);
        assert_eq!(t.pages.len(), 2);
    }

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.max(), 100_000_000);
        for v in [0, 1, 127, 128, 129, 255, 256, 1 << 40, u64::MAX] {
            let i = bucket(v);
            assert!(i < BUCKETS);
            assert!(bucket_high(i) >= v, "{v}");
            assert_eq!(bucket(bucket_high(i)), i, "{v}");
        }
    }
}
