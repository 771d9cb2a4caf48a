//! Signing through `ssh-agent` (`SSH_AUTH_SOCK`): the private key — on disk, or on a FIDO2
//! token — never leaves the agent. Speaks the agent protocol's two requests Drover needs:
//! list identities, and sign.

use crate::sign::SignError;
use ssh_key::public::KeyData;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// Ask an RSA key for `rsa-sha2-512` rather than SHA-1.
const RSA_SHA2_512: u32 = 4;

/// A connection to an agent.
pub struct Agent {
    sock: UnixStream,
}

fn err(e: impl std::fmt::Display) -> SignError {
    SignError::Agent(e.to_string())
}

fn put_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_u32(b: &mut &[u8]) -> Result<u32, SignError> {
    let (head, rest) = b
        .split_at_checked(4)
        .ok_or_else(|| err("short reply from the agent"))?;
    *b = rest;
    Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

fn take_string<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], SignError> {
    let n = take_u32(b)? as usize;
    let (head, rest) = b
        .split_at_checked(n)
        .ok_or_else(|| err("short reply from the agent"))?;
    *b = rest;
    Ok(head)
}

impl Agent {
    /// Connects to the agent at `SSH_AUTH_SOCK`, if set.
    ///
    /// # Errors
    /// No agent, or one that cannot be reached.
    pub fn from_env() -> Result<Self, SignError> {
        let path = std::env::var_os("SSH_AUTH_SOCK")
            .ok_or_else(|| err("SSH_AUTH_SOCK is not set (start one with `eval $(ssh-agent)` and `ssh-add`, or give --key)"))?;
        Self::connect(Path::new(&path))
    }

    /// Connects to the agent listening at `path`.
    ///
    /// # Errors
    /// The socket cannot be reached.
    pub fn connect(path: &Path) -> Result<Self, SignError> {
        let sock = UnixStream::connect(path)
            .map_err(|e| err(format!("cannot reach {}: {e}", path.display())))?;
        let limit = Some(std::time::Duration::from_secs(30));
        sock.set_read_timeout(limit).map_err(err)?;
        sock.set_write_timeout(limit).map_err(err)?;
        Ok(Self { sock })
    }

    fn call(&mut self, body: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut msg = Vec::with_capacity(body.len() + 4);
        put_string(&mut msg, body);
        self.sock.write_all(&msg).map_err(err)?;
        let mut len = [0u8; 4];
        self.sock.read_exact(&mut len).map_err(err)?;
        let n = u32::from_be_bytes(len) as usize;
        if n > 1 << 20 {
            return Err(err("reply too large"));
        }
        let mut reply = vec![0u8; n];
        self.sock.read_exact(&mut reply).map_err(err)?;
        Ok(reply)
    }

    /// The public keys the agent holds.
    ///
    /// # Errors
    /// The agent refused or answered something else.
    pub fn keys(&mut self) -> Result<Vec<KeyData>, SignError> {
        let reply = self.call(&[REQUEST_IDENTITIES])?;
        let mut b = reply.as_slice();
        let (&kind, rest) = b.split_first().ok_or_else(|| err("empty reply"))?;
        if kind != IDENTITIES_ANSWER {
            return Err(err("the agent refused to list its keys"));
        }
        b = rest;
        let n = take_u32(&mut b)?;
        let mut out = Vec::new();
        for _ in 0..n {
            let blob = take_string(&mut b)?;
            let _comment = take_string(&mut b)?;
            // Keys this build cannot read are skipped, not fatal.
            if let Ok(k) = ssh_key::PublicKey::from_bytes(blob) {
                out.push(k.key_data().clone());
            }
        }
        Ok(out)
    }

    /// Signs `statement` as SSHSIG with the agent's key `key`; returns the armored signature.
    ///
    /// # Errors
    /// The agent refused (the key is not loaded, a FIDO2 touch timed out) or answered wrongly.
    pub fn sign(&mut self, key: &KeyData, statement: &str) -> Result<String, SignError> {
        self.sign_in(crate::NAMESPACE, key, statement)
    }

    /// [`Agent::sign`] under another namespace (a login: [`crate::LOGIN_NAMESPACE`]).
    ///
    /// # Errors
    /// As [`Agent::sign`].
    pub fn sign_in(
        &mut self,
        namespace: &str,
        key: &KeyData,
        statement: &str,
    ) -> Result<String, SignError> {
        let hash = ssh_key::HashAlg::Sha512;
        let data =
            ssh_key::SshSig::signed_data(namespace, hash, statement.as_bytes()).map_err(err)?;
        let blob = ssh_key::PublicKey::from(key.clone())
            .to_bytes()
            .map_err(err)?;
        let mut body = vec![SIGN_REQUEST];
        put_string(&mut body, &blob);
        put_string(&mut body, &data);
        let flags = if matches!(key, KeyData::Rsa(_)) {
            RSA_SHA2_512
        } else {
            0
        };
        body.extend_from_slice(&flags.to_be_bytes());
        let reply = self.call(&body)?;
        let mut b = reply.as_slice();
        let (&kind, rest) = b.split_first().ok_or_else(|| err("empty reply"))?;
        if kind != SIGN_RESPONSE {
            return Err(err(
                "the agent refused to sign (is the key loaded? a security key may need a touch)",
            ));
        }
        b = rest;
        let sig_blob = take_string(&mut b)?;
        let signature = ssh_key::Signature::try_from(sig_blob).map_err(err)?;
        let sig = ssh_key::SshSig::new(key.clone(), namespace, hash, signature).map_err(err)?;
        sig.to_pem(ssh_key::LineEnding::LF).map_err(err)
    }

    /// Signs with the first agent key that `accept` takes (for example: one in the roster).
    ///
    /// # Errors
    /// No such key in the agent, or the signing failed.
    pub fn sign_with_first(
        &mut self,
        statement: &str,
        accept: impl Fn(&KeyData) -> bool,
    ) -> Result<String, SignError> {
        self.sign_with_first_in(crate::NAMESPACE, statement, accept)
    }

    /// [`Agent::sign_with_first`] under another namespace.
    ///
    /// # Errors
    /// As [`Agent::sign_with_first`].
    pub fn sign_with_first_in(
        &mut self,
        namespace: &str,
        statement: &str,
        accept: impl Fn(&KeyData) -> bool,
    ) -> Result<String, SignError> {
        let key = self
            .keys()?
            .into_iter()
            .find(|k| accept(k))
            .ok_or_else(|| err("no key in the agent belongs to an operator in the roster (ssh-add the key named there)"))?;
        self.sign_in(namespace, &key, statement)
    }
}
