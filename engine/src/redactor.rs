//! The one place secrets are taken out of text before it is stored or shown.
//!
//! A [`Redactor`] knows every secret value a run has read (the runbook's `secret` parameters,
//! read from the environment when the run starts or resumes, and anything else resolved as a
//! secret later). The journal passes every payload it appends through it — events, actions,
//! step outputs, errors, audit records, run records — and the driver passes every line it
//! prints. Besides the value itself, its base64 and hex spellings are removed, so a command that
//! prints an encoded secret does not smuggle it into the audit trail.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not searched for (they would match ordinary text everywhere);
/// the compiler's secret parameters are expected to be real credentials.
const MIN_SECRET_LEN: usize = 4;

/// The spellings of one secret that are searched for, longest first.
fn needles(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![
        secret.to_owned(),
        hex::encode(bytes),
        hex::encode_upper(bytes),
    ];
    // Base64 of the secret at each of the three alignments it can have inside a longer encoded
    // text: the characters that depend only on the secret's bytes.
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3usize {
            let mut padded = vec![0u8; shift];
            padded.extend_from_slice(bytes);
            let enc = engine.encode(&padded);
            // Skip the characters that mix in the zero prefix; drop the last (partial) group.
            let skip = (shift * 8).div_ceil(6);
            let keep = ((shift + bytes.len()) * 8) / 6;
            if keep > skip + 5 {
                out.push(enc[skip..keep].to_owned());
            }
        }
    }
    out.retain(|n| n.len() >= MIN_SECRET_LEN);
    out.sort_by_key(|n| std::cmp::Reverse(n.len()));
    out.dedup();
    out
}

/// Removes known secrets from text and structured payloads. Cheap to clone: clones share the
/// same set of secrets.
#[derive(Clone, Default)]
pub struct Redactor(Arc<RwLock<Vec<String>>>);

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().map_or(0, |v| v.len());
        write!(f, "Redactor({n} spellings)")
    }
}

impl Redactor {
    /// A redactor that knows no secret yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns a secret value (and its encoded spellings). Values shorter than four bytes are
    /// ignored.
    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        if let Ok(mut v) = self.0.write() {
            for n in needles(secret) {
                if !v.contains(&n) {
                    v.push(n);
                }
            }
            v.sort_by_key(|n| std::cmp::Reverse(n.len()));
        }
    }

    /// Whether it knows any secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.read().map_or(true, |v| v.is_empty())
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    #[must_use]
    pub fn text(&self, text: &str) -> String {
        let Ok(needles) = self.0.read() else {
            return text.to_owned();
        };
        let mut out = text.to_owned();
        for n in needles.iter() {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string (and object key) in a JSON value, in place.
    pub fn value(&self, v: &mut Value) {
        if self.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                let r = self.text(s);
                if r != *s {
                    *s = r;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut x) in old {
                    self.value(&mut x);
                    m.insert(self.text(&k), x);
                }
            }
            _ => {}
        }
    }

    /// Serializes `payload` to JSON with every known secret removed.
    ///
    /// # Errors
    /// If the payload does not serialize.
    pub fn json<T: Serialize + ?Sized>(&self, payload: &T) -> Result<String, serde_json::Error> {
        if self.is_empty() {
            return serde_json::to_string(payload);
        }
        let mut v = serde_json::to_value(payload)?;
        self.value(&mut v);
        serde_json::to_string(&v)
    }

    /// A copy of `payload` with every known secret removed (for records kept outside the journal).
    ///
    /// # Errors
    /// If the payload does not round-trip through JSON.
    pub fn apply<T: Serialize + DeserializeOwned>(
        &self,
        payload: &T,
    ) -> Result<T, serde_json::Error> {
        let mut v = serde_json::to_value(payload)?;
        self.value(&mut v);
        serde_json::from_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-Token_Value!";

    #[test]
    fn the_value_and_its_encodings_are_removed() {
        let r = Redactor::new();
        r.add(SECRET);
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let text = format!(
            "plain {SECRET}; hex {}; HEX {}; b64 {b64}; embedded {}",
            hex::encode(SECRET),
            hex::encode_upper(SECRET),
            base64::engine::general_purpose::STANDARD.encode(format!("Authorization: {SECRET}"))
        );
        let out = r.text(&text);
        assert!(!out.contains(SECRET), "{out}");
        assert!(!out.contains(&hex::encode(SECRET)), "{out}");
        assert!(!out.contains(&hex::encode_upper(SECRET)), "{out}");
        assert!(!out.contains(&b64[..b64.len() - 4]), "{out}");
        assert!(
            out.starts_with("plain <redacted>; hex <redacted>;"),
            "{out}"
        );
    }

    #[test]
    fn json_payloads_are_redacted_inside_strings_and_keys() {
        let r = Redactor::new();
        r.add(SECRET);
        let payload = serde_json::json!({
            "stdout": format!("token={SECRET}\n"),
            "nested": [{ SECRET: "quoted \"x\"" }],
            "n": 3
        });
        let out = r.json(&payload).expect("serializes");
        assert!(!out.contains(SECRET), "{out}");
        assert!(out.contains("token=<redacted>"), "{out}");
        assert!(out.contains("\"n\":3"), "{out}");
    }

    #[test]
    fn short_values_are_not_searched_for() {
        let r = Redactor::new();
        r.add("ab");
        assert!(r.is_empty());
        assert_eq!(r.text("abc"), "abc");
    }

    #[test]
    fn clones_share_what_they_learn() {
        let r = Redactor::new();
        let c = r.clone();
        c.add(SECRET);
        assert_eq!(r.text(SECRET), REDACTED);
    }
}
