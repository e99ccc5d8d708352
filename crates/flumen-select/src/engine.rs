//! [`MetricEval`]: evaluates a metric query over events pushed by the caller, with memory
//! bounded by series × steps.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use flumen_event::record::Record;

use crate::eval::Fields;
use crate::metric::{Grouping, MetricExpr, MetricQuery, RangeAgg, RangeFunc, VectorAgg, VectorOp};
use crate::pipeline::{ERROR_LABEL, Labels, set_label};

/// The most steps one evaluation may have (Prometheus's limit).
pub const MAX_STEPS: usize = 11_000;

/// The default limit on the number of series the range aggregation keeps (see
/// [`MetricEval::max_series`]).
pub const DEFAULT_MAX_SERIES: usize = 1_000;

/// One series of a result: its labels and its points (unix nanoseconds, value), in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The labels, which identify the series.
    pub labels: BTreeMap<String, String>,
    /// The steps that have a value.
    pub points: Vec<(i64, f64)>,
}

/// Why an evaluation cannot start or go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// `end` before `start`, or a step that is not positive.
    #[error("invalid time range: {0}")]
    InvalidRange(String),
    /// More than [`MAX_STEPS`] steps.
    #[error("too many steps ({steps}, at most {limit}): use a larger step or a shorter range")]
    TooManySteps {
        /// The steps asked for.
        steps: u128,
        /// The limit.
        limit: usize,
    },
    /// The range aggregation would keep more than the allowed number of series.
    #[error("more than {limit} series: aggregate with `sum by (...)` or select fewer events")]
    TooManySeries {
        /// The limit.
        limit: usize,
    },
    /// An event's pipeline failed (a parser or `unwrap` set `__error__`), as Loki reports it.
    #[error(
        "pipeline error `{error}` for series {labels}: drop such events with `| __error__=\"\"`"
    )]
    Pipeline {
        /// The `__error__` value, like `JSONParserErr`.
        error: String,
        /// The series' labels, rendered `{a="b", ...}`.
        labels: String,
    },
}

/// A series' labels, sorted by name.
type Key = Vec<(String, String)>;

/// Per series, one value per step (`None`: no value).
type Matrix = Vec<(Key, Vec<Option<f64>>)>;

/// What the events of one series in one step's window add up to.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    count: u64,
    /// The sum of the event values, or their min or max for `min_over_time`/`max_over_time`.
    value: f64,
}

/// One series of the range aggregation.
#[derive(Debug)]
struct Accumulator {
    windows: Vec<Window>,
    /// `quantile_over_time` only: every value in each step's window.
    samples: Vec<Vec<f64>>,
}

/// Evaluates a [`MetricQuery`] at the steps `start, start + step, ..., end` over events the
/// caller pushes, in any order; no I/O.
///
/// Memory is one small accumulator per series and step, whatever the number of events, except
/// for `quantile_over_time`, which keeps every value of each step's window.
#[derive(Debug)]
pub struct MetricEval {
    query: MetricQuery,
    start: i64,
    step: i64,
    steps: usize,
    max_series: usize,
    /// How the range aggregation keys its series beyond stream and extracted labels: its own
    /// `by`, or that of a `sum` right above a function that adds up (which then sums fewer,
    /// larger series to the same result).
    leaf_grouping: Option<Grouping>,
    series: BTreeMap<Key, Accumulator>,
}

impl MetricEval {
    /// Prepares to evaluate `query` at `start_ns, start_ns + step_ns, ..., end_ns` (unix
    /// nanoseconds). `start_ns == end_ns` is an instant query, any step. At most
    /// [`MAX_STEPS`] steps.
    pub fn new(
        query: &MetricQuery,
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
    ) -> Result<Self, EvalError> {
        if end_ns < start_ns {
            return Err(EvalError::InvalidRange("end is before start".to_owned()));
        }
        let step = if start_ns == end_ns { 1 } else { step_ns };
        if step <= 0 {
            return Err(EvalError::InvalidRange(
                "the step must be positive".to_owned(),
            ));
        }
        let steps = (i128::from(end_ns) - i128::from(start_ns)) / i128::from(step) + 1;
        if steps > MAX_STEPS as i128 {
            return Err(EvalError::TooManySteps {
                steps: steps as u128,
                limit: MAX_STEPS,
            });
        }
        Ok(Self {
            query: query.clone(),
            start: start_ns,
            step,
            steps: steps as usize,
            max_series: DEFAULT_MAX_SERIES,
            leaf_grouping: leaf_grouping(&query.expr),
            series: BTreeMap::new(),
        })
    }

    /// Sets the most series the range aggregation may keep ([`DEFAULT_MAX_SERIES`] unless
    /// set); [`push`](Self::push) fails past it.
    pub fn max_series(mut self, limit: usize) -> Self {
        self.max_series = limit;
        self
    }

    /// Adds one event: its time (unix ns), its stream's labels, its tag and record, and its
    /// size in bytes (for `bytes_over_time` and `bytes_rate`). Events outside every step's
    /// window, or dropped by the log query, are ignored.
    pub fn push(
        &mut self,
        time_ns: i64,
        stream_labels: &[(&str, &str)],
        tag: &str,
        record: &Record,
        bytes: usize,
    ) -> Result<(), EvalError> {
        let Some(steps) = self.steps_covering(time_ns) else {
            return Ok(());
        };
        let range = self.query.expr.range();
        let Some(processed) = range.selector.process(tag, record) else {
            return Ok(());
        };
        let mut labels = processed.labels;
        let Some(value) = sample_value(range, tag, record, &mut labels, bytes) else {
            return Ok(());
        };
        let unwrapped = range.unwrap.as_ref().map(|u| u.name.as_str());
        let key = series_key(stream_labels, labels, unwrapped)?;
        self.add(key, std::iter::once((steps, value)))
    }

    /// True when the query counts events or their bytes (`count_over_time`, `rate`,
    /// `bytes_over_time`, `bytes_rate`) of a log query that is a stream selector alone: then
    /// an event's sample depends only on its stream, time and size, and a caller that knows
    /// which streams the selector selects may use [`push_stream`](Self::push_stream) without
    /// decoding records.
    pub fn counts_streams(&self) -> bool {
        let range = self.query.expr.range();
        range.unwrap.is_none()
            && !range.selector.has_stages()
            && matches!(
                range.func,
                RangeFunc::CountOverTime
                    | RangeFunc::Rate
                    | RangeFunc::BytesOverTime
                    | RangeFunc::BytesRate
            )
    }

    /// Adds events of one stream that the caller knows the stream selector selects, each as
    /// its time (Unix nanoseconds) and its size in bytes. Only for queries that
    /// [`counts_streams`](Self::counts_streams).
    pub fn push_stream(
        &mut self,
        stream_labels: &[(&str, &str)],
        events: impl IntoIterator<Item = (i64, usize)>,
    ) -> Result<(), EvalError> {
        debug_assert!(self.counts_streams());
        let bytes = matches!(
            self.query.expr.range().func,
            RangeFunc::BytesOverTime | RangeFunc::BytesRate
        );
        let mut samples = events
            .into_iter()
            .filter_map(|(time_ns, size)| {
                let steps = self.steps_covering(time_ns)?;
                Some((steps, if bytes { size as f64 } else { 1.0 }))
            })
            .peekable();
        if samples.peek().is_none() {
            return Ok(());
        }
        let samples: Vec<_> = samples.collect();
        let key = series_key(stream_labels, Labels::new(), None)?;
        self.add(key, samples)
    }

    /// Adds samples, each to the steps whose windows hold it, to the series `key` (grouped
    /// first when the aggregation above allows).
    fn add(
        &mut self,
        key: Key,
        samples: impl IntoIterator<Item = (RangeInclusive<usize>, f64)>,
    ) -> Result<(), EvalError> {
        let key = match &self.leaf_grouping {
            Some(grouping) => group_key(&key, Some(grouping)),
            None => key,
        };
        let func = self.query.expr.range().func;
        let steps_count = self.steps;
        let accumulator = match self.series.get_mut(&key) {
            Some(accumulator) => accumulator,
            None => {
                if self.series.len() >= self.max_series {
                    return Err(EvalError::TooManySeries {
                        limit: self.max_series,
                    });
                }
                let samples = if func == RangeFunc::QuantileOverTime {
                    vec![Vec::new(); steps_count]
                } else {
                    Vec::new()
                };
                let accumulator = Accumulator {
                    windows: vec![Window::default(); steps_count],
                    samples,
                };
                self.series.entry(key).or_insert(accumulator)
            }
        };
        for (steps, value) in samples {
            for i in steps {
                accumulator.windows[i].add(func, value);
                if let Some(samples) = accumulator.samples.get_mut(i) {
                    samples.push(value);
                }
            }
        }
        Ok(())
    }

    /// The result: series sorted by labels, each with the steps that have a value.
    pub fn finish(self) -> Vec<Series> {
        let range = self.query.expr.range();
        let seconds = range.range_ns as f64 / 1e9;
        let leaf: Matrix = self
            .series
            .into_iter()
            .map(|(key, accumulator)| {
                let values = (0..self.steps)
                    .map(|i| {
                        let samples = accumulator.samples.get(i).map_or(&[][..], Vec::as_slice);
                        accumulator.windows[i].result(range, samples, seconds)
                    })
                    .collect();
                (key, values)
            })
            .collect();
        let matrix = evaluate(&self.query.expr, leaf, self.steps);
        let mut out: Vec<Series> = matrix
            .into_iter()
            .map(|(key, values)| Series {
                labels: key.into_iter().collect(),
                points: values
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (self.start + i as i64 * self.step, v)))
                    .collect(),
            })
            .filter(|series| !series.points.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The steps whose window `(t - range, t]` holds `time_ns`.
    fn steps_covering(&self, time_ns: i64) -> Option<RangeInclusive<usize>> {
        // t = start + i·step with time ≤ t < time + range: i from ⌈offset / step⌉ to
        // ⌊(offset + range - 1) / step⌋. In i64 when nothing overflows (this runs for every
        // event counted, and i128 division is several times slower), else in i128.
        let (range, step) = (self.query.range_ns(), self.step);
        let narrow = time_ns.checked_sub(self.start).and_then(|offset| {
            let first = -(offset.checked_neg()?.div_euclid(step));
            let last = offset.checked_add(range)?.checked_sub(1)?.div_euclid(step);
            Some((i128::from(first), i128::from(last)))
        });
        let (first, last) = narrow.unwrap_or_else(|| {
            let offset = i128::from(time_ns) - i128::from(self.start);
            let (range, step) = (i128::from(range), i128::from(step));
            (
                -((-offset).div_euclid(step)),
                (offset + range - 1).div_euclid(step),
            )
        });
        let (first, last) = (first.max(0), last.min(self.steps as i128 - 1));
        (first <= last).then_some(first as usize..=last as usize)
    }
}

/// The event's value for the range aggregation, or `None` when `unwrap`'s label filters drop
/// it. A value `unwrap` cannot read sets `__error__` (the value is then 0), as in Loki.
fn sample_value(
    range: &RangeAgg,
    tag: &str,
    record: &Record,
    labels: &mut Labels,
    bytes: usize,
) -> Option<f64> {
    let Some(unwrap) = &range.unwrap else {
        return Some(match range.func {
            RangeFunc::BytesOverTime | RangeFunc::BytesRate => bytes as f64,
            _ => 1.0,
        });
    };
    let fields = Fields {
        tag,
        record,
        labels,
    };
    let value = fields
        .text_if_present(&unwrap.name)
        .and_then(|text| unwrap.unit.read_text(&text))
        .map(|n| n.as_f64());
    if value.is_none() {
        set_label(labels, ERROR_LABEL, "SampleExtractionErr".to_owned());
    }
    let fields = Fields {
        tag,
        record,
        labels,
    };
    unwrap
        .filters
        .iter()
        .all(|filter| filter.matches(&fields))
        .then_some(value.unwrap_or(0.0))
}

/// The grouping to apply when keying the range aggregation's series.
fn leaf_grouping(expr: &MetricExpr) -> Option<Grouping> {
    let range = expr.range();
    if range.grouping.is_some() {
        return range.grouping.clone();
    }
    let adds_up = matches!(
        range.func,
        RangeFunc::CountOverTime
            | RangeFunc::Rate
            | RangeFunc::BytesOverTime
            | RangeFunc::BytesRate
            | RangeFunc::SumOverTime
    );
    match parent_of_range(expr) {
        Some(parent) if adds_up && parent.op == VectorOp::Sum => {
            Some(parent.grouping.clone().unwrap_or(Grouping {
                without: false,
                labels: Vec::new(),
            }))
        }
        _ => None,
    }
}

fn parent_of_range(expr: &MetricExpr) -> Option<&VectorAgg> {
    match expr {
        MetricExpr::Range(_) => None,
        MetricExpr::Vector(vector) => match &*vector.inner {
            MetricExpr::Range(_) => Some(vector),
            inner => parent_of_range(inner),
        },
    }
}

/// Stream labels plus extracted ones (renamed `name_extracted` when a stream label has the
/// name, as in Loki), without the unwrapped label and empty values, sorted. Fails on
/// `__error__`.
fn series_key(
    stream_labels: &[(&str, &str)],
    extracted: Labels,
    unwrapped: Option<&str>,
) -> Result<Key, EvalError> {
    let mut key: Key = stream_labels
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    for (name, value) in extracted {
        let name = if stream_labels.iter().any(|(n, _)| *n == name) {
            format!("{name}_extracted")
        } else {
            name
        };
        set_label(&mut key, &name, value);
    }
    key.retain(|(name, value)| !value.is_empty() && Some(name.as_str()) != unwrapped);
    key.sort();
    key.dedup_by(|a, b| a.0 == b.0);
    if let Some((_, error)) = key.iter().find(|(name, _)| name == ERROR_LABEL) {
        return Err(EvalError::Pipeline {
            error: error.clone(),
            labels: render_labels(&key),
        });
    }
    Ok(key)
}

fn render_labels(key: &Key) -> String {
    let pairs: Vec<String> = key.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The labels of the group `key` falls in: none without a grouping.
fn group_key(key: &Key, grouping: Option<&Grouping>) -> Key {
    match grouping {
        Some(grouping) => key
            .iter()
            .filter(|(name, _)| grouping.keeps(name))
            .cloned()
            .collect(),
        None => Key::new(),
    }
}

impl Window {
    fn add(&mut self, func: RangeFunc, value: f64) {
        self.value = match (self.count, func) {
            (0, _) => value,
            (_, RangeFunc::MinOverTime) => self.value.min(value),
            (_, RangeFunc::MaxOverTime) => self.value.max(value),
            _ => self.value + value,
        };
        self.count += 1;
    }

    /// The range aggregation's value for this window; `None` when it is empty.
    fn result(&self, range: &RangeAgg, samples: &[f64], seconds: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        Some(match range.func {
            RangeFunc::CountOverTime => self.count as f64,
            RangeFunc::Rate | RangeFunc::BytesRate => self.value / seconds,
            RangeFunc::BytesOverTime
            | RangeFunc::SumOverTime
            | RangeFunc::MinOverTime
            | RangeFunc::MaxOverTime => self.value,
            RangeFunc::AvgOverTime => self.value / self.count as f64,
            RangeFunc::QuantileOverTime => quantile(range.quantile.unwrap_or(0.5), samples),
        })
    }
}

/// The φ-quantile of `values`, interpolated linearly between the nearest ranks as in
/// Prometheus; −∞ below φ = 0 and +∞ above φ = 1.
pub(crate) fn quantile(phi: f64, values: &[f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = phi * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let weight = rank - lower as f64;
    sorted[lower] * (1.0 - weight) + sorted[upper] * weight
}

/// Applies the vector aggregations above the range aggregation, innermost first.
fn evaluate(expr: &MetricExpr, leaf: Matrix, steps: usize) -> Matrix {
    match expr {
        MetricExpr::Range(_) => leaf,
        MetricExpr::Vector(vector) => {
            let input = evaluate(&vector.inner, leaf, steps);
            match vector.op {
                VectorOp::Topk | VectorOp::Bottomk => select(vector, input, steps),
                _ => combine(vector, input, steps),
            }
        }
    }
}

/// `sum`, `avg`, `min`, `max`, `count`: one series per group.
fn combine(vector: &VectorAgg, input: Matrix, steps: usize) -> Matrix {
    let mut groups: BTreeMap<Key, Vec<Window>> = BTreeMap::new();
    let fold = match vector.op {
        VectorOp::Min => RangeFunc::MinOverTime,
        VectorOp::Max => RangeFunc::MaxOverTime,
        _ => RangeFunc::SumOverTime,
    };
    for (key, values) in input {
        let windows = groups
            .entry(group_key(&key, vector.grouping.as_ref()))
            .or_insert_with(|| vec![Window::default(); steps]);
        for (window, value) in windows.iter_mut().zip(values) {
            if let Some(value) = value {
                window.add(fold, value);
            }
        }
    }
    groups
        .into_iter()
        .map(|(key, windows)| {
            let values = windows
                .iter()
                .map(|w| {
                    (w.count > 0).then(|| match vector.op {
                        VectorOp::Avg => w.value / w.count as f64,
                        VectorOp::Count => w.count as f64,
                        _ => w.value,
                    })
                })
                .collect();
            (key, values)
        })
        .collect()
}

/// `topk` and `bottomk`: at each step, the k highest (lowest) series of each group keep their
/// value and labels. Ties go to the series whose labels sort first.
fn select(vector: &VectorAgg, input: Matrix, steps: usize) -> Matrix {
    let k = vector.k.unwrap_or(1);
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (index, (key, _)) in input.iter().enumerate() {
        groups
            .entry(group_key(key, vector.grouping.as_ref()))
            .or_default()
            .push(index);
    }
    let mut output: Matrix = input
        .iter()
        .map(|(key, _)| (key.clone(), vec![None; steps]))
        .collect();
    for members in groups.values() {
        for step in 0..steps {
            let mut present: Vec<(f64, usize)> = members
                .iter()
                .filter_map(|&i| input[i].1[step].map(|v| (v, i)))
                .collect();
            present.sort_by(|a, b| {
                let by_value = if vector.op == VectorOp::Topk {
                    b.0.total_cmp(&a.0)
                } else {
                    a.0.total_cmp(&b.0)
                };
                by_value.then(a.1.cmp(&b.1))
            });
            for (value, index) in present.into_iter().take(k) {
                output[index].1[step] = Some(value);
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps an event counts in, by the i128 formula alone.
    fn covering_in_i128(eval: &MetricEval, time_ns: i64) -> Option<RangeInclusive<usize>> {
        let offset = i128::from(time_ns) - i128::from(eval.start);
        let (range, step) = (i128::from(eval.query.range_ns()), i128::from(eval.step));
        let first = (-((-offset).div_euclid(step))).max(0);
        let last = (offset + range - 1)
            .div_euclid(step)
            .min(eval.steps as i128 - 1);
        (first <= last).then_some(first as usize..=last as usize)
    }

    #[test]
    fn the_steps_an_event_counts_in_are_the_same_in_i64_as_in_i128_at_every_edge() {
        for (query, start, end, step) in [
            (
                "count_over_time({}[1m])",
                0,
                3_600_000_000_000,
                60_000_000_000,
            ),
            (
                "count_over_time({}[5m])",
                -7,
                1_000_000_000_000,
                60_000_000_000,
            ),
            (
                "count_over_time({}[1s])",
                i64::MIN,
                i64::MIN + 10_000,
                1_000,
            ),
            (
                "count_over_time({}[1s])",
                i64::MAX - 10_000,
                i64::MAX,
                1_000,
            ),
            ("count_over_time({}[1h])", 5, 5, 60_000_000_000),
        ] {
            let query = MetricQuery::parse(query).unwrap();
            let eval = MetricEval::new(&query, start, end, step).unwrap();
            let range = query.range_ns();
            let mut times = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
            for base in [start, end] {
                for delta in [-range - step, -range, -step, -1, 0, 1, step, range] {
                    times.push(base.saturating_add(delta));
                }
            }
            for time in times {
                assert_eq!(
                    eval.steps_covering(time),
                    covering_in_i128(&eval, time),
                    "{query} from {start} every {step}: {time}"
                );
            }
        }
    }
}
