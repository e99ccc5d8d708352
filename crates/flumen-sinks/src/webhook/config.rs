//! `type = "webhook"`: the webhook output's settings.
use super::*;

/// What a webhook sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON array of events per delivery.
    #[default]
    Json,
    /// A Slack incoming-webhook message per delivery.
    Slack,
    /// A PagerDuty Events API v2 event per alert.
    Pagerduty,
}

impl WebhookFormat {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
        }
    }
}

/// `type = "webhook"`: alerts over HTTP.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to `POST`: an `http://` or `https://` URL. Required, except for `pagerduty`, where
    /// it defaults to [`PAGERDUTY_EVENTS_URL`].
    #[serde(default)]
    pub url: String,
    /// `json` (default), `slack` or `pagerduty`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The message template (see the module documentation). `json`: adds a `"message"` key to
    /// each event when set; `slack` and `pagerduty`: defaults to [`DEFAULT_TEMPLATE`].
    #[serde(default)]
    pub template: Option<String>,
    /// Extra request headers, such as `Authorization`; they override the defaults
    /// (`Content-Type: application/json`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The PagerDuty integration key (`pagerduty` only, and required there).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// A template for the PagerDuty `dedup_key` (`pagerduty` only); by default a hash of the
    /// tag, the service and the first line of the message, so that repeats of one error from
    /// any host are one incident.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// The most alerts sent in any 60 seconds; `0` lifts the limit. Default: unlimited for
    /// `json`, [`DEFAULT_ALERTS_PER_MINUTE`] for `slack` and `pagerduty`.
    #[serde(default)]
    pub max_alerts_per_minute: Option<u32>,
    /// How long one request may take, from connecting to the end of the answer.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Headers and the routing key are credentials, and so is the path of many webhook URLs: none
/// of them is printed.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("template", &self.template)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("dedup_key", &self.dedup_key)
            .field("max_alerts_per_minute", &self.max_alerts_per_minute)
            .field("timeout", &self.timeout)
            .field("batch", &self.batch)
            .field("retry", &self.retry)
            .finish()
    }
}

impl WebhookConfig {
    /// Checks what the types cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    /// Checks the settings and parses the URL, headers and templates, once; the error names
    /// the key.
    pub fn check(&self) -> Result<WebhookSpec, String> {
        Ok(WebhookSpec {
            checked: Checked::new(self)?,
            config: self.clone(),
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        match (self.url.trim(), self.format) {
            ("", WebhookFormat::Pagerduty) => PAGERDUTY_EVENTS_URL,
            (url, _) => url,
        }
    }

    /// The limit on alerts per minute, `None` for none.
    pub fn alert_limit(&self) -> Option<u32> {
        match (self.max_alerts_per_minute, self.format) {
            (Some(0), _) => None,
            (Some(limit), _) => Some(limit),
            (None, WebhookFormat::Json) => None,
            (None, WebhookFormat::Slack | WebhookFormat::Pagerduty) => {
                Some(DEFAULT_ALERTS_PER_MINUTE)
            }
        }
    }
}

/// A webhook's checked settings, with its URL, headers and templates parsed: what the sink is
/// built from.
#[derive(Clone)]
pub struct WebhookSpec {
    pub(super) config: WebhookConfig,
    pub(super) checked: Checked,
}

/// Only the configuration's redacted form: the parsed headers and URL hold credentials.
impl fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
