//! Metric queries: range aggregations over a log query, and vector aggregations over them.

use std::fmt;
use std::str::FromStr;

use crate::parse::Unwrap;
use crate::{ParseError, Selector};

/// A query of either kind: a log query (`{...} |= "x"`) or a metric query
/// (`sum by (service) (rate({...}[5m]))`).
#[derive(Clone, Debug)]
pub enum Query {
    /// Selects events.
    Log(Selector),
    /// Computes series of numbers from events.
    Metric(MetricQuery),
}

impl Query {
    /// Parses a query: text starting with `{` is a log query, anything else a metric query.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.trim_start().starts_with('{') {
            Selector::parse(text).map(Self::Log)
        } else {
            MetricQuery::parse(text).map(Self::Metric)
        }
    }

    /// The source text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Log(selector) => selector.as_str(),
            Self::Metric(metric) => metric.as_str(),
        }
    }

    /// The log query whose events the query reads.
    pub fn selector(&self) -> &Selector {
        match self {
            Self::Log(selector) => selector,
            Self::Metric(metric) => metric.selector(),
        }
    }
}

impl FromStr for Query {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed metric query, ready for [`MetricEval`](crate::MetricEval).
#[derive(Clone, Debug)]
pub struct MetricQuery {
    source: String,
    pub(crate) expr: MetricExpr,
}

impl MetricQuery {
    /// Parses a metric query; see the [crate documentation](crate) for the language.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let expr = crate::parse_metric::parse(text)?;
        Ok(Self {
            source: text.to_owned(),
            expr,
        })
    }

    /// The source text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The log query inside the range (without `| unwrap`): the events the query reads. Its
    /// [`stream_matchers`](Selector::stream_matchers) and
    /// [`required_literals`](Selector::required_literals) let a store skip data early.
    pub fn selector(&self) -> &Selector {
        &self.expr.range().selector
    }

    /// The range (`[5m]`) in nanoseconds: evaluating from `start` needs the events from
    /// `start - range_ns` on.
    pub fn range_ns(&self) -> i64 {
        self.expr.range().range_ns
    }
}

impl FromStr for MetricQuery {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for MetricQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A metric expression.
#[derive(Clone, Debug)]
pub(crate) enum MetricExpr {
    Range(RangeAgg),
    Vector(VectorAgg),
}

impl MetricExpr {
    /// The range aggregation at the bottom: every expression has exactly one.
    pub(crate) fn range(&self) -> &RangeAgg {
        match self {
            Self::Range(range) => range,
            Self::Vector(vector) => vector.inner.range(),
        }
    }
}

/// `func([param,] log_query [range]) [by (...)]`.
#[derive(Clone, Debug)]
pub(crate) struct RangeAgg {
    pub(crate) func: RangeFunc,
    /// φ of `quantile_over_time`.
    pub(crate) quantile: Option<f64>,
    pub(crate) selector: Selector,
    pub(crate) unwrap: Option<Unwrap>,
    pub(crate) range_ns: i64,
    /// The range as written, `5m` (rendered by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) range: String,
    pub(crate) grouping: Option<Grouping>,
}

/// A range aggregation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeFunc {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    QuantileOverTime,
}

impl RangeFunc {
    pub(crate) const ALL: [Self; 9] = [
        Self::CountOverTime,
        Self::Rate,
        Self::BytesOverTime,
        Self::BytesRate,
        Self::SumOverTime,
        Self::AvgOverTime,
        Self::MinOverTime,
        Self::MaxOverTime,
        Self::QuantileOverTime,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::CountOverTime => "count_over_time",
            Self::Rate => "rate",
            Self::BytesOverTime => "bytes_over_time",
            Self::BytesRate => "bytes_rate",
            Self::SumOverTime => "sum_over_time",
            Self::AvgOverTime => "avg_over_time",
            Self::MinOverTime => "min_over_time",
            Self::MaxOverTime => "max_over_time",
            Self::QuantileOverTime => "quantile_over_time",
        }
    }

    /// Whether `| unwrap` is required (`Some(true)`), forbidden (`Some(false)`) or optional.
    pub(crate) fn unwrap_rule(self) -> Option<bool> {
        match self {
            Self::CountOverTime | Self::BytesOverTime | Self::BytesRate => Some(false),
            Self::Rate => None,
            _ => Some(true),
        }
    }
}

/// `op [by|without (...)] ([k,] inner)`.
#[derive(Clone, Debug)]
pub(crate) struct VectorAgg {
    pub(crate) op: VectorOp,
    pub(crate) grouping: Option<Grouping>,
    /// k of `topk` and `bottomk`.
    pub(crate) k: Option<usize>,
    pub(crate) inner: Box<MetricExpr>,
}

/// A vector aggregation operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
}

impl VectorOp {
    pub(crate) const ALL: [Self; 7] = [
        Self::Sum,
        Self::Avg,
        Self::Min,
        Self::Max,
        Self::Count,
        Self::Topk,
        Self::Bottomk,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Count => "count",
            Self::Topk => "topk",
            Self::Bottomk => "bottomk",
        }
    }
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grouping {
    pub(crate) without: bool,
    pub(crate) labels: Vec<String>,
}

impl Grouping {
    /// Whether label `name` stays in a group's labels.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l == name) != self.without
    }
}
