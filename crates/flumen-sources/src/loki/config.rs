//! `type = "loki"`: the Loki push source's settings.

use std::net::SocketAddr;

use bytesize::ByteSize;
use serde::Deserialize;

use super::TagTemplate;

/// `type = "loki"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Listen address (Loki's port by default).
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// The route label of this source's events.
    #[serde(default)]
    pub label: String,
    /// The events' tag. `{name}` is replaced by the stream's label `name` (after the canonical
    /// fields are filled, so `{service}` works for streams labelled `service_name`; characters
    /// other than letters, digits, `-` and `_` become `_`; `unknown` when the stream has no
    /// such label): `"loki.{job}"` gives one tag per job. Default `loki`, one tag for all
    /// (route on content, `select = '{job="api"}'`, to tell streams apart).
    #[serde(default = "default_tag")]
    pub tag: String,
    /// The largest request body, as sent and decompressed (HTTP 413 past it).
    #[serde(default = "default_max_body_size")]
    pub max_body_size: ByteSize,
}

impl Default for LokiConfig {
    /// The settings of the push route the API port serves.
    fn default() -> Self {
        Self {
            address: default_address(),
            label: String::new(),
            tag: default_tag(),
            max_body_size: default_max_body_size(),
        }
    }
}

impl LokiConfig {
    /// Checks the settings without binding (`flumen validate` calls this too).
    pub fn validate(&self) -> Result<(), String> {
        self.tag_template().map(drop)?;
        if self.max_body_size.as_u64() == 0 || self.max_body_size > ByteSize::gib(1) {
            return Err("max_body_size must be between 1 byte and 1 GiB".to_owned());
        }
        Ok(())
    }

    /// The checked tag template.
    pub(super) fn tag_template(&self) -> Result<TagTemplate, String> {
        TagTemplate::parse(&self.tag)
    }

    /// The body limit in bytes.
    pub(super) fn max_body(&self) -> usize {
        usize::try_from(self.max_body_size.as_u64()).unwrap_or(usize::MAX)
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 3100))
}

fn default_tag() -> String {
    "loki".to_owned()
}

fn default_max_body_size() -> ByteSize {
    ByteSize::mib(16)
}
