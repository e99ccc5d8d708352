//! The Firehose output: events to an Amazon Data Firehose (Kinesis Data Firehose) delivery
//! stream, by `PutRecordBatch`.
//!
//! Each event becomes the data of one record: the event as a JSON object (`format =
//! "event"`, the lines of the file and S3 outputs) or its record alone (`format = "record"`,
//! with the time under `time_key` if set), ended by a newline unless `append_newline = false`.
//! Firehose concatenates records into the objects it writes, so the newline is what keeps
//! them JSON lines. With `aggregate`, consecutive events are packed into one record of up to
//! 1,000 KiB, each on its line: fewer records, and Firehose bills each record by 5 KiB steps.
//!
//! # Calls
//!
//! A delivery becomes as many calls as Firehose's limits need, sent one after the other in
//! the order of the events: at most 500 records and [`MAX_CALL_BYTES`] of request body per
//! call (AWS says "4 MB for the entire request"; the body counted is what is sent, records
//! base64-encoded inside the JSON, and 4,000,000 bytes is the smaller reading of "4 MB"). A
//! record is at most 1,000 KiB (1,024,000 bytes, before base64): an event larger than that
//! on its own can never be taken, and goes to the dead-letter file at once, unsent.
//!
//! # Failures
//!
//! Firehose answers a call with `FailedPutCount` and one response per record; the records
//! with an `ErrorCode` (`ServiceUnavailableException` when throttled, `InternalFailure`)
//! alone are retried, the rest are done. A call refused as a whole (JSON `{"__type",
//! "message"}`) is retried, with all its records, unless Firehose refused the data itself
//! (`InvalidArgumentException`, or HTTP 413): those events are dead-lettered with Firehose's
//! reason. A missing stream (`ResourceNotFoundException`), refused credentials, a KMS key
//! Firehose cannot use, throttling and 5xx are all retried until `retry.max_duration`: an
//! operator's fix lets the same events through, and until then they wait in the log. After
//! a call fails as a whole for a reason worth retrying, the delivery's later calls are not
//! tried (they would meet the same throttling or outage) and are retried with it.
//!
//! Firehose has no idempotence: a call whose answer was lost (a timeout, a dropped
//! connection) is sent again, and its records may then arrive twice. Nothing is lost.

mod config;

pub use config::{FirehoseConfig, FirehoseSpec, RecordFormat};

use std::fmt;
use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flumen_event::json::{write_json_str, write_value};
use flumen_event::msgpack::Reader;
use flumen_event::record::Record;
use flumen_event::{Entry, EventTime};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::aws::{SignedClient, Signer};
use crate::http_client::{self, Failure, redact_url};
use crate::{Delivery, DeliveryError, Items, Outcome};

/// The most data one record holds, before base64 (Firehose's 1,000 KiB).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// The most records one call holds.
pub const MAX_CALL_RECORDS: usize = 500;
/// The largest request body sent in one call.
pub const MAX_CALL_BYTES: usize = 4_000_000;
/// The operation, as the `X-Amz-Target` header names it.
const TARGET: &str = "Firehose_20150804.PutRecordBatch";
/// How much of an answer is read: one response per record is about 200 bytes.
const ANSWER_BYTES: usize = 1024 * 1024;
/// Error codes of a whole call that refuse the data itself: retrying cannot help.
const DATA_REFUSED: [&str; 1] = ["InvalidArgumentException"];
/// Error codes of refused credentials.
const CREDENTIALS_REFUSED: [&str; 7] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "AccessDeniedException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidClientTokenId",
];

/// One Firehose record: its data, and the positions in the delivery of the events in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseRecord {
    /// The data, before base64.
    pub data: Vec<u8>,
    /// The events it holds (one, unless `aggregate`).
    pub positions: Vec<usize>,
}

/// A delivery made into records, and the events that cannot be sent.
#[derive(Debug, Default)]
pub struct Records {
    /// The records, in the order of their events.
    pub records: Vec<FirehoseRecord>,
    /// Events larger than a record may be, with their size.
    pub too_large: Vec<(usize, usize)>,
    /// Events that cannot be rendered as JSON (a bug: the log holds validated entries).
    pub unrenderable: Vec<usize>,
}

impl Records {
    /// The positions of all events in `records`.
    fn positions(&self, records: Range<usize>) -> impl Iterator<Item = usize> + '_ {
        self.records[records]
            .iter()
            .flat_map(|record| record.positions.iter().copied())
    }

    /// The events that cannot be sent, refused for good with the reason.
    fn refusals(&self) -> Outcome {
        let mut outcome = Outcome::delivered();
        if let Some(largest) = self.too_large.iter().map(|&(_, size)| size).max() {
            outcome = outcome.fail(
                Items::positions(self.too_large.iter().map(|&(position, _)| position)),
                DeliveryError::permanent(format!(
                    "the event is larger than a Firehose record may be: {largest} bytes, \
                     the limit is {MAX_RECORD_BYTES} (1,000 KiB)"
                )),
            );
        }
        if !self.unrenderable.is_empty() {
            outcome = outcome.fail(
                Items::positions(self.unrenderable.iter().copied()),
                DeliveryError::permanent("the event cannot be rendered as JSON"),
            );
        }
        outcome
    }
}

/// One `PutRecordBatch`: its body, and which of the delivery's records it holds.
#[derive(Debug)]
pub struct Call {
    /// `{"DeliveryStreamName":…,"Records":[{"Data":"<base64>"},…]}`.
    pub body: Vec<u8>,
    /// Indices in [`Records::records`].
    pub records: Range<usize>,
}

/// What Firehose made of one call.
#[derive(Debug)]
enum Answer {
    /// Every record was taken.
    Taken,
    /// The records at these indices of the call were not taken.
    RecordsFailed(Vec<usize>, DeliveryError),
    /// The call was refused as a whole.
    Refused(DeliveryError),
}

/// Puts delivered events into a delivery stream.
pub struct FirehoseSink {
    spec: FirehoseSpec,
    client: SignedClient,
}

impl fmt::Debug for FirehoseSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirehoseSink")
            .field("delivery_stream", &self.spec.config.delivery_stream)
            .field("endpoint", &self.client.endpoint())
            .finish_non_exhaustive()
    }
}

impl FirehoseSink {
    /// A sink from checked settings; fails only if the HTTP client cannot be built.
    pub fn from_spec(spec: &FirehoseSpec) -> Result<Self, String> {
        let signer = Signer::new("firehose", spec.region.clone(), spec.credentials.clone());
        let client = SignedClient::new(
            signer,
            redact_url(spec.url.as_str()),
            spec.config.timeout,
            spec.url.scheme() == "https",
        )?;
        Ok(Self {
            spec: spec.clone(),
            client,
        })
    }

    /// Puts `delivery`'s events into the stream, in as many calls as the limits need.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let records = records(&self.spec.config, delivery);
        let calls = calls(&self.spec.config.delivery_stream, &records.records);
        let mut outcome = records.refusals();
        for call in calls {
            match self.put(call.body, call.records.len()).await {
                Answer::Taken => {}
                Answer::RecordsFailed(failed, error) => {
                    let positions = failed
                        .into_iter()
                        .map(|index| call.records.start + index)
                        .flat_map(|record| records.positions(record..record + 1));
                    outcome = outcome.fail(Items::positions(positions), error);
                }
                Answer::Refused(error) if error.retryable => {
                    // The next calls would meet the same outage or throttling: they wait
                    // with this one, and the events keep their order.
                    let rest = call.records.start..records.records.len();
                    tracing::debug!(message = "A PutRecordBatch call failed; the delivery's later calls wait.", %error);
                    return outcome.fail(Items::positions(records.positions(rest)), error);
                }
                Answer::Refused(error) => {
                    outcome =
                        outcome.fail(Items::positions(records.positions(call.records)), error);
                }
            }
        }
        outcome
    }

    /// Sends one call of `records` records; what Firehose made of it.
    async fn put(&self, body: Vec<u8>, records: usize) -> Answer {
        let request = self
            .client
            .request(Method::POST, self.spec.url.as_str())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            )
            .header("x-amz-target", HeaderValue::from_static(TARGET))
            .body(body);
        let response = match self.client.send(request).await {
            Ok(response) => response,
            Err(Failure { error, .. }) => return Answer::Refused(error),
        };
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = http_client::read_body(response, ANSWER_BYTES).await;
        self.read_answer(status, error_type.as_deref(), &body, records)
    }

    /// What Firehose's answer to a call of `records` records says.
    fn read_answer(
        &self,
        status: StatusCode,
        error_type: Option<&str>,
        body: &[u8],
        records: usize,
    ) -> Answer {
        if status.is_success() {
            return match serde_json::from_slice::<PutRecordBatchOutput>(body) {
                Ok(output) => self.record_failures(&output, records),
                Err(error) => Answer::Refused(DeliveryError::retryable(format!(
                    "{}: HTTP {} with an answer that is not PutRecordBatch's: {error}",
                    self.call_name(),
                    status.as_u16()
                ))),
            };
        }
        let refusal: ErrorAnswer = serde_json::from_slice(body).unwrap_or_default();
        let code = refusal
            .kind
            .as_deref()
            .or(error_type)
            .map(error_code)
            .unwrap_or_default();
        let mut message = format!("{}: HTTP {}", self.call_name(), status.as_u16());
        if !code.is_empty() {
            message.push(' ');
            message.push_str(code);
        }
        match refusal.message.or(refusal.message_capitalised) {
            Some(text) if !text.is_empty() => {
                message.push_str(": ");
                message.push_str(&text);
            }
            _ if code.is_empty() => {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    message.push_str(": ");
                    message.push_str(&text);
                }
            }
            _ => {}
        }
        message.push_str(&self.hint(code));
        if DATA_REFUSED.contains(&code) || status == StatusCode::PAYLOAD_TOO_LARGE {
            Answer::Refused(DeliveryError::permanent(message))
        } else {
            Answer::Refused(DeliveryError::retryable(message))
        }
    }

    /// The records a 2xx answer lists as not taken: those with an `ErrorCode`.
    fn record_failures(&self, output: &PutRecordBatchOutput, records: usize) -> Answer {
        if output.failed_put_count == 0 {
            return Answer::Taken;
        }
        let failed: Vec<usize> = output
            .request_responses
            .iter()
            .enumerate()
            .filter(|(_, response)| response.error_code.is_some())
            .map(|(index, _)| index)
            .collect();
        if output.request_responses.len() != records || failed.is_empty() {
            // Which records failed cannot be told: all are sent again.
            return Answer::Refused(DeliveryError::retryable(format!(
                "{}: FailedPutCount {} with {} responses for {records} records",
                self.call_name(),
                output.failed_put_count,
                output.request_responses.len()
            )));
        }
        let first = &output.request_responses[failed[0]];
        let mut message = format!(
            "{}: {} of {records} records not taken: {}",
            self.call_name(),
            failed.len(),
            first.error_code.as_deref().unwrap_or_default()
        );
        if let Some(text) = first.error_message.as_deref().filter(|t| !t.is_empty()) {
            message.push_str(": ");
            message.push_str(text);
        }
        // Per-record errors are throttling and internal failures: worth another try.
        Answer::RecordsFailed(failed, DeliveryError::retryable(message))
    }

    /// `Firehose PutRecordBatch to stream "logs" at https://firehose.…`, for messages.
    fn call_name(&self) -> String {
        format!(
            "Firehose PutRecordBatch to stream {:?} at {}",
            self.spec.config.delivery_stream,
            self.client.endpoint()
        )
    }

    /// What an operator may look at for an error `code`.
    fn hint(&self, code: &str) -> String {
        if code == "ResourceNotFoundException" {
            format!(
                " (does the delivery stream exist in region {:?} of this account? set region)",
                self.client.region()
            )
        } else if CREDENTIALS_REFUSED.contains(&code) {
            " (check the credentials: auth, or the AWS chain)".to_owned()
        } else if code == "InvalidKMSResourceException" {
            " (the stream's KMS key cannot be used)".to_owned()
        } else {
            String::new()
        }
    }
}

/// The answer of a successful `PutRecordBatch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchOutput {
    failed_put_count: u64,
    #[serde(default)]
    request_responses: Vec<RecordResponse>,
}

/// What became of one record: an id, or an error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordResponse {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
}

/// An AWS JSON protocol error: `{"__type":"…#ResourceNotFoundException","message":"…"}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    #[serde(rename = "__type")]
    kind: Option<String>,
    message: Option<String>,
    #[serde(rename = "Message")]
    message_capitalised: Option<String>,
}

/// The error code of an `__type` or `x-amzn-ErrorType`: after any `#`, before any `:`.
fn error_code(kind: &str) -> &str {
    let code = kind.rsplit('#').next().unwrap_or(kind);
    code.split(':').next().unwrap_or(code).trim()
}

/// The records of `delivery`: one per event, or with `aggregate` as many events as fit
/// before 1,000 KiB; events too large or that cannot be rendered are set apart.
pub fn records(config: &FirehoseConfig, delivery: &Delivery) -> Records {
    let mut out = Records::default();
    let mut line = Vec::new();
    for (position, (tag, entry)) in delivery.events().enumerate() {
        line.clear();
        if !render(&mut line, config, tag, &entry) {
            out.unrenderable.push(position);
            continue;
        }
        if line.len() > MAX_RECORD_BYTES {
            out.too_large.push((position, line.len()));
            continue;
        }
        match out.records.last_mut() {
            Some(last) if config.aggregate && last.data.len() + line.len() <= MAX_RECORD_BYTES => {
                last.data.extend_from_slice(&line);
                last.positions.push(position);
            }
            _ => out.records.push(FirehoseRecord {
                data: std::mem::take(&mut line),
                positions: vec![position],
            }),
        }
    }
    out
}

/// Appends one event's data as `config` says (with its newline); false when it cannot be
/// rendered, leaving `out` as it was.
fn render(out: &mut Vec<u8>, config: &FirehoseConfig, tag: &str, entry: &Entry<'_>) -> bool {
    let start = out.len();
    let rendered = match (config.format, &config.time_key) {
        (RecordFormat::Event, _) => flumen_event::json::write_event(out, tag, entry, None),
        (RecordFormat::Record, None) => write_value(out, &mut Reader::new(entry.record), 0),
        (RecordFormat::Record, Some(time_key)) => {
            Record::decode(entry.record).map(|record| with_time(out, record, time_key, entry.time))
        }
    };
    if let Err(error) = rendered {
        out.truncate(start);
        tracing::error!(message = "An entry cannot be rendered.", tag, %error);
        return false;
    }
    if config.append_newline {
        out.push(b'\n');
    }
    true
}

/// Appends `record` as JSON with `time` (RFC 3339) set at `time_key`.
fn with_time(out: &mut Vec<u8>, mut record: Record, time_key: &str, time: EventTime) {
    record.insert(time_key, time.to_string());
    out.extend_from_slice(record.to_json().as_bytes());
}

/// The calls that put `records`, in order: each at most [`MAX_CALL_RECORDS`] records and
/// [`MAX_CALL_BYTES`] of body.
pub fn calls(stream: &str, records: &[FirehoseRecord]) -> Vec<Call> {
    let mut head = b"{\"DeliveryStreamName\":".to_vec();
    write_json_str(&mut head, stream.as_bytes());
    head.extend_from_slice(b",\"Records\":[");
    const TAIL: &[u8] = b"]}";
    let mut calls = Vec::new();
    let mut body = head.clone();
    let mut first = 0;
    for (index, record) in records.iter().enumerate() {
        // `,{"Data":"…"}`; a record's data is at most 1,000 KiB, so one always fits a call.
        let encoded = record.data.len().div_ceil(3) * 4;
        let entry_bytes = 1 + 11 + encoded;
        let full = index - first == MAX_CALL_RECORDS
            || body.len() + entry_bytes + TAIL.len() > MAX_CALL_BYTES;
        if index > first && full {
            body.extend_from_slice(TAIL);
            calls.push(Call {
                body: std::mem::replace(&mut body, head.clone()),
                records: first..index,
            });
            first = index;
        }
        if index > first {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"Data\":\"");
        let start = body.len();
        body.resize(start + encoded, 0);
        BASE64
            .encode_slice(&record.data, &mut body[start..])
            .expect("room for the base64 made above");
        body.extend_from_slice(b"\"}");
    }
    if records.len() > first {
        body.extend_from_slice(TAIL);
        calls.push(Call {
            body,
            records: first..records.len(),
        });
    }
    calls
}

#[cfg(test)]
mod tests;
