//! The metric grammar, on top of the log query parser.

use crate::metric::{Grouping, MetricExpr, RangeAgg, RangeFunc, VectorAgg, VectorOp};
use crate::parse::{MAX_NESTING, Parser};
use crate::{ParseError, Selector};

/// Parses a whole metric query.
pub(crate) fn parse(source: &str) -> Result<MetricExpr, ParseError> {
    let mut parser = Parser::new(source);
    let expr = parser.metric_expr(0)?;
    parser.skip_ws();
    if parser.peek().is_some() {
        return Err(parser.expected("the end of the query"));
    }
    Ok(expr)
}

fn function_list() -> String {
    let range: Vec<&str> = RangeFunc::ALL.iter().map(|f| f.name()).collect();
    let vector: Vec<&str> = VectorOp::ALL.iter().map(|o| o.name()).collect();
    format!(
        "a range aggregation ({}) or a vector aggregation ({})",
        range.join(", "),
        vector.join(", ")
    )
}

impl Parser<'_> {
    /// `( expr )`, a vector aggregation or a range aggregation.
    fn metric_expr(&mut self, depth: usize) -> Result<MetricExpr, ParseError> {
        self.skip_ws();
        if depth >= MAX_NESTING {
            return Err(self.error(format!(
                "expressions nest too deep (at most {MAX_NESTING} levels)"
            )));
        }
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let inner = self.metric_expr(depth + 1)?;
            self.close_paren()?;
            return Ok(inner);
        }
        let start = self.pos;
        let word_len = self
            .rest()
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(self.rest().len());
        let word = &self.source[start..start + word_len];
        if word.is_empty() {
            let hint = if self.peek() == Some(b'{') {
                " (a log query on its own is not a metric query)"
            } else {
                ""
            };
            return Err(self.expected(&format!("{}{hint}", function_list())));
        }
        if let Some(func) = RangeFunc::ALL.iter().find(|f| f.name() == word) {
            self.pos += word_len;
            return self.range_agg(*func, start).map(MetricExpr::Range);
        }
        if let Some(op) = VectorOp::ALL.iter().find(|o| o.name() == word) {
            self.pos += word_len;
            return self.vector_agg(*op, depth).map(MetricExpr::Vector);
        }
        Err(ParseError::new(
            start,
            format!("unknown function `{word}`: expected {}", function_list()),
        ))
    }

    fn open_paren(&mut self, after: &str) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Err(self.expected(&format!("`(` after `{after}`")));
        }
        self.pos += 1;
        Ok(())
    }

    fn close_paren(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() != Some(b')') {
            return Err(self.expected("`)`"));
        }
        self.pos += 1;
        Ok(())
    }

    fn comma(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() != Some(b',') {
            return Err(self.expected("`,`"));
        }
        self.pos += 1;
        Ok(())
    }

    /// After the function name: `([param,] log_query [range] | log_query) [grouping]`.
    fn range_agg(&mut self, func: RangeFunc, func_pos: usize) -> Result<RangeAgg, ParseError> {
        self.open_paren(func.name())?;
        let quantile = if func == RangeFunc::QuantileOverTime {
            self.skip_ws();
            let (value, _, _) = self.number("quantile_over_time(")?;
            self.comma()?;
            Some(value.as_f64())
        } else {
            None
        };
        self.skip_ws();
        // `({...} | stages)[5m]`: the log query in parentheses, the range after them.
        let parenthesized = self.peek() == Some(b'(');
        if parenthesized {
            self.pos += 1;
            self.skip_ws();
        }
        if self.peek() != Some(b'{') {
            return Err(self.expected("a log query starting with `{`"));
        }
        let stream_start = self.pos;
        let matchers = self.stream()?;
        let stream_end = self.pos;
        let stream_text = &self.source[stream_start..stream_end];
        self.skip_ws();
        let early_range = if self.peek() == Some(b'[') && !parenthesized {
            Some(self.range()?)
        } else {
            self.pos = stream_end;
            None
        };
        let pipeline_start = self.pos;
        let (stages, unwrap) = self.pipeline(true)?;
        let pipeline_end = unwrap.as_ref().map_or(self.pos, |u| u.start);
        let pipeline_text = &self.source[pipeline_start..pipeline_end];
        if parenthesized {
            self.close_paren()?;
        }
        let (range_ns, range) = match early_range {
            Some(range) => range,
            None => {
                self.skip_ws();
                if self.peek() != Some(b'[') {
                    return Err(self.expected("a range like `[5m]`"));
                }
                self.range()?
            }
        };
        self.close_paren()?;
        match (func.unwrap_rule(), &unwrap) {
            (Some(true), None) => {
                return Err(ParseError::new(
                    func_pos,
                    format!(
                        "`{}` needs `| unwrap field` before the range, as in \
                         `{}({{...}} | unwrap latency [5m])`",
                        func.name(),
                        func.name()
                    ),
                ));
            }
            (Some(false), Some(_)) => {
                return Err(ParseError::new(
                    func_pos,
                    format!("`{}` does not take `| unwrap`", func.name()),
                ));
            }
            _ => {}
        }
        let grouping = self.grouping()?;
        // The log query's own text, without the range between stream selector and stages.
        let selector_text = format!("{stream_text}{}", pipeline_text.trim_end());
        Ok(RangeAgg {
            func,
            quantile,
            selector: Selector::from_parts(selector_text, matchers, stages),
            unwrap,
            range_ns,
            range,
            grouping,
        })
    }

    /// `[duration]`: nanoseconds and the text.
    fn range(&mut self) -> Result<(i64, String), ParseError> {
        self.pos += 1;
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '.'))
            .unwrap_or(self.rest().len());
        let text = &self.source[start..start + len];
        let Some(ns) = crate::units::parse_duration_ns(text) else {
            return Err(if text.is_empty() {
                self.expected("a duration like `5m` in the range")
            } else {
                ParseError::new(
                    start,
                    format!(
                        "invalid range `{text}`: expected a positive duration like `30s`, `5m` \
                         or `1h30m`"
                    ),
                )
            });
        };
        self.pos += len;
        self.skip_ws();
        if self.peek() != Some(b']') {
            return Err(self.expected("`]` to close the range"));
        }
        self.pos += 1;
        Ok((ns, text.to_owned()))
    }

    /// `op [grouping] ([k,] expr) [grouping]`.
    fn vector_agg(&mut self, op: VectorOp, depth: usize) -> Result<VectorAgg, ParseError> {
        let before = self.grouping()?;
        self.open_paren(op.name())?;
        let k = if matches!(op, VectorOp::Topk | VectorOp::Bottomk) {
            let k = self.count(op.name())?;
            self.comma()?;
            Some(k)
        } else {
            None
        };
        let inner = self.metric_expr(depth + 1)?;
        self.close_paren()?;
        let grouping = match before {
            Some(grouping) => Some(grouping),
            None => self.grouping()?,
        };
        Ok(VectorAgg {
            op,
            grouping,
            k,
            inner: Box::new(inner),
        })
    }

    /// The k of `topk`: a positive integer.
    fn count(&mut self, op: &str) -> Result<usize, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let len = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        match self.rest()[..len].parse::<usize>() {
            Ok(k) if k > 0 => {
                self.pos += len;
                Ok(k)
            }
            Ok(_) => Err(ParseError::new(
                start,
                format!("`{op}` needs k of at least 1"),
            )),
            Err(_) => Err(self.expected(&format!("a whole number k after `{op}(`"))),
        }
    }

    /// `by (a, b)` or `without (a, b)`, when next.
    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = if self.keyword("by") {
            false
        } else if self.keyword("without") {
            true
        } else {
            return Ok(None);
        };
        self.open_paren(if without { "without" } else { "by" })?;
        let mut labels = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(Some(Grouping { without, labels }));
        }
        loop {
            labels.push(self.name()?.to_owned());
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Some(Grouping { without, labels }));
                }
                _ => return Err(self.expected("`,` or `)`")),
            }
        }
    }
}
