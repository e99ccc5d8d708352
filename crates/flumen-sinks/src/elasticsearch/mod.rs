//! The Elasticsearch output: events to Elasticsearch's or OpenSearch's bulk API
//! (`POST /_bulk`), as Fluent Bit's `es`, Vector's `elasticsearch` and Fluentd's
//! `fluent-plugin-elasticsearch` send them.
//!
//! Every delivery the driver hands over is one bulk request — several when its body would be
//! larger than `max_request_bytes`. Each event is two lines of newline-delimited JSON
//! (`application/x-ndjson`, every line ending with `\n`, the last too):
//!
//! - **the action**: `{"index":{"_index":"…"}}`, or `create` (`mode = "create"`, and
//!   `"data_stream"`), with `"_id":"…"` when `id_field` names a field the event has;
//! - **the document**: the record as JSON, with the event's time (`timestamp_field`,
//!   `@timestamp`, RFC 3339 with nanoseconds) and, with `tag_field`, its tag, added before its
//!   own fields unless it has fields of those names already; with `ecs = true`, common fields
//!   moved to the Elastic Common Schema first (`document.rs`); in a data stream,
//!   `data_stream.{type,dataset,namespace}` set to the stream's.
//!
//! The index is a template rendered per event (`names.rs`): strftime specifiers
//! are the event's time in UTC, `{{…}}` placeholders its fields and tag as Loki's labels read
//! them (`logs-{{service|"other"}}-%Y.%m.%d`); the result is lowercased. An event with no
//! value for a placeholder, or whose index Elasticsearch would refuse (a space, `*`, `,`, a
//! leading `_`, …), is not sent: it goes to the dead-letter file at once, with the reason.
//!
//! # Failures and retries
//!
//! The answer says what became of each document (`response.rs`): 2xx items were taken,
//! as was a 409 to a `create` with an `_id` (a resend of a document that is there already);
//! 408, 429 (`es_rejected_execution_exception`) and 5xx items are handed back to the driver,
//! which retries only those; other items (400 `mapper_parsing_exception`, 404
//! `index_not_found_exception`, …) are refused for good and dead-lettered with the server's
//! `type: reason`. An answer that cannot be read, or whose items do not match the documents,
//! has the whole request sent again. The whole request answered with connection errors,
//! timeouts, 408, 429 or 5xx is retried, never sooner than a `Retry-After` on a 429 or 503
//! asks; the rest of a delivery's requests are not tried after one such failure. A 413 (too
//! large for `http.max_content_length`) has the request split in halves and each sent at
//! once; a single document refused with 413 is dead-lettered. Other 4xx answers (400, 401,
//! 403, 404) are permanent, as for every HTTP output: the documents go to the dead-letter
//! file. Errors name the endpoint by scheme, host and port only.

mod config;
mod document;
mod names;
mod response;

pub use config::{
    BULK_PATH, BasicAuth, BulkCompression, BulkMode, DEFAULT_INDEX, DataStreamConfig,
    ElasticsearchConfig, ElasticsearchSpec,
};

use std::collections::VecDeque;
use std::fmt;

use flumen_event::Entry;
use flumen_event::json::write_json_str;
use flumen_event::record::{Record, Value};

use self::config::Target;
use self::document::{map_to_ecs, write_document};
use self::names::refused_name;
use self::response::{SentDocument, judge};
use crate::http_client::{Endpoint, Failure, gzip};
use crate::{Delivery, DeliveryError, Items, Outcome};

/// How much of an error answer's body goes into the error.
const ERROR_BODY_BYTES: usize = 2048;

/// How much of a bulk answer is read: its items are a few hundred bytes each, more with an
/// error's reason. An answer cut short does not parse, and its documents are sent again.
fn answer_limit(documents: usize) -> usize {
    (1 << 20) + documents * 4096
}

/// One bulk request, before it is sent: its body, and the documents in it, in order, with
/// where each one's lines end in the body (to split it in halves).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    /// Newline-delimited JSON: an action line and a document line per event.
    pub body: Vec<u8>,
    documents: Vec<SentDocument>,
    ends: Vec<usize>,
}

impl BulkRequest {
    /// The positions in the delivery of the events in it, in order.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.documents.iter().map(|document| document.position)
    }

    fn push(&mut self, lines: &[u8], document: SentDocument) {
        self.body.extend_from_slice(lines);
        self.documents.push(document);
        self.ends.push(self.body.len());
    }

    /// The request in two of about half its documents each; it must have two at least.
    fn halves(&self) -> [BulkRequest; 2] {
        let middle = self.documents.len() / 2;
        let cut = self.ends[middle - 1];
        [
            BulkRequest {
                body: self.body[..cut].to_vec(),
                documents: self.documents[..middle].to_vec(),
                ends: self.ends[..middle].to_vec(),
            },
            BulkRequest {
                body: self.body[cut..].to_vec(),
                documents: self.documents[middle..].to_vec(),
                ends: self.ends[middle..].iter().map(|end| end - cut).collect(),
            },
        ]
    }
}

/// A delivery as bulk requests, and the events left out of them for good, with the reason.
#[derive(Debug, Default)]
pub struct BulkPlan {
    /// The requests, each at most `max_request_bytes` unless one document alone is larger.
    pub requests: Vec<BulkRequest>,
    /// `(position, reason)`: events not sent (no value for the index, an index name
    /// Elasticsearch refuses, a record that cannot be read).
    pub refused: Vec<(usize, String)>,
}

/// Sends events to Elasticsearch or OpenSearch.
pub struct ElasticsearchSink {
    name: String,
    endpoint: Endpoint,
    spec: ElasticsearchSpec,
}

impl fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.name())
            .finish_non_exhaustive()
    }
}

impl ElasticsearchSink {
    /// A sink for output `name` from checked settings; fails only if the HTTP client cannot
    /// be built.
    pub fn from_spec(name: &str, spec: &ElasticsearchSpec) -> Result<Self, String> {
        let endpoint = Endpoint::new(
            &spec.url,
            spec.config.timeout,
            spec.headers.clone(),
            ERROR_BODY_BYTES,
        )?;
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            spec: spec.clone(),
        })
    }

    /// Sends `delivery` as bulk requests, one after the other.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let plan = self.plan(delivery);
        let mut outcome = Outcome::delivered();
        for (position, reason) in plan.refused {
            outcome = outcome.fail(
                Items::positions([position]),
                DeliveryError::permanent(reason),
            );
        }
        let create = self.spec.config.mode != BulkMode::Index;
        let mut queue = VecDeque::from(plan.requests);
        while let Some(request) = queue.pop_front() {
            let body = match self.spec.config.compression {
                BulkCompression::None => request.body.clone(),
                BulkCompression::Gzip => gzip(&request.body),
            };
            let limit = answer_limit(request.documents.len());
            match self.endpoint.post_reading(body, limit).await {
                Ok(answer) => {
                    outcome = judge(
                        outcome,
                        &answer,
                        &request.documents,
                        create,
                        self.endpoint.name(),
                    );
                }
                Err(failure) if is_too_large(&failure) && request.documents.len() > 1 => {
                    let [first, second] = request.halves();
                    queue.push_front(second);
                    queue.push_front(first);
                }
                Err(Failure {
                    error, retry_after, ..
                }) => {
                    let retryable = error.retryable;
                    let unsent = request.positions().collect::<Vec<_>>();
                    outcome = outcome.fail(Items::positions(unsent), error);
                    if let Some(wait) = retry_after {
                        outcome = outcome.retry_after(wait);
                    }
                    if retryable {
                        // The cluster is away or overloaded: the rest would fail alike.
                        let rest = queue.drain(..).flat_map(|r| r.documents);
                        let rest = Items::positions(rest.map(|document| document.position));
                        outcome = outcome.fail(
                            rest,
                            DeliveryError::retryable(format!(
                                "not sent: an earlier bulk request of this delivery to {} failed",
                                self.endpoint.name()
                            )),
                        );
                    }
                }
            }
        }
        outcome
    }

    /// The bulk requests of `delivery`, and the events that cannot be sent.
    pub fn plan(&self, delivery: &Delivery) -> BulkPlan {
        let max =
            usize::try_from(self.spec.config.max_request_bytes.as_u64()).unwrap_or(usize::MAX);
        let mut writer = ItemWriter::new(&self.spec);
        let mut plan = BulkPlan::default();
        let mut request = BulkRequest::default();
        let mut lines = Vec::new();
        for (position, (tag, entry)) in delivery.events().enumerate() {
            lines.clear();
            match writer.write(&mut lines, tag, &entry) {
                Ok(has_id) => {
                    if !request.documents.is_empty() && request.body.len() + lines.len() > max {
                        plan.requests.push(std::mem::take(&mut request));
                    }
                    request.push(&lines, SentDocument { position, has_id });
                }
                Err(reason) => plan.refused.push((position, reason)),
            }
        }
        if !request.documents.is_empty() {
            plan.requests.push(request);
        }
        plan
    }
}

/// True for a 413: the request is larger than the cluster takes (`http.max_content_length`).
fn is_too_large(failure: &Failure) -> bool {
    failure.status == Some(413)
}

/// Writes the two lines of each event, reusing its buffers from one event to the next.
struct ItemWriter<'a> {
    spec: &'a ElasticsearchSpec,
    /// True when the record must be decoded (fields in the index or the id, ECS, data
    /// streams).
    decode: bool,
    /// True when the document is the record changed (ECS, data streams), not as it came.
    reshape: bool,
    index: String,
    stream_parts: [String; 3],
    record: Vec<u8>,
    scratch: Vec<u8>,
}

impl<'a> ItemWriter<'a> {
    fn new(spec: &'a ElasticsearchSpec) -> Self {
        let reshape = spec.config.ecs || matches!(spec.target, Target::DataStream(_));
        let index_reads_fields = match &spec.target {
            Target::Index(template) => template.reads_fields(),
            Target::DataStream(parts) => parts.iter().any(|part| part.reads_fields()),
        };
        Self {
            spec,
            decode: reshape || index_reads_fields || spec.id.is_some(),
            reshape,
            index: String::new(),
            stream_parts: Default::default(),
            record: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends the action line and the document line of one event to `out`; says whether the
    /// action names an `_id`. The error is why the event cannot be sent.
    fn write(&mut self, out: &mut Vec<u8>, tag: &str, entry: &Entry<'_>) -> Result<bool, String> {
        let mut record = if self.decode {
            Record::decode(entry.record).map_err(|e| format!("cannot read the record: {e}"))?
        } else {
            Record::new()
        };
        self.render_index(tag, entry, &record)?;
        let id = self.spec.id.as_ref().and_then(|template| {
            template
                .render(tag, entry.time, &record)
                .next()
                .map(|id| id.as_ref().to_owned())
        });
        self.write_action(out, id.as_deref());
        let source: &[u8] = if self.reshape {
            self.reshape(&mut record, tag);
            self.record.clear();
            record.write_msgpack(&mut self.record);
            &self.record
        } else {
            entry.record
        };
        let time = entry.time.to_string();
        let mut added: Vec<(&str, &str)> = Vec::with_capacity(2);
        if !self.spec.config.timestamp_field.is_empty() {
            added.push((&self.spec.config.timestamp_field, &time));
        }
        if let Some(field) = &self.spec.config.tag_field {
            added.push((field, tag));
        }
        write_document(out, &mut self.scratch, source, &added)
            .map_err(|e| format!("cannot render the record as JSON: {e}"))?;
        out.push(b'\n');
        Ok(id.is_some())
    }

    /// Renders the event's index (or data stream) into `self.index`; the error says why it
    /// has none Elasticsearch would take.
    fn render_index(
        &mut self,
        tag: &str,
        entry: &Entry<'_>,
        record: &Record,
    ) -> Result<(), String> {
        self.index.clear();
        match &self.spec.target {
            Target::Index(template) => template
                .render(&mut self.index, tag, entry.time, record)
                .map_err(|e| format!("index: {e}"))?,
            Target::DataStream(parts) => {
                for ((key, template), part) in ["type", "dataset", "namespace"]
                    .into_iter()
                    .zip(parts)
                    .zip(&mut self.stream_parts)
                {
                    part.clear();
                    template
                        .render(part, tag, entry.time, record)
                        .map_err(|e| format!("data_stream.{key}: {e}"))?;
                }
                self.index = self.stream_parts.join("-");
            }
        }
        match refused_name(&self.index) {
            Some(reason) => Err(format!("index: {reason}, which Elasticsearch refuses")),
            None => Ok(()),
        }
    }

    /// `{"<action>":{"_index":"…"[,"_id":"…"]}}` and a newline.
    fn write_action(&self, out: &mut Vec<u8>, id: Option<&str>) {
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.spec.config.mode.action().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":");
        write_json_str(out, self.index.as_bytes());
        if let Some(id) = id {
            out.extend_from_slice(b",\"_id\":");
            write_json_str(out, id.as_bytes());
        }
        out.extend_from_slice(b"}}\n");
    }

    /// The record as the document holds it: mapped to ECS, and with the data stream's fields
    /// (which Elasticsearch checks against the stream's name) set.
    fn reshape(&self, record: &mut Record, tag: &str) {
        if self.spec.config.ecs {
            map_to_ecs(record, tag);
        }
        if matches!(self.spec.target, Target::DataStream(_)) {
            let [kind, dataset, namespace] = &self.stream_parts;
            record.insert(
                "data_stream",
                Value::Map(vec![
                    ("type".to_owned(), Value::from(kind.as_str())),
                    ("dataset".to_owned(), Value::from(dataset.as_str())),
                    ("namespace".to_owned(), Value::from(namespace.as_str())),
                ]),
            );
        }
    }
}

#[cfg(test)]
mod tests;
