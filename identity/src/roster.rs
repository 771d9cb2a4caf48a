//! The operator roster: a TOML file in version control naming each operator, their roles, their
//! SSH public keys and where their TOTP secret is (never the secret itself).
//!
//! ```toml
//! [operators.alice]
//! roles = ["incident-commander"]
//! keys  = ["ssh-ed25519 AAAAC3Nz... alice@laptop"]
//! totp  = "env(ALICE_TOTP_SECRET)"
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a secret is: an environment variable or a file. Never the secret inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env(NAME)`.
    Env(String),
    /// `file:PATH` (relative to the roster's directory).
    File(PathBuf),
}

impl SecretRef {
    /// Parses `env(NAME)` or `file:PATH`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Some(name) = t.strip_prefix("env(").and_then(|r| r.strip_suffix(')')) {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return ok.then(|| Self::Env(name.to_owned()));
        }
        t.strip_prefix("file:")
            .filter(|p| !p.is_empty())
            .map(|p| Self::File(PathBuf::from(p)))
    }

    /// Reads the secret (`base` resolves a relative file path).
    ///
    /// # Errors
    /// A missing variable or unreadable file, named (never the secret).
    pub fn resolve(&self, base: &Path) -> Result<String, String> {
        match self {
            Self::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Self::File(p) => {
                let path = base.join(p);
                std::fs::read_to_string(&path)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
            }
        }
    }
}

/// One operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Their name (the roster's table key).
    pub name: String,
    /// Roles they hold.
    pub roles: Vec<String>,
    /// Their SSH public keys.
    pub keys: Vec<ssh_key::PublicKey>,
    /// Where their TOTP secret is, if they have one.
    pub totp: Option<SecretRef>,
    /// May approve alone where a runbook allows break-glass.
    pub break_glass: bool,
}

/// A problem in a roster, with the byte range it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterIssue {
    /// Bytes of the roster text.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl RosterIssue {
    /// 1-based line and column of the issue's start in `text`.
    #[must_use]
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// The operator roster.
#[derive(Debug, Clone)]
pub struct Roster {
    /// Operators by name.
    pub operators: BTreeMap<String, Operator>,
    /// SHA-256 of the roster's bytes (recorded when a run starts).
    pub sha256: String,
    /// The directory relative `file:` references resolve against.
    pub base: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoster {
    #[serde(default)]
    operators: BTreeMap<String, toml::Spanned<RawOperator>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperator {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    keys: Vec<toml::Spanned<String>>,
    #[serde(default)]
    totp: Option<toml::Spanned<String>>,
    #[serde(default)]
    break_glass: bool,
}

impl Roster {
    /// Parses roster `text`; `base` is the directory `file:` references resolve against.
    ///
    /// # Errors
    /// Every problem found, each with its span: TOML errors, keys that are not OpenSSH public
    /// keys, a key listed under two operators, an operator with no key, a TOTP secret inline.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Vec<RosterIssue>> {
        let raw: RawRoster = toml::from_str(text).map_err(|e| {
            vec![RosterIssue {
                span: e.span().unwrap_or(0..0),
                message: e.message().to_owned(),
                hint: Some(
                    "each operator is a table `[operators.NAME]` with `roles`, `keys`, and optionally `totp` and `break_glass`"
                        .into(),
                ),
            }]
        })?;
        let mut issues = Vec::new();
        let mut operators = BTreeMap::new();
        // Key data → (operator, span) of its first listing.
        let mut owners: BTreeMap<Vec<u8>, (String, Range<usize>)> = BTreeMap::new();
        for (name, op) in raw.operators {
            let span = op.span();
            let op = op.into_inner();
            if op.keys.is_empty() {
                issues.push(RosterIssue {
                    span: span.clone(),
                    message: format!("operator `{name}` has no key"),
                    hint: Some("add `keys = [\"ssh-ed25519 AAAA… name@host\"]` (the line of their `.pub` file)".into()),
                });
            }
            let mut keys = Vec::new();
            for (n, k) in op.keys.iter().enumerate() {
                match ssh_key::PublicKey::from_openssh(k.get_ref().trim()) {
                    Ok(key) => {
                        let data = key_bytes(key.key_data());
                        match owners.get(&data) {
                            Some((first, _)) => issues.push(RosterIssue {
                                span: k.span(),
                                message: format!(
                                    "the key {} is listed under `{first}` and `{name}`",
                                    key.fingerprint(ssh_key::HashAlg::Sha256)
                                ),
                                hint: Some("a key belongs to one person: remove it from one of them".into()),
                            }),
                            None => {
                                owners.insert(data, (name.clone(), k.span()));
                            }
                        }
                        keys.push(key);
                    }
                    Err(e) => issues.push(RosterIssue {
                        span: k.span(),
                        message: format!(
                            "key {} of operator `{name}` is not an OpenSSH public key: {e}",
                            n + 1
                        ),
                        hint: Some("paste the whole line of the `.pub` file: `ssh-ed25519 AAAA… name@host`".into()),
                    }),
                }
            }
            let totp = match &op.totp {
                None => None,
                Some(t) => match SecretRef::parse(t.get_ref()) {
                    Some(r) => Some(r),
                    None => {
                        issues.push(RosterIssue {
                            span: t.span(),
                            message: format!(
                                "the TOTP secret of `{name}` must be a reference, not a value"
                            ),
                            hint: Some(
                                "write `totp = \"env(NAME)\"` or `totp = \"file:PATH\"`; never the secret itself"
                                    .into(),
                            ),
                        });
                        None
                    }
                },
            };
            operators.insert(
                name.clone(),
                Operator {
                    name,
                    roles: op.roles,
                    keys,
                    totp,
                    break_glass: op.break_glass,
                },
            );
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            operators,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            base: base.to_path_buf(),
        })
    }

    /// The SHA-256 (hex) a roster with these bytes has: what a run records when it starts.
    #[must_use]
    pub fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Reads and parses the roster at `path`.
    ///
    /// # Errors
    /// An unreadable file (as one issue with an empty span), or the parse's issues.
    pub fn load(path: &Path) -> Result<(Self, String), Vec<RosterIssue>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![RosterIssue {
                span: 0..0,
                message: format!("cannot read the operator roster {}: {e}", path.display()),
                hint: None,
            }]
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &base).map(|r| (r, text))
    }

    /// The operator whose keys include `key`.
    #[must_use]
    pub fn operator_with_key(&self, key: &ssh_key::public::KeyData) -> Option<&Operator> {
        let want = key_bytes(key);
        self.operators
            .values()
            .find(|o| o.keys.iter().any(|k| key_bytes(k.key_data()) == want))
    }

    /// Every role some operator holds.
    #[must_use]
    pub fn roles(&self) -> std::collections::BTreeSet<&str> {
        self.operators
            .values()
            .flat_map(|o| o.roles.iter().map(String::as_str))
            .collect()
    }
}

/// A key's wire encoding, which identifies it (comments aside).
fn key_bytes(k: &ssh_key::public::KeyData) -> Vec<u8> {
    use ssh_key::Fingerprint;
    // The SHA-256 fingerprint is over the wire encoding: equal keys, equal fingerprints.
    let f: Fingerprint = k.fingerprint(ssh_key::HashAlg::Sha256);
    f.as_bytes().to_vec()
}
