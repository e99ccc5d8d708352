//! The S3 output: events as NDJSON objects in Amazon S3 or any S3-compatible store (MinIO,
//! Garage, Ceph, s3s).
//!
//! Every delivery the driver hands over becomes one object per key prefix (`key_prefix`
//! rendered for each event: its tag, fields and time), holding that prefix's events as JSON
//! lines in log order, compressed as a whole. The driver gathers a delivery until it is
//! `batch.max_bytes` or `batch.max_events` large or `batch.timeout` old, so those settings are
//! how objects roll; this output's defaults are 32 MiB, a million events and five minutes.
//!
//! # Nothing lost, nothing doubled
//!
//! An object is acknowledged — the output's cursor moves past its events — only once S3 has
//! answered that the upload is complete, so a crash, a `kill -9` or an unreachable S3 means
//! uploading again, never losing. And uploading again does not double: an object is named
//! after where its first event is in the log (`<prefix><node>-<output>-<log position>`), so
//! the same events after a restart go to the same key and replace what a half-finished run
//! left. (Should the next run gather more or fewer events into it, the object is replaced by
//! the new one and the events beyond it go to the next object, named after them.)
//!
//! # Uploads
//!
//! An object up to `part_size` (compressed) is one `PutObject`; a larger one is a multipart
//! upload of `part_size` parts, aborted if a part fails. Requests are signed with SigV4,
//! payload hashed (`x-amz-content-sha256`), addressed by host name (`bucket.s3.region…`) or,
//! with a custom `endpoint` (or `force_path_style`), by path. Keys are encoded as S3 encodes
//! them: every byte but `A–Z a–z 0–9 - _ . ~ /` as `%XX`.
//!
//! # Failures
//!
//! S3 refuses an object's data itself only when its key is too long (`KeyTooLongError`) or it
//! is too large (`EntityTooLarge`): those events are dead-lettered at once with S3's reason.
//! Everything else — connection errors, timeouts, 5xx and `SlowDown`, but also `AccessDenied`,
//! `NoSuchBucket` or a wrong region — is retried with backoff until `retry.max_duration`: an
//! operator's fix (a policy, a bucket) lets the same events through, and until then they wait
//! in the log rather than in a dead-letter file.

mod config;

pub use config::{MIN_PART_SIZE, S3Compression, S3Config, S3Spec};

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use flumen_event::record::Record;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::aws::{SignedClient, Signer};
use crate::http_client::{self, Failure, redact_url};
use crate::{Delivery, DeliveryError, Items, Outcome, readable_entries, render_event};

/// What S3 leaves unencoded in a key (the AWS SDKs' `UriEncode` of a path).
const KEY_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');
/// What S3 leaves unencoded in a query value.
const QUERY_SAFE: &AsciiSet = &KEY_SAFE.add(b'/');
/// How much of an error answer is read (S3's `<Error>` documents are small).
const ERROR_BODY_BYTES: usize = 4096;
/// S3 error codes that refuse the object itself: retrying the same events cannot help.
const DATA_REFUSED: [&str; 2] = ["KeyTooLongError", "EntityTooLarge"];

/// One object of a delivery, ready to upload.
#[derive(Debug)]
pub struct Object {
    /// Its key.
    pub key: String,
    /// Its body, compressed.
    pub body: Bytes,
    /// The positions in the delivery of the events in it.
    pub positions: Vec<usize>,
}

/// Writes delivered events as objects.
pub struct S3Sink {
    spec: Arc<S3Spec>,
    /// `<node>-<output>-`: the start of every object name.
    name_prefix: String,
    /// The bucket's address, signed requests go to `<base><key>`.
    base: String,
    client: SignedClient,
}

impl fmt::Debug for S3Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Sink")
            .field("bucket", &self.client.endpoint())
            .finish_non_exhaustive()
    }
}

impl S3Sink {
    /// A sink for output `name` of the node `node_id`, from checked settings; fails only if
    /// the HTTP client cannot be built.
    pub fn from_spec(name: &str, spec: &S3Spec, node_id: &str) -> Result<Self, String> {
        let bucket = &spec.config.bucket;
        let (base, https) = match (&spec.endpoint, spec.path_style) {
            (Some(url), true) => (
                format!("{}/{bucket}/", url.as_str().trim_end_matches('/')),
                url.scheme() == "https",
            ),
            (Some(url), false) => {
                let mut url = url.clone();
                let host = format!("{bucket}.{}", url.host_str().unwrap_or_default());
                url.set_host(Some(&host))
                    .map_err(|e| format!("endpoint: cannot put the bucket in the host: {e}"))?;
                (
                    url.as_str().trim_end_matches('/').to_owned() + "/",
                    url.scheme() == "https",
                )
            }
            (None, true) => (
                format!("https://s3.{}.amazonaws.com/{bucket}/", spec.region),
                true,
            ),
            (None, false) => (
                format!("https://{bucket}.s3.{}.amazonaws.com/", spec.region),
                true,
            ),
        };
        let bucket_name = match &spec.endpoint {
            Some(url) => format!("{}/{bucket}", redact_url(url.as_str())),
            None => format!("s3://{bucket}"),
        };
        let signer = Signer::new("s3", spec.region.clone(), spec.credentials.clone());
        Ok(Self {
            name_prefix: format!("{node_id}-{name}-"),
            base,
            client: SignedClient::new(signer, bucket_name, spec.config.timeout, https)?,
            spec: Arc::new(spec.clone()),
        })
    }

    /// Uploads `delivery` as objects, one per key prefix; an object that fails fails its
    /// events alone.
    pub async fn deliver(&mut self, delivery: &Delivery) -> Outcome {
        let spec = self.spec.clone();
        let name_prefix = self.name_prefix.clone();
        let events = delivery.clone();
        // Rendering and compressing tens of MiB is CPU work: off the async threads.
        let objects = match tokio::task::spawn_blocking(move || {
            objects(&spec, &name_prefix, &events)
        })
        .await
        {
            Ok(objects) => objects,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => {
                return DeliveryError::retryable(format!("the object was not built: {error}"))
                    .into();
            }
        };
        let mut outcome = Outcome::delivered();
        for object in objects {
            if let Err(Failure {
                error, retry_after, ..
            }) = self.upload(&object).await
            {
                tracing::debug!(message = "An object was not uploaded.", key = object.key, %error);
                outcome = outcome.fail(Items::positions(object.positions), error);
                if let Some(wait) = retry_after {
                    outcome = outcome.retry_after(wait);
                }
            }
        }
        outcome
    }

    /// Uploads one object: in one request, or in parts when it is larger than `part_size`.
    async fn upload(&self, object: &Object) -> Result<(), Failure> {
        let url = format!(
            "{}{}",
            self.base,
            utf8_percent_encode(&object.key, KEY_SAFE)
        );
        let part_size = self.spec.config.part_size.as_u64() as usize;
        if object.body.len() <= part_size {
            self.send(
                Method::PUT,
                &url,
                object.body.clone(),
                self.object_headers(),
            )
            .await?;
            return Ok(());
        }
        let upload_id = self.start_multipart(&url).await?;
        match self
            .upload_parts(&url, &upload_id, &object.body, part_size)
            .await
        {
            Ok(()) => Ok(()),
            Err(failure) => {
                // Best effort: S3 keeps the parts of an upload neither completed nor aborted
                // (and bills them) until a lifecycle rule removes them.
                let abort = format!(
                    "{url}?uploadId={}",
                    utf8_percent_encode(&upload_id, QUERY_SAFE)
                );
                if let Err(error) = self
                    .send(Method::DELETE, &abort, Bytes::new(), HeaderMap::new())
                    .await
                {
                    tracing::warn!(message = "Cannot abort a multipart upload.", key = object.key, error = %error.error);
                }
                Err(failure)
            }
        }
    }

    /// `CreateMultipartUpload`: the upload's id.
    async fn start_multipart(&self, url: &str) -> Result<String, Failure> {
        let body = self
            .send(
                Method::POST,
                &format!("{url}?uploads"),
                Bytes::new(),
                self.object_headers(),
            )
            .await?;
        xml_element(&body, "UploadId").ok_or_else(|| {
            Failure::new(
                DeliveryError::retryable(format!(
                    "CreateMultipartUpload in {} answered without an UploadId",
                    self.client.endpoint()
                )),
                None,
            )
        })
    }

    /// `UploadPart` for each `part_size` piece of `body`, then `CompleteMultipartUpload`.
    async fn upload_parts(
        &self,
        url: &str,
        upload_id: &str,
        body: &Bytes,
        part_size: usize,
    ) -> Result<(), Failure> {
        let upload_id = utf8_percent_encode(upload_id, QUERY_SAFE).to_string();
        let mut complete = String::from("<CompleteMultipartUpload>");
        for (index, start) in (0..body.len()).step_by(part_size).enumerate() {
            let number = index + 1;
            let part = body.slice(start..body.len().min(start + part_size));
            let part_url = format!("{url}?partNumber={number}&uploadId={upload_id}");
            let etag = self.send_for_etag(&part_url, part).await?;
            complete.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(&etag)
            ));
        }
        complete.push_str("</CompleteMultipartUpload>");
        let answer = self
            .send(
                Method::POST,
                &format!("{url}?uploadId={upload_id}"),
                Bytes::from(complete),
                HeaderMap::new(),
            )
            .await?;
        // CompleteMultipartUpload may fail after answering 200: the error is in the body.
        if let Some(code) = xml_element(&answer, "Code") {
            return Err(self.refusal(StatusCode::OK, "CompleteMultipartUpload", &answer, &code));
        }
        Ok(())
    }

    /// Uploads a part; its ETag.
    async fn send_for_etag(&self, url: &str, body: Bytes) -> Result<String, Failure> {
        let response = self
            .request(Method::PUT, url, body, HeaderMap::new())
            .await?;
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = http_client::read_body(response, ERROR_BODY_BYTES).await;
        etag.ok_or_else(|| {
            Failure::new(
                DeliveryError::retryable(format!(
                    "UploadPart in {} answered without an ETag",
                    self.client.endpoint()
                )),
                None,
            )
        })
    }

    /// The headers an object is created with.
    fn object_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if let Some(encoding) = self.spec.config.compression.content_encoding() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if let Some(class) = &self.spec.config.storage_class
            && let Ok(value) = HeaderValue::from_str(class)
        {
            headers.insert("x-amz-storage-class", value);
        }
        headers
    }

    /// A signed request; the body of its 2xx answer.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: HeaderMap,
    ) -> Result<String, Failure> {
        let response = self.request(method, url, body, headers).await?;
        let body = http_client::read_body(response, 1024 * 1024).await;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends a signed request; the answer when it is 2xx, else the failure it says.
    async fn request(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, Failure> {
        let request = self
            .client
            .request(method.clone(), url)
            .headers(headers)
            .body(body);
        let response = self.client.send(request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = http_client::read_body(response, ERROR_BODY_BYTES).await;
        let body = String::from_utf8_lossy(&body);
        let code = xml_element(&body, "Code").unwrap_or_default();
        Err(self.refusal(status, method.as_str(), &body, &code))
    }

    /// The failure S3's error answer is: `S3 PUT to <bucket>: HTTP 403 AccessDenied: <its
    /// message>`; permanent only when S3 refuses the object itself.
    fn refusal(&self, status: StatusCode, request: &str, body: &str, code: &str) -> Failure {
        let mut message = format!(
            "S3 {request} to {}: HTTP {}",
            self.client.endpoint(),
            status.as_u16()
        );
        if !code.is_empty() {
            message.push(' ');
            message.push_str(code);
        }
        if let Some(text) = xml_element(body, "Message") {
            message.push_str(": ");
            message.push_str(&text);
        }
        if code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" {
            message.push_str(&format!(
                " (is the bucket in region {:?}? set region)",
                self.client.region()
            ));
        }
        let error = if DATA_REFUSED.contains(&code) {
            DeliveryError::permanent(message)
        } else {
            DeliveryError::retryable(message)
        };
        Failure::new(error, Some(status.as_u16()))
    }
}

/// The objects of `delivery`: its events grouped by rendered key prefix, each group's JSON
/// lines compressed, named after the log position of its first event.
pub fn objects(spec: &S3Spec, name_prefix: &str, delivery: &Delivery) -> Vec<Object> {
    struct Building {
        prefix: String,
        first_seq: u64,
        lines: Vec<u8>,
        positions: Vec<usize>,
    }
    let needs_record = spec.key_prefix.fields().next().is_some();
    let render_each = needs_record || !spec.prefix_per_second;
    // The objects in the order their first events came, and where each prefix's is.
    let mut buildings: Vec<Building> = Vec::new();
    let mut by_prefix: HashMap<String, usize> = HashMap::new();
    let mut current = 0;
    let mut position = 0;
    let mut prefix = String::new();
    // Without fields, the prefix is a function of the tag and the second: rendered (and looked
    // up) once for each run of events that share them (strftime is most of its cost).
    let mut rendered_for: Option<(&str, u64)> = None;
    for (seq, batch) in delivery.iter() {
        for entry in readable_entries(batch) {
            if render_each || rendered_for != Some((batch.tag, entry.time.secs)) {
                let record = if needs_record {
                    Record::decode(entry.record).unwrap_or_default()
                } else {
                    Record::new()
                };
                prefix.clear();
                for piece in spec.key_prefix.render(batch.tag, entry.time, &record) {
                    prefix.push_str(piece.as_ref());
                }
                rendered_for = Some((batch.tag, entry.time.secs));
                current = *by_prefix.entry(prefix.clone()).or_insert_with(|| {
                    // The first object usually takes the whole delivery: sized for its lines
                    // (about 1.5 times the msgpack) at once rather than grown by doubling.
                    let capacity = if buildings.is_empty() {
                        delivery.bytes as usize / 2 * 3
                    } else {
                        0
                    };
                    buildings.push(Building {
                        prefix: prefix.clone(),
                        first_seq: seq,
                        lines: Vec::with_capacity(capacity),
                        positions: Vec::new(),
                    });
                    buildings.len() - 1
                });
            }
            let building = &mut buildings[current];
            render_event(&mut building.lines, batch.tag, &entry);
            building.positions.push(position);
            position += 1;
        }
    }
    let compression = spec.config.compression;
    buildings
        .into_iter()
        .map(|building| Object {
            key: format!(
                "{}{name_prefix}{:020}{}",
                building.prefix,
                building.first_seq,
                compression.extension()
            ),
            body: compress(compression, spec.config.compression_level, building.lines).into(),
            positions: building.positions,
        })
        .collect()
}

/// `lines` compressed as a whole.
fn compress(compression: S3Compression, level: Option<u32>, lines: Vec<u8>) -> Vec<u8> {
    match compression {
        S3Compression::None => lines,
        S3Compression::Gzip => {
            let level = flate2::Compression::new(level.unwrap_or(6));
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::with_capacity(lines.len() / 6), level);
            encoder.write_all(&lines).expect("Vec write");
            encoder.finish().expect("Vec write")
        }
        S3Compression::Zstd => {
            let level = level.unwrap_or(3) as i32;
            zstd::bulk::compress(&lines, level).expect("zstd compresses into memory")
        }
    }
}

/// The text of the first `<name>…</name>` in an S3 XML answer, its entities resolved.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests;
