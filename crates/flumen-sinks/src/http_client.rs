//! The HTTP client every HTTP output builds on: HTTP/1.1 over rustls with the ring provider, the
//! system's trust roots for `https`, no redirects, flumen's user agent, and a bounded way to
//! read an answer's body.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;

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
