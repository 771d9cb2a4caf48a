//! Who is calling: a login proves possession of a roster SSH key (a challenge signed as SSHSIG
//! under its own namespace, [`drover_identity::LOGIN_NAMESPACE`]) and yields a short-lived bearer
//! token. Only the token's SHA-256 is kept, in the journal (its grants), so sessions survive a
//! restart of the server, an open console reconnects by itself, and with replicas on one
//! PostgreSQL journal a session opened on one replica works on every other (and a revocation on
//! one holds on all). Login challenges and console links are kept the same way: answered or
//! opened once, on any replica. Logins are rate-limited per client address (per replica). A
//! session never replaces a statement signature: approvals and starts are still verified
//! statement by statement.

use drover_engine::journal::{Grant, Journal, JournalError};
use drover_ops::Workspace;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// How long a login challenge may be answered.
pub const CHALLENGE_TTL_MS: u64 = 120_000;
/// Logins (challenges and answers) per client address per minute.
pub const LOGINS_PER_MINUTE: u32 = 20;
/// Decisions (approvals, denials) per operator per minute.
pub const DECISIONS_PER_MINUTE: u32 = 30;

/// The journal's grant kinds this module keeps.
const SESSION: &str = "session";
const CHALLENGE: &str = "login-challenge";
const LINK: &str = "console-link";

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

/// Sessions, challenges and links (in the journal), and rate-limit windows (in memory).
#[derive(Debug)]
pub struct Sessions {
    ws: Workspace,
    /// The roster's operators: a session of anyone else (removed since) opens nothing.
    known: HashSet<String>,
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// Sessions kept in `ws`'s journal, for the roster's `known` operators.
    pub fn new(ws: Workspace, known: impl IntoIterator<Item = String>) -> Self {
        Self {
            ws,
            known: known.into_iter().collect(),
            windows: Mutex::default(),
        }
    }

    /// Runs `f` on the journal, off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, crate::ApiError> {
        crate::on_journal(&self.ws, f).await
    }

    /// A new challenge text for `server`, valid [`CHALLENGE_TTL_MS`].
    ///
    /// # Errors
    /// The journal.
    pub async fn challenge(&self, server: &str, now: u64) -> Result<String, crate::ApiError> {
        let nonce = drover_identity::statement::nonce();
        let text = format!(
            "drover login v1\nserver: {server}\nnonce: {nonce}\ntime: {}\n",
            drover_engine::run_record::rfc3339(now)
        );
        let key = sha256_hex(&text);
        let grant = Grant {
            holder: String::new(),
            data: String::new(),
            expires_at: now + CHALLENGE_TTL_MS,
        };
        self.with(move |j| j.put_grant(CHALLENGE, &key, &grant, now))
            .await?;
        Ok(text)
    }

    /// Consumes a challenge: `true` once, if it was issued and has not expired.
    ///
    /// # Errors
    /// The journal.
    pub async fn take_challenge(&self, text: &str, now: u64) -> Result<bool, crate::ApiError> {
        let key = sha256_hex(text);
        Ok(self
            .with(move |j| j.take_grant(CHALLENGE, &key, now))
            .await?
            .is_some())
    }

    /// A new session for `operator`; returns the token (shown once) and the session.
    ///
    /// # Errors
    /// The journal.
    pub async fn open(
        &self,
        operator: &str,
        ttl_ms: u64,
        now: u64,
    ) -> Result<(String, Session), crate::ApiError> {
        let bytes: [u8; 32] = rand::random();
        let token = hex::encode(bytes);
        let s = Session {
            operator: operator.to_owned(),
            expires_at: now + ttl_ms,
            token_sha256: sha256_hex(&token),
            csrf: csrf_of(&token),
        };
        let (key, grant) = (
            s.token_sha256.clone(),
            Grant {
                holder: s.operator.clone(),
                data: String::new(),
                expires_at: s.expires_at,
            },
        );
        self.with(move |j| j.put_grant(SESSION, &key, &grant, now))
            .await?;
        Ok((token, s))
    }

    /// A one-time code that opens a browser session for `operator` (an operator logged in with
    /// the CLI hands it to their browser: `drover console`), valid [`LINK_TTL_MS`].
    ///
    /// # Errors
    /// The journal.
    pub async fn link(&self, operator: &str, now: u64) -> Result<String, crate::ApiError> {
        let code = hex::encode(rand::random::<[u8; 32]>());
        let (key, grant) = (
            sha256_hex(&code),
            Grant {
                holder: operator.to_owned(),
                data: String::new(),
                expires_at: now + LINK_TTL_MS,
            },
        );
        self.with(move |j| j.put_grant(LINK, &key, &grant, now))
            .await?;
        Ok(code)
    }

    /// Consumes a console link: its operator, once, if it has not expired.
    ///
    /// # Errors
    /// The journal.
    pub async fn take_link(&self, code: &str, now: u64) -> Result<Option<String>, crate::ApiError> {
        let key = sha256_hex(code);
        Ok(self
            .with(move |j| j.take_grant(LINK, &key, now))
            .await?
            .map(|g| g.holder))
    }

    /// The session a bearer token opens, if it is live and its operator still in the roster.
    ///
    /// # Errors
    /// The journal.
    pub async fn check(&self, token: &str, now: u64) -> Result<Option<Session>, crate::ApiError> {
        let key = sha256_hex(token);
        let k = key.clone();
        let found = self.with(move |j| j.grant(SESSION, &k, now)).await?;
        Ok(found
            .filter(|g| self.known.contains(&g.holder))
            .map(|g| Session {
                operator: g.holder,
                expires_at: g.expires_at,
                token_sha256: key,
                csrf: csrf_of(token),
            }))
    }

    /// Revokes the session with this token hash; `true` if there was one.
    ///
    /// # Errors
    /// The journal.
    pub async fn revoke(&self, token_sha256: &str) -> Result<bool, crate::ApiError> {
        let key = token_sha256.to_owned();
        Ok(self
            .with(move |j| j.take_grant(SESSION, &key, 0))
            .await?
            .is_some())
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

    fn sessions(dir: &std::path::Path) -> Sessions {
        Sessions::new(Workspace::new(dir), ["alice".to_owned(), "bob".to_owned()])
    }

    #[tokio::test]
    async fn a_challenge_is_answered_once_and_before_it_expires() {
        let d = tempfile::tempdir().expect("tmp");
        let s = sessions(d.path());
        let c = s.challenge("srv", 1_000).await.expect("challenge");
        assert!(s.take_challenge(&c, 2_000).await.expect("take"));
        assert!(!s.take_challenge(&c, 2_000).await.expect("take"), "once");
        let late = s.challenge("srv", 1_000).await.expect("challenge");
        assert!(
            !s.take_challenge(&late, 1_000 + CHALLENGE_TTL_MS)
                .await
                .expect("take")
        );
        assert!(
            !s.take_challenge("drover login v1\nforged\n", 1_000)
                .await
                .expect("take")
        );
    }

    #[tokio::test]
    async fn tokens_expire_can_be_revoked_and_are_honoured_by_another_server_on_the_journal() {
        let d = tempfile::tempdir().expect("tmp");
        let s = sessions(d.path());
        let other = sessions(d.path());
        let (token, session) = s.open("alice", 1_000, 0).await.expect("open");
        assert_eq!(
            other
                .check(&token, 999)
                .await
                .expect("check")
                .map(|x| x.operator),
            Some("alice".into())
        );
        assert!(
            s.check(&token, 1_000).await.expect("check").is_none(),
            "expired"
        );
        let (token2, session2) = s.open("alice", 1_000, 0).await.expect("open");
        assert!(other.revoke(&session2.token_sha256).await.expect("revoke"));
        assert!(
            s.check(&token2, 1).await.expect("check").is_none(),
            "revoked"
        );
        assert!(
            !s.revoke(&session2.token_sha256).await.expect("revoke"),
            "once"
        );
        assert_ne!(session.token_sha256, session2.token_sha256);
        assert!(s.check("not a token", 0).await.expect("check").is_none());
        // An operator no longer in the roster opens nothing.
        let (carol, _) = s.open("carol", 1_000, 0).await.expect("open");
        assert!(s.check(&carol, 1).await.expect("check").is_none());
        // Only the token's hash is kept.
        for f in std::fs::read_dir(d.path()).expect("state") {
            let bytes = std::fs::read(f.expect("entry").path()).unwrap_or_default();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "a token was stored"
            );
        }
    }

    #[tokio::test]
    async fn a_console_link_opens_once_and_expires() {
        let d = tempfile::tempdir().expect("tmp");
        let s = sessions(d.path());
        let code = s.link("alice", 0).await.expect("link");
        assert_eq!(
            s.take_link(&code, 1).await.expect("take"),
            Some("alice".into())
        );
        assert_eq!(s.take_link(&code, 1).await.expect("take"), None, "once");
        let late = s.link("bob", 0).await.expect("link");
        assert_eq!(
            s.take_link(&late, LINK_TTL_MS).await.expect("take"),
            None,
            "expired"
        );
        assert_eq!(s.take_link("not a code", 0).await.expect("take"), None);
    }

    #[test]
    fn the_rate_limit_counts_per_key_per_minute() {
        let d = tempfile::tempdir().expect("tmp");
        let s = sessions(d.path());
        for _ in 0..3 {
            assert!(s.allow("1.2.3.4", 3, 0));
        }
        assert!(!s.allow("1.2.3.4", 3, 1));
        assert!(s.allow("5.6.7.8", 3, 1), "another key");
        assert!(s.allow("1.2.3.4", 3, 60_000), "the next minute");
    }
}
