//! `type = "s3"`: the S3 output's settings.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::aws::{self, AwsAuthConfig, CredentialSource};
use crate::config::{BatchConfig, RetryConfig};
use crate::http_client::check_url;
use crate::template::field::FieldTemplate;

/// S3's smallest part of a multipart upload (but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// `type = "s3"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Another S3-compatible server (MinIO, Garage, Ceph): `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Address the bucket in the path (`endpoint/bucket/key`) rather than the host name
    /// (`bucket.endpoint/key`); by default, when `endpoint` is set.
    #[serde(default)]
    pub force_path_style: Option<bool>,
    /// Where objects go: a template of fields and the tag, with strftime specifiers for the
    /// event's time in UTC.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// `gzip`, `zstd` or `none`.
    #[serde(default)]
    pub compression: S3Compression,
    /// The compression level (gzip 0–9, default 6; zstd 1–19, default 3).
    #[serde(default)]
    pub compression_level: Option<u32>,
    /// Objects larger than this (compressed) are uploaded in parts of this size.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// `x-amz-storage-class` (`STANDARD_IA`, `GLACIER_IR`, …); the bucket's default if unset.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Credentials.
    #[serde(default)]
    pub auth: AwsAuthConfig,
    /// How long one request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How large an object may grow, and for how long, before it is uploaded.
    #[serde(
        default = "BatchConfig::for_objects",
        deserialize_with = "BatchConfig::for_objects_with"
    )]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_key_prefix() -> String {
    "{{tag}}/dt=%Y-%m-%d/hour=%H/".to_owned()
}

fn default_part_size() -> ByteSize {
    ByteSize::mib(16)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// How objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum S3Compression {
    /// gzip (`.ndjson.gz`), what Athena, Glue, Spark and `zcat` read.
    #[default]
    Gzip,
    /// zstd (`.ndjson.zst`): about three times quicker to write, and smaller.
    Zstd,
    /// None (`.ndjson`).
    None,
}

impl S3Compression {
    /// The object name's ending.
    pub fn extension(self) -> &'static str {
        match self {
            S3Compression::Gzip => ".ndjson.gz",
            S3Compression::Zstd => ".ndjson.zst",
            S3Compression::None => ".ndjson",
        }
    }

    /// The object's `Content-Encoding`.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            S3Compression::Gzip => Some("gzip"),
            S3Compression::Zstd => Some("zstd"),
            S3Compression::None => None,
        }
    }
}

impl S3Config {
    /// Checks the settings and compiles the key template; the error starts with the key
    /// (`bucket: ...`).
    pub fn check(&self) -> Result<S3Spec, String> {
        check_bucket(&self.bucket)?;
        let key_prefix = FieldTemplate::parse_with_strftime(&self.key_prefix)
            .map_err(|e| format!("key_prefix: {e}"))?;
        if self.key_prefix.starts_with('/') {
            return Err("key_prefix: an S3 key does not start with '/'".into());
        }
        let endpoint = match &self.endpoint {
            Some(text) => Some(check_url("endpoint", text)?),
            None => None,
        };
        let part_size = self.part_size.as_u64();
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err("part_size: S3 takes parts of 5 MiB to 5 GiB".into());
        }
        let level = self.compression_level;
        match (self.compression, level) {
            (S3Compression::Gzip, Some(10..)) => {
                return Err("compression_level: gzip's levels are 0 to 9".into());
            }
            (S3Compression::Zstd, Some(0 | 20..)) => {
                return Err("compression_level: zstd's levels are 1 to 19".into());
            }
            (S3Compression::None, Some(_)) => {
                return Err("compression_level: no compression is set".into());
            }
            _ => {}
        }
        if let Some(class) = &self.storage_class
            && (class.is_empty() || !class.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        {
            return Err(format!(
                "storage_class: {class:?} is not a storage class (STANDARD_IA, GLACIER_IR, …)"
            ));
        }
        Ok(S3Spec {
            prefix_per_second: !reads_fractions(&self.key_prefix),
            credentials: self.auth.source()?,
            region: aws::region(self.region.as_deref()),
            path_style: self
                .force_path_style
                .unwrap_or(endpoint.is_some())
                // A bucket with a dot is not a valid host name under a TLS wildcard.
                || self.bucket.contains('.'),
            endpoint,
            key_prefix,
            config: self.clone(),
        })
    }
}

/// True when `template` has a strftime specifier of fractions of a second (`%f`, `%.3f`,
/// `%6f`): its prefix can change within a second.
fn reads_fractions(template: &str) -> bool {
    template.split('%').skip(1).any(|after| {
        after
            .trim_start_matches(['.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
            .starts_with('f')
    })
}

/// S3's bucket naming rules, in short: 3 to 63 lower-case letters, digits, `-` and `.`,
/// starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let allowed = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && allowed
        && ends(bucket.bytes().next())
        && ends(bucket.bytes().last())
    {
        Ok(())
    } else {
        Err(format!(
            "bucket: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// An S3 output's checked settings: what the sink is built from.
#[derive(Debug, Clone)]
pub struct S3Spec {
    pub(crate) config: S3Config,
    pub(crate) credentials: CredentialSource,
    pub(crate) region: String,
    pub(crate) endpoint: Option<reqwest::Url>,
    pub(crate) path_style: bool,
    pub(crate) key_prefix: FieldTemplate,
    /// The prefix, when it reads no field, is the same for every event of one tag and second.
    pub(crate) prefix_per_second: bool,
}
