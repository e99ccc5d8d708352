//! Configuration: one TOML file, read in two stages.
//!
//! [`Config::parse`] deserializes the raw file (serde rejects unknown keys and wrong types with
//! the line and the key), then [`Config::validate`] checks what types cannot: that routes name
//! outputs that exist, that patterns compile, that sizes fit together. Every error names the
//! file and the line. The reference documentation is `docs/configuration.md`; the doc comments
//! here say the same.
//!
//! With no file at all, flumen runs [`DEFAULT_CONFIG`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
pub use flumen_routing::RouteSpec;
pub use flumen_sinks::config::{
    BatchConfig, DeliveryOnlyConfig, FileCompression, OutputConfig, RetryConfig,
};
pub use flumen_sources::SourceConfig;
use serde::Deserialize;
use toml::Spanned;

/// The configuration `flumen serve` runs when given no file.
pub const DEFAULT_CONFIG: &str = r#"# flumen's embedded default: Forward on 24224, Fluentd-style HTTP on 9880, the API on
# 8080, data in ./flumen-data, everything to stdout.
data_dir = "./flumen-data"

[api]
address = "0.0.0.0:8080"

[sources.forward]
type = "forward"
address = "0.0.0.0:24224"

[sources.http]
type = "http"
address = "0.0.0.0:9880"

[outputs.stdout]
type = "stdout"

[[routes]]
match = ["**"]
outputs = ["stdout"]
"#;

/// A configuration error, naming where in which file.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file ("<default>" for the embedded one).
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where flumen keeps its durable log, cursors, dead letters and identity.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The durable log between inputs and outputs.
    #[serde(default)]
    pub log: LogConfig,
    /// The operations API: health, readiness, metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// Inputs, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<SourceConfig>>,
    /// Outputs, by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Spanned<OutputConfig>>,
    /// Routes, tried in order: an event goes to the outputs of the first route that matches.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Processing steps, in order, between the sources and the log.
    #[serde(default)]
    pub filters: Vec<Spanned<flumen_process::FilterConfig>>,
    /// How long a graceful shutdown may take to drain outputs.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./flumen-data")
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}

/// When appends to the log are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersistenceMode {
    /// fsync before every acknowledgement (appends waiting together share one fsync).
    Always,
    /// fsync every `fsync_interval`, and at once when an append is waited on before it is
    /// synced; acknowledgements wait for an fsync covering their events, not for the interval.
    #[default]
    Interval,
    /// Leave it to the operating system: survives a crash of flumen, not of the machine.
    Os,
}

/// What inputs do when the log is at `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading sockets and answer HTTP 503 until outputs catch up. Nothing is dropped.
    #[default]
    Block,
    /// Drop new events (acknowledged, counted) until there is room; what is stored stays.
    DropNewest,
    /// Remove the oldest segment of the log, even if outputs have not delivered it, to take
    /// new events (counted).
    DropOldest,
}

/// `[log]`: the durable log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `always`, `interval` or `os`.
    pub persistence: PersistenceMode,
    /// With `persistence = "interval"`: how often to fsync.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// The most disk the log may use.
    pub max_size: ByteSize,
    /// The size at which a segment file is closed and a new one started.
    pub segment_size: ByteSize,
    /// What happens when the log is full.
    pub when_full: WhenFull,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            persistence: PersistenceMode::Interval,
            fsync_interval: Duration::from_millis(100),
            max_size: ByteSize::gib(2),
            segment_size: ByteSize::mib(64),
            when_full: WhenFull::Block,
        }
    }
}

/// `[api]`: the operations endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address for `/healthz`, `/readyz` and `/metrics`.
    pub address: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            address: "0.0.0.0:8080".parse().expect("valid address"),
        }
    }
}

/// `[[routes]]`: where events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Applies only to sources with this label (none: sources without a label).
    #[serde(default)]
    pub label: Option<Spanned<String>>,
    /// Fluentd tag patterns: `*` one tag part, `**` zero or more parts, `{a,b}` either.
    #[serde(rename = "match")]
    pub patterns: Vec<Spanned<String>>,
    /// Only events this selector matches take the route (`{level=~"ERROR|FATAL"}`, see
    /// `flumen_select`); the others go on to the next route that matches their tag.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// Every output here gets a copy.
    pub outputs: Vec<Spanned<String>>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: e.to_string(),
        })?;
        Self::parse(&text, &file)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Self {
        Self::parse(DEFAULT_CONFIG, "<default>").expect("the embedded default is valid")
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let error_at = |span: Option<std::ops::Range<usize>>, message: String| ConfigError {
            file: file.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = match e.span().and_then(|span| key_at(text, span.start)) {
                Some(key) if !e.message().contains(&format!("`{key}`")) => {
                    format!("{key}: {}", e.message())
                }
                _ => e.message().to_owned(),
            };
            error_at(e.span(), message)
        })?;
        config
            .validate()
            .map_err(|(span, message)| error_at(span, message))?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    fn validate(&self) -> Result<(), (Option<std::ops::Range<usize>>, String)> {
        let span_of = |s: &Spanned<String>| Some(s.span());
        for (name, source) in &self.sources {
            check_name("source", name).map_err(|m| (Some(source.span()), m))?;
            let checked = source.get_ref().validate();
            checked.map_err(|m| (Some(source.span()), format!("sources.{name}: {m}")))?;
        }
        for (name, output) in &self.outputs {
            check_name("output", name).map_err(|m| (Some(output.span()), m))?;
            output
                .get_ref()
                .validate()
                .map_err(|m| (Some(output.span()), format!("outputs.{name}.{m}")))?;
        }
        let labels: Vec<&str> = self.sources.values().map(|s| s.get_ref().label()).collect();
        for (i, route) in self.routes.iter().enumerate() {
            for output in &route.outputs {
                if !self.outputs.contains_key(output.get_ref()) {
                    return Err((
                        span_of(output),
                        format!(
                            "routes[{i}].outputs: no output is named {:?}",
                            output.get_ref()
                        ),
                    ));
                }
            }
            for pattern in &route.patterns {
                crate::routing::TagPattern::parse(pattern.get_ref())
                    .map_err(|e| (span_of(pattern), format!("routes[{i}].match: {e}")))?;
            }
            if route.patterns.is_empty() {
                return Err((
                    None,
                    format!("routes[{i}].match: at least one pattern is needed"),
                ));
            }
            if let Some(select) = &route.select {
                flumen_select::Selector::parse(select.get_ref())
                    .map_err(|e| (span_of(select), format!("routes[{i}].select: {e}")))?;
            }
            if let Some(label) = &route.label
                && !labels.contains(&label.get_ref().as_str())
            {
                return Err((
                    span_of(label),
                    format!(
                        "routes[{i}].label: no source has the label {:?}",
                        label.get_ref()
                    ),
                ));
            }
        }
        self.pipeline()?;
        let wal = self.wal_config();
        wal.validate().map_err(|e| (None, e.to_string()))?;
        self.check_inputs_fit_in_the_log(wal.largest_record())
    }

    /// Refuses a source whose largest input could never fit in the log: it would wait for
    /// room that never comes, holding its sender (and a stop) for ever.
    fn check_inputs_fit_in_the_log(
        &self,
        largest_record: u64,
    ) -> Result<(), (Option<std::ops::Range<usize>>, String)> {
        for (name, source) in &self.sources {
            let (key, limit) = source.get_ref().largest_input();
            if limit.as_u64() > largest_record {
                return Err((
                    Some(source.span()),
                    format!(
                        "sources.{name}.{key} ({limit}) is more than the log can ever hold in one record: {largest_record} bytes, from log.max_size ({}) less one log.segment_size ({}), and at most half of log.max_size; lower sources.{name}.{key} or raise log.max_size",
                        self.log.max_size, self.log.segment_size,
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The compiled filters.
    pub fn pipeline(
        &self,
    ) -> Result<flumen_process::Pipeline, (Option<std::ops::Range<usize>>, String)> {
        let filters: Vec<_> = self.filters.iter().map(|f| f.get_ref().clone()).collect();
        flumen_process::Pipeline::new(&filters).map_err(|e| {
            (
                Some(self.filters[e.index].span()),
                format!("filters[{}] ({}): {}", e.index, e.name, e.message),
            )
        })
    }

    /// The routes, as the route table takes them.
    pub fn route_specs(&self) -> Vec<RouteSpec> {
        self.routes
            .iter()
            .map(|route| RouteSpec {
                label: route
                    .label
                    .as_ref()
                    .map(|label| label.get_ref().clone())
                    .unwrap_or_default(),
                patterns: route.patterns.iter().map(|p| p.get_ref().clone()).collect(),
                select: route.select.as_ref().map(|s| s.get_ref().clone()),
                outputs: route.outputs.iter().map(|o| o.get_ref().clone()).collect(),
            })
            .collect()
    }

    /// The log's settings in the form the log takes.
    pub fn wal_config(&self) -> flumen_wal::WalConfig {
        let persistence = match self.log.persistence {
            PersistenceMode::Always => flumen_wal::Persistence::Always,
            PersistenceMode::Interval => flumen_wal::Persistence::Interval(self.log.fsync_interval),
            PersistenceMode::Os => flumen_wal::Persistence::Os,
        };
        flumen_wal::WalConfig {
            persistence,
            segment_size: self.log.segment_size.as_u64(),
            max_size: self.log.max_size.as_u64(),
            when_full: match self.log.when_full {
                WhenFull::Block => flumen_wal::WhenFull::Block,
                WhenFull::DropNewest => flumen_wal::WhenFull::DropNewest,
                WhenFull::DropOldest => flumen_wal::WhenFull::DropOldest,
            },
            ..flumen_wal::WalConfig::new(self.data_dir.join("wal"))
        }
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} must be letters, digits, '_', '-' or '.'"
        ))
    }
}

/// The key (`persistence`) or table (`outputs.front`) written on the line holding `offset`, so
/// that a bad value's error names what it is the value of.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim();
    if let Some(table) = line.strip_prefix('[') {
        let table = table.trim_start_matches('[');
        return Some(table.split(']').next()?.trim().to_owned());
    }
    let key = line.split('=').next()?.trim();
    (!key.is_empty() && line.contains('=')).then(|| key.trim_matches('"').to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid() {
        let config = Config::embedded_default();
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.api.address.port(), 8080);
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let text = "data_dir = \"/tmp/x\"\n[outputs.a]\ntype = \"stdout\"\nbogus = 1\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        // Inside a `type`-tagged table the error points at the table's header.
        assert!(err.starts_with("f.toml:2: outputs.a: "), "{err}");
        assert!(err.contains("unknown field `bogus`"), "{err}");

        let text = "[outputs.a]\ntype = \"stdout\"\n\n[[routes]]\nmatch = [\"**\"]\noutputs = [\"a\", \"b\"]\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("f.toml:6: "), "{err}");
        assert!(err.contains("no output is named \"b\""), "{err}");

        let text = "[log]\nmax_size = \"lots\"\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("f.toml:2: max_size: "), "{err}");

        let text = "[log]\npersistence = \"sometimes\"\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("f.toml:2: persistence: unknown variant"),
            "{err}"
        );
    }

    #[test]
    fn an_input_limit_the_log_could_never_hold_is_refused_naming_the_keys() {
        let log = "[log]\nmax_size = \"8MiB\"\nsegment_size = \"2MiB\"\n";
        for (source, key) in [
            ("type = \"forward\"", "max_frame_size"),
            ("type = \"http\"", "max_body_size"),
            ("type = \"otlp\"", "max_request_size"),
            ("type = \"syslog\"", "max_message_size"),
            (
                "type = \"tail\"\npaths = [\"/var/log/*.log\"]",
                "max_line_size",
            ),
        ] {
            let text = format!("{log}[sources.big]\n{source}\n{key} = \"7MiB\"\n");
            let err = Config::parse(&text, "f.toml").unwrap_err().to_string();
            assert!(err.starts_with("f.toml:4: "), "{err}");
            for named in [
                &format!("sources.big.{key} (7.0 MiB)")[..],
                "log.max_size (8.0 MiB)",
                "log.segment_size (2.0 MiB)",
            ] {
                assert!(err.contains(named), "{named:?} not in {err}");
            }
            // What fits beside a full segment is accepted.
            let text = format!("{log}[sources.big]\n{source}\n{key} = \"3MiB\"\n");
            Config::parse(&text, "f.toml").unwrap();
        }
        // Two records as large as the input must fit together.
        let text = "[log]\nmax_size = \"8MiB\"\nsegment_size = \"1MiB\"\n[sources.f]\ntype = \"forward\"\nmax_frame_size = \"5MiB\"\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.contains("sources.f.max_frame_size (5.0 MiB)"), "{err}");
    }

    #[test]
    fn filters_keep_the_order_they_are_written_in() {
        let config = Config::parse(
            "[[filters]]\ntype = \"fields\"\nrename = { zeta = \"b\", alpha = \"zeta\" }\n",
            "t",
        )
        .unwrap();
        let flumen_process::StepConfig::Fields(fields) = &config.filters[0].get_ref().step else {
            panic!("a fields filter");
        };
        let order: Vec<&str> = fields.rename.keys().map(String::as_str).collect();
        assert_eq!(order, ["zeta", "alpha"]);
    }

    #[test]
    fn the_seed_aggregator_example_is_valid() {
        let text = include_str!("../../../examples/aggregator.toml");
        let config = Config::parse(text, "aggregator.toml").unwrap();
        assert_eq!(config.sources["forward"].get_ref().label(), "mainstream");
        assert_eq!(config.routes.len(), 3);
    }

    #[test]
    fn the_deployment_streamer_example_is_valid() {
        let text = include_str!("../../../examples/deployment-streamer.toml");
        let config = Config::parse(text, "deployment-streamer.toml").unwrap();
        assert_eq!(config.filters.len(), 6);
        assert!(config.routes[0].select.is_some());
        config.pipeline().unwrap();
    }

    #[test]
    fn a_route_label_must_belong_to_a_source() {
        let text = "[outputs.a]\ntype = \"null\"\n[[routes]]\nlabel = \"mainstream\"\nmatch = [\"**\"]\noutputs = [\"a\"]\n";
        let err = Config::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.contains("no source has the label"), "{err}");
    }
}
