//! `[sources.NAME]`: every kind of source, one variant each.

use bytesize::ByteSize;
use serde::Deserialize;

use crate::forward::ForwardSourceConfig;
use crate::http::HttpSourceConfig;
use crate::loki::LokiConfig;
use crate::otlp::OtlpConfig;
use crate::syslog::SyslogConfig;
use crate::tail::TailConfig;

/// `[sources.NAME]`: an input.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// The Fluentd Forward protocol, TCP (and the UDP heartbeat on the same port).
    Forward(ForwardSourceConfig),
    /// Fluentd's `in_http`.
    Http(HttpSourceConfig),
    /// Syslog (RFC 5424, RFC 3164) over UDP, TCP or TLS.
    Syslog(SyslogConfig),
    /// Files, tailed.
    Tail(TailConfig),
    /// OpenTelemetry logs over OTLP (HTTP and gRPC).
    Otlp(OtlpConfig),
    /// Grafana Loki's push API (`POST /loki/api/v1/push`).
    Loki(LokiConfig),
}

impl SourceConfig {
    /// The route label the source's events carry ("" for the default routes).
    pub fn label(&self) -> &str {
        match self {
            SourceConfig::Forward(c) => &c.label,
            SourceConfig::Http(c) => &c.label,
            SourceConfig::Syslog(c) => &c.label,
            SourceConfig::Tail(c) => &c.label,
            SourceConfig::Otlp(c) => &c.label,
            SourceConfig::Loki(c) => &c.label,
        }
    }

    /// Checks what the types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SourceConfig::Tail(tail) => tail.validate(),
            SourceConfig::Syslog(syslog) => syslog.validate(),
            SourceConfig::Otlp(otlp) => otlp.validate(),
            SourceConfig::Loki(loki) => loki.validate(),
            SourceConfig::Forward(_) | SourceConfig::Http(_) => Ok(()),
        }
    }

    /// The setting that bounds the largest input the source stores in one log record, and its
    /// value: a Forward frame, an HTTP or OTLP request, a syslog message, a tailed line.
    pub fn largest_input(&self) -> (&'static str, ByteSize) {
        match self {
            SourceConfig::Forward(c) => ("max_frame_size", c.max_frame_size),
            SourceConfig::Http(c) => ("max_body_size", c.max_body_size),
            SourceConfig::Syslog(c) => ("max_message_size", c.max_message_size),
            SourceConfig::Tail(c) => ("max_line_size", c.max_line_size),
            SourceConfig::Otlp(c) => ("max_request_size", c.max_request_size),
            SourceConfig::Loki(c) => ("max_body_size", c.max_body_size),
        }
    }
}
