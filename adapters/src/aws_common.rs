//! What every AWS action shares: configuration the AWS way (credential chain, profiles, region and
//! endpoint per step), error messages that name the step, the resource, the region and the API
//! call, classified transient or permanent, polling, and the drill guard by tag.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use drover_schema::{AdapterError, Inputs, StepContext};

/// How long connecting to an AWS endpoint may take before the attempt fails.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long one AWS call may take, all SDK retries included, unless the step's `call_timeout`
/// says otherwise: a black-holed endpoint (it accepts connections and never answers) ends the
/// call as a transient failure instead of hanging the step.
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// The SDK's timeouts for a call bounded by `call_ms`: connect, each attempt (a third of the
/// call, so the SDK's own retries fit), and the whole call.
pub(crate) fn timeouts(call_ms: u64) -> aws_config::timeout::TimeoutConfig {
    let call = std::time::Duration::from_millis(call_ms.max(100));
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_millis(CONNECT_TIMEOUT_MS).min(call))
        .operation_attempt_timeout(call / 3)
        .operation_timeout(call)
        .build()
}

/// The SDK configuration the backup path uses (S3 locations, KMS keys): the standard chain, with
/// Drover's timeouts.
pub(crate) async fn backup_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts(CALL_TIMEOUT_MS))
        .load()
        .await
}

/// One sentence for a failed SDK call: the service's error code and message, or what went wrong
/// on the way (timed out, could not connect) — never the SDK's debug dump.
pub(crate) fn describe_sdk_error<E, R>(e: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) => (
            s.err().code().unwrap_or("Unknown").to_owned(),
            s.err().message().unwrap_or("").to_owned(),
        ),
        SdkError::TimeoutError(_) => (
            "Timeout".to_owned(),
            "no answer within the call timeout".to_owned(),
        ),
        SdkError::DispatchFailure(d) => (
            "DispatchFailure".to_owned(),
            if d.is_timeout() {
                "could not reach the endpoint: the connection timed out".to_owned()
            } else if d.is_io() {
                "could not reach the endpoint: the connection failed".to_owned()
            } else {
                "could not reach the endpoint (check the region, the endpoint and the credentials)"
                    .to_owned()
            },
        ),
        SdkError::ResponseError(_) => (
            "ResponseError".to_owned(),
            "the response could not be read".to_owned(),
        ),
        _ => ("Error".to_owned(), e.to_string()),
    }
}

/// Where a step's AWS calls go: the `region`, `profile` and `endpoint_url` inputs, each falling
/// back to the SDK's own configuration (environment, shared config files, instance role).
#[derive(Debug, Clone)]
pub(crate) struct AwsTarget {
    /// The loaded SDK configuration.
    pub conf: aws_config::SdkConfig,
    /// The region calls go to, for messages.
    pub region: String,
}

impl AwsTarget {
    /// Loads the configuration for a step's inputs. Loaded once per (region, profile, endpoint)
    /// per process: the shared config files are read and the credential provider built (with its
    /// own cache) once, not on every step.
    pub async fn load(inputs: &Inputs) -> Self {
        static CACHE: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<[Option<String>; 4], AwsTarget>>,
        > = std::sync::OnceLock::new();
        let key =
            ["region", "profile", "endpoint_url", "call_timeout"].map(|k| match inputs.get(k) {
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(v) => v.as_str().filter(|v| !v.is_empty()).map(str::to_owned),
                None => None,
            });
        let cache = CACHE.get_or_init(Default::default);
        if let Some(t) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return t;
        }
        let t = Self::load_uncached(inputs).await;
        if let Ok(mut c) = cache.lock() {
            c.insert(key, t.clone());
        }
        t
    }

    async fn load_uncached(inputs: &Inputs) -> Self {
        let s = |k: &str| {
            inputs
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let call_ms = inputs
            .get("call_timeout")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(CALL_TIMEOUT_MS);
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts(call_ms));
        if let Some(r) = s("region") {
            loader = loader.region(aws_config::Region::new(r.to_owned()));
        }
        if let Some(p) = s("profile") {
            loader = loader.profile_name(p);
        }
        if let Some(e) = s("endpoint_url") {
            loader = loader.endpoint_url(e);
        }
        let conf = loader.load().await;
        let region = conf
            .region()
            .map_or_else(|| "(no region configured)".to_owned(), ToString::to_string);
        Self { conf, region }
    }
}

/// One step's calls to one AWS service: the client for the step's region/profile/endpoint, the
/// region and step for messages, and the service's name.
pub(crate) struct Call<'a, C> {
    /// The service client.
    pub client: C,
    /// The region calls go to.
    pub region: String,
    /// The step making them.
    pub ctx: &'a StepContext,
    service: &'static str,
}

impl<'a, C> Call<'a, C> {
    /// A client for the step's inputs, built by `make` from the loaded configuration.
    pub async fn new(
        service: &'static str,
        inputs: &Inputs,
        ctx: &'a StepContext,
        make: impl FnOnce(&aws_config::SdkConfig) -> C,
    ) -> Self {
        let t = AwsTarget::load(inputs).await;
        Self {
            client: make(&t.conf),
            region: t.region,
            ctx,
            service,
        }
    }

    /// A failed call of `api` on `resource`, described and classified (see [`call_error`]).
    pub fn err<E, R>(&self, api: &str, resource: &str, e: &SdkError<E, R>) -> AdapterError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        call_error(self.ctx, self.service, api, resource, &self.region, e)
    }
}

/// One failed AWS call, described for the operator: `step move_eip: EC2 AssociateAddress on
/// eipalloc-1 in us-west-2: InvalidAllocationID.NotFound: ... (not found: check the id and region)`.
pub(crate) fn call_error<E, R>(
    ctx: &StepContext,
    service: &str,
    call: &str,
    resource: &str,
    region: &str,
    e: &SdkError<E, R>,
) -> AdapterError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = describe_sdk_error(e);
    let (transient, hint) = classify(&code);
    let mut msg = format!(
        "step {}: {service} {call} on {resource} in {region} failed: {code}",
        ctx.step_id
    );
    if !message.is_empty() {
        msg.push_str(": ");
        msg.push_str(&message);
    }
    if !hint.is_empty() {
        msg.push_str(&format!(" ({hint})"));
    }
    let kind = if transient {
        drover_schema::ErrorKind::Transient
    } else {
        drover_schema::ErrorKind::Permanent
    };
    AdapterError::new(kind, msg)
        .on_resource(resource)
        .in_region(region)
        .with_code(code)
}

/// Whether an AWS error code is worth retrying, and a hint for the operator.
fn classify(code: &str) -> (bool, &'static str) {
    let lower = code.to_ascii_lowercase();
    if matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "PriorRequestNotComplete"
            | "SlowDown"
            | "RequestThrottled"
    ) {
        return (true, "throttled: a retry with backoff may succeed");
    }
    if matches!(
        code,
        "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "Unavailable"
            | "Timeout"
            | "DispatchFailure"
            | "ResponseError"
            | "RequestTimeout"
    ) {
        return (
            true,
            "the service or network is unavailable: a retry may succeed",
        );
    }
    if lower.contains("accessdenied")
        || lower.contains("unauthorized")
        || code == "AuthFailure"
        || code == "InvalidClientTokenId"
        || code == "SignatureDoesNotMatch"
    {
        return (
            false,
            "access denied: check the credentials, the profile and the IAM policy",
        );
    }
    if lower.contains("notfound") || lower.starts_with("nosuch") || lower.contains("malformed") {
        return (false, "not found: check the id and the region");
    }
    if lower.contains("incorrectstate")
        || lower.contains("invalidstate")
        || lower.contains("incorrectinstancestate")
        || code == "InvalidChangeBatch"
    {
        return (
            false,
            "the resource is not in a state that allows this change",
        );
    }
    (false, "")
}

/// A token AWS accepts as a client/caller reference (at most 64 ASCII characters), stable for a
/// step across retries and resumes.
pub(crate) fn client_token(ctx: &StepContext) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(ctx.idempotency_key.as_bytes());
    format!("drover-{}", &hex::encode(digest)[..40])
}

/// The tag Drover puts on what it creates, holding the step's idempotency key, so that `observe`
/// finds it again after a crash.
pub(crate) const IDEMPOTENCY_TAG: &str = "drover:idempotency-key";

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn throttling_and_outages_are_transient_the_rest_permanent() {
        for c in [
            "Throttling",
            "RequestLimitExceeded",
            "ServiceUnavailable",
            "PriorRequestNotComplete",
        ] {
            assert!(classify(c).0, "{c}");
        }
        for c in [
            "AccessDenied",
            "InvalidAllocationID.NotFound",
            "NoSuchHostedZone",
            "IncorrectInstanceState",
            "InvalidChangeBatch",
            "Whatever",
        ] {
            assert!(!classify(c).0, "{c}");
        }
        assert!(
            classify("UnauthorizedOperation")
                .1
                .contains("access denied")
        );
        assert!(
            classify("InvalidRouteTableID.NotFound")
                .1
                .contains("not found")
        );
        assert!(classify("IncorrectInstanceState").1.contains("state"));
    }
}
