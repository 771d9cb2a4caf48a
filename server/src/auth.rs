//! Who is calling: a login proves possession of a roster SSH key (a challenge signed as SSHSIG
//! under its own namespace, [`drover_identity::LOGIN_NAMESPACE`]) and yields a short-lived bearer
//! token. Only the token's SHA-256 is kept — in memory and in the state directory
//! (`sessions.json`), so sessions survive a restart of the server and an open console reconnects
//! by itself; tokens can be revoked. Logins are rate-limited per
//! client address. A session never replaces a statement signature: approvals and starts are still
//! verified statement by statement.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a login challenge may be answered.
pub const CHALLENGE_TTL_MS: u64 = 120_000;
/// Logins (challenges and answers) per client address per minute.
pub const LOGINS_PER_MINUTE: u32 = 20;
/// Decisions (approvals, denials) per operator per minute.
pub const DECISIONS_PER_MINUTE: u32 = 30;

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// The roster operator.
    pub operator: String,
    /// When the token stops working (ms since the epoch).
    pub expires_at: u64,
    /// SHA-256 of the token (hex): what is kept, and what revocation names.
    pub token_sha256: String,
    /// What a browser session's state-changing requests must carry in `x-csrf-token` (the
    /// console reads it from `GET /api/v1/session`; other sites cannot). Derived from the token,
    /// so it is never kept.
    #[serde(skip)]
    pub csrf: String,
}

/// The CSRF token of the session `token` opens: a one-way function of it.
fn csrf_of(token: &str) -> String {
    sha256_hex(&format!("drover-csrf\0{token}"))[..32].to_owned()
}

/// How long a console link may be opened.
pub const LINK_TTL_MS: u64 = 60_000;

/// Outstanding challenges, live sessions and rate-limit windows.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Where live sessions (token hashes) are kept across restarts; `None`: in memory only.
    path: Option<std::path::PathBuf>,
    challenges: Mutex<HashMap<String, u64>>,
    tokens: Mutex<HashMap<String, Session>>,
    /// One-time console links: code SHA-256 → (operator, expiry).
    links: Mutex<HashMap<String, (String, u64)>>,
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// Sessions kept in `path` (`STATE/sessions.json`): those still live there, of operators
    /// `known` still accepts, are open again.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn kept(
        path: std::path::PathBuf,
        now: u64,
        known: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let list: Vec<Session> = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let tokens = list
            .into_iter()
            .filter(|s| s.expires_at > now && known(&s.operator))
            .map(|s| (s.token_sha256.clone(), s))
            .collect();
        Ok(Self {
            path: Some(path),
            tokens: Mutex::new(tokens),
            ..Self::default()
        })
    }

    /// Writes the live sessions to the file (when there is one); a failure is logged, never
    /// fatal: sessions then last until the server stops.
    fn keep(&self, tokens: &HashMap<String, Session>) {
        let Some(path) = &self.path else { return };
        let list: Vec<&Session> = tokens.values().collect();
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new();
                f.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
                f.open(&tmp)?.write_all(&b)
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(error = %e, path = %path.display(), "cannot keep the sessions");
        }
    }

    /// A new challenge text for `server`, valid [`CHALLENGE_TTL_MS`].
    pub fn challenge(&self, server: &str, now: u64) -> String {
        let nonce = drover_identity::statement::nonce();
        let text = format!(
            "drover login v1\nserver: {server}\nnonce: {nonce}\ntime: {}\n",
            drover_engine::run_record::rfc3339(now)
        );
        let mut c = lock(&self.challenges);
        c.retain(|_, exp| *exp > now);
        c.insert(text.clone(), now + CHALLENGE_TTL_MS);
        text
    }

    /// Consumes a challenge: `true` once, if it was issued and has not expired.
    pub fn take_challenge(&self, text: &str, now: u64) -> bool {
        lock(&self.challenges)
            .remove(text)
            .is_some_and(|exp| exp > now)
    }

    /// A new session for `operator`; returns the token (shown once) and the session.
    pub fn open(&self, operator: &str, ttl_ms: u64, now: u64) -> (String, Session) {
        let bytes: [u8; 32] = rand::random();
        let token = hex::encode(bytes);
        let s = Session {
            operator: operator.to_owned(),
            expires_at: now + ttl_ms,
            token_sha256: sha256_hex(&token),
            csrf: csrf_of(&token),
        };
        let mut t = lock(&self.tokens);
        t.retain(|_, s| s.expires_at > now);
        t.insert(s.token_sha256.clone(), s.clone());
        self.keep(&t);
        (token, s)
    }

    /// A one-time code that opens a browser session for `operator` (an operator logged in with
    /// the CLI hands it to their browser: `drover console`), valid [`LINK_TTL_MS`].
    pub fn link(&self, operator: &str, now: u64) -> String {
        let code = hex::encode(rand::random::<[u8; 32]>());
        let mut l = lock(&self.links);
        l.retain(|_, (_, exp)| *exp > now);
        l.insert(sha256_hex(&code), (operator.to_owned(), now + LINK_TTL_MS));
        code
    }

    /// Consumes a console link: its operator, once, if it has not expired.
    pub fn take_link(&self, code: &str, now: u64) -> Option<String> {
        lock(&self.links)
            .remove(&sha256_hex(code))
            .filter(|(_, exp)| *exp > now)
            .map(|(op, _)| op)
    }

    /// The session a bearer token opens, if it is live.
    pub fn check(&self, token: &str, now: u64) -> Option<Session> {
        lock(&self.tokens)
            .get(&sha256_hex(token))
            .filter(|s| s.expires_at > now)
            .map(|s| Session {
                csrf: csrf_of(token),
                ..s.clone()
            })
    }

    /// Revokes the session with this token hash; `true` if there was one.
    pub fn revoke(&self, token_sha256: &str) -> bool {
        let mut t = lock(&self.tokens);
        let had = t.remove(token_sha256).is_some();
        self.keep(&t);
        had
    }

    /// Revokes every session of `operator`; returns how many.
    pub fn revoke_operator(&self, operator: &str) -> usize {
        let mut t = lock(&self.tokens);
        let before = t.len();
        t.retain(|_, s| s.operator != operator);
        self.keep(&t);
        before - t.len()
    }

    /// Counts one request against `key`'s one-minute window; `false` once `limit` is reached.
    pub fn allow(&self, key: &str, limit: u32, now: u64) -> bool {
        let minute = now / 60_000;
        let mut w = lock(&self.windows);
        // Windows of past minutes are forgotten, so the map stays as small as one minute's
        // callers.
        w.retain(|_, (m, _)| *m == minute);
        let e = w.entry(key.to_owned()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_answered_once_and_before_it_expires() {
        let s = Sessions::default();
        let c = s.challenge("srv", 1_000);
        assert!(s.take_challenge(&c, 2_000));
        assert!(!s.take_challenge(&c, 2_000), "once");
        let late = s.challenge("srv", 1_000);
        assert!(!s.take_challenge(&late, 1_000 + CHALLENGE_TTL_MS));
        assert!(!s.take_challenge("drover login v1\nforged\n", 1_000));
    }

    #[test]
    fn tokens_expire_and_can_be_revoked() {
        let s = Sessions::default();
        let (token, session) = s.open("alice", 1_000, 0);
        assert_eq!(
            s.check(&token, 999).map(|x| x.operator),
            Some("alice".into())
        );
        assert!(s.check(&token, 1_000).is_none(), "expired");
        let (token, session2) = s.open("alice", 1_000, 0);
        assert!(s.revoke(&session2.token_sha256));
        assert!(s.check(&token, 1).is_none(), "revoked");
        assert!(!s.revoke(&session.token_sha256) || s.check("x", 0).is_none());
        assert!(s.check("not a token", 0).is_none());
    }

    #[test]
    fn a_console_link_opens_once_and_expires() {
        let s = Sessions::default();
        let code = s.link("alice", 0);
        assert_eq!(s.take_link(&code, 1), Some("alice".into()));
        assert_eq!(s.take_link(&code, 1), None, "once");
        let late = s.link("bob", 0);
        assert_eq!(s.take_link(&late, LINK_TTL_MS), None, "expired");
        assert_eq!(s.take_link("not a code", 0), None);
    }

    #[test]
    fn the_rate_limit_counts_per_key_per_minute() {
        let s = Sessions::default();
        for _ in 0..3 {
            assert!(s.allow("1.2.3.4", 3, 0));
        }
        assert!(!s.allow("1.2.3.4", 3, 1));
        assert!(s.allow("5.6.7.8", 3, 1), "another key");
        assert!(s.allow("1.2.3.4", 3, 60_000), "the next minute");
    }
}
