//! Shared types between adapters, the compiler and the engine: action schemas, the catalogue the
//! compiler checks runbooks against, and the [`Adapter`] trait the engine executes steps through.
//!
//! The compiler (`drover-dsl`) checks every step's inputs and output references against an
//! [`ActionSchema`] looked up in a [`Catalogue`]; the adapters crate provides the built-in catalogue.
//! Neither side depends on the other: both depend on this small crate only.
//!
//! The safety lints read [`Effect`] and [`Role`]: a [`Effect::Destructive`] action needs an approval
//! upstream, a [`Role::Cutover`] reached by a [`Role::Rehydrate`] needs a [`Role::Verify`] on the path,
//! and a mutating action needs a `compensate` in runbooks that support failback.

mod adapter;
pub mod clock;
mod mode;

pub use adapter::{
    Adapter, AdapterError, ErrorContext, ErrorKind, Inputs, MAY_BE_CREATED_EARLIER, Observation,
    Outputs, Progress, Redact, RedactFn, StepContext, StepTimeout, format_ms,
};
pub use clock::{Clock, ManualClock, SharedClock, Sleep, SystemClock};
pub use mode::Mode;
use serde::{Deserialize, Serialize};

/// The type of an action input or output, as the compiler checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A string (templates allowed).
    String,
    /// A whole number.
    Int,
    /// `true` or `false`.
    Bool,
    /// A duration such as `30s`, `15m`, `4h`.
    Duration,
    /// One of a fixed set of words.
    Enum(Vec<String>),
    /// A list whose elements all have the given type.
    List(Box<ValueType>),
    /// A map from names to values of the given type.
    Map(Box<ValueType>),
    /// A secret: a parameter of type `secret`, resolved at run time and never written down.
    Secret,
    /// A string or a secret (for example a webhook URL that embeds a token).
    StringOrSecret,
    /// Any value.
    Any,
}

impl ValueType {
    /// A short human name of the type, as it appears in diagnostics (`string`, `list<int>`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::String => "string".into(),
            Self::Int => "int".into(),
            Self::Bool => "bool".into(),
            Self::Duration => "duration".into(),
            Self::Enum(words) => format!("one of {}", words.join(" | ")),
            Self::List(inner) if **inner == Self::Any => "a list".into(),
            Self::List(inner) => format!("list<{}>", inner.describe()),
            Self::Map(inner) => format!("map<{}>", inner.describe()),
            Self::Secret => "secret".into(),
            Self::StringOrSecret => "string or secret".into(),
            Self::Any => "any".into(),
        }
    }
}

/// One input an action accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputSpec {
    /// The input's name, as written in the step's `with` block.
    pub name: String,
    /// Its type.
    pub ty: ValueType,
    /// Whether a step must set it.
    pub required: bool,
    /// Whether the value names a resource the action changes (checked against the runbook's
    /// `production` list in drill mode).
    pub resource: bool,
    /// One line of documentation.
    pub doc: String,
}

/// One output an action produces, readable by later steps as `steps.<id>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputSpec {
    /// The output's name.
    pub name: String,
    /// Its type.
    pub ty: ValueType,
    /// One line of documentation.
    pub doc: String,
}

/// What an action does to the world, for the safety lints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Reads only (checks, waits, notifications).
    ReadOnly,
    /// Creates or changes something that can be undone (a restored file, a new volume).
    Mutating,
    /// Changes what serves production traffic (DNS, routes, addresses, instance stops): needs an
    /// approval gate upstream.
    Destructive,
}

/// The part an action plays in a recovery, for the safety lints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// No special part.
    Plain,
    /// An approval gate: pauses the run until operators approve.
    Approval,
    /// Restores a data set from a backup.
    Rehydrate,
    /// Verifies a backup's integrity (authenticated decryption and hashes).
    Verify,
    /// Moves traffic to the recovered system (DNS, addresses, routes).
    Cutover,
}

/// The schema of one action: its name, inputs, outputs and effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionSchema {
    /// The full action name as users write it, `provider.action` (or a bare word for core actions
    /// such as `wait`).
    pub name: String,
    /// One line saying what the action does.
    pub summary: String,
    /// Inputs the action accepts.
    pub inputs: Vec<InputSpec>,
    /// Outputs the action produces.
    pub outputs: Vec<OutputSpec>,
    /// What the action does to the world.
    pub effect: Effect,
    /// The part it plays in a recovery.
    pub role: Role,
    /// Whether the adapter undoes the action itself, from the state it captured before the
    /// change: a step needs no `compensate` block for rollback then.
    pub builtin_undo: bool,
    /// The timeout a step of this action gets when the runbook sets none (ms). Every action that
    /// waits on the world (polls, long calls) has one, so that no step can run forever.
    pub default_timeout_ms: Option<u64>,
}

impl ActionSchema {
    /// Checks a step's resolved inputs against this schema: every required input is set, and
    /// every value has the declared shape (a word of an enumeration, a whole number, a boolean, a
    /// duration in ms, a list or a map of such values). Strings accept any scalar, since outputs
    /// of other steps may be numbers. Inputs the schema does not declare are left to the compiler.
    ///
    /// # Errors
    /// A message naming the first bad input and what was expected.
    pub fn check_inputs(
        &self,
        inputs: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<(), String> {
        for spec in &self.inputs {
            match inputs.get(&spec.name) {
                None | Some(serde_json::Value::Null) if spec.required => {
                    return Err(format!(
                        "`{}` needs the `{}` input ({})",
                        self.name,
                        spec.name,
                        spec.ty.describe()
                    ));
                }
                None | Some(serde_json::Value::Null) => {}
                Some(v) => {
                    if let Err(why) = value_fits(v, &spec.ty) {
                        return Err(format!(
                            "`{}` input `{}`: expected {}, found {why}",
                            self.name,
                            spec.name,
                            spec.ty.describe()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts a schema for `name`.
    #[must_use]
    pub fn new(name: &str, summary: &str, effect: Effect, role: Role) -> Self {
        Self {
            name: name.to_owned(),
            summary: summary.to_owned(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            effect,
            role,
            builtin_undo: false,
            default_timeout_ms: None,
        }
    }

    /// Sets the timeout a step gets when the runbook sets none.
    #[must_use]
    pub fn with_default_timeout_ms(mut self, ms: u64) -> Self {
        self.default_timeout_ms = Some(ms);
        self
    }

    /// Marks the action as undone by its adapter (see [`Adapter::compensate`]).
    #[must_use]
    pub fn with_builtin_undo(mut self) -> Self {
        self.builtin_undo = true;
        self
    }

    /// Adds a required input.
    #[must_use]
    pub fn required(mut self, name: &str, ty: ValueType, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty,
            required: true,
            resource: false,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds an optional input.
    #[must_use]
    pub fn optional(mut self, name: &str, ty: ValueType, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty,
            required: false,
            resource: false,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds a required input that names a resource the action changes.
    #[must_use]
    pub fn resource(mut self, name: &str, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty: ValueType::String,
            required: true,
            resource: true,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds an optional input that names a resource the action changes or points something at
    /// (a route's target, the instance an address moves to): guarded in a drill like the
    /// resource it changes.
    #[must_use]
    pub fn optional_resource(mut self, name: &str, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty: ValueType::String,
            required: false,
            resource: true,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds a required input that names a resource the action changes or points something at,
    /// under a type other than a plain string.
    #[must_use]
    pub fn required_resource(mut self, name: &str, ty: ValueType, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty,
            required: true,
            resource: true,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds an input that names a list of resources the action changes.
    #[must_use]
    pub fn resources(mut self, name: &str, doc: &str) -> Self {
        self.inputs.push(InputSpec {
            name: name.to_owned(),
            ty: ValueType::List(Box::new(ValueType::String)),
            required: true,
            resource: true,
            doc: doc.to_owned(),
        });
        self
    }

    /// Adds an output.
    #[must_use]
    pub fn output(mut self, name: &str, ty: ValueType, doc: &str) -> Self {
        self.outputs.push(OutputSpec {
            name: name.to_owned(),
            ty,
            doc: doc.to_owned(),
        });
        self
    }

    /// The input called `name`, if the action has one.
    #[must_use]
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// The output called `name`, if the action has one.
    #[must_use]
    pub fn output_named(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The provider part of the name (`aws_route53` for `aws_route53.upsert_record`, `core` for
    /// bare names such as `wait`).
    #[must_use]
    pub fn provider(&self) -> &str {
        self.name.split_once('.').map_or("core", |(p, _)| p)
    }
}

/// A set of actions the compiler can look names up in.
///
/// The built-in catalogue lives in `drover-adapters`; tests and embedders can provide their own.
pub trait Catalogue: Send + Sync {
    /// The schema of the action called `name`, if there is one.
    fn lookup(&self, name: &str) -> Option<&ActionSchema>;

    /// Every action's name, sorted (used for "did you mean" hints and documentation).
    fn names(&self) -> Vec<&str>;
}

/// A catalogue held in memory, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct StaticCatalogue {
    actions: Vec<ActionSchema>,
}

impl StaticCatalogue {
    /// Builds a catalogue from schemas; a later schema with the same name replaces an earlier one.
    #[must_use]
    pub fn new(actions: impl IntoIterator<Item = ActionSchema>) -> Self {
        let mut all: Vec<ActionSchema> = Vec::new();
        for a in actions {
            if let Some(slot) = all.iter_mut().find(|x| x.name == a.name) {
                *slot = a;
            } else {
                all.push(a);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Self { actions: all }
    }

    /// Every schema, sorted by name.
    #[must_use]
    pub fn actions(&self) -> &[ActionSchema] {
        &self.actions
    }
}

impl Catalogue for StaticCatalogue {
    fn lookup(&self, name: &str) -> Option<&ActionSchema> {
        self.actions
            .binary_search_by(|a| a.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.actions[i])
    }

    fn names(&self) -> Vec<&str> {
        self.actions.iter().map(|a| a.name.as_str()).collect()
    }
}

/// Whether a resolved value has the shape of `ty`; if not, what was found.
fn value_fits(v: &serde_json::Value, ty: &ValueType) -> Result<(), String> {
    use serde_json::Value as J;
    let found = || match v {
        J::Null => "nothing".to_owned(),
        J::Bool(b) => format!("`{b}`"),
        J::Number(n) => format!("the number {n}"),
        J::String(s) if s.chars().count() > 60 => "a string".to_owned(),
        J::String(s) => format!("\"{s}\""),
        J::Array(_) => "a list".to_owned(),
        J::Object(_) => "a map".to_owned(),
    };
    let ok = match (ty, v) {
        (ValueType::Any, _) => true,
        (
            ValueType::String | ValueType::Secret | ValueType::StringOrSecret,
            J::String(_) | J::Number(_) | J::Bool(_),
        ) => true,
        (ValueType::Int, J::Number(n)) => n.is_i64() || n.is_u64(),
        (ValueType::Bool, J::Bool(_)) => true,
        (ValueType::Duration, J::Number(n)) => n.is_u64(),
        (ValueType::Enum(words), J::String(s)) => {
            if words.contains(s) {
                true
            } else {
                return Err(format!(
                    "{}, which is not one of {}",
                    found(),
                    words.join(", ")
                ));
            }
        }
        (ValueType::List(inner), J::Array(items)) => {
            for i in items {
                value_fits(i, inner)?;
            }
            true
        }
        (ValueType::Map(inner), J::Object(m)) => {
            for i in m.values() {
                value_fits(i, inner)?;
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(found()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_by_exact_name_and_provider_is_the_prefix() {
        let cat = StaticCatalogue::new([
            ActionSchema::new("wait", "waits", Effect::ReadOnly, Role::Plain),
            ActionSchema::new(
                "aws_route53.upsert_record",
                "dns",
                Effect::Destructive,
                Role::Cutover,
            ),
        ]);
        assert_eq!(cat.lookup("wait").map(ActionSchema::provider), Some("core"));
        assert_eq!(
            cat.lookup("aws_route53.upsert_record")
                .map(ActionSchema::provider),
            Some("aws_route53")
        );
        assert!(cat.lookup("aws_route53").is_none());
        assert_eq!(cat.names(), vec!["aws_route53.upsert_record", "wait"]);
    }

    #[test]
    fn describe_nested_types() {
        let t = ValueType::List(Box::new(ValueType::Map(Box::new(ValueType::Int))));
        assert_eq!(t.describe(), "list<map<int>>");
    }

    #[test]
    fn resolved_inputs_are_checked_against_the_schema() {
        let s = ActionSchema::new("t.act", "test", Effect::ReadOnly, Role::Plain)
            .required("name", ValueType::String, "a name")
            .optional("count", ValueType::Int, "how many")
            .optional(
                "kind",
                ValueType::Enum(vec!["a".into(), "b".into()]),
                "which",
            )
            .optional("every", ValueType::Duration, "how often");
        let ok: std::collections::BTreeMap<String, serde_json::Value> = [
            ("name".to_owned(), serde_json::json!("x")),
            ("count".to_owned(), serde_json::json!(3)),
            ("kind".to_owned(), serde_json::json!("b")),
            ("every".to_owned(), serde_json::json!(1000)),
        ]
        .into();
        assert_eq!(s.check_inputs(&ok), Ok(()));
        let mut missing = ok.clone();
        missing.remove("name");
        assert_eq!(
            s.check_inputs(&missing),
            Err("`t.act` needs the `name` input (string)".into())
        );
        let mut word = ok.clone();
        word.insert("kind".into(), serde_json::json!("c"));
        let e = s.check_inputs(&word).expect_err("a word outside the set");
        assert!(e.contains("`kind`") && e.contains("not one of a, b"), "{e}");
        let mut count = ok.clone();
        count.insert("count".into(), serde_json::json!("three"));
        let e = s.check_inputs(&count).expect_err("not a number");
        assert!(e.contains("`count`") && e.contains("expected int"), "{e}");
        let mut neg = ok;
        neg.insert("every".into(), serde_json::json!(-5));
        assert!(s.check_inputs(&neg).is_err(), "a negative duration");
    }
}
