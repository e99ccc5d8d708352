//! The TOML front end: text to [`ServerSpec`], every error naming the file and the line.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::check::{InvalidConfig, Key};
use crate::settings::ServerConfig;
use crate::spec::ServerSpec;

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

impl ServerSpec {
    /// Reads and checks a configuration file.
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
        Self::parse(crate::DEFAULT_CONFIG, "<default>").expect("the embedded default is valid")
    }

    /// Parses and checks configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let error_at = |span: Option<Range<usize>>, message: String| ConfigError {
            file: file.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let config: ServerConfig = toml::from_str(text).map_err(|e| {
            let message = match e.span().and_then(|span| key_at(text, span.start)) {
                Some(key) if !e.message().contains(&format!("`{key}`")) => {
                    format!("{key}: {}", e.message())
                }
                _ => e.message().to_owned(),
            };
            error_at(e.span(), message)
        })?;
        config
            .check()
            .map_err(|InvalidConfig { at, message }| error_at(span_of(text, &at), message))
    }
}

/// Where in `text` the value at `path` is written; `None` for an empty path.
fn span_of(text: &str, path: &[Key]) -> Option<Range<usize>> {
    if path.is_empty() {
        return None;
    }
    // Parsed again only for an error's position: the text parsed once already.
    let root = DeTable::parse(text).ok()?;
    let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let mut here = &root;
    for key in path {
        here = match (here.get_ref(), key) {
            (DeValue::Table(table), Key::Name(name)) => {
                table.iter().find(|(k, _)| k.get_ref() == name)?.1
            }
            (DeValue::Array(array), Key::Index(i)) => array.get(*i)?,
            _ => return None,
        };
    }
    Some(here.span())
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
