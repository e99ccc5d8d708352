//! Which subscriptions can want an event: the index of their queries' equality matchers.
//!
//! Thousands of subscribers watching different deployments must not mean thousands of matches
//! per event. A query with an equality matcher in its stream selector (`{deployment_id="d-42",
//! ...}`) can only select events whose field has that value, so it is filed under that
//! (field, value); an event is then tested only against the queries filed under its own
//! values, and against those with no equality matcher at all (`{level=~"warn|error"}`, `{}`).
//! Each query is filed once, under one matcher, preferring a field other queries are filed
//! under, so that an event is looked up in few fields; the query itself checks the rest.

use std::collections::HashMap;

use flumen_event::record::Record;
use flumen_select::{MatchOp, Selector, field_text};
use flumen_store::raw_fields::{scalar_text, scan_raw_fields};

/// A query's identity in the index (the hub's group of subscribers sharing it).
pub(crate) type QueryId = u64;

/// Where a query is filed: a field and the value it wants, or nowhere in particular.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filed {
    Under { field: String, value: String },
    Everywhere,
}

#[derive(Debug, Default)]
pub(crate) struct SubscriptionIndex {
    /// Field name → wanted value → the queries filed under it. A few fields at most, looked
    /// up in order for every event.
    fields: Vec<(String, HashMap<String, Vec<QueryId>>)>,
    /// The fields' names, in the same order (what the raw scan looks for).
    field_names: Vec<String>,
    /// True when the raw scan cannot read every field: a nested name, or more than 64 of them
    /// (the scan's bitmask of fields seen). Kept with the names rather than checked per event.
    needs_decoding: bool,
    /// Queries without an equality matcher: every event is theirs to test.
    everywhere: Vec<QueryId>,
}

impl SubscriptionIndex {
    /// Files query `id`; returns where, for [`remove`](Self::remove).
    pub(crate) fn insert(&mut self, id: QueryId, query: &Selector) -> Filed {
        let equalities = || {
            query
                .stream_matchers()
                .iter()
                .filter(|m| m.op() == MatchOp::Eq)
        };
        let known = equalities().find(|m| self.fields.iter().any(|(f, _)| f == m.name()));
        let Some(matcher) = known.or_else(|| equalities().next()) else {
            self.everywhere.push(id);
            return Filed::Everywhere;
        };
        let (field, value) = (matcher.name().to_owned(), matcher.value().to_owned());
        let by_value = match self.fields.iter().position(|(f, _)| *f == field) {
            Some(at) => &mut self.fields[at].1,
            None => {
                self.fields.push((field.clone(), HashMap::new()));
                self.field_names.push(field.clone());
                self.note_field_names();
                &mut self.fields.last_mut().expect("just pushed").1
            }
        };
        by_value.entry(value.clone()).or_default().push(id);
        Filed::Under { field, value }
    }

    /// Recomputes `needs_decoding` after the field names changed.
    fn note_field_names(&mut self) {
        self.needs_decoding =
            self.field_names.len() > 64 || self.field_names.iter().any(|f| f.contains('.'));
    }

    /// Takes query `id` out of where [`insert`](Self::insert) filed it.
    pub(crate) fn remove(&mut self, id: QueryId, filed: &Filed) {
        match filed {
            Filed::Everywhere => self.everywhere.retain(|&q| q != id),
            Filed::Under { field, value } => {
                let Some(at) = self.fields.iter().position(|(f, _)| f == field) else {
                    return;
                };
                let by_value = &mut self.fields[at].1;
                if let Some(ids) = by_value.get_mut(value) {
                    ids.retain(|&q| q != id);
                    if ids.is_empty() {
                        by_value.remove(value);
                    }
                }
                if by_value.is_empty() {
                    self.fields.remove(at);
                    self.field_names.remove(at);
                    self.note_field_names();
                }
            }
        }
    }

    /// True when no query is filed.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.everywhere.is_empty()
    }

    /// [`candidates`](Self::candidates) read from the event's msgpack bytes, without decoding
    /// it: most events are wanted by nobody, and decoding costs far more than walking the
    /// top-level keys. False (with `out` unspecified) when the bytes cannot tell: a field
    /// looked up is nested (`a.b`), or its value is not a scalar.
    pub(crate) fn candidates_raw(&self, tag: &str, record: &[u8], out: &mut Vec<QueryId>) -> bool {
        out.clear();
        if self.needs_decoding {
            return false;
        }
        let mut seen: u64 = 0;
        let mut readable = true;
        let lookup = |field: usize, text: &str, out: &mut Vec<QueryId>| {
            if let Some(ids) = self.fields[field].1.get(text) {
                out.extend_from_slice(ids);
            }
        };
        scan_raw_fields(record, &self.field_names, |field, value| {
            if seen & (1 << field) != 0 {
                // A key twice: the first counts, as for a decoded record.
                return;
            }
            seen |= 1 << field;
            match scalar_text(value) {
                Some(text) => lookup(field, &text, out),
                None => readable = false,
            }
        });
        if !readable {
            return false;
        }
        for (field, (name, _)) in self.fields.iter().enumerate() {
            if seen & (1 << field) == 0 {
                // Missing: "" to a matcher, but `tag` is the event's tag.
                lookup(field, if name == "tag" { tag } else { "" }, out);
            }
        }
        out.extend_from_slice(&self.everywhere);
        true
    }

    /// Puts into `out` (cleared first) every query that can select this event; each once.
    pub(crate) fn candidates(&self, tag: &str, record: &Record, out: &mut Vec<QueryId>) {
        out.clear();
        for (field, by_value) in &self.fields {
            if let Some(ids) = by_value.get(field_text(tag, record, field).as_ref()) {
                out.extend_from_slice(ids);
            }
        }
        out.extend_from_slice(&self.everywhere);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flumen_event::record::Value;

    fn record(fields: &[(&str, &str)]) -> Record {
        Record::from(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect::<Vec<_>>(),
        )
    }

    fn candidates(index: &SubscriptionIndex, tag: &str, fields: &[(&str, &str)]) -> Vec<QueryId> {
        let mut out = Vec::new();
        index.candidates(tag, &record(fields), &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn an_event_is_tested_only_against_queries_that_can_want_it() {
        let mut index = SubscriptionIndex::default();
        let queries = [
            r#"{deployment_id="d-1"}"#,
            r#"{deployment_id="d-2", service="api"}"#,
            r#"{service="web"} |= "error""#,
            r#"{level=~"warn|error"}"#,
            r#"{tag="app.web"}"#,
        ];
        let filed: Vec<Filed> = queries
            .iter()
            .enumerate()
            .map(|(id, q)| index.insert(id as QueryId, &q.parse().unwrap()))
            .collect();
        assert_eq!(
            filed[1],
            Filed::Under {
                field: "deployment_id".into(),
                value: "d-2".into()
            },
            "filed under a field already looked up"
        );
        assert_eq!(
            candidates(&index, "app.api", &[("deployment_id", "d-1")]),
            [0, 3]
        );
        assert_eq!(
            candidates(
                &index,
                "app.web",
                &[("deployment_id", "d-2"), ("service", "web")]
            ),
            [1, 2, 3, 4]
        );
        assert_eq!(candidates(&index, "x", &[]), [3]);
        for (id, filed) in filed.iter().enumerate() {
            index.remove(id as QueryId, filed);
        }
        assert!(index.is_empty());
    }

    #[test]
    fn the_raw_lookup_finds_what_the_decoded_one_finds() {
        let mut index = SubscriptionIndex::default();
        for (id, query) in [
            r#"{service="api"}"#,
            r#"{tag="app.web"}"#,
            r#"{status="500"}"#,
            r#"{zone=""}"#,
            r#"{level=~"warn|error"}"#,
        ]
        .iter()
        .enumerate()
        {
            index.insert(id as QueryId, &query.parse().unwrap());
        }
        let events = [
            ("app.web", record(&[("service", "api")])),
            ("app.api", record(&[("tag", "app.web"), ("zone", "eu")])),
            (
                "x",
                Record::from(vec![
                    ("status".to_owned(), Value::UInt(500)),
                    ("service".to_owned(), Value::from("api")),
                    ("service".to_owned(), Value::from("web")),
                ]),
            ),
        ];
        for (tag, event) in &events {
            let mut raw = Vec::new();
            event.write_msgpack(&mut raw);
            let (mut decoded, mut read) = (Vec::new(), Vec::new());
            index.candidates(tag, event, &mut decoded);
            assert!(index.candidates_raw(tag, &raw, &mut read));
            decoded.sort_unstable();
            read.sort_unstable();
            assert_eq!(read, decoded, "{tag} {event:?}");
        }
        // A map where a looked-up field is: the bytes cannot tell.
        let nested = Record::from(vec![("service".to_owned(), Value::Map(Vec::new()))]);
        let mut raw = Vec::new();
        nested.write_msgpack(&mut raw);
        assert!(!index.candidates_raw("t", &raw, &mut Vec::new()));
    }

    #[test]
    fn a_nested_field_is_looked_up_by_its_path() {
        let mut index = SubscriptionIndex::default();
        index.insert(1, &r#"{kubernetes.pod="p-1"}"#.parse().unwrap());
        let nested = Record::from(vec![(
            "kubernetes".to_owned(),
            Value::Map(vec![("pod".to_owned(), Value::from("p-1"))]),
        )]);
        let mut out = Vec::new();
        index.candidates("t", &nested, &mut out);
        assert_eq!(out, [1]);
        let mut raw = Vec::new();
        nested.write_msgpack(&mut raw);
        assert!(
            !index.candidates_raw("t", &raw, &mut out),
            "a path needs the decoded record"
        );
    }
}
