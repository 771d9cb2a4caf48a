//! Checkpoints of a run's audit chain, kept outside the host's reach.
//!
//! The chain's head lives in the same database as the records: whoever can edit rows can rewrite
//! the records and the head together, and `drover audit verify` would find a consistent chain.
//! So after every approval, at least every [`EVERY`] records and when the run stops, the driver
//! signs a checkpoint — run id, record count, head hash, time — with the instance's own Ed25519
//! key and appends it to an **anchor** outside the state directory (`--audit-anchor file:DIR`:
//! an append-only file per run, on storage the host cannot rewrite). `drover audit verify RUN
//! --anchor LOCATION` recomputes the chain from the records and checks it against every
//! checkpoint: a log truncated and rehashed, its head rewritten, contradicts the checkpoints
//! written before, and the first contradicted one is named.

use crate::audit::{GENESIS, chain_hash};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checkpoint is written at least every this many audit records.
pub const EVERY: u64 = 20;

/// Where checkpoints go.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// `file:DIR`: one append-only file of checkpoints per run, `DIR/RUN.checkpoints`.
    Dir(PathBuf),
    /// A store another crate provides for a scheme registered with [`register_schemes`] (for
    /// example `s3://bucket/prefix` under S3 Object Lock, in drover-adapters).
    Store(Arc<dyn AnchorStore>),
}

/// An anchor outside this crate: somewhere checkpoints are appended to and read back, that the
/// host cannot rewrite.
pub trait AnchorStore: Send + Sync + std::fmt::Debug {
    /// The location as written (`s3://bucket/prefix`).
    fn location(&self) -> String;
    /// Appends one checkpoint.
    ///
    /// # Errors
    /// The store cannot be written.
    fn append(&self, c: &Checkpoint) -> Result<(), String>;
    /// Every checkpoint of `run_id`, in the order written.
    ///
    /// # Errors
    /// The store cannot be read, or holds something that is not a checkpoint.
    fn read(&self, run_id: &str) -> Result<Vec<Checkpoint>, String>;
    /// Whether checkpoints can be appended, asked before anything is done.
    ///
    /// # Errors
    /// Why not.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Opens a location of a registered scheme.
pub type Opener = fn(&str) -> Result<Arc<dyn AnchorStore>, String>;

static SCHEMES: std::sync::OnceLock<Vec<(&'static str, Opener)>> = std::sync::OnceLock::new();

/// Registers the anchor schemes other crates provide, by location prefix (`s3://`), once per
/// process (the binary does it at start; later calls are ignored).
pub fn register_schemes(schemes: Vec<(&'static str, Opener)>) {
    let _ = SCHEMES.set(schemes);
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run.
    pub run_id: String,
    /// Records in the chain at the checkpoint.
    pub count: u64,
    /// The chain's head hash after `count` records.
    pub head: String,
    /// When (RFC 3339).
    pub time: String,
    /// The instance's public key (hex).
    pub key: String,
    /// Ed25519 signature over [`Checkpoint::message`] (hex).
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed.
    #[must_use]
    pub fn message(&self) -> String {
        format!(
            "drover checkpoint v1\nrun: {}\ncount: {}\nhead: {}\ntime: {}\n",
            self.run_id, self.count, self.head, self.time
        )
    }

    /// A checkpoint signed with `key`.
    #[must_use]
    pub fn sign(run_id: &str, count: u64, head: &str, time: String, key: &SigningKey) -> Self {
        let mut c = Self {
            run_id: run_id.to_owned(),
            count,
            head: head.to_owned(),
            time,
            key: hex::encode(key.verifying_key().to_bytes()),
            signature: String::new(),
        };
        c.signature = hex::encode(key.sign(c.message().as_bytes()).to_bytes());
        c
    }

    /// Whether the signature verifies under the key the checkpoint names.
    #[must_use]
    pub fn signature_ok(&self) -> bool {
        let key = hex::decode(&self.key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok());
        let sig = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b));
        match (key, sig) {
            (Some(k), Some(s)) => k.verify(self.message().as_bytes(), &s).is_ok(),
            _ => false,
        }
    }
}

impl Anchor {
    /// Parses `file:DIR`.
    ///
    /// # Errors
    /// Any other form, named.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(dir) = text.strip_prefix("file:").filter(|d| !d.is_empty()) {
            return Ok(Self::Dir(PathBuf::from(dir)));
        }
        if let Some((_, open)) = SCHEMES
            .get()
            .into_iter()
            .flatten()
            .find(|(prefix, _)| text.starts_with(prefix))
        {
            return open(text).map(Self::Store);
        }
        let more: Vec<String> = SCHEMES
            .get()
            .into_iter()
            .flatten()
            .map(|(p, _)| format!(" or {p}…"))
            .collect();
        Err(format!(
            "`{text}` is not an audit anchor: use file:DIR (a directory outside the state directory, on storage this host cannot rewrite){}",
            more.concat()
        ))
    }

    /// The anchor as written (`file:DIR`).
    #[must_use]
    pub fn location(&self) -> String {
        match self {
            Self::Dir(d) => format!("file:{}", d.display()),
            Self::Store(s) => s.location(),
        }
    }

    /// Whether checkpoints can be appended here: asked before a run or an operation starts, so a
    /// mistyped or unprotected anchor is found before the first change, not at the first
    /// checkpoint.
    ///
    /// # Errors
    /// Why not.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Dir(d) => std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot use the audit anchor {}: {e}", d.display())),
            Self::Store(s) => s.check(),
        }
    }

    fn file(dir: &Path, run_id: &str) -> PathBuf {
        dir.join(format!("{run_id}.checkpoints"))
    }

    /// Appends a checkpoint (to a directory: one JSON line, opened for appending only, synced).
    ///
    /// # Errors
    /// The anchor cannot be written.
    pub fn append(&self, c: &Checkpoint) -> Result<(), String> {
        let dir = match self {
            Self::Dir(d) => d,
            Self::Store(s) => return s.append(c),
        };
        let path = Self::file(dir, &c.run_id);
        let err = |e: std::io::Error| {
            format!("cannot append to the audit anchor {}: {e}", path.display())
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(err)?;
        let line = serde_json::to_string(c).map_err(|e| e.to_string())?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)
    }

    /// Every checkpoint of `run_id`, in the order written.
    ///
    /// # Errors
    /// The anchor cannot be read, or holds a line that is not a checkpoint.
    pub fn read(&self, run_id: &str) -> Result<Vec<Checkpoint>, String> {
        let dir = match self {
            Self::Dir(d) => d,
            Self::Store(s) => return s.read(run_id),
        };
        let path = Self::file(dir, run_id);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the audit anchor {}: {e}", path.display()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    format!(
                        "line {} of {} is not a checkpoint: {e}",
                        i + 1,
                        path.display()
                    )
                })
            })
            .collect()
    }
}

/// The instance's signing key, `STATE/instance.key` (made on first use, readable by the owner
/// only).
///
/// # Errors
/// The key cannot be read or written.
pub fn instance_key(state_dir: &Path) -> Result<SigningKey, String> {
    let path = state_dir.join("instance.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("{} is not an instance key", path.display()))?;
        return Ok(SigningKey::from_bytes(&bytes));
    }
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(hex::encode(seed).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Checks a run's audit records `(seq, record JSON, stored hash)` against its checkpoints: the
/// chain is recomputed from the records (stored hashes are not trusted), and at every
/// checkpoint's count it must equal the checkpoint's head. Returns how many checkpoints held.
///
/// # Errors
/// The first checkpoint that does not verify or that the log contradicts, named.
pub fn check(
    run_id: &str,
    rows: &[(u64, String, String)],
    checkpoints: &[Checkpoint],
) -> Result<usize, String> {
    if checkpoints.is_empty() {
        return Err(format!("the anchor holds no checkpoint of run {run_id}"));
    }
    let mut heads = Vec::with_capacity(rows.len() + 1);
    heads.push(GENESIS.to_owned());
    for (_, json, _) in rows {
        let prev = heads.last().cloned().unwrap_or_default();
        heads.push(chain_hash(&prev, json));
    }
    for (n, c) in checkpoints.iter().enumerate() {
        let name = format!("checkpoint {} ({} records, {})", n + 1, c.count, c.time);
        if c.run_id != run_id {
            return Err(format!("{name} belongs to run {}", c.run_id));
        }
        if !c.signature_ok() {
            return Err(format!("{name} has a signature that does not verify"));
        }
        let Some(head) = usize::try_from(c.count).ok().and_then(|k| heads.get(k)) else {
            return Err(format!(
                "{name}: the log holds only {} records — it was truncated after the checkpoint was anchored",
                rows.len()
            ));
        };
        if *head != c.head {
            return Err(format!(
                "{name}: the log's first {} records hash to {}, the anchored head is {} — the log was rewritten",
                c.count,
                head.get(..12).unwrap_or(head),
                c.head.get(..12).unwrap_or(&c.head)
            ));
        }
    }
    Ok(checkpoints.len())
}
