//! The webhook output: alerts over HTTP, as generic JSON, Slack messages or PagerDuty events.
//!
//! Every delivery the driver hands over becomes:
//!
//! - `format = "json"` (the default): one `POST` of a JSON array of events,
//!   `[{"tag":…,"time":…,"record":{…}},…]`, the time in RFC 3339 UTC to the nanosecond (the
//!   stdout output's objects). With a `template`, each object also has a `"message"` key (after
//!   `"time"`) holding the rendered template.
//! - `format = "slack"`: one `POST` of `{"text":"…"}` to a Slack incoming webhook: one line per
//!   alert (the rendered template), at most [`SLACK_MAX_LINES`], then `… and K more`.
//! - `format = "pagerduty"`: one `POST` per alert to the PagerDuty Events API v2 (`url` defaults
//!   to [`PAGERDUTY_EVENTS_URL`]): a `trigger` with a stable `dedup_key`, so that a storm of one
//!   error is one incident. Alerts of one delivery with the same `dedup_key` are sent once.
//!   `payload.summary` is the rendered template (at most 1024 characters); `severity` maps the
//!   record's `level` (or `severity`, `log.level`; names or syslog/Bunyan numbers) to
//!   `critical`, `error`, `warning` or `info`, `error` when absent or unknown; `source` is the
//!   host (`host.name`, `host`, `hostname`), else the service, else the tag; `component` is the
//!   service (`service.name`, `service`, `app`) when there is one; `timestamp` is the event
//!   time to the millisecond; `custom_details` is the record.
//!
//! # Templates
//!
//! `{{name}}` is a record field, `{{a.b.c}}` a nested one (a top-level field named `a.b.c` wins);
//! `{{tag}}` and `{{time}}` are the event's tag and time (RFC 3339), and `{{record.tag}}` reads a
//! record field that happens to be called `tag` or `time`. `{{a|b|"text"}}` takes the first
//! alternative that is present and not empty; a quoted alternative (`"…"` or `'…'`) is literal
//! text (it cannot hold `|` or `}}`). A missing field renders as nothing. Strings render as they are, numbers and booleans in
//! decimal, maps and arrays as JSON. For Slack and PagerDuty, field values are cut to their
//! first line (stack traces, trailing newlines) and, for Slack, `&`, `<` and `>` are escaped so
//! that a log line cannot mention `@channel`; the template's own text is sent as written.
//! The default for Slack and PagerDuty is [`DEFAULT_TEMPLATE`].
//!
//! # The alert limit
//!
//! `max_alerts_per_minute` caps the alerts (events) that leave the output in any sliding window
//! of 60 seconds — the events in the JSON array, the alerts a Slack message stands for (listed
//! or in its `… and K more` line), the events sent to PagerDuty. Alerts over the limit are not
//! sent; they are counted in `flumen_output_alerts_suppressed_total{output}` and, for JSON and
//! Slack, reported by the next request ("N alerts suppressed by the rate limit": the last line
//! of a Slack message, a last element tagged `flumen.alerts.suppressed` in a JSON array).
//! Suppression is not a failure: the delivery succeeds and the output's cursor moves on. By
//! default JSON is unlimited and Slack and PagerDuty send at most 30 alerts a minute; `0` lifts
//! the limit.
//!
//! # Failures and retries
//!
//! Connection errors, timeouts, HTTP 408, 429 and 5xx are retryable (a `Retry-After` in seconds
//! on a 429 or 503 delays the next attempt, up to `retry.max_backoff`: the sink says how long,
//! the driver waits); other answers outside 2xx are permanent, with the status and the start of
//! the body in the error. Redirects are not followed. A retry carries only the alerts not
//! accepted yet (PagerDuty events from the one that failed on), so accepted alerts are not sent
//! again and the limit is charged once; alerts the limit suppressed are not retried. Errors name
//! the endpoint by scheme and host only, since webhook URLs often carry their secret in the path.

mod config;
pub use config::{WebhookConfig, WebhookFormat, WebhookSpec};

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flumen_event::json::{write_json_str, write_value};
use flumen_event::msgpack::{MsgpackError, Reader};
use flumen_event::record::{Record, Value};
use flumen_event::{Entry, EventTime};
use flumen_parse::Level;
use metrics::Counter;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::template::field::{FieldTemplate, Rendered};
use super::{Delivery, Items, Outcome, fnv1a};
use crate::config::{BatchConfig, RetryConfig};
use crate::http_client::{Endpoint, check_url, redact_url};

/// The PagerDuty Events API v2 endpoint, the `url` of a `pagerduty` webhook that sets none.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The template Slack and PagerDuty use when none is set: `[error] api: connection refused`.
pub const DEFAULT_TEMPLATE: &str = "[{{level|severity|log.level|\"alert\"}}] {{service.name|service|app|tag}}: {{message|msg|log}}";

/// The most alerts a Slack message lists; the rest are counted in a `… and K more` line.
pub const SLACK_MAX_LINES: usize = 20;

/// The limit on alerts per minute Slack and PagerDuty webhooks have unless set.
pub const DEFAULT_ALERTS_PER_MINUTE: u32 = 30;

/// The tag of the element a JSON webhook adds to report suppressed alerts.
pub const SUPPRESSED_TAG: &str = "flumen.alerts.suppressed";

/// The window of the alert limit.
const WINDOW: Duration = Duration::from_secs(60);
/// The longest line a Slack message gives one alert.
const SLACK_MAX_LINE_CHARS: usize = 500;
/// PagerDuty's limits on `payload.summary` and `dedup_key`.
const PAGERDUTY_MAX_SUMMARY_CHARS: usize = 1024;
const PAGERDUTY_MAX_DEDUP_KEY_CHARS: usize = 255;
/// How much of an error answer's body goes into the error message.
const ERROR_BODY_BYTES: usize = 200;

/// Fields that name an event's severity, its service, its host and its message, in order of
/// preference (the default template reads the same).
const LEVEL_FIELDS: &[&str] = &["level", "severity", "log.level"];
const SERVICE_FIELDS: &[&str] = &["service.name", "service", "app"];
const HOST_FIELDS: &[&str] = &["host.name", "host", "hostname"];
const MESSAGE_FIELDS: &[&str] = &["message", "msg", "log"];

/// A validated configuration, in the forms the sink uses.
#[derive(Clone)]
struct Checked {
    url: reqwest::Url,
    /// Every request's headers: `Content-Type: application/json`, then the configured ones.
    headers: HeaderMap,
    template: Option<FieldTemplate>,
    dedup_key: Option<FieldTemplate>,
}

impl Checked {
    fn new(config: &WebhookConfig) -> Result<Self, String> {
        let format = config.format.name();
        let endpoint = config.endpoint();
        if endpoint.is_empty() {
            return Err(format!("url: required with format = {format:?}"));
        }
        let url = check_url("url", endpoint)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        crate::http_client::insert_headers(&mut headers, &config.headers)?;
        let pagerduty = config.format == WebhookFormat::Pagerduty;
        match &config.routing_key {
            None if pagerduty => {
                return Err(
                    "routing_key: required with format = \"pagerduty\" (the integration key of \
                     a PagerDuty service's Events API v2 integration)"
                        .into(),
                );
            }
            Some(key) if pagerduty && key.trim().is_empty() => {
                return Err("routing_key: empty".into());
            }
            Some(_) if !pagerduty => {
                return Err(format!(
                    "routing_key: only for format = \"pagerduty\", not {format:?}"
                ));
            }
            _ => {}
        }
        if config.dedup_key.is_some() && !pagerduty {
            return Err(format!(
                "dedup_key: only for format = \"pagerduty\", not {format:?}"
            ));
        }
        if config.timeout.is_zero() {
            return Err("timeout: must be more than 0".into());
        }
        let template = config
            .template
            .as_deref()
            .map(FieldTemplate::parse)
            .transpose()
            .map_err(|e| format!("template: {e}"))?;
        let dedup_key = config
            .dedup_key
            .as_deref()
            .map(FieldTemplate::parse)
            .transpose()
            .map_err(|e| format!("dedup_key: {e}"))?;
        Ok(Self {
            url,
            headers,
            template,
            dedup_key,
        })
    }
}

/// Reads a clock; injectable so that tests can move the alert limit's window.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Sends alerts to a webhook.
pub struct WebhookSink {
    name: String,
    format: WebhookFormat,
    /// Where requests go, with the configured headers.
    endpoint: Endpoint,
    /// The configured template; for Slack and PagerDuty, the default when none is.
    template: Option<FieldTemplate>,
    dedup_key: Option<FieldTemplate>,
    routing_key: String,
    limit: Option<u32>,
    window: RateWindow,
    clock: Clock,
    /// Alerts suppressed and not yet reported in a request that succeeded.
    unreported: u64,
    /// True while the limit holds alerts back (to log the start of it once).
    suppressing: bool,
    suppressed: Counter,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("endpoint", &self.endpoint.name())
            .field("limit", &self.limit)
            .field("unreported", &self.unreported)
            .finish_non_exhaustive()
    }
}

/// One request of a delivery.
struct Request {
    body: Bytes,
    /// The delivery's events it stands for (by position): not sent again once it succeeded.
    positions: Vec<usize>,
    /// Alerts this request sends (charged to the limit once it succeeds).
    alerts: u32,
    /// Suppressed alerts it reports.
    reports: u64,
}

impl WebhookSink {
    /// A sink for output `name` (which labels its metrics and logs).
    pub fn new(name: &str, config: &WebhookConfig) -> Result<Self, String> {
        Self::from_spec(name, &config.check()?)
    }

    /// A sink for output `name` from checked settings; fails only if the HTTP client cannot
    /// be built.
    pub fn from_spec(name: &str, spec: &WebhookSpec) -> Result<Self, String> {
        let (config, checked) = (&spec.config, spec.checked.clone());
        let template = match config.format {
            WebhookFormat::Json => checked.template,
            WebhookFormat::Slack | WebhookFormat::Pagerduty => {
                Some(checked.template.unwrap_or_else(|| {
                    FieldTemplate::parse(DEFAULT_TEMPLATE).expect("valid default")
                }))
            }
        };
        let endpoint = Endpoint::new(
            &checked.url,
            config.timeout,
            checked.headers,
            ERROR_BODY_BYTES,
        )?;
        Ok(Self {
            name: name.to_owned(),
            format: config.format,
            endpoint,
            template,
            dedup_key: checked.dedup_key,
            routing_key: config.routing_key.clone().unwrap_or_default(),
            limit: config.alert_limit(),
            window: RateWindow::default(),
            clock: Arc::new(Instant::now),
            unreported: 0,
            suppressing: false,
            suppressed: metrics::counter!(
                "flumen_output_alerts_suppressed_total",
                "output" => name.to_owned()
            ),
        })
    }

    /// Replaces the clock the alert limit's window reads (for tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sends every alert of `delivery` (or suppresses it under the limit), request by request;
    /// the first request that fails ends the attempt, and the alerts of it and of the requests
    /// after it are what is left to retry (or to dead-letter), with the destination's
    /// `Retry-After`.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let requests = self.plan(delivery);
        for (index, request) in requests.iter().enumerate() {
            match self.endpoint.post(request.body.clone()).await {
                Ok(()) => {
                    self.window.record((self.clock)(), request.alerts);
                    self.unreported = self.unreported.saturating_sub(request.reports);
                }
                Err(failure) => {
                    let unsent = requests[index..]
                        .iter()
                        .flat_map(|r| r.positions.iter().copied());
                    let outcome =
                        Outcome::delivered().fail(Items::positions(unsent), failure.error);
                    return match failure.retry_after {
                        Some(wait) => outcome.retry_after(wait),
                        None => outcome,
                    };
                }
            }
        }
        Outcome::delivered()
    }

    /// Turns a delivery into requests, deciding which alerts the limit lets through.
    fn plan(&mut self, delivery: &Delivery) -> Vec<Request> {
        let budget = match self.limit {
            None => u64::MAX,
            Some(limit) => u64::from(limit).saturating_sub(self.window.used((self.clock)())),
        };
        let (requests, suppressed) = match self.format {
            WebhookFormat::Json => self.plan_json(delivery, budget),
            WebhookFormat::Slack => self.plan_slack(delivery, budget),
            WebhookFormat::Pagerduty => self.plan_pagerduty(delivery, budget),
        };
        if suppressed > 0 {
            self.suppressed.increment(suppressed);
            if !self.suppressing {
                tracing::warn!(
                    message = "Alert limit reached; suppressing alerts until the window frees up.",
                    output = %self.name,
                    limit_per_minute = self.limit.unwrap_or(0),
                    suppressed,
                );
            }
            self.suppressing = true;
        } else if !requests.is_empty() {
            self.suppressing = false;
        }
        requests
    }

    fn plan_json(&mut self, delivery: &Delivery, budget: u64) -> (Vec<Request>, u64) {
        let mut body = Vec::with_capacity(delivery.bytes as usize * 2 + 64);
        body.push(b'[');
        let (mut sent, mut suppressed) = (0u64, 0u64);
        let mut positions = Vec::new();
        for (position, (tag, entry)) in delivery.events().enumerate() {
            if sent >= budget {
                suppressed += 1;
                continue;
            }
            positions.push(position);
            let message = self.template.as_ref().map(|template| {
                let record = decode(tag, &entry);
                Style::Raw.render(template, tag, entry.time, &record)
            });
            let start = body.len();
            if sent > 0 {
                body.push(b',');
            }
            match flumen_event::json::write_event(&mut body, tag, &entry, message.as_deref()) {
                Ok(()) => sent += 1,
                Err(error) => {
                    body.truncate(start);
                    tracing::error!(message = "Skipping an entry that cannot be rendered.", tag, %error);
                }
            }
        }
        self.unreported += suppressed;
        if sent == 0 {
            return (Vec::new(), suppressed);
        }
        let reports = self.unreported;
        if reports > 0 {
            let note = self.suppressed_note(reports);
            body.extend_from_slice(b",{\"tag\":");
            write_json_str(&mut body, SUPPRESSED_TAG.as_bytes());
            write!(body, ",\"time\":\"{}\"", EventTime::now()).expect("Vec write");
            if self.template.is_some() {
                body.extend_from_slice(b",\"message\":");
                write_json_str(&mut body, note.as_bytes());
            }
            body.extend_from_slice(b",\"record\":{\"message\":");
            write_json_str(&mut body, note.as_bytes());
            write!(body, ",\"suppressed\":{reports},\"output\":").expect("Vec write");
            write_json_str(&mut body, self.name.as_bytes());
            body.extend_from_slice(b"}}");
        }
        body.push(b']');
        let request = Request {
            body: body.into(),
            positions,
            alerts: sent as u32,
            reports,
        };
        (vec![request], suppressed)
    }

    fn plan_slack(&mut self, delivery: &Delivery, budget: u64) -> (Vec<Request>, u64) {
        let template = self.template.as_ref().expect("slack has a template");
        let style = Style::Line {
            max_chars: SLACK_MAX_LINE_CHARS,
            slack: true,
        };
        let mut lines = Vec::new();
        let (mut sent, mut suppressed) = (0u64, 0u64);
        let mut positions = Vec::new();
        for (position, (tag, entry)) in delivery.events().enumerate() {
            if sent >= budget {
                suppressed += 1;
                continue;
            }
            sent += 1;
            positions.push(position);
            if lines.len() < SLACK_MAX_LINES {
                lines.push(style.render(template, tag, entry.time, &decode(tag, &entry)));
            }
        }
        self.unreported += suppressed;
        if sent == 0 {
            return (Vec::new(), suppressed);
        }
        let more = sent - lines.len() as u64;
        if more > 0 {
            lines.push(format!("… and {more} more"));
        }
        let reports = self.unreported;
        if reports > 0 {
            lines.push(self.suppressed_note(reports));
        }
        let body = serde_json::to_vec(&serde_json::json!({ "text": lines.join("\n") }))
            .expect("a string serializes");
        let request = Request {
            body: body.into(),
            positions,
            alerts: sent as u32,
            reports,
        };
        (vec![request], suppressed)
    }

    fn plan_pagerduty(&mut self, delivery: &Delivery, budget: u64) -> (Vec<Request>, u64) {
        let template = self.template.as_ref().expect("pagerduty has a template");
        let style = Style::Line {
            max_chars: PAGERDUTY_MAX_SUMMARY_CHARS,
            slack: false,
        };
        let mut requests = Vec::new();
        // The request each dedup key went into.
        let mut keys = HashMap::new();
        let (mut repeats, mut suppressed) = (0u64, 0u64);
        for (position, (tag, entry)) in delivery.events().enumerate() {
            let record = decode(tag, &entry);
            let dedup_key = match &self.dedup_key {
                Some(custom) => truncate_chars(
                    Style::Raw.render(custom, tag, entry.time, &record),
                    PAGERDUTY_MAX_DEDUP_KEY_CHARS,
                ),
                None => default_dedup_key(tag, &record),
            };
            if let Some(&request) = keys.get(&dedup_key) {
                // PagerDuty would merge it into the alert just sent: it goes with that one.
                let request: &mut Request = &mut requests[request];
                request.positions.push(position);
                repeats += 1;
                continue;
            }
            if keys.len() as u64 >= budget {
                suppressed += 1;
                continue;
            }
            let summary = style.render(template, tag, entry.time, &record);
            let mut body = Vec::with_capacity(entry.record.len() * 2 + 512);
            match self.write_pagerduty_event(&mut body, tag, &entry, &record, &dedup_key, &summary)
            {
                Ok(()) => {
                    keys.insert(dedup_key, requests.len());
                    requests.push(Request {
                        body: body.into(),
                        positions: vec![position],
                        alerts: 1,
                        reports: 0,
                    });
                }
                Err(error) => {
                    tracing::error!(message = "Skipping an entry that cannot be rendered.", tag, %error);
                }
            }
        }
        if repeats > 0 {
            tracing::debug!(
                message = "Alerts repeating one dedup_key in a delivery are sent once.",
                output = %self.name,
                repeats,
            );
        }
        (requests, suppressed)
    }

    /// `{"routing_key":…,"event_action":"trigger","dedup_key":…,"client":"flumen",
    /// "payload":{"summary":…,"source":…,"severity":…,"timestamp":…,["component":…,]
    /// "custom_details":{record}}}`
    fn write_pagerduty_event(
        &self,
        out: &mut Vec<u8>,
        tag: &str,
        entry: &Entry<'_>,
        record: &Record,
        dedup_key: &str,
        summary: &str,
    ) -> Result<(), MsgpackError> {
        let host = first_text(record, HOST_FIELDS);
        let service = first_text(record, SERVICE_FIELDS);
        let source = host.as_deref().or(service.as_deref()).unwrap_or(tag);
        let severity = first_text(record, LEVEL_FIELDS).map_or("error", |l| pagerduty_severity(&l));
        out.extend_from_slice(b"{\"routing_key\":");
        write_json_str(out, self.routing_key.as_bytes());
        out.extend_from_slice(b",\"event_action\":\"trigger\",\"dedup_key\":");
        write_json_str(out, dedup_key.as_bytes());
        out.extend_from_slice(b",\"client\":\"flumen\",\"payload\":{\"summary\":");
        write_json_str(out, summary.as_bytes());
        out.extend_from_slice(b",\"source\":");
        write_json_str(
            out,
            first_line(source, PAGERDUTY_MAX_SUMMARY_CHARS).as_bytes(),
        );
        write!(out, ",\"severity\":\"{severity}\"").expect("Vec write");
        // Milliseconds, the precision PagerDuty's examples use.
        if let Some(time) = entry.time.to_datetime() {
            write!(
                out,
                ",\"timestamp\":\"{}\"",
                time.format("%Y-%m-%dT%H:%M:%S%.3fZ")
            )
            .expect("Vec write");
        }
        if let Some(service) = service.as_deref() {
            out.extend_from_slice(b",\"component\":");
            write_json_str(
                out,
                first_line(service, PAGERDUTY_MAX_SUMMARY_CHARS).as_bytes(),
            );
        }
        out.extend_from_slice(b",\"custom_details\":");
        write_value(out, &mut Reader::new(entry.record), 0)?;
        out.extend_from_slice(b"}}");
        Ok(())
    }

    fn suppressed_note(&self, count: u64) -> String {
        format!(
            "{count} alert{} suppressed by the rate limit (at most {} per minute)",
            if count == 1 { "" } else { "s" },
            self.limit.unwrap_or(0),
        )
    }
}

/// Decodes a record for templates; one that cannot be (the log holds validated entries, so
/// a bug) renders as empty.
fn decode(tag: &str, entry: &Entry<'_>) -> Record {
    Record::decode(entry.record).unwrap_or_else(|error| {
        tracing::error!(message = "Cannot read a record; rendering it as empty.", tag, %error);
        Record::new()
    })
}

/// The text of the first of `fields` present and not empty.
fn first_text<'r>(record: &'r Record, fields: &[&str]) -> Option<Cow<'r, str>> {
    fields
        .iter()
        .filter_map(|field| record.get_path(field))
        .map(Value::to_text)
        .find(|text| !text.trim().is_empty())
}

/// A log level as [`Level::parse`] reads it (names, syslog 0–7, Bunyan/Pino 10–60), as a
/// PagerDuty severity; what is not recognised is `error` (this is an alert, after all).
fn pagerduty_severity(level: &str) -> &'static str {
    match Level::parse(level) {
        Some(Level::Fatal) => "critical",
        Some(Level::Error) | None => "error",
        Some(Level::Warn) => "warning",
        Some(Level::Info | Level::Debug | Level::Trace) => "info",
    }
}

/// `flumen-` and a hash of the tag, the service and the first line of the message.
fn default_dedup_key(tag: &str, record: &Record) -> String {
    let service = first_text(record, SERVICE_FIELDS).unwrap_or_default();
    let message = first_text(record, MESSAGE_FIELDS).unwrap_or_default();
    let message = message.trim().lines().next().unwrap_or("");
    let parts = [tag, &service, message];
    let hash = fnv1a(parts.iter().flat_map(|part| part.bytes().chain([0xff])));
    format!("flumen-{hash:016x}")
}

/// The first line of `text`, trimmed, with ` …` when more lines followed, and at most
/// `max_chars` characters.
fn first_line(text: &str, max_chars: usize) -> Cow<'_, str> {
    let text = text.trim();
    let line = match text.find(['\n', '\r']) {
        Some(end) => Cow::Owned(format!("{} …", text[..end].trim_end())),
        None => Cow::Borrowed(text),
    };
    match line {
        Cow::Borrowed(line) if line.chars().count() <= max_chars => Cow::Borrowed(line),
        line => Cow::Owned(truncate_chars(line.into_owned(), max_chars)),
    }
}

/// `text` cut to `max_chars` characters, the last of them `…` when cut.
fn truncate_chars(mut text: String, max_chars: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        let keep = text[..at]
            .char_indices()
            .nth(max_chars.saturating_sub(1))
            .map_or(at, |(i, _)| i);
        text.truncate(keep);
        text.push('…');
    }
    text
}

/// Slack's escaping: `&`, `<` and `>` are control characters in message text.
fn escape_slack(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// A sliding window of what was sent in the last minute.
#[derive(Debug, Default)]
struct RateWindow {
    sent: VecDeque<(Instant, u32)>,
}

impl RateWindow {
    fn used(&mut self, now: Instant) -> u64 {
        while let Some((at, _)) = self.sent.front()
            && now.saturating_duration_since(*at) >= WINDOW
        {
            self.sent.pop_front();
        }
        self.sent.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    fn record(&mut self, now: Instant, alerts: u32) {
        // Also forgets what left the window, so that an unlimited output keeps nothing.
        self.used(now);
        if alerts > 0 {
            self.sent.push_back((now, alerts));
        }
    }
}

/// How values are rendered into a template.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// As they are.
    Raw,
    /// Each value cut to its first line, the whole to `max_chars`; with `slack`, values
    /// escaped for Slack.
    Line { max_chars: usize, slack: bool },
}

impl Style {
    /// `template` for one event, its values rendered in this style.
    fn render(
        self,
        template: &FieldTemplate,
        tag: &str,
        time: EventTime,
        record: &Record,
    ) -> String {
        let mut out = String::new();
        for piece in template.render(tag, time, record) {
            match (piece, self) {
                (Rendered::Text(text), _) => out.push_str(text),
                (Rendered::Value(value), Style::Raw) => out.push_str(&value),
                (Rendered::Value(value), Style::Line { max_chars, slack }) => {
                    let line = first_line(&value, max_chars);
                    if slack {
                        escape_slack(&line, &mut out);
                    } else {
                        out.push_str(&line);
                    }
                }
            }
        }
        match self {
            Style::Raw => out,
            Style::Line { max_chars, .. } => truncate_chars(out, max_chars),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record::from(vec![
            ("level".to_owned(), Value::from("warn")),
            ("tag".to_owned(), Value::from("in-record")),
            (
                "k8s".to_owned(),
                Value::Map(vec![("pod".to_owned(), Value::from("api-1"))]),
            ),
            (
                "log".to_owned(),
                Value::from("boom <!channel> & co\n  at x\n"),
            ),
            ("n".to_owned(), Value::UInt(3)),
            ("empty".to_owned(), Value::from("")),
        ])
    }

    fn render(template: &str, style: Style) -> String {
        style.render(
            &FieldTemplate::parse(template).unwrap(),
            "app.web",
            EventTime::new(1_700_000_000, 5),
            &record(),
        )
    }

    #[test]
    fn templates_read_fields_paths_alternatives_and_the_event() {
        assert_eq!(
            render(
                "{{level}} {{k8s.pod}} {{missing}}|{{n}} {{tag}} {{record.tag}} {{time}}",
                Style::Raw
            ),
            "warn api-1 |3 app.web in-record 2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(
            render(
                "{{ missing | empty | 'none' }} {{missing|k8s.pod}} {{k8s}}",
                Style::Raw
            ),
            "none api-1 {\"pod\":\"api-1\"}"
        );
        assert_eq!(render("plain", Style::Raw), "plain");
    }

    #[test]
    fn slack_lines_cut_values_and_escape_them_but_not_the_template() {
        let style = Style::Line {
            max_chars: 500,
            slack: true,
        };
        assert_eq!(
            render("<!here> {{log}}", style),
            "<!here> boom &lt;!channel&gt; &amp; co …"
        );
        let long = Style::Line {
            max_chars: 6,
            slack: false,
        };
        assert_eq!(render("{{log}}", long), "boom …");
        assert_eq!(render("x{{log}}", long), "xboom…");
    }

    #[test]
    fn template_errors_say_what_is_wrong() {
        assert!(
            FieldTemplate::parse("{{level")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            FieldTemplate::parse("{{}}")
                .unwrap_err()
                .contains("empty placeholder")
        );
        assert!(
            FieldTemplate::parse("{{a||b}}")
                .unwrap_err()
                .contains("empty placeholder")
        );
        assert!(
            FieldTemplate::parse("{{a..b}}")
                .unwrap_err()
                .contains("not a field path")
        );
        assert!(
            FieldTemplate::parse("{{\"x}}")
                .unwrap_err()
                .contains("unclosed quote")
        );
        assert!(FieldTemplate::parse(DEFAULT_TEMPLATE).is_ok());
    }

    #[test]
    fn levels_map_to_pagerduty_severities() {
        for (level, severity) in [
            ("FATAL", "critical"),
            ("crit", "critical"),
            ("ERROR", "error"),
            ("err", "error"),
            ("Warning", "warning"),
            ("info", "info"),
            ("debug", "info"),
            ("3", "error"),
            ("4", "warning"),
            ("6", "info"),
            ("60", "critical"),
            ("50", "error"),
            ("40", "warning"),
            ("30", "info"),
            ("weird", "error"),
        ] {
            assert_eq!(pagerduty_severity(level), severity, "{level}");
        }
    }

    #[test]
    fn the_window_slides() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        window.record(start, 3);
        window.record(start + Duration::from_secs(30), 2);
        assert_eq!(window.used(start + Duration::from_secs(59)), 5);
        assert_eq!(window.used(start + Duration::from_secs(60)), 2);
        assert_eq!(window.used(start + Duration::from_secs(90)), 0);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("ééééé".into(), 3), "éé…");
        assert_eq!(truncate_chars("ééé".into(), 3), "ééé");
        assert_eq!(first_line("  a\r\nb", 10), "a …");
    }
}
