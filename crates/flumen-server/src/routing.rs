//! Routing by tag, with Fluentd's `<match>` semantics.
//!
//! Routes are tried in order and the first whose label and patterns match decides where an
//! event goes; a route may name several outputs, each of which gets a copy (Fluentd's `copy`).
//! A source with a label (Fluentd's `@label`) only sees routes with that label; a source
//! without one only sees routes without one. Only the tag and the label are looked at, never
//! the record, so routing costs one lookup per batch.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use crate::config::RouteConfig;

/// A Fluentd tag pattern.
///
/// - `*` matches one tag part (`a.*` matches `a.b`, not `a` nor `a.b.c`; `health*` matches
///   `healthcheck`);
/// - `**` matches zero or more parts (`a.**` matches `a`, `a.b` and `a.b.c`);
/// - `{x,y}` matches either (`{frontend,backend}.*`); alternatives may hold patterns.
#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    regex: Regex,
}

/// A pattern that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("invalid tag pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

impl TagPattern {
    /// Compiles a pattern.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        if pattern.is_empty() {
            return Err(fail("empty pattern"));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut re = String::from("^");
        let mut depth = 0usize;
        let mut i = 0;
        while i < chars.len() {
            let rest = &chars[i..];
            match rest {
                // "**." : zero or more leading parts.
                ['*', '*', '.', ..] => {
                    re.push_str(r"(?:[^.]+\.)*");
                    i += 3;
                }
                // ".**" at the end of a part: zero or more trailing parts.
                ['.', '*', '*', ..] if matches!(rest.get(3), None | Some(',' | '}')) => {
                    re.push_str(r"(?:\.[^.]+)*");
                    i += 3;
                }
                ['*', '*', ..] => {
                    re.push_str(".*");
                    i += 2;
                }
                ['*', ..] => {
                    re.push_str("[^.]*");
                    i += 1;
                }
                ['{', ..] => {
                    depth += 1;
                    re.push_str("(?:");
                    i += 1;
                }
                [',', ..] if depth > 0 => {
                    re.push('|');
                    i += 1;
                }
                ['}', ..] => {
                    depth = depth.checked_sub(1).ok_or_else(|| fail("unbalanced '}'"))?;
                    re.push(')');
                    i += 1;
                }
                [c, ..] => {
                    re.push_str(&regex::escape(&c.to_string()));
                    i += 1;
                }
                [] => unreachable!("i < len"),
            }
        }
        if depth != 0 {
            return Err(fail("unbalanced '{'"));
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| fail(&e.to_string()))?;
        Ok(Self {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// True if `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[derive(Debug)]
struct Route {
    label: String,
    patterns: Vec<TagPattern>,
    outputs: Arc<[usize]>,
}

/// The compiled routes; outputs are referred to by their index in `output_names`.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    output_names: Vec<String>,
}

impl RouteTable {
    /// Compiles validated routes; `output_names` fixes each output's index.
    pub fn new(routes: &[RouteConfig], output_names: Vec<String>) -> Result<Self, PatternError> {
        let compiled = routes
            .iter()
            .map(|r| {
                let patterns = r
                    .patterns
                    .iter()
                    .map(|p| TagPattern::parse(p.get_ref()))
                    .collect::<Result<_, _>>()?;
                let outputs = r
                    .outputs
                    .iter()
                    .filter_map(|o| output_names.iter().position(|n| n == o.get_ref()))
                    .collect();
                Ok(Route {
                    label: r
                        .label
                        .as_ref()
                        .map(|l| l.get_ref().clone())
                        .unwrap_or_default(),
                    patterns,
                    outputs,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            routes: compiled,
            output_names,
        })
    }

    /// The outputs that get events with this label and tag; empty when no route matches.
    pub fn outputs_for(&self, label: &str, tag: &str) -> Arc<[usize]> {
        self.routes
            .iter()
            .find(|r| r.label == label && r.patterns.iter().any(|p| p.matches(tag)))
            .map(|r| r.outputs.clone())
            .unwrap_or_else(|| Arc::from([]))
    }

    /// The name of output `index`.
    pub fn output_name(&self, index: usize) -> &str {
        &self.output_names[index]
    }
}

/// Routing decisions by label, then by tag.
type Decisions = HashMap<Box<str>, HashMap<Box<str>, Arc<[usize]>>>;

/// A per-task memo of routing decisions: tags repeat, so each (label, tag) is matched once.
/// Lookups borrow the label and tag; only a new decision allocates.
#[derive(Debug)]
pub struct RouteCache {
    table: Arc<RouteTable>,
    /// label → tag → outputs.
    decisions: Decisions,
    remembered: usize,
}

impl RouteCache {
    /// The most decisions remembered before the memo starts over (bounds memory when senders
    /// invent tags).
    const CAPACITY: usize = 4096;

    /// A memo over `table`.
    pub fn new(table: Arc<RouteTable>) -> Self {
        Self {
            table,
            decisions: HashMap::new(),
            remembered: 0,
        }
    }

    /// The outputs for `label` and `tag`.
    pub fn outputs_for(&mut self, label: &str, tag: &str) -> Arc<[usize]> {
        if let Some(hit) = self.decisions.get(label).and_then(|tags| tags.get(tag)) {
            return hit.clone();
        }
        if self.remembered >= Self::CAPACITY {
            self.decisions.clear();
            self.remembered = 0;
        }
        let outputs = self.table.outputs_for(label, tag);
        self.decisions
            .entry(label.into())
            .or_default()
            .insert(tag.into(), outputs.clone());
        self.remembered += 1;
        outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn matches(pattern: &str, tag: &str) -> bool {
        TagPattern::parse(pattern).unwrap().matches(tag)
    }

    #[test]
    fn fluentd_match_semantics() {
        let cases = [
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.**", "a", true),
            ("a.**", "a.b", true),
            ("a.**", "a.b.c", true),
            ("a.**", "ab", false),
            ("**", "anything.at.all", true),
            ("**.c", "c", true),
            ("**.c", "a.b.c", true),
            ("**.c", "a.bc", false),
            ("health*", "healthcheck", true),
            ("health*", "health.check", false),
            ("frontend*", "frontend-web", true),
            ("{a,b}.x", "b.x", true),
            ("{a,b}.x", "c.x", false),
            ("a.{b,c.**}", "a.c.d.e", true),
            ("a.{b,c.**}", "a.b", true),
            ("a.{b,c.**}", "a.d", false),
            ("a+b", "a+b", true),
            ("a+b", "aab", false),
        ];
        for (pattern, tag, expected) in cases {
            assert_eq!(matches(pattern, tag), expected, "{pattern} ~ {tag}");
        }
        assert!(TagPattern::parse("{a,b").is_err());
        assert!(TagPattern::parse("a}").is_err());
    }

    #[test]
    fn first_route_wins_and_labels_separate_routes() {
        let config = Config::parse(
            r#"
            [sources.fwd]
            type = "forward"
            label = "mainstream"
            [sources.web]
            type = "http"
            [outputs.discard]
            type = "null"
            [outputs.front]
            type = "stdout"
            [outputs.back]
            type = "stdout"
            [[routes]]
            match = ["health*"]
            outputs = ["discard"]
            [[routes]]
            label = "mainstream"
            match = ["frontend*"]
            outputs = ["front", "back"]
            [[routes]]
            label = "mainstream"
            match = ["**"]
            outputs = ["back"]
            "#,
            "t",
        )
        .unwrap();
        let names: Vec<String> = config.outputs.keys().cloned().collect();
        let table = RouteTable::new(&config.routes, names).unwrap();
        let named = |label: &str, tag: &str| -> Vec<String> {
            table
                .outputs_for(label, tag)
                .iter()
                .map(|&i| table.output_name(i).to_owned())
                .collect()
        };
        assert_eq!(named("", "healthcheck"), ["discard"]);
        assert_eq!(named("mainstream", "healthcheck"), ["back"]);
        assert_eq!(named("mainstream", "frontend-web"), ["front", "back"]);
        assert_eq!(
            named("mainstream", "frontend.web"),
            ["back"],
            "* is one tag part"
        );
        assert_eq!(named("mainstream", "backend.db"), ["back"]);
        assert!(named("", "frontend.web").is_empty());
    }
}
