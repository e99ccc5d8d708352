//! `type = "syslog"`: the syslog source's settings.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use flumen_parse::TimeParser;
use serde::Deserialize;

use super::TagTemplate;
use crate::net::TlsConfig;

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// The transport: `udp` (the default, as for Fluentd's `in_syslog` and `logger`), `tcp` or
    /// `tls`.
    #[serde(default)]
    pub mode: SyslogMode,
    /// Listen address; `0.0.0.0:5140` for `udp` and `tcp` (Fluentd's port: 514 needs root),
    /// `0.0.0.0:6514` for `tls` (RFC 5425).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// The route label of this source's events.
    #[serde(default)]
    pub label: String,
    /// The events' tag. `{facility}`, `{severity}`, `{app_name}` and `{hostname}` are replaced
    /// by the message's (characters other than letters, digits, `-` and `_` become `_`;
    /// `unknown` when the message has none): `"syslog.{facility}.{severity}"` gives Fluentd's
    /// `in_syslog` tags (`syslog.local0.err`), `"syslog.{app_name}"` one tag per program.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// TCP and TLS: `auto` (each frame that starts with digits and a space is octet-counted,
    /// any other is newline-delimited), `octet_counting` or `newline`.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// The longest message kept whole; longer ones are cut (see the module documentation).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: ByteSize,
    /// UTC offset of RFC 3164 timestamps, which carry none (`+02:00`, `-0500`, `UTC`); UTC
    /// when unset.
    #[serde(default)]
    pub timezone: Option<String>,
    /// TCP and TLS: the most connections served at once; more wait in the listen backlog.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// TCP and TLS: close a connection that sent nothing for this long.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// With `mode = "tls"`: the server certificate and key, and the CAs of required client
    /// certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl SyslogConfig {
    /// Checks what can be checked without binding (`flumen validate` calls this too); the
    /// certificate files are read when the source starts.
    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(drop)
    }

    /// The checked configuration's tag template and time parser.
    pub(super) fn compile(&self) -> Result<(TagTemplate, TimeParser), String> {
        let tag = TagTemplate::parse(&self.tag)?;
        let time = self.time_parser()?;
        let max = self.max_message_size.as_u64();
        if max == 0 || max > MAX_MESSAGE_SIZE_LIMIT {
            return Err(format!(
                "max_message_size = {}: expected 1 B to {}",
                self.max_message_size,
                ByteSize::b(MAX_MESSAGE_SIZE_LIMIT)
            ));
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1".to_owned());
        }
        match self.mode {
            SyslogMode::Udp => {
                let stream_only = [
                    ("framing", self.framing.is_some()),
                    ("max_connections", self.max_connections.is_some()),
                    ("idle_timeout", self.idle_timeout.is_some()),
                ];
                if let Some((key, _)) = stream_only.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "{key} applies to mode = \"tcp\" or \"tls\", not \"udp\""
                    ));
                }
                if self.tls.is_some() {
                    return Err("tls is set but mode is \"udp\"; use mode = \"tls\"".to_owned());
                }
            }
            SyslogMode::Tcp if self.tls.is_some() => {
                return Err("tls is set but mode is \"tcp\"; use mode = \"tls\"".to_owned());
            }
            SyslogMode::Tcp => {}
            SyslogMode::Tls if self.tls.is_none() => {
                return Err(
                    "mode = \"tls\" needs tls = { cert_file = \"server.pem\", key_file = \"server.key\" }"
                        .to_owned(),
                );
            }
            SyslogMode::Tls => {}
        }
        Ok((tag, time))
    }

    /// How RFC 5424 and RFC 3164 times are read, in the configured time zone.
    fn time_parser(&self) -> Result<TimeParser, String> {
        TimeParser::new(
            &["rfc3339".to_owned(), "syslog".to_owned()],
            self.timezone.as_deref(),
        )
    }
}

/// The transport of a syslog source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogMode {
    /// Datagrams (RFC 5426).
    #[default]
    Udp,
    /// TCP (RFC 6587).
    Tcp,
    /// TLS over TCP (RFC 5425).
    Tls,
}

/// How messages are delimited on a TCP or TLS stream (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Per frame: octet-counted when it starts with digits and a space, else a line.
    #[default]
    Auto,
    /// `LEN SP MSG` only (RFC 5425, RFC 6587 §3.4.1).
    OctetCounting,
    /// Newline-delimited only (RFC 6587 §3.4.2, "non-transparent framing").
    Newline,
}

fn default_tag() -> String {
    "syslog".to_owned()
}

fn default_max_message_size() -> ByteSize {
    ByteSize::kib(64)
}

/// The largest `max_message_size` accepted.
const MAX_MESSAGE_SIZE_LIMIT: u64 = 16 * 1024 * 1024;
