//! `type = "otlp"`: the OTLP source's settings.
use super::*;

/// `type = "otlp"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The OTLP/HTTP listener (`POST /v1/logs`); `""` turns it off.
    #[serde(
        default = "default_http_address",
        deserialize_with = "optional_address"
    )]
    pub http_address: Option<SocketAddr>,
    /// The OTLP/gRPC listener; `""` turns it off.
    #[serde(
        default = "default_grpc_address",
        deserialize_with = "optional_address"
    )]
    pub grpc_address: Option<SocketAddr>,
    /// The route label of this source's events.
    #[serde(default)]
    pub label: String,
    /// The tag of every event (route on content, `{service="api"}`, to tell services apart).
    #[serde(default = "default_tag")]
    pub tag: String,
    /// The largest request, before and after decompression (HTTP 413, gRPC
    /// `RESOURCE_EXHAUSTED` past it).
    #[serde(default = "default_max_request_size")]
    pub max_request_size: ByteSize,
    /// The most attributes a resource, a scope or a log record may carry, nested map entries
    /// included; a request with more is refused whole (HTTP 400, gRPC `INVALID_ARGUMENT`).
    #[serde(default = "default_max_attributes")]
    pub max_attributes: usize,
}

impl OtlpConfig {
    /// Checks the settings without binding (`flumen validate` calls this too).
    pub fn validate(&self) -> Result<(), String> {
        if self.http_address.is_none() && self.grpc_address.is_none() {
            return Err(
                "http_address and grpc_address are both off; the source would take nothing"
                    .to_owned(),
            );
        }
        if self.tag.is_empty() {
            return Err("tag must not be empty".to_owned());
        }
        if self.max_attributes == 0 {
            return Err("max_attributes must be at least 1".to_owned());
        }
        if self.max_request_size.as_u64() == 0 || self.max_request_size > ByteSize::gib(1) {
            return Err("max_request_size must be between 1 byte and 1 GiB".to_owned());
        }
        Ok(())
    }
}

fn default_http_address() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 4318)))
}

fn default_grpc_address() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 4317)))
}

fn default_tag() -> String {
    "otlp".to_owned()
}

fn default_max_request_size() -> ByteSize {
    ByteSize::mib(4)
}

fn default_max_attributes() -> usize {
    1000
}

/// An address, or `""` for none.
fn optional_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|error| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address (\"0.0.0.0:4318\"; \"\" turns the listener off): {error}"
        ))
    })
}
