//! `type = "firehose"`: the Amazon Data Firehose output's settings.

use std::time::Duration;

use serde::Deserialize;

use crate::aws::{self, AwsAuthConfig, CredentialSource};
use crate::config::{BatchConfig, RetryConfig};
use crate::http_client::check_url;

/// `type = "firehose"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseConfig {
    /// The delivery stream (Firehose stream) records are put into.
    pub delivery_stream: String,
    /// The region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint (a VPC endpoint, LocalStack, moto): `http://127.0.0.1:4566`; by
    /// default `https://firehose.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Credentials.
    #[serde(default)]
    pub auth: AwsAuthConfig,
    /// What a record holds: the event (`{"tag","time","record"}`, as the file and S3 outputs
    /// write it) or the record alone (as Fluent Bit and fluent-plugin-kinesis send it).
    #[serde(default)]
    pub format: RecordFormat,
    /// With `format = "record"`: the field the event's time (RFC 3339) is added as (Fluent
    /// Bit's `time_key`); none by default.
    #[serde(default)]
    pub time_key: Option<String>,
    /// End each event with a newline, so that what Firehose concatenates into one S3 object
    /// is JSON lines (fluent-plugin-kinesis's `append_new_line`).
    #[serde(default = "default_true")]
    pub append_newline: bool,
    /// Pack consecutive events into one record of up to 1,000 KiB, newline-separated: fewer
    /// records, and Firehose bills each record by 5 KiB steps.
    #[serde(default)]
    pub aggregate: bool,
    /// How long one `PutRecordBatch` may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_true() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// What one event becomes in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// The event as a JSON object: `{"tag":…,"time":…,"record":{…}}`.
    #[default]
    Event,
    /// The record alone, as a JSON object.
    Record,
}

impl FirehoseConfig {
    /// Checks the settings; the error starts with the key (`delivery_stream: ...`).
    pub fn check(&self) -> Result<FirehoseSpec, String> {
        check_stream_name(&self.delivery_stream)?;
        let region = aws::region(self.region.as_deref());
        let url = match &self.endpoint {
            Some(text) => check_url("endpoint", text)?,
            None => default_endpoint(&region)
                .parse()
                .map_err(|_| format!("region: {region:?} makes no endpoint; set endpoint"))?,
        };
        match &self.time_key {
            Some(_) if self.format != RecordFormat::Record => {
                return Err(
                    "time_key: only with format = \"record\" (an event holds its time)".into(),
                );
            }
            Some(key) if key.is_empty() => return Err("time_key: empty".into()),
            _ => {}
        }
        if self.aggregate && !self.append_newline {
            return Err(
                "aggregate: events packed into one record are told apart by their \
                        newlines; it needs append_newline = true"
                    .into(),
            );
        }
        Ok(FirehoseSpec {
            credentials: self.auth.source()?,
            region,
            url,
            config: self.clone(),
        })
    }
}

/// Firehose's public endpoint in `region` (China's regions are under `amazonaws.com.cn`).
fn default_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://firehose.{region}.{domain}")
}

/// Firehose's naming rule: 1 to 64 letters, digits, `_`, `.` and `-`.
fn check_stream_name(name: &str) -> Result<(), String> {
    let allowed = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if (1..=64).contains(&name.len()) && allowed {
        Ok(())
    } else {
        Err(format!(
            "delivery_stream: {name:?} is not a delivery stream name (1 to 64 letters, digits, '_', '.' and '-')"
        ))
    }
}

/// A Firehose output's checked settings: what the sink is built from.
#[derive(Debug, Clone)]
pub struct FirehoseSpec {
    pub(crate) config: FirehoseConfig,
    pub(crate) credentials: CredentialSource,
    pub(crate) region: String,
    /// Where calls are posted.
    pub(crate) url: reqwest::Url,
}
