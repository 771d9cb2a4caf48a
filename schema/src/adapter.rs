//! The one trait through which adapters plug into the engine.

use crate::ActionSchema;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A step's inputs after the engine resolved them (templates rendered, step outputs and secrets
/// substituted). Adapters must never log them whole: they may hold secrets.
pub type Inputs = BTreeMap<String, serde_json::Value>;

/// What a step produced, readable by later steps as `steps.ID.OUTPUT`.
pub type Outputs = BTreeMap<String, serde_json::Value>;

/// Where a long-running action says what it is waiting for (attempt n, the last answer), so the
/// operator sees progress on the live view and in `drover status`. Texts may quote what a service
/// answered: the engine redacts them before they are shown or stored.
#[derive(Clone, Default)]
pub struct Progress(Option<ProgressSink>);

/// The function a [`Progress`] passes each text to.
pub type ProgressSink = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

impl Progress {
    /// A sink that passes each text to `f`.
    #[must_use]
    pub fn new(f: ProgressSink) -> Self {
        Self(Some(f))
    }

    /// Reports what the step is doing now.
    pub fn report(&self, text: &str) {
        if let Some(f) = &self.0 {
            f(text);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

/// Removes the run's secrets from a text (every spelling the engine knows), for what an adapter
/// writes outside the journal — a background service's log. The default removes nothing.
#[derive(Clone, Default)]
pub struct Redact(Option<RedactFn>);

/// The function a [`Redact`] applies.
pub type RedactFn = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

impl Redact {
    /// Redaction by `f`.
    #[must_use]
    pub fn new(f: RedactFn) -> Self {
        Self(Some(f))
    }

    /// `text` with every known secret replaced.
    #[must_use]
    pub fn apply(&self, text: &str) -> String {
        match &self.0 {
            Some(f) => f(text),
            None => text.to_owned(),
        }
    }
}

impl std::fmt::Debug for Redact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Redact(secrets)"
        } else {
            "Redact(none)"
        })
    }
}

/// The time limit of the attempt an adapter runs: polling actions stop before it and say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTimeout {
    /// The limit (ms).
    pub ms: u64,
    /// When the attempt is abandoned (ms since the epoch, on the run's clock).
    pub deadline_ms: u64,
    /// Whether the limit is the action's default (the runbook set none).
    pub is_default: bool,
}

impl StepTimeout {
    /// Names the limit for an error message: `5m (the default timeout of http.check; set
    /// `timeout` on the step to change it)`.
    #[must_use]
    pub fn describe(&self, action: &str) -> String {
        let d = format_ms(self.ms);
        if self.is_default {
            format!("{d} (the default timeout of {action}; set `timeout` on the step to change it)")
        } else {
            format!("{d} (the step's timeout)")
        }
    }
}

/// A duration as runbooks write it: `1h30m`, `5m`, `2s`, `750ms`.
#[must_use]
pub fn format_ms(ms: u64) -> String {
    if ms == 0 || !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

/// Everything an adapter needs to know about the step it runs, besides its inputs.
#[derive(Debug, Clone, Default)]
pub struct StepContext {
    /// The run.
    pub run_id: String,
    /// The step instance.
    pub step_id: String,
    /// The action.
    pub action: String,
    /// `run_id/step_id`: the same across retries and resumes, so a repeated call can be recognised.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The run's mode.
    pub mode: crate::Mode,
    /// The run's state directory (journal, local artefacts).
    pub state_dir: PathBuf,
    /// Resources the runbook marks as production.
    pub production: Vec<String>,
    /// Tags that mark a resource as production (`environment = "production"`): in a drill,
    /// adapters read a resource's tags and refuse to change it when one matches.
    pub production_tags: BTreeMap<String, String>,
    /// Where the step reports what it is waiting for.
    pub progress: Progress,
    /// The run's clock: polls, backoff and throttling waits sleep on it.
    pub clock: crate::SharedClock,
    /// The attempt's time limit, if it has one.
    pub timeout: Option<StepTimeout>,
    /// Removes the run's secrets from what the adapter writes outside the journal.
    pub redact: Redact,
}

/// Whether trying a failed call again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A retry may succeed (throttling, timeouts, unavailability).
    Transient,
    /// A retry will not help (bad input, access denied, not found, refused by a safety rule).
    Permanent,
}

/// Where an adapter error happened, as data: the engine journals it with the error, and `drover
/// status --format json` and the run record carry it, so tools and alerts read the provider's
/// code or the resource without parsing the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorContext {
    /// The step (the engine fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The action (the engine fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The resource the failed call was about (an ARM id, a route table, a hosted zone, a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The AWS region of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The Azure subscription of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// The provider's error code (`ThrottlingException`, `Conflict`, an HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorContext {
    /// Whether nothing is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The error code of a preflight that found something missing that an earlier step of the run
/// may create (a local file written by a previous `shell` step): the engine counts it as a
/// problem only when no earlier step of the run changes state.
pub const MAY_BE_CREATED_EARLIER: &str = "MayBeCreatedEarlier";

/// Why an adapter call failed: whether trying again can help, a message for the operator (never
/// a secret), and where it happened as data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdapterError {
    /// Whether a retry can help.
    pub kind: ErrorKind,
    /// What went wrong, for the operator.
    pub message: String,
    /// Where it happened.
    pub context: Box<ErrorContext>,
}

impl AdapterError {
    /// A failure a retry may fix.
    #[must_use]
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// A failure a retry will not fix.
    #[must_use]
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// A failure of `kind`.
    #[must_use]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Box::default(),
        }
    }

    /// Whether a retry can help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// The same error about `resource`.
    #[must_use]
    pub fn on_resource(mut self, resource: impl Into<String>) -> Self {
        self.context.resource = Some(resource.into());
        self
    }

    /// The same error in AWS region `region`.
    #[must_use]
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.context.region = Some(region.into());
        self
    }

    /// The same error in Azure subscription `subscription`.
    #[must_use]
    pub fn in_subscription(mut self, subscription: impl Into<String>) -> Self {
        self.context.subscription = Some(subscription.into());
        self
    }

    /// The same error with the provider's code.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.context.code = Some(code.into());
        self
    }

    /// The same error, said of `step` running `action` (the engine calls this).
    #[must_use]
    pub fn in_step(mut self, step: &str, action: &str) -> Self {
        self.context.step = Some(step.to_owned());
        self.context.action = Some(action.to_owned());
        self
    }
}

/// What `observe` found about a step whose outcome is unknown (the process died mid-call).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The effect is in place; these are the step's outputs.
    Done(Outputs),
    /// The effect is not in place: executing again is safe.
    NotDone,
}

/// A set of actions the engine can execute. Implementations are stateless between calls: all state
/// lives in the world and in the journal.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// The schemas of the actions this adapter implements (for the compiler's catalogue).
    fn schemas(&self) -> Vec<ActionSchema>;

    /// Pure validation of resolved inputs: no I/O, no credentials.
    ///
    /// # Errors
    /// A permanent error describing the bad input.
    fn validate(&self, _action: &str, _inputs: &Inputs) -> Result<(), AdapterError> {
        Ok(())
    }

    /// What the engine calls before it executes a step: the resolved inputs against the action's
    /// schema ([`ActionSchema::check_inputs`]: required inputs set, values of the declared
    /// shape), then the adapter's own [`Adapter::validate`]. An action this adapter does not
    /// declare is refused.
    ///
    /// # Errors
    /// A permanent error naming the bad input.
    fn validate_step(&self, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
        let schemas = self.schemas();
        let schema = schemas.iter().find(|s| s.name == action).ok_or_else(|| {
            AdapterError::permanent(format!("this adapter does not run `{action}`"))
        })?;
        schema
            .check_inputs(inputs)
            .map_err(AdapterError::permanent)?;
        self.validate(action, inputs)
    }

    /// Read-only readiness checks (the key exists, the backup is there). Used by `--dry-run`.
    ///
    /// # Errors
    /// What is not ready.
    async fn preflight(
        &self,
        _action: &str,
        _inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Performs the action. Must be safe to call again with the same idempotency key.
    ///
    /// # Errors
    /// Transient or permanent failures.
    async fn execute(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError>;

    /// Undoes a completed step using what it produced (for example the record set captured before
    /// a DNS change). Used by rollback when the runbook gives the step no `compensate` block. The
    /// default says there is no built-in undo.
    ///
    /// # Errors
    /// If the undo failed or the action has none.
    async fn compensate(
        &self,
        action: &str,
        _inputs: &Inputs,
        _outputs: &Outputs,
        _ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        Err(AdapterError::permanent(format!(
            "`{action}` has no built-in undo; give the step a `compensate` block"
        )))
    }

    /// Reads back whether a step whose outcome is unknown took effect, so that resume reconciles
    /// before it retries. The default says "not done": right for actions that are safe to repeat.
    ///
    /// # Errors
    /// If the world cannot be read.
    async fn observe(
        &self,
        _action: &str,
        _inputs: &Inputs,
        _ctx: &StepContext,
    ) -> Result<Observation, AdapterError> {
        Ok(Observation::NotDone)
    }

    /// The run `run_id`, kept in `state_dir`, is over (finished, rolled back, interrupted or
    /// stopped): stop what the adapter started for it and was not asked to keep (background
    /// services) — also what an earlier process driving the same run started before it died,
    /// as far as the adapter recorded it in `state_dir`. Called once per adapter when the driver
    /// stops driving the run. The default has nothing to stop.
    async fn end_run(&self, _run_id: &str, _state_dir: &std::path::Path) {}
}
