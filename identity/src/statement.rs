//! Statements: what an operator signs.
//!
//! A statement is a short text in a fixed order, one field per line, so that `ssh-keygen -Y sign`
//! signs exactly what Drover verifies and a person can read what they sign:
//!
//! ```text
//! drover statement v1
//! kind: approve
//! run: r20261203T020000-1a2b
//! step: approve_cutover
//! plan: 9f86d08…
//! inputs: 2c26b46…
//! comment: primary region is down
//! time: 2026-12-03T02:04:00Z
//! nonce: 3f1c…
//! totp: 123456
//! ```
//!
//! `step` and `inputs` are empty for a start; `totp` is present only for a step-up approval.
//! Parsing is strict: the fields in this order, nothing else, so two different texts never read
//! as the same statement.

/// What the operator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the run (the signer is the initiator).
    Start,
    /// Approve the step.
    Approve,
    /// Deny the step.
    Deny,
    /// Approve the step alone, as an operator the roster marks `break_glass` (the comment says
    /// why).
    BreakGlass,
    /// Do an operation outside a run (`drover backup …`, `drover key generate`): the step is
    /// the operation, the plan the roster's SHA-256, the inputs a digest of its arguments.
    Operation,
}

impl Decision {
    /// The word in the statement.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::BreakGlass => "break-glass",
            Self::Operation => "operation",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Self::Start),
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            "break-glass" => Some(Self::BreakGlass),
            "operation" => Some(Self::Operation),
            _ => None,
        }
    }
}

/// A statement an operator signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// What is decided.
    pub kind: Decision,
    /// The run.
    pub run_id: String,
    /// The step (empty for a start).
    pub step: String,
    /// SHA-256 of the run's plan.
    pub plan_sha256: String,
    /// SHA-256 of the step's resolved inputs: exactly what is approved (empty for a start).
    pub inputs_sha256: String,
    /// A comment (a denial's reason); one line.
    pub comment: String,
    /// When it was made (RFC 3339, UTC).
    pub time: String,
    /// A random nonce (hex), so no two statements are the same text.
    pub nonce: String,
    /// A step-up TOTP code, when one is given.
    pub totp: Option<String>,
}

/// Why a text is not a statement.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    /// A line other than the one expected.
    #[error("line {line} of the statement should be `{expected}`")]
    Field {
        /// 1-based line.
        line: usize,
        /// What it should start with.
        expected: String,
    },
    /// A value is not valid.
    #[error("the statement's {field} is not valid: {why}")]
    Value {
        /// Which field.
        field: &'static str,
        /// Why.
        why: String,
    },
}

const HEADER: &str = "drover statement v1";

impl Statement {
    /// The exact text that is signed (ends with a newline).
    ///
    /// # Errors
    /// A field holding a line break (it could forge another field).
    pub fn to_text(&self) -> Result<String, StatementError> {
        let fields: [(&'static str, &str); 8] = [
            ("run", &self.run_id),
            ("step", &self.step),
            ("plan", &self.plan_sha256),
            ("inputs", &self.inputs_sha256),
            ("comment", &self.comment),
            ("time", &self.time),
            ("nonce", &self.nonce),
            ("totp", self.totp.as_deref().unwrap_or("")),
        ];
        for (field, v) in fields {
            if v.contains(['\n', '\r']) {
                return Err(StatementError::Value {
                    field,
                    why: "it holds a line break".into(),
                });
            }
        }
        let mut out = format!("{HEADER}\nkind: {}\n", self.kind.as_str());
        for (field, v) in &fields[..7] {
            out.push_str(&format!("{field}: {v}\n"));
        }
        if let Some(code) = &self.totp {
            out.push_str(&format!("totp: {code}\n"));
        }
        Ok(out)
    }

    /// Reads a statement back from the exact text that was signed.
    ///
    /// # Errors
    /// Anything but the fields in order.
    pub fn parse(text: &str) -> Result<Self, StatementError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.first() != Some(&HEADER) {
            return Err(StatementError::Field {
                line: 1,
                expected: HEADER.into(),
            });
        }
        let names = [
            "kind", "run", "step", "plan", "inputs", "comment", "time", "nonce",
        ];
        let mut values = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let line = lines.get(i + 1).copied().unwrap_or("");
            let prefix = format!("{name}: ");
            let v = line
                .strip_prefix(&prefix)
                .or_else(|| (line == format!("{name}:")).then_some(""))
                .ok_or_else(|| StatementError::Field {
                    line: i + 2,
                    expected: format!("{name}: …"),
                })?;
            values.push(v.to_owned());
        }
        let totp = match lines.get(names.len() + 1) {
            None => None,
            Some(l) => Some(
                l.strip_prefix("totp: ")
                    .ok_or_else(|| StatementError::Field {
                        line: names.len() + 2,
                        expected: "totp: …".into(),
                    })?
                    .to_owned(),
            ),
        };
        if lines.len() > names.len() + 2 {
            return Err(StatementError::Value {
                field: "end",
                why: "there is text after the last field".into(),
            });
        }
        let kind = Decision::parse(&values[0]).ok_or_else(|| StatementError::Value {
            field: "kind",
            why: format!(
                "`{}` is none of start, approve, deny, break-glass, operation",
                values[0]
            ),
        })?;
        let mut it = values.into_iter().skip(1);
        let mut next = || it.next().unwrap_or_default();
        Ok(Self {
            kind,
            run_id: next(),
            step: next(),
            plan_sha256: next(),
            inputs_sha256: next(),
            comment: next(),
            time: next(),
            nonce: next(),
            totp,
        })
    }
}

/// A fresh random nonce (16 bytes, hex).
#[must_use]
pub fn nonce() -> String {
    let b: [u8; 16] = rand::random();
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Statement {
        Statement {
            kind: Decision::Approve,
            run_id: "r1".into(),
            step: "approve_cutover".into(),
            plan_sha256: "aa".into(),
            inputs_sha256: "bb".into(),
            comment: String::new(),
            time: "2026-12-03T02:04:00Z".into(),
            nonce: "cc".into(),
            totp: None,
        }
    }

    #[test]
    fn a_statement_reads_back_as_itself() {
        let s = sample();
        let text = s.to_text().expect("text");
        assert_eq!(Statement::parse(&text), Ok(s.clone()));
        let with_code = Statement {
            totp: Some("123456".into()),
            ..s
        };
        let text = with_code.to_text().expect("text");
        assert!(text.ends_with("totp: 123456\n"));
        assert_eq!(Statement::parse(&text), Ok(with_code));
    }

    #[test]
    fn a_line_break_in_a_field_is_refused_and_extra_text_does_not_parse() {
        let mut s = sample();
        s.comment = "ok\nstep: other".into();
        assert!(s.to_text().is_err());
        let text = sample().to_text().expect("text") + "run: r2\n";
        assert!(Statement::parse(&text).is_err());
        let swapped = sample()
            .to_text()
            .expect("text")
            .replace("kind: approve", "kind: maybe");
        assert!(Statement::parse(&swapped).is_err());
    }
}
