//! AWS credentials: the output's own keys, or the chain every AWS SDK follows (see the module
//! above).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde::Deserialize;
use tokio::sync::Mutex;

/// How long credentials that do not say when they expire are kept before looking again.
const KEEP_UNDATED: Duration = Duration::from_secs(300);
/// Credentials are looked for again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);
/// How long the instance metadata and container endpoints may take to answer (the SDKs' 1 s
/// connect timeout, so that a machine outside AWS finds out quickly).
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
const IMDS_ENDPOINT: &str = "http://169.254.169.254";
const CONTAINER_ENDPOINT: &str = "http://169.254.170.2";

/// `auth`: where an AWS output's credentials come from; by default the AWS SDKs' chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAuthConfig {
    /// An access key id; with `secret_access_key`, used instead of the chain.
    pub access_key_id: Option<String>,
    /// Its secret.
    pub secret_access_key: Option<String>,
    /// A session token, for temporary keys.
    pub session_token: Option<String>,
    /// The profile of the shared files to read (instead of `AWS_PROFILE`, or `default`).
    pub profile: Option<String>,
}

impl AwsAuthConfig {
    /// Checks that keys come in pairs; the error starts with the key (`auth: ...`).
    pub(crate) fn source(&self) -> Result<CredentialSource, String> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                if self.profile.is_some() {
                    return Err(
                        "auth: set access_key_id and secret_access_key, or profile, not both"
                            .into(),
                    );
                }
                Ok(CredentialSource::Keys(keys(
                    id,
                    secret,
                    self.session_token.clone(),
                )))
            }
            (None, None) if self.session_token.is_some() => {
                Err("auth.session_token needs access_key_id and secret_access_key".into())
            }
            (None, None) => Ok(CredentialSource::Chain {
                profile: self.profile.clone(),
                found: std::sync::Arc::new(Mutex::new(None)),
            }),
            _ => Err("auth: access_key_id and secret_access_key go together".into()),
        }
    }
}

/// Where credentials come from, and what was found last.
#[derive(Debug, Clone)]
pub(crate) enum CredentialSource {
    /// The output's own keys.
    Keys(Credentials),
    /// The chain; what it found, until it is due again. Shared by the sinks of one output.
    Chain {
        profile: Option<String>,
        found: std::sync::Arc<Mutex<Option<(Credentials, SystemTime)>>>,
    },
}

impl CredentialSource {
    /// Credentials to sign with; the error lists where they were looked for.
    pub(crate) async fn get(&self) -> Result<Credentials, String> {
        let (profile, found) = match self {
            CredentialSource::Keys(keys) => return Ok(keys.clone()),
            CredentialSource::Chain { profile, found } => (profile, found),
        };
        let mut found = found.lock().await;
        if let Some((credentials, due)) = &*found
            && SystemTime::now() < *due
        {
            return Ok(credentials.clone());
        }
        let (credentials, expires) = look_up(profile.as_deref()).await?;
        let due = match expires {
            Some(expires) => expires
                .checked_sub(REFRESH_BEFORE_EXPIRY)
                .unwrap_or(expires),
            None => SystemTime::now() + KEEP_UNDATED,
        };
        *found = Some((credentials.clone(), due));
        Ok(credentials)
    }
}

/// Follows the chain: the environment, the shared files, a container's endpoint, the instance
/// role. The first that has credentials gives them, with when they expire if it says.
async fn look_up(profile: Option<&str>) -> Result<(Credentials, Option<SystemTime>), String> {
    if let Some(credentials) = from_environment() {
        return Ok((credentials, None));
    }
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    if let Some(credentials) = from_shared_files(&profile)? {
        return Ok((credentials, None));
    }
    let mut tried = vec![
        "the environment (AWS_ACCESS_KEY_ID)".to_owned(),
        format!("the shared files (profile {profile:?})"),
    ];
    if let Some(found) = from_container().await? {
        return Ok(found);
    }
    if env("AWS_EC2_METADATA_DISABLED").is_none_or(|v| !v.eq_ignore_ascii_case("true")) {
        match from_instance_metadata().await {
            Ok(found) => return Ok(found),
            Err(error) => tried.push(format!("the instance role ({error})")),
        }
    }
    Err(format!(
        "no AWS credentials found: tried {}",
        tried.join(", ")
    ))
}

/// Long-lived keys, which do not expire.
fn keys(id: impl Into<String>, secret: impl Into<String>, token: Option<String>) -> Credentials {
    Credentials::new(id, secret, token, None, "flumen")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn from_environment() -> Option<Credentials> {
    let id = env("AWS_ACCESS_KEY_ID")?;
    let secret = env("AWS_SECRET_ACCESS_KEY")?;
    Some(keys(id, secret, env("AWS_SESSION_TOKEN")))
}

/// Static keys of `profile` in the shared credentials file, else in the shared config file
/// (where the section is `[profile NAME]`, but `[default]`). A file that does not exist is
/// skipped; one that cannot be read is an error.
fn from_shared_files(profile: &str) -> Result<Option<Credentials>, String> {
    let home = env("HOME").map(PathBuf::from);
    let in_home = |file: &str| home.as_ref().map(|home| home.join(".aws").join(file));
    let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| in_home("credentials"));
    let config_file = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| in_home("config"));
    let config_section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    for (file, section) in [
        (credentials_file, profile.to_owned()),
        (config_file, config_section),
    ] {
        let Some(file) = file else { continue };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(format!("cannot read {}: {error}", file.display())),
        };
        let pairs = section_keys(&text, &section);
        let find = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if let (Some(id), Some(secret)) = (find("aws_access_key_id"), find("aws_secret_access_key"))
        {
            return Ok(Some(keys(id, secret, find("aws_session_token"))));
        }
    }
    Ok(None)
}

/// The `key = value` pairs of `[section]` in an INI file as the AWS shared files write them
/// (`#` and `;` start comments; a section may appear more than once).
fn section_keys(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            keys.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    keys
}

/// The JSON the container endpoint and the instance metadata answer with.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemporaryCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: Option<String>,
    expiration: Option<String>,
}

impl TemporaryCredentials {
    fn parse(body: &str, from: &str) -> Result<(Credentials, Option<SystemTime>), String> {
        let parsed: TemporaryCredentials = serde_json::from_str(body)
            .map_err(|e| format!("{from} answered with no credentials: {e}"))?;
        let expires = parsed
            .expiration
            .as_deref()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map(SystemTime::from);
        let credentials = Credentials::new(
            parsed.access_key_id,
            parsed.secret_access_key,
            parsed.token,
            expires,
            "flumen",
        );
        Ok((credentials, expires))
    }
}

fn metadata_client() -> Result<reqwest::Client, String> {
    crate::http_client::build(METADATA_TIMEOUT, false, Default::default())
}

/// A container's credentials (ECS task role, EKS Pod Identity), when the environment names
/// the endpoint.
async fn from_container() -> Result<Option<(Credentials, Option<SystemTime>)>, String> {
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("{CONTAINER_ENDPOINT}{relative}"),
        (None, Some(full)) => full,
        (None, None) => return Ok(None),
    };
    let mut request = metadata_client()?.get(&url);
    let token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN").or_else(|| {
        let file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?;
        std::fs::read_to_string(file)
            .ok()
            .map(|t| t.trim().to_owned())
    });
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    let body = text_of(request, "the container credentials endpoint").await?;
    TemporaryCredentials::parse(&body, "the container credentials endpoint").map(Some)
}

/// The EC2 instance role's credentials, by IMDSv2: a session token, the role's name, its
/// credentials.
async fn from_instance_metadata() -> Result<(Credentials, Option<SystemTime>), String> {
    let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| IMDS_ENDPOINT.into());
    let endpoint = endpoint.trim_end_matches('/');
    let client = metadata_client()?;
    let token = text_of(
        client
            .put(format!("{endpoint}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
        "the instance metadata",
    )
    .await?;
    let path = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let roles = text_of(
        client.get(&path).header("x-aws-ec2-metadata-token", &token),
        "the instance metadata",
    )
    .await?;
    let role = roles
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or("the instance has no role")?;
    let body = text_of(
        client
            .get(format!("{path}{role}"))
            .header("x-aws-ec2-metadata-token", &token),
        "the instance metadata",
    )
    .await?;
    TemporaryCredentials::parse(&body, "the instance metadata")
}

/// The body of a successful answer to `request`.
async fn text_of(request: reqwest::RequestBuilder, what: &str) -> Result<String, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what} did not answer: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!("{what} answered {}", response.status()));
    }
    response
        .text()
        .await
        .map_err(|e| format!("{what} did not answer: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_of_the_shared_files_are_read() {
        let text = "# comment\n[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n\
                    [profile  ops]\naws_access_key_id = C\n; note\naws_secret_access_key = D\n\
                    aws_session_token = E\n[other]\nx = y\n";
        assert_eq!(
            section_keys(text, "default"),
            [
                ("aws_access_key_id".into(), "A".into()),
                ("aws_secret_access_key".into(), "B".into())
            ]
        );
        assert_eq!(section_keys(text, "profile ops").len(), 3);
        assert!(section_keys(text, "missing").is_empty());
    }

    #[test]
    fn keys_come_in_pairs() {
        let only_id = AwsAuthConfig {
            access_key_id: Some("A".into()),
            ..AwsAuthConfig::default()
        };
        assert_eq!(
            only_id.source().unwrap_err(),
            "auth: access_key_id and secret_access_key go together"
        );
        assert!(matches!(
            AwsAuthConfig::default().source(),
            Ok(CredentialSource::Chain { .. })
        ));
    }

    #[test]
    fn temporary_credentials_say_when_they_expire() {
        let body = r#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2030-01-01T00:00:00Z"}"#;
        let (credentials, expires) = TemporaryCredentials::parse(body, "x").unwrap();
        assert_eq!(credentials.access_key_id(), "ASIA1");
        assert_eq!(credentials.session_token(), Some("t"));
        assert_eq!(
            expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        );
        assert!(TemporaryCredentials::parse("{}", "x").is_err());
    }
}
