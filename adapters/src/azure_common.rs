//! What the Azure adapters share: credentials, the ARM client for a step, throttling that waits
//! the Retry-After the service states (on an injectable clock), and error messages.

use crate::cloud_common::input_str;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::ErrorKind;
pub use drover_schema::Clock;
use drover_schema::{AdapterError, Inputs, StepContext};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A pre-acquired ARM bearer token (for example from `az account get-access-token`), used instead
/// of the credential chain when set: for a laptop at 3 a.m. with a token from elsewhere, and for
/// tests. Never logged.
pub const TOKEN_ENV: &str = "DROVER_AZURE_TOKEN";
/// The subscription used when a step does not name one.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";

/// Waits `d` on `clock`.
pub(crate) async fn sleep(clock: &dyn Clock, d: Duration) {
    clock
        .sleep(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .await;
}

/// ARM's retry rule: throttled (429) and unavailable (408, 5xx) requests are sent again after
/// exactly the Retry-After the service stated (1 s, 2 s, 4 s … when it states none), on the
/// adapter's clock, up to `max_retries` times; then the step fails transiently.
#[derive(Debug)]
struct ArmRetry {
    clock: Arc<dyn Clock>,
    max_retries: u32,
}

#[async_trait::async_trait]
impl azure_core::RetryPolicy for ArmRetry {
    fn is_expired(&self, _since_start: Duration, retry_count: u32) -> bool {
        retry_count >= self.max_retries
    }

    fn sleep_duration(&self, retry_count: u32) -> Duration {
        Duration::from_secs(1 << retry_count.saturating_sub(1).min(6))
    }

    async fn wait(&self, _error: &azure_core::Error, retry_count: u32, after: Option<Duration>) {
        sleep(
            self.clock.as_ref(),
            after.unwrap_or_else(|| self.sleep_duration(retry_count)),
        )
        .await;
    }
}

/// A bearer token that was handed to us.
#[derive(Debug)]
struct StaticToken(Secret);

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.0.clone(),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// The process's credential: `DROVER_AZURE_TOKEN` if set, else azure_identity's chain —
/// environment (client secret), managed identity, Azure CLI (`AZURE_CREDENTIAL_KIND` pins one).
/// Built once, so tokens are cached across steps.
pub(crate) fn credential() -> Result<Arc<dyn TokenCredential>, String> {
    static CRED: OnceLock<Result<Arc<dyn TokenCredential>, String>> = OnceLock::new();
    CRED.get_or_init(|| match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.is_empty() => Ok(Arc::new(StaticToken(Secret::new(t))) as Arc<_>),
        _ => azure_identity::create_credential().map_err(|e| e.to_string()),
    })
    .clone()
}

/// The HTTP transport of one step's ARM calls: reqwest with Drover's timeouts, adding
/// `If-Match: ETAG` to PUTs while the step has set one (read–modify–write): a resource someone
/// else changed since the step read it answers 412 instead of being silently overwritten.
#[derive(Debug)]
pub(crate) struct EtagTransport {
    http: reqwest::Client,
    if_match: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl azure_core::HttpClient for EtagTransport {
    async fn execute_request(
        &self,
        request: &azure_core::Request,
    ) -> azure_core::Result<azure_core::Response> {
        let etag = (*request.method() == azure_core::Method::Put)
            .then(|| self.if_match.lock().ok().and_then(|g| g.clone()))
            .flatten();
        match etag {
            Some(e) => {
                let mut r = request.clone();
                r.insert_header("if-match", e);
                self.http.execute_request(&r).await
            }
            None => self.http.execute_request(request).await,
        }
    }
}

/// Where a step's ARM calls go, and the client that makes them.
pub(crate) struct Arm<'a> {
    pub client: azure_mgmt_network::Client,
    pub subscription: String,
    pub resource_group: String,
    pub ctx: &'a StepContext,
    pub clock: Arc<dyn Clock>,
    transport: Arc<EtagTransport>,
}

impl<'a> Arm<'a> {
    /// The client for a step: subscription and resource group from the inputs (the subscription
    /// falls back to `AZURE_SUBSCRIPTION_ID`), the endpoint override if any.
    pub fn new(
        inputs: &Inputs,
        ctx: &'a StepContext,
        clock: Arc<dyn Clock>,
        token: Option<&str>,
    ) -> Result<Self, AdapterError> {
        let subscription = input_str(inputs, "subscription")
            .map(str::to_owned)
            .or_else(|| std::env::var(SUBSCRIPTION_ENV).ok().filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                AdapterError::permanent(format!(
                    "step {}: no Azure subscription: set the step's `subscription` input or {SUBSCRIPTION_ENV}",
                    ctx.step_id
                ))
            })?;
        let resource_group = input_str(inputs, "resource_group")
            .ok_or_else(|| {
                AdapterError::permanent(format!(
                    "step {}: `{}` needs the `resource_group` input",
                    ctx.step_id, ctx.action
                ))
            })?
            .to_owned();
        let cred = match token {
            Some(t) => Ok(Arc::new(StaticToken(Secret::new(t.to_owned()))) as Arc<_>),
            None => credential(),
        }
        .map_err(|e| {
            AdapterError::permanent(format!(
                "step {}: no Azure credential ({e}); set {TOKEN_ENV}, the AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID environment, use a managed identity or `az login`",
                ctx.step_id
            ))
        })?;
        let call_ms = inputs
            .get("call_timeout")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(CALL_TIMEOUT_MS)
            .max(100);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS.min(call_ms)))
            .timeout(Duration::from_millis(call_ms))
            .build()
            .map_err(|e| {
                AdapterError::permanent(format!(
                    "step {}: cannot build the HTTP client: {e}",
                    ctx.step_id
                ))
            })?;
        let transport = Arc::new(EtagTransport {
            http,
            if_match: std::sync::Mutex::new(None),
        });
        let mut builder = azure_mgmt_network::ClientBuilder::new(cred)
            .transport(azure_core::TransportOptions::new(transport.clone()))
            .retry(azure_core::RetryOptions::custom(Arc::new(ArmRetry {
                clock: clock.clone(),
                max_retries: 5,
            })));
        if let Some(e) = input_str(inputs, "endpoint") {
            let url = azure_core::Url::parse(e).map_err(|err| {
                AdapterError::permanent(format!(
                    "step {}: `endpoint` {e} is not a URL: {err}",
                    ctx.step_id
                ))
            })?;
            builder = builder
                .endpoint(url)
                .scopes(&["https://management.azure.com/.default"]);
        }
        let client = builder.build().map_err(|e| {
            AdapterError::permanent(format!(
                "step {}: cannot build the ARM client: {e}",
                ctx.step_id
            ))
        })?;
        Ok(Self {
            client,
            subscription,
            resource_group,
            ctx,
            clock,
            transport,
        })
    }

    /// Sends the next PUTs only if the resource still has the etag of `read` (the version the
    /// step read and modified); `None` lifts the condition.
    pub fn expect_version(&self, read: Option<&serde_json::Value>) {
        let etag = read
            .and_then(|v| v.get("etag"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        if let Ok(mut g) = self.transport.if_match.lock() {
            *g = etag;
        }
    }

    /// The ARM id of a resource in the step's resource group.
    pub fn id(&self, kind: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/{kind}/{name}",
            self.subscription, self.resource_group
        )
    }

    /// A failed call as the step's error: what, on which resource, the service's code and
    /// message, whether to retry, and what to check.
    pub fn err(&self, op: &str, resource: &str, e: &azure_core::Error) -> AdapterError {
        let (status, code) = match e.kind() {
            ErrorKind::HttpResponse { status, error_code } => {
                (Some(u16::from(*status)), error_code.clone())
            }
            _ => (None, None),
        };
        let message = e
            .as_http_error()
            .and_then(|h| h.error_message().map(str::to_owned))
            .unwrap_or_else(|| e.to_string());
        let (transient, hint) = match (status, e.kind()) {
            (Some(429), _) => (
                true,
                "throttled by ARM; retried after Retry-After, still throttled",
            ),
            (Some(408 | 500..=599), _) => (
                true,
                "Azure Resource Manager is unavailable; retried, try again",
            ),
            (Some(412), _) => (
                false,
                "conflict: the resource changed since this step read it (someone else updated it); check it before running the step again",
            ),
            (Some(409), _) => (
                false,
                "conflict: another operation is in progress on the resource, or its state does not allow this change; check it in the portal before running the step again",
            ),
            (Some(404), _) => (
                false,
                "not found: check the subscription, resource group and name",
            ),
            (Some(401 | 403), _) => (
                false,
                "access denied: check the credential and its role on the resource group (Network Contributor)",
            ),
            (Some(_), _) => (false, "refused by Azure Resource Manager"),
            (None, ErrorKind::Io) => (true, "network error talking to Azure Resource Manager"),
            (None, ErrorKind::Credential) => (
                false,
                "no token: check the Azure credential (DROVER_AZURE_TOKEN, environment, managed identity or `az login`)",
            ),
            (None, _) => (false, "the call failed"),
        };
        let what = format!(
            "step {}: Azure {op} on {resource} in resource group {} failed: {}{}{message} ({hint})",
            self.ctx.step_id,
            self.resource_group,
            status.map_or_else(String::new, |s| format!("{s} ")),
            code.as_deref()
                .map_or_else(String::new, |c| format!("{c}: ")),
        );
        let kind = if transient {
            drover_schema::ErrorKind::Transient
        } else {
            drover_schema::ErrorKind::Permanent
        };
        let mut err = AdapterError::new(kind, what)
            .on_resource(resource)
            .in_subscription(&self.subscription);
        if let Some(c) = code.or_else(|| status.map(|s| s.to_string())) {
            err = err.with_code(c);
        }
        err
    }
}

/// How long connecting to Resource Manager may take before the attempt fails.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long one HTTP exchange with Resource Manager may take, unless the step's `call_timeout`
/// says otherwise: an endpoint that accepts connections and never answers ends the call as a
/// transient failure instead of hanging the step.
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// How often a deletion is checked for completion, and how many times.
pub(crate) const DELETE_POLL: Duration = Duration::from_secs(2);
pub(crate) const DELETE_POLLS: u32 = 150;

/// Whether an ARM error is a 404.
pub(crate) fn not_found(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { status, .. } if u16::from(*status) == 404)
}
