//! Delivering an alert to one sink, and retrying with backoff.

use crate::payload::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, email_subject, email_text, pagerduty_body, sign,
    slack_body, webhook_body,
};
use crate::{Action, Alert, SinkConfig, SinkKind};
use std::future::Future;
use std::time::Duration;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a delivery did not happen. No message carries a secret: URLs are left out of HTTP
/// errors (a Slack URL is a credential), secrets are named by their reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The sink cannot be used as configured (a secret not set, a CA that does not read):
    /// retrying will not help.
    #[error("{0}")]
    Config(String),
    /// The receiver refused it (HTTP 4xx other than 408 and 429, a refused address).
    #[error("{0}")]
    Refused(String),
    /// It may work later (network, timeouts, 5xx, 429).
    #[error("{0}")]
    Failed(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed.
    #[must_use]
    pub fn retryable(&self) -> bool {
        matches!(self, DeliveryError::Failed(_))
    }
}

fn http_error(e: &reqwest::Error) -> DeliveryError {
    // Without the URL: a Slack webhook URL is its own secret, a webhook's may carry a token.
    let msg = reqwest_message(e);
    if e.is_builder() {
        // A URL that cannot be used: trying again will not help.
        DeliveryError::Config(msg)
    } else {
        DeliveryError::Failed(msg)
    }
}

fn reqwest_message(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    // The outermost text names the URL; the causes do not.
    let what = if e.is_builder() {
        "the URL cannot be used"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match parts.get(1..).filter(|p| !p.is_empty()) {
        Some(causes) => format!("{what}: {}", causes.join(": ")),
        None => what.to_owned(),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    headers: &[(&str, String)],
) -> Result<String, DeliveryError> {
    let bytes = serde_json::to_vec(body).map_err(|e| DeliveryError::Config(e.to_string()))?;
    post_bytes(http, url, bytes, headers).await
}

async fn post_bytes(
    http: &reqwest::Client,
    url: &str,
    bytes: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<String, DeliveryError> {
    let mut req = http
        .post(url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.body(bytes).send().await.map_err(|e| http_error(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(format!("HTTP {}", status.as_u16()));
    }
    let code = status.as_u16();
    // The first line of the answer helps (PagerDuty says what is wrong); never echo more.
    let text = resp.text().await.unwrap_or_default();
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let msg = format!(
        "HTTP {code}{}",
        if line.is_empty() {
            String::new()
        } else {
            format!(": {line}")
        }
    );
    if status.is_server_error() || code == 408 || code == 429 {
        Err(DeliveryError::Failed(msg))
    } else {
        Err(DeliveryError::Refused(msg))
    }
}

/// Delivers `alert` (`action`) to `sink` once. `source` names this Drover (host, server name);
/// `now_ms` is the clock's time (the webhook signature's timestamp). Returns what the receiver
/// answered (`HTTP 202`, `250 OK`).
///
/// # Errors
/// [`DeliveryError`]: retryable or not.
pub async fn deliver(
    sink: &SinkConfig,
    alert: &Alert,
    action: Action,
    source: &str,
    now_ms: u64,
    http: &reqwest::Client,
) -> Result<String, DeliveryError> {
    let secret = |r: &crate::SecretRef| {
        r.resolve()
            .map_err(|e| DeliveryError::Config(format!("sink `{}`: {e}", sink.name)))
    };
    match &sink.kind {
        SinkKind::Webhook { url, secret: key } => {
            let body = serde_json::to_vec(&webhook_body(alert, action, source))
                .map_err(|e| DeliveryError::Config(e.to_string()))?;
            let ts = now_ms / 1000;
            let mut headers = vec![
                (TIMESTAMP_HEADER, ts.to_string()),
                ("x-drover-event", action.as_str().to_owned()),
            ];
            if let Some(k) = key {
                headers.push((SIGNATURE_HEADER, sign(secret(k)?.as_bytes(), ts, &body)));
            }
            post_bytes(http, url, body, &headers).await
        }
        SinkKind::Slack { url } => {
            let url = secret(url)?;
            post(http, &url, &slack_body(alert, action, source), &[]).await
        }
        SinkKind::PagerDuty { url, routing_key } => {
            let key = secret(routing_key)?;
            post(http, url, &pagerduty_body(alert, action, &key, source), &[]).await
        }
        SinkKind::Email {
            server,
            from,
            to,
            username,
            password,
            ca,
        } => {
            let password = password.as_ref().map(secret).transpose()?;
            send_mail(
                &sink.name,
                server,
                from,
                to,
                username.as_deref(),
                password,
                ca.as_deref(),
                &email_subject(alert, action),
                email_text(alert, action, source),
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_mail(
    sink: &str,
    server: &str,
    from: &str,
    to: &[String],
    username: Option<&str>,
    password: Option<String>,
    ca: Option<&std::path::Path>,
    subject: &str,
    text: String,
) -> Result<String, DeliveryError> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let cfg = |e: String| DeliveryError::Config(format!("sink `{sink}`: {e}"));
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| cfg(format!("`{server}`: not host:port")))?,
        ),
        None => (server.to_owned(), 587),
    };
    let mut tls = TlsParameters::builder(host.clone());
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| cfg(format!("{}: {}", ca.display(), e.kind())))?;
        let cert =
            Certificate::from_pem(&pem).map_err(|e| cfg(format!("{}: {e}", ca.display())))?;
        tls = tls.add_root_certificate(cert);
    }
    let tls = tls.build_rustls().map_err(|e| cfg(e.to_string()))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(Tls::Required(tls))
        .timeout(Some(TIMEOUT));
    if let Some(user) = username {
        builder = builder.credentials(Credentials::new(
            user.to_owned(),
            password.unwrap_or_default(),
        ));
    }
    let mailer = builder.build();
    let mut msg = Message::builder()
        .from(
            from.parse()
                .map_err(|_| cfg(format!("`{from}` is not an address")))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        msg = msg.to(t
            .parse()
            .map_err(|_| cfg(format!("`{t}` is not an address")))?);
    }
    let msg = msg.body(text).map_err(|e| cfg(e.to_string()))?;
    match mailer.send(msg).await {
        Ok(r) => Ok(format!("SMTP {}", r.code())),
        Err(e) if e.is_permanent() => Err(DeliveryError::Refused(format!("SMTP: {e}"))),
        Err(e) => Err(DeliveryError::Failed(format!("SMTP: {e}"))),
    }
}

/// Delivers with retries: up to `attempts` tries, waiting `backoff_ms`, then twice as long each
/// time, between retryable failures. `sleep` is the caller's clock; `on_attempt` sees every
/// attempt (to journal it) with its number from 1.
///
/// # Errors
/// The last attempt's error, or the first that retrying cannot help.
#[allow(clippy::too_many_arguments)]
pub async fn deliver_with_retry<S, F>(
    sink: &SinkConfig,
    alert: &Alert,
    action: Action,
    source: &str,
    http: &reqwest::Client,
    attempts: u32,
    backoff_ms: u64,
    now_ms: impl Fn() -> u64,
    sleep: S,
    mut on_attempt: impl FnMut(u32, &Result<String, DeliveryError>),
) -> Result<String, DeliveryError>
where
    S: Fn(u64) -> F,
    F: Future<Output = ()>,
{
    let mut wait = backoff_ms;
    let mut attempt = 1;
    loop {
        let r = deliver(sink, alert, action, source, now_ms(), http).await;
        on_attempt(attempt, &r);
        match r {
            Err(e) if e.retryable() && attempt < attempts.max(1) => {
                sleep(wait).await;
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}
