//! What the AWS outputs share: credentials from the places every AWS SDK looks, and SigV4
//! request signing by the AWS SDK's own signer (`aws-sigv4`).
//!
//! Credentials, in the AWS SDKs' order: the output's own keys (`auth.access_key_id`), then
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then
//! the shared files (`~/.aws/credentials` and `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE`
//! and `AWS_CONFIG_FILE`; the profile `auth.profile`, else `AWS_PROFILE`, else `default`;
//! static keys only), then a container's credentials endpoint (ECS, EKS Pod Identity:
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`), then the EC2 instance role
//! (IMDSv2, unless `AWS_EC2_METADATA_DISABLED=true`; `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//! moves it). What was found is kept until five minutes before it expires (or for five
//! minutes when it does not say), so a rotated key is picked up without a restart.
//!
//! `SignedClient` is the one way the AWS outputs send a request: built, signed, sent, and a
//! request that got no answer told as a retryable failure naming the endpoint. What an
//! answer means is each output's own (S3's XML errors, Firehose's JSON ones).

mod credentials;

pub use credentials::AwsAuthConfig;
pub(crate) use credentials::CredentialSource;

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::DeliveryError;
use crate::http_client::{self, Failure, transport_error};

/// The region used when neither the output, `AWS_REGION` nor `AWS_DEFAULT_REGION` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The region: `configured`, else the environment's, else [`DEFAULT_REGION`].
pub(crate) fn region(configured: Option<&str>) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| non_empty_env("AWS_REGION"))
        .or_else(|| non_empty_env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Signs requests to one AWS service in one region.
#[derive(Debug)]
pub(crate) struct Signer {
    service: &'static str,
    region: String,
    credentials: CredentialSource,
}

impl Signer {
    /// A signer for `service` (`"s3"`, `"firehose"`) in `region`.
    pub(crate) fn new(
        service: &'static str,
        region: String,
        credentials: CredentialSource,
    ) -> Self {
        Self {
            service,
            region,
            credentials,
        }
    }

    /// The region requests are signed for.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// Adds the signature (and `x-amz-date`, the session token, and for S3 the payload's
    /// SHA-256) to `request`, whose body must be in memory. The error says why (no
    /// credentials found, say).
    pub(crate) async fn sign(&self, request: &mut reqwest::Request) -> Result<(), String> {
        let credentials = self.credentials.get().await?;
        sign_at(
            self.service,
            &self.region,
            credentials,
            request,
            SystemTime::now(),
        )
    }
}

/// An HTTP client whose requests are signed for one AWS service: what the AWS outputs send
/// through.
#[derive(Debug)]
pub(crate) struct SignedClient {
    client: reqwest::Client,
    signer: Signer,
    /// The endpoint as messages name it (no credentials, no path).
    endpoint: String,
    timeout: Duration,
}

impl SignedClient {
    /// Requests to `endpoint` (as messages name it), signed by `signer`, each ending after
    /// `timeout`; `https` loads the trust roots. Fails only if the client cannot be built.
    pub(crate) fn new(
        signer: Signer,
        endpoint: String,
        timeout: Duration,
        https: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            client: http_client::build(timeout, https, HeaderMap::new())?,
            signer,
            endpoint,
            timeout,
        })
    }

    /// The endpoint as messages name it.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The region requests are signed for.
    pub(crate) fn region(&self) -> &str {
        self.signer.region()
    }

    /// A request to `url`, to be finished (headers, body) and handed to
    /// [`SignedClient::send`].
    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Signs and sends `request`: its answer, whatever the status. A request that cannot be
    /// built or signed (no credentials found) or that got no answer is a retryable failure
    /// naming the endpoint: a fix or the network's return lets the same events through.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        let retryable = |message: String| Failure::new(DeliveryError::retryable(message), None);
        let mut request = request
            .build()
            .map_err(|e| retryable(format!("cannot make a request to {}: {e}", self.endpoint)))?;
        self.signer.sign(&mut request).await.map_err(retryable)?;
        let method = request.method().clone();
        self.client.execute(request).await.map_err(|error| {
            retryable(transport_error(
                error,
                method.as_str(),
                &self.endpoint,
                self.timeout,
            ))
        })
    }
}

/// Signs `request` for `service` in `region` as of `time`.
fn sign_at(
    service: &'static str,
    region: &str,
    credentials: aws_credential_types::Credentials,
    request: &mut reqwest::Request,
    time: SystemTime,
) -> Result<(), String> {
    let identity: Identity = credentials.into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        // S3 signs the path as sent (encoded once, not normalised) and wants the payload's
        // hash in a header of its own.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .unwrap_or(&[]);
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    for header in headers {
        let value = HeaderValue::from_str(header.value())
            .map_err(|_| format!("the signer made an invalid {} header", header.name()))?;
        request
            .headers_mut()
            .insert(HeaderName::from_static(header.name()), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of AWS's S3 documentation, "Example: GET Object" (Authenticating Requests:
    /// Using the Authorization Header), signed here: the same signature.
    #[test]
    fn requests_are_signed_as_aws_documents() {
        let credentials = aws_credential_types::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "example",
        );
        let url = "https://examplebucket.s3.amazonaws.com/test.txt";
        let mut request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
        request
            .headers_mut()
            .insert("range", HeaderValue::from_static("bytes=0-9"));
        // 2013-05-24T00:00:00Z
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        sign_at("s3", "us-east-1", credentials, &mut request, time).unwrap();
        let headers = request.headers();
        assert_eq!(headers["x-amz-date"], "20130524T000000Z");
        assert_eq!(
            headers["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            headers["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
