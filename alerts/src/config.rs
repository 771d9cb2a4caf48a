//! The `[alerts]` section of the server configuration (TOML).

use serde::Deserialize;
use std::path::PathBuf;

/// Where a secret is: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env(NAME)`: an environment variable of the server.
    Env(String),
    /// `file:PATH`: a file (its first line, trimmed).
    File(PathBuf),
}

impl SecretRef {
    /// Reads a reference as written; a literal is refused.
    ///
    /// # Errors
    /// The text is not `env(NAME)` or `file:PATH`.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let t = text.trim();
        if let Some(name) = t.strip_prefix("env(").and_then(|r| r.strip_suffix(')')) {
            let ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return if ok {
                Ok(SecretRef::Env(name.to_owned()))
            } else {
                Err(format!(
                    "`env({name})` does not name an environment variable"
                ))
            };
        }
        if let Some(path) = t.strip_prefix("file:")
            && !path.is_empty()
        {
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        Err("must be a reference, `env(NAME)` or `file:PATH`: secrets are never written in the configuration".into())
    }

    /// The secret. The error names the reference, never a value.
    ///
    /// # Errors
    /// The variable is unset or empty; the file cannot be read or is empty.
    pub fn resolve(&self) -> Result<String, String> {
        let v = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("the environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {}", path.display(), e.kind()))?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        };
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(v)
    }

    /// The reference as written.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("env({n})"),
            SecretRef::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// A sink and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// A generic webhook: a JSON POST, signed with HMAC-SHA256 when a secret is given.
    Webhook {
        /// Where.
        url: String,
        /// The HMAC key.
        secret: Option<SecretRef>,
    },
    /// A Slack-compatible incoming webhook (its URL is the secret).
    Slack {
        /// The webhook URL.
        url: SecretRef,
    },
    /// The PagerDuty Events API v2.
    PagerDuty {
        /// The endpoint (default `https://events.pagerduty.com/v2/enqueue`).
        url: String,
        /// The integration's routing key.
        routing_key: SecretRef,
    },
    /// E-mail over SMTP, upgraded with STARTTLS (refused if the server does not offer it).
    Email {
        /// `host:port` (port default 587).
        server: String,
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// The SMTP user, if the server asks for one.
        username: Option<String>,
        /// Its password.
        password: Option<SecretRef>,
        /// A CA certificate (PEM) to trust besides the system's (a private CA).
        ca: Option<PathBuf>,
    },
}

impl SinkKind {
    /// The sink's type as written.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Slack { .. } => "slack",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Email { .. } => "email",
        }
    }
}

/// A named sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name (`drover alerts test NAME`).
    pub name: String,
    /// What it is.
    pub kind: SinkKind,
}

/// The alerting configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Alert when an approval has waited longer than this (ms).
    pub approval_wait_ms: u64,
    /// Delivery attempts per alert and sink, the first included.
    pub attempts: u32,
    /// Delay before the first retry (ms); doubles each time.
    pub backoff_ms: u64,
    /// The sinks.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            approval_wait_ms: 30 * 60_000,
            attempts: 5,
            backoff_ms: 2_000,
            sinks: Vec::new(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    alerts: Option<RawAlerts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    approval_wait: Option<String>,
    attempts: Option<u32>,
    backoff: Option<String>,
    #[serde(default)]
    sink: Vec<RawSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    secret: Option<String>,
    routing_key: Option<String>,
    server: Option<String>,
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    ca: Option<String>,
}

/// The PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

impl AlertsConfig {
    /// Reads the server configuration's `[alerts]` section (absent: no sinks).
    ///
    /// # Errors
    /// The TOML does not read, a field is unknown, a sink lacks what its type needs, a secret is
    /// written in the clear, two sinks share a name.
    pub fn from_toml(text: &str) -> Result<AlertsConfig, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let mut c = AlertsConfig::default();
        let Some(raw) = file.alerts else {
            return Ok(c);
        };
        let dur = |name: &str, v: &Option<String>, default: u64| -> Result<u64, ConfigError> {
            match v {
                None => Ok(default),
                Some(t) => drover_dsl::parse_duration(t.trim()).ok_or_else(|| {
                    ConfigError(format!(
                        "alerts.{name} = \"{t}\": not a duration such as 30s, 15m or 4h"
                    ))
                }),
            }
        };
        c.approval_wait_ms = dur("approval_wait", &raw.approval_wait, c.approval_wait_ms)?;
        c.backoff_ms = dur("backoff", &raw.backoff, c.backoff_ms)?;
        c.attempts = raw.attempts.unwrap_or(c.attempts).clamp(1, 20);
        for s in raw.sink {
            if s.name.trim().is_empty() {
                return Err(ConfigError("a sink has an empty name".into()));
            }
            if c.sinks.iter().any(|o| o.name == s.name) {
                return Err(ConfigError(format!("two sinks are called `{}`", s.name)));
            }
            let name = s.name.clone();
            let need = |what: &str, v: Option<String>| {
                v.filter(|x| !x.trim().is_empty()).ok_or_else(|| {
                    ConfigError(format!("sink `{name}` ({}) needs `{what}`", s.kind))
                })
            };
            let secret = |what: &str, v: String| {
                SecretRef::parse(&v)
                    .map_err(|e| ConfigError(format!("sink `{name}`: `{what}` {e}")))
            };
            let url_ok = |u: &str| -> Result<(), ConfigError> {
                if u.starts_with("https://") || u.starts_with("http://") {
                    Ok(())
                } else {
                    Err(ConfigError(format!(
                        "sink `{name}`: `url` must be an http(s) URL"
                    )))
                }
            };
            let kind = match s.kind.as_str() {
                "webhook" => {
                    let url = need("url", s.url.clone())?;
                    url_ok(&url)?;
                    SinkKind::Webhook {
                        url,
                        secret: s.secret.clone().map(|v| secret("secret", v)).transpose()?,
                    }
                }
                "slack" => SinkKind::Slack {
                    url: secret("url", need("url", s.url.clone())?)?,
                },
                "pagerduty" => {
                    let url = s.url.clone().unwrap_or_else(|| PAGERDUTY_URL.to_owned());
                    url_ok(&url)?;
                    SinkKind::PagerDuty {
                        url,
                        routing_key: secret(
                            "routing_key",
                            need("routing_key", s.routing_key.clone())?,
                        )?,
                    }
                }
                "email" => {
                    let server = need("server", s.server.clone())?;
                    let from = need("from", s.from.clone())?;
                    if s.to.is_empty() {
                        return Err(ConfigError(format!("sink `{name}` (email) needs `to`")));
                    }
                    for a in std::iter::once(&from).chain(&s.to) {
                        a.parse::<lettre::Address>().map_err(|_| {
                            ConfigError(format!("sink `{name}`: `{a}` is not an e-mail address"))
                        })?;
                    }
                    SinkKind::Email {
                        server,
                        from,
                        to: s.to.clone(),
                        username: s.username.clone(),
                        password: s
                            .password
                            .clone()
                            .map(|v| secret("password", v))
                            .transpose()?,
                        ca: s.ca.clone().map(PathBuf::from),
                    }
                }
                other => {
                    return Err(ConfigError(format!(
                        "sink `{name}`: unknown type `{other}` (webhook, slack, pagerduty, email)"
                    )));
                }
            };
            c.sinks.push(SinkConfig { name, kind });
        }
        Ok(c)
    }

    /// The sink called `name`.
    #[must_use]
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name == name)
    }
}
