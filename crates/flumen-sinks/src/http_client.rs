//! The HTTP client every HTTP output builds on: HTTP/1.1 over rustls with the ring provider, the
//! system's trust roots for `https`, no redirects, flumen's user agent, and a bounded way to
//! read an answer's body; and what the outputs share around it: checking and redacting the
//! URL, the configured headers, basic authentication, gzip bodies, and one `POST` with its
//! failures told apart (retryable or not, the wait a `Retry-After` asks for), its errors
//! naming the endpoint without what may be secret in the URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::DeliveryError;

/// How much of a successful answer's body is read (so that the connection can be reused).
#[cfg(any(feature = "webhook", feature = "loki"))]
const SUCCESS_BODY_BYTES: usize = 64 * 1024;

/// The URL an HTTP output sends to, set by the configuration's `key` (`url`, `endpoint`),
/// checked: it parses, its scheme is `http` or `https`, it has a host. Errors start with the
/// key and never quote the URL: it may hold a secret.
pub(crate) fn check_url(key: &str, text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{key}: not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{key}: the scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{key}: no host"));
    }
    Ok(url)
}

/// `scheme://host[:port]/…`: a URL without what may be secret in it (`/…` stands for a path
/// or a query left out).
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
            if let Some(port) = url.port() {
                out.push_str(&format!(":{port}"));
            }
            if url.path() != "/" || url.query().is_some() {
                out.push_str("/…");
            }
            out
        }
        Err(_) if url.is_empty() => String::new(),
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// Adds the configured `headers` (name → value) to `to`, replacing what is there; errors name
/// the `headers` key, and never quote a value: it is often a credential.
pub(crate) fn insert_headers(
    to: &mut HeaderMap,
    headers: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers.{name}: not a valid header value"))?;
        to.insert(header, value);
    }
    Ok(())
}

/// `auth`: HTTP basic authentication.
#[cfg(any(feature = "loki", feature = "elasticsearch"))]
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user (Grafana Cloud: the instance id; Elasticsearch: a user such as `elastic`).
    pub user: String,
    /// The password (Grafana Cloud: an access token).
    pub password: String,
}

/// The password is not printed.
#[cfg(any(feature = "loki", feature = "elasticsearch"))]
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(any(feature = "loki", feature = "elasticsearch"))]
impl BasicAuth {
    /// `Basic <base64 user:password>`, marked sensitive (never printed); the error names the
    /// `auth` key.
    pub(crate) fn header(&self) -> Result<HeaderValue, String> {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| "auth: not a valid header value".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// `body` gzip-compressed, for `Content-Encoding: gzip`.
#[cfg(any(feature = "loki", feature = "elasticsearch"))]
pub(crate) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), Default::default());
    encoder.write_all(body).expect("Vec write");
    encoder.finish().expect("Vec write")
}

/// A failed `POST`: the error, and the wait the answer asked for.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: DeliveryError,
    pub(crate) retry_after: Option<Duration>,
    /// The answer's status; `None` when there was no answer.
    #[cfg_attr(not(feature = "elasticsearch"), allow(dead_code))]
    pub(crate) status: Option<u16>,
}

impl Failure {
    /// A failure for `error`, with no wait asked for.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub(crate) fn new(error: DeliveryError, status: Option<u16>) -> Self {
        Self {
            error,
            retry_after: None,
            status,
        }
    }
}

/// Where an HTTP output posts: the client (with its headers and timeout), the URL, and the
/// endpoint its messages name.
pub(crate) struct Endpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL redacted, for messages.
    name: String,
    timeout: Duration,
    /// How much of an error answer's body goes into the error.
    error_body_bytes: usize,
}

impl Endpoint {
    /// Requests to `url`, each with `headers` and ending after `timeout`; an error answer's
    /// first `error_body_bytes` go into the error. Fails only if the client cannot be built.
    pub(crate) fn new(
        url: &reqwest::Url,
        timeout: Duration,
        headers: HeaderMap,
        error_body_bytes: usize,
    ) -> Result<Self, String> {
        Ok(Self {
            client: build(timeout, url.scheme() == "https", headers)?,
            url: url.clone(),
            name: redact_url(url.as_str()),
            timeout,
            error_body_bytes,
        })
    }

    /// The URL as messages name it (redacted).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// One `POST` of `body`; success is any 2xx answer.
    #[cfg(any(feature = "webhook", feature = "loki"))]
    pub(crate) async fn post(&self, body: impl Into<reqwest::Body>) -> Result<(), Failure> {
        // Read (a bounded part of) the answer, so that the connection can be reused.
        self.post_reading(body, SUCCESS_BODY_BYTES).await.map(drop)
    }

    /// One `POST` of `body`, for a destination whose 2xx answer says more (which items it
    /// took): the first `limit` bytes of that answer's body (fewer when the connection fails
    /// while it is read, which the caller sees as a body that does not parse).
    pub(crate) async fn post_reading(
        &self,
        body: impl Into<reqwest::Body>,
        limit: usize,
    ) -> Result<Vec<u8>, Failure> {
        let response = self
            .client
            .post(self.url.clone())
            .body(body)
            .send()
            .await
            .map_err(|error| Failure {
                error: DeliveryError::retryable(transport_error(
                    error,
                    "POST",
                    &self.name,
                    self.timeout,
                )),
                retry_after: None,
                status: None,
            })?;
        if response.status().is_success() {
            return Ok(read_body(response, limit).await);
        }
        Err(refused(response, &self.name, self.error_body_bytes).await)
    }
}

/// The error of a `method` request that got no answer, naming `endpoint` (already redacted):
/// the timeout, or the error and its causes (without the URL: its path may be a secret).
pub(crate) fn transport_error(
    error: reqwest::Error,
    method: &str,
    endpoint: &str,
    timeout: Duration,
) -> String {
    if error.is_timeout() {
        return format!("{method} to {endpoint} timed out after {timeout:?}");
    }
    let error = error.without_url();
    let mut message = format!("{method} to {endpoint} failed: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The failure an answer outside 2xx from `endpoint` (already redacted) is: `HTTP {status}
/// from {endpoint}: {body}`, with the first `body_bytes` of the body, white space collapsed.
/// 5xx, 408 and 429 are retryable, a `Retry-After` in seconds on a 429 or 503 giving the wait;
/// redirects (not followed) and other 4xx are permanent.
pub(crate) async fn refused(
    response: reqwest::Response,
    endpoint: &str,
    body_bytes: usize,
) -> Failure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .filter(|_| matches!(status.as_u16(), 429 | 503));
    let body = read_body(response, body_bytes).await;
    let body = String::from_utf8_lossy(&body[..body.len().min(body_bytes)])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut message = format!("HTTP {status} from {endpoint}");
    if !body.is_empty() {
        message.push_str(&format!(": {body}"));
    }
    let error = if status.is_redirection() {
        message.push_str(" (redirects are not followed: set url to the final address)");
        DeliveryError::permanent(message)
    } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        DeliveryError::retryable(message)
    } else {
        DeliveryError::permanent(message)
    };
    Failure {
        error,
        retry_after,
        status: Some(status.as_u16()),
    }
}

/// The HTTP client, sending `headers` with every request. Trust roots are loaded only for
/// `https` URLs, so that a plain `http` endpoint (a local relay, a test server) works on a
/// machine without CA certificates.
pub(crate) fn build(
    timeout: Duration,
    https: bool,
    headers: HeaderMap,
) -> Result<reqwest::Client, String> {
    // ring rather than the process-wide default provider: this crate installs no global state.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let tls = if https {
        let verifier = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| format!("cannot load the TLS trust roots: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flumen/", env!("CARGO_PKG_VERSION")))
        // After the user agent, so that a configured `User-Agent` wins.
        .default_headers(headers)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// Reads up to `limit` bytes of an answer's body; a failure ends it early.
pub(crate) async fn read_body(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(redact_url("http://h/?token=x"), "http://h/…");
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("secret"), "<not a URL>");
    }

    #[test]
    fn urls_are_checked_without_being_quoted() {
        assert!(check_url("url", "https://example.com/secret").is_ok());
        let error = check_url("url", "ftp://example.com/secret").unwrap_err();
        assert_eq!(error, "url: the scheme must be http or https, not \"ftp\"");
        let error = check_url("url", "example.com/secret").unwrap_err();
        assert!(error.starts_with("url: not a URL") && !error.contains("secret"));
    }
}
