//! `[outputs.NAME]`: every kind of output, one variant each, and the delivery settings they
//! all have.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::file::FileOutputConfig;
use crate::forward::ForwardOutputConfig;

/// `[outputs.NAME]`: a destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputConfig {
    /// JSON lines on standard output.
    Stdout(DeliveryOnlyConfig),
    /// JSON lines in files.
    File(FileOutputConfig),
    /// The Forward protocol, to Fluentd, Fluent Bit or another flumen.
    Forward(ForwardOutputConfig),
    /// Discards events (Fluentd's `null`).
    Null(DeliveryOnlyConfig),
    /// HTTP webhooks: generic JSON, Slack, PagerDuty (alerts).
    #[cfg(feature = "webhook")]
    Webhook(crate::webhook::WebhookConfig),
    /// Grafana Loki's push API.
    #[cfg(feature = "loki")]
    Loki(crate::loki::LokiConfig),
    /// NDJSON objects in S3-compatible storage.
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Config),
    /// Elasticsearch's and OpenSearch's bulk API.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(crate::elasticsearch::ElasticsearchConfig),
    /// Amazon Data Firehose (`PutRecordBatch`).
    #[cfg(feature = "firehose")]
    Firehose(crate::firehose::FirehoseConfig),
}

impl OutputConfig {
    /// Checks what the types alone cannot, and compiles what the sink needs (a file path
    /// template, a webhook's URL and templates) once; the error starts with the key
    /// (`path: ...`).
    pub fn check(&self) -> Result<OutputSpec, String> {
        let sink = match self {
            OutputConfig::Stdout(_) => SinkSpec::Stdout,
            OutputConfig::Null(_) => SinkSpec::Null,
            OutputConfig::File(file) => SinkSpec::File(file.check()?),
            OutputConfig::Forward(forward) => {
                forward.check()?;
                SinkSpec::Forward(forward.clone())
            }
            #[cfg(feature = "webhook")]
            OutputConfig::Webhook(webhook) => SinkSpec::Webhook(Box::new(webhook.check()?)),
            #[cfg(feature = "loki")]
            OutputConfig::Loki(loki) => SinkSpec::Loki(Box::new(loki.check()?)),
            #[cfg(feature = "s3")]
            OutputConfig::S3(s3) => SinkSpec::S3(Box::new(s3.check()?)),
            #[cfg(feature = "elasticsearch")]
            OutputConfig::Elasticsearch(es) => SinkSpec::Elasticsearch(Box::new(es.check()?)),
            #[cfg(feature = "firehose")]
            OutputConfig::Firehose(firehose) => SinkSpec::Firehose(Box::new(firehose.check()?)),
        };
        let (batch, retry) = self.delivery();
        if batch.max_events == 0 {
            return Err("batch.max_events must be at least 1".into());
        }
        match batch.max_in_flight {
            Some(0) => return Err("batch.max_in_flight must be at least 1".into()),
            Some(2..) if !self.may_deliver_concurrently() => {
                return Err(
                    "batch.max_in_flight: this output delivers one batch at a time (1)".into(),
                );
            }
            _ => {}
        }
        Ok(OutputSpec {
            sink,
            batch: batch.clone(),
            retry: retry.clone(),
            max_in_flight: self.max_in_flight(),
        })
    }

    /// False for outputs that several deliveries at once would break: a file's failed write is
    /// cut back out of it, which another writer's lines would be caught in; stdout's large
    /// writes may be split, so two deliveries' lines could interleave mid-line; a webhook's
    /// alert limit counts what one sink sent.
    fn may_deliver_concurrently(&self) -> bool {
        match self {
            OutputConfig::File(_) | OutputConfig::Stdout(_) => false,
            #[cfg(feature = "webhook")]
            OutputConfig::Webhook(_) => false,
            // Each delivery is one request of its own; Loki 2.4 and later take a stream's
            // entries out of order.
            #[cfg(feature = "loki")]
            OutputConfig::Loki(_) => true,
            // Each delivery is objects of its own.
            #[cfg(feature = "s3")]
            OutputConfig::S3(_) => true,
            // Each delivery is bulk requests of its own; documents carry their index, and an
            // `_id` where order would matter.
            #[cfg(feature = "elasticsearch")]
            OutputConfig::Elasticsearch(_) => true,
            // Each delivery is calls of its own; Firehose keeps no order across calls anyway
            // (a throttled record is retried after later ones were taken).
            #[cfg(feature = "firehose")]
            OutputConfig::Firehose(_) => true,
            OutputConfig::Forward(_) | OutputConfig::Null(_) => true,
        }
    }

    /// How many deliveries the output may have in flight at once: `batch.max_in_flight`, 1 by
    /// default. More than one trades order for throughput: each delivery has its own sink (for
    /// forward, its own connection), so the receiver may store a later delivery first — and
    /// users of every output today rely on events arriving in the order they were sent.
    fn max_in_flight(&self) -> usize {
        self.delivery().0.max_in_flight.unwrap_or(1)
    }

    /// The batching and retry settings every output has.
    pub fn delivery(&self) -> (&BatchConfig, &RetryConfig) {
        match self {
            OutputConfig::Stdout(c) => (&c.batch, &c.retry),
            OutputConfig::File(c) => (&c.batch, &c.retry),
            OutputConfig::Forward(c) => (&c.batch, &c.retry),
            OutputConfig::Null(c) => (&c.batch, &c.retry),
            #[cfg(feature = "webhook")]
            OutputConfig::Webhook(c) => (&c.batch, &c.retry),
            #[cfg(feature = "loki")]
            OutputConfig::Loki(c) => (&c.batch, &c.retry),
            #[cfg(feature = "s3")]
            OutputConfig::S3(c) => (&c.batch, &c.retry),
            #[cfg(feature = "elasticsearch")]
            OutputConfig::Elasticsearch(c) => (&c.batch, &c.retry),
            #[cfg(feature = "firehose")]
            OutputConfig::Firehose(c) => (&c.batch, &c.retry),
        }
    }
}

/// An output, checked: its sink's settings in the form the sink takes, and how the driver
/// delivers to it.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// What [`crate::Sink::build`] builds the sink from.
    pub sink: SinkSpec,
    /// Batching.
    pub batch: BatchConfig,
    /// Retries.
    pub retry: RetryConfig,
    /// How many deliveries may be on their way at once (see [`OutputConfig::max_in_flight`]).
    pub max_in_flight: usize,
}

/// A sink's checked settings, one variant per kind of output.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines in files.
    File(crate::file::FileSinkSpec),
    /// The Forward protocol.
    Forward(ForwardOutputConfig),
    /// Discards events.
    Null,
    /// HTTP webhooks.
    #[cfg(feature = "webhook")]
    Webhook(Box<crate::webhook::WebhookSpec>),
    /// Grafana Loki's push API.
    #[cfg(feature = "loki")]
    Loki(Box<crate::loki::LokiSpec>),
    /// S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(Box<crate::s3::S3Spec>),
    /// Elasticsearch's and OpenSearch's bulk API.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(Box<crate::elasticsearch::ElasticsearchSpec>),
    /// Amazon Data Firehose.
    #[cfg(feature = "firehose")]
    Firehose(Box<crate::firehose::FirehoseSpec>),
}

/// How an output groups events into one delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Deliver once this many events are gathered.
    pub max_events: usize,
    /// Deliver once this many bytes (msgpack) are gathered.
    pub max_bytes: ByteSize,
    /// When the output has caught up, wait this long for more events before delivering.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How many deliveries may be on their way at once (see [`OutputConfig::max_in_flight`]
    /// for the default).
    pub max_in_flight: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_bytes: ByteSize::mib(4),
            timeout: Duration::from_millis(200),
            max_in_flight: None,
        }
    }
}

impl BatchConfig {
    /// For outputs whose deliveries are objects (S3): an object gathers up to 32 MiB or a
    /// million events, for up to five minutes (Vector's S3 sink waits 5 minutes, Fluent Bit's
    /// 10), since every object is a request and a file for whoever reads the bucket.
    pub fn for_objects() -> Self {
        Self {
            max_events: 1_000_000,
            max_bytes: ByteSize::mib(32),
            timeout: Duration::from_secs(300),
            max_in_flight: None,
        }
    }

    /// A `batch` table for objects: the keys it leaves out are [`BatchConfig::for_objects`]'s.
    pub fn for_objects_with<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Given {
            max_events: Option<usize>,
            max_bytes: Option<ByteSize>,
            #[serde(default, with = "humantime_serde")]
            timeout: Option<Duration>,
            max_in_flight: Option<usize>,
        }
        let given = Given::deserialize(deserializer)?;
        let defaults = Self::for_objects();
        Ok(Self {
            max_events: given.max_events.unwrap_or(defaults.max_events),
            max_bytes: given.max_bytes.unwrap_or(defaults.max_bytes),
            timeout: given.timeout.unwrap_or(defaults.timeout),
            max_in_flight: given.max_in_flight,
        })
    }
}

/// How an output retries a failed delivery before giving up on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The first wait after a failure.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long to keep retrying one batch; then it is written to the dead-letter file.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_duration: Duration::from_secs(3600),
        }
    }
}

/// `type = "stdout"` and `type = "null"`: nothing to set but delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryOnlyConfig {
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// File compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileCompression {
    /// Plain text.
    #[default]
    None,
    /// gzip: each delivery is appended as one gzip member, so the file is readable (`zcat`) at
    /// any time.
    Gzip,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(toml_text: &str) -> OutputConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn deliveries_in_flight_are_one_by_default_and_more_only_where_order_allows() {
        let forward = "type = \"forward\"\nservers = [{ address = \"127.0.0.1:1\" }]\n";
        assert_eq!(output(forward).max_in_flight(), 1);
        let four = output(&format!("{forward}batch = {{ max_in_flight = 4 }}"));
        assert_eq!(four.check().unwrap().max_in_flight, 4);
        let zero = output(&format!("{forward}batch = {{ max_in_flight = 0 }}"));
        assert_eq!(
            zero.check().unwrap_err(),
            "batch.max_in_flight must be at least 1"
        );
        let file = output("type = \"file\"\npath = \"/tmp/x.log\"\nbatch = { max_in_flight = 2 }");
        assert!(
            file.check()
                .unwrap_err()
                .starts_with("batch.max_in_flight: "),
            "a file output delivers one at a time"
        );
    }
}
