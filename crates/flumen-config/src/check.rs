//! [`ServerConfig::check`]: everything the types alone cannot say, checked once, and what a
//! check compiles kept in the [`ServerSpec`].

use std::collections::BTreeMap;
use std::sync::Arc;

use flumen_process::Pipeline;
use flumen_routing::{RouteKey, RouteSpec, RouteTable};
use flumen_sinks::OutputSpec;

use crate::settings::{PersistenceMode, ServerConfig, WhenFull};
use crate::spec::ServerSpec;

/// One step of the path to a value in the configuration: a table's key or an array's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A key of a table (`sources`, then the source's name).
    Name(String),
    /// An element of an array (`routes`, then the route's index).
    Index(usize),
}

/// A configuration that cannot run: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidConfig {
    /// The path to the value at fault (`["routes", 0, "outputs", 1]`); empty when no one
    /// value is.
    pub at: Vec<Key>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl InvalidConfig {
    fn new(at: Vec<Key>, message: String) -> Self {
        Self { at, message }
    }
}

/// `["sources", name]` and the like, shortly.
fn path<const N: usize>(keys: [Key; N]) -> Vec<Key> {
    keys.into()
}

fn name(key: &str) -> Key {
    Key::Name(key.to_owned())
}

impl ServerConfig {
    /// Checks the configuration and compiles it into what a server runs.
    pub fn check(&self) -> Result<ServerSpec, InvalidConfig> {
        for (source_name, source) in &self.sources {
            let at = || path([name("sources"), name(source_name)]);
            check_name("source", source_name).map_err(|m| InvalidConfig::new(at(), m))?;
            source
                .validate()
                .map_err(|m| InvalidConfig::new(at(), format!("sources.{source_name}: {m}")))?;
        }
        let outputs = self.check_outputs()?;
        let routes = self.check_routes()?;
        let pipeline = self.pipeline()?;
        let wal = self.wal_config();
        wal.validate()
            .map_err(|e| InvalidConfig::new(Vec::new(), e.to_string()))?;
        self.check_inputs_fit_in_the_log(wal.largest_record())?;
        let store = self.store_config()?;
        let deployments_database = self.deployments_database()?;
        let routes = if store.is_some() {
            routes.with_store()
        } else {
            routes
        };
        Ok(ServerSpec {
            store,
            deployments_database,
            data_dir: self.data_dir.clone(),
            wal,
            api_address: self.api.address,
            max_live_streams: self.api.max_live_streams,
            sources: self.sources.clone(),
            outputs,
            routes: Arc::new(routes),
            pipeline: Arc::new(pipeline),
            shutdown_timeout: self.shutdown_timeout,
        })
    }

    fn check_outputs(&self) -> Result<BTreeMap<String, OutputSpec>, InvalidConfig> {
        let mut outputs = BTreeMap::new();
        for (output_name, output) in &self.outputs {
            let at = || path([name("outputs"), name(output_name)]);
            check_name("output", output_name).map_err(|m| InvalidConfig::new(at(), m))?;
            let spec = output
                .check()
                .map_err(|m| InvalidConfig::new(at(), format!("outputs.{output_name}.{m}")))?;
            outputs.insert(output_name.clone(), spec);
        }
        Ok(outputs)
    }

    /// Checks that routes have a pattern and name labels that exist, and compiles them into the
    /// route table the server runs (which refuses outputs that do not exist).
    fn check_routes(&self) -> Result<RouteTable, InvalidConfig> {
        let labels: Vec<&str> = self.sources.values().map(|s| s.label()).collect();
        for (i, route) in self.routes.iter().enumerate() {
            let at = |key: &str| vec![name("routes"), Key::Index(i), name(key)];
            if route.patterns.is_empty() {
                return Err(InvalidConfig::new(
                    Vec::new(),
                    format!("routes[{i}].match: at least one pattern is needed"),
                ));
            }
            if let Some(label) = &route.label
                && !labels.contains(&label.as_str())
            {
                return Err(InvalidConfig::new(
                    at("label"),
                    format!("routes[{i}].label: no source has the label {label:?}"),
                ));
            }
        }
        let specs: Vec<RouteSpec> = self.routes.iter().map(|route| route.to_spec()).collect();
        let output_names: Vec<String> = self.outputs.keys().cloned().collect();
        RouteTable::new(&specs, &output_names).map_err(|error| {
            let mut at = vec![name("routes"), Key::Index(error.route)];
            match error.at {
                RouteKey::Output(j) => at.extend([name("outputs"), Key::Index(j)]),
                RouteKey::Pattern(j) => at.extend([name("match"), Key::Index(j)]),
                RouteKey::Select => at.push(name("select")),
            }
            InvalidConfig::new(at, error.to_string())
        })
    }

    /// Refuses a source whose largest input could never fit in the log: it would wait for
    /// room that never comes, holding its sender (and a stop) for ever.
    fn check_inputs_fit_in_the_log(&self, largest_record: u64) -> Result<(), InvalidConfig> {
        for (source_name, source) in &self.sources {
            let (key, limit) = source.largest_input();
            if limit.as_u64() > largest_record {
                return Err(InvalidConfig::new(
                    path([name("sources"), name(source_name)]),
                    format!(
                        "sources.{source_name}.{key} ({limit}) is more than the log can ever hold in one record: {largest_record} bytes, from log.max_size ({}) less one log.segment_size ({}), and at most half of log.max_size; lower sources.{source_name}.{key} or raise log.max_size",
                        self.log.max_size, self.log.segment_size,
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The compiled filters.
    fn pipeline(&self) -> Result<Pipeline, InvalidConfig> {
        Pipeline::new(&self.filters).map_err(|e| {
            InvalidConfig::new(
                path([name("filters"), Key::Index(e.index)]),
                format!("filters[{}] ({}): {}", e.index, e.name, e.message),
            )
        })
    }

    /// The store's settings in the form the store takes; `None` when it is off.
    /// The catalogue's database URL, `None` when deployments are off.
    fn deployments_database(&self) -> Result<Option<String>, InvalidConfig> {
        let database = self.deployments.database.trim();
        let at = || path([name("deployments"), name("database")]);
        match database {
            "off" => Ok(None),
            "sqlite" => Ok(Some(crate::spec::sqlite_catalogue(&self.data_dir))),
            url if url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://") =>
            {
                Ok(Some(url.to_owned()))
            }
            other => Err(InvalidConfig::new(
                at(),
                format!(
                    "deployments.database: {other:?} is none of \"sqlite\", \"off\", a sqlite:// or a postgres:// URL"
                ),
            )),
        }
    }

    fn store_config(&self) -> Result<Option<flumen_store::StoreConfig>, InvalidConfig> {
        let Some(settings) = self.store.as_ref().filter(|s| s.enabled) else {
            return Ok(None);
        };
        let retention = |r: &crate::settings::RetentionSettings| flumen_store::Retention {
            max_age: r.max_age,
            max_bytes: r.max_size.map(|s| s.as_u64()),
        };
        let config = flumen_store::StoreConfig {
            dir: settings
                .dir
                .clone()
                .unwrap_or_else(|| crate::spec::store_dir(&self.data_dir)),
            labels: settings.labels.clone(),
            indexed_fields: settings.indexed_fields.clone(),
            flush_interval: settings.flush_interval,
            flush_size: usize::try_from(settings.flush_size.as_u64()).unwrap_or(usize::MAX),
            compression_level: settings.compression_level,
            retention: retention(&settings.retention),
            tenant_retention: settings
                .tenants
                .iter()
                .map(|(tenant, t)| (tenant.clone(), retention(&t.retention)))
                .collect(),
            max_limit: settings.max_limit,
            query_timeout: settings.query_timeout,
        };
        config
            .validate()
            .map_err(|m| InvalidConfig::new(path([name("store")]), m))?;
        Ok(Some(config))
    }

    /// The log's settings in the form the log takes.
    fn wal_config(&self) -> flumen_wal::WalConfig {
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
            ..flumen_wal::WalConfig::new(crate::spec::wal_dir(&self.data_dir))
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
