//! Passkeys for browser approvals.
//!
//! An operator signed in to the console registers a passkey (WebAuthn, ES256, attestation
//! `none`); it stays **pending** until they certify it with their SSH key from the CLI
//! (`drover passkey confirm`), which signs a [`Certificate`] naming them, the console's host and
//! the credential's public key. Approving in the browser is then a WebAuthn assertion whose
//! challenge is the SHA-256 of the statement shown; the server wraps it with the certificate
//! into a [`PasskeySignature`] and hands it to the same approval path as an SSH signature, so the
//! run's roster verifies it — here, in reports, and offline in the evidence bundle.
//!
//! Nothing secret is stored: the journal (its grants) holds public keys and certificates only —
//! so with replicas on one PostgreSQL journal, a passkey registered on one replica approves on
//! every other.

use super::{ApiError, App, Body, audit};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use drover_engine::journal::{Grant, Journal, JournalError};
use drover_identity::passkey::{self, Certificate, PasskeySignature, b64url};
use drover_ops::Workspace;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Pending (uncertified) passkeys kept per operator; older ones are forgotten.
const MAX_PENDING: usize = 5;

/// How long a registration challenge may be answered.
const CHALLENGE_TTL_MS: u64 = 300_000;

/// The journal's grant kinds this module keeps.
const PASSKEY: &str = "passkey";
const CHALLENGE: &str = "passkey-challenge";

/// A passkey registration does not lapse (ms since the epoch).
const NEVER: u64 = i64::MAX as u64;

/// A passkey as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// The credential id (base64url).
    pub credential_id: String,
    /// Whose it is.
    pub operator: String,
    /// The certificate text the operator signs (names the key and the relying party).
    pub certificate: String,
    /// The operator's SSHSIG over the certificate, once confirmed.
    pub certificate_signature: Option<String>,
}

/// The passkeys registered with this server (and its replicas), kept in the journal.
#[derive(Debug)]
pub struct Passkeys {
    ws: Workspace,
}

fn corrupt(e: &serde_json::Error) -> JournalError {
    JournalError::Corrupt(format!("a stored passkey: {e}"))
}

fn parsed(g: &Grant) -> Result<Stored, JournalError> {
    serde_json::from_str(&g.data).map_err(|e| corrupt(&e))
}

fn grant(k: &Stored) -> Result<Grant, JournalError> {
    Ok(Grant {
        holder: k.operator.clone(),
        data: serde_json::to_string(k).map_err(|e| corrupt(&e))?,
        expires_at: NEVER,
    })
}

impl Passkeys {
    /// The passkeys kept in `ws`'s journal.
    pub fn new(ws: Workspace) -> Self {
        Self { ws }
    }

    /// Runs `f` on the journal, off the async runtime.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, ApiError> {
        crate::on_journal(&self.ws, f).await
    }

    /// `operator`'s passkeys, pending and confirmed, oldest first.
    async fn of(&self, operator: &str) -> Result<Vec<Stored>, ApiError> {
        let operator = operator.to_owned();
        self.with(move |j| {
            j.grants_of(PASSKEY, &operator, 0)?
                .iter()
                .map(|(_, g)| parsed(g))
                .collect()
        })
        .await
    }

    /// The confirmed passkey `credential_id` of `operator`.
    async fn confirmed(
        &self,
        operator: &str,
        credential_id: &str,
    ) -> Result<Option<Stored>, ApiError> {
        Ok(self
            .of(operator)
            .await?
            .into_iter()
            .find(|k| k.credential_id == credential_id && k.certificate_signature.is_some()))
    }
}

/// The relying party id: the host the browser reached the console by (without the port).
fn rp_id(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))
    } else {
        host.split(':').next()
    }
    .unwrap_or_default();
    if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "passkey_host",
            "passkeys need the console opened by a host name (WebAuthn refuses IP addresses): use https://localhost:PORT or the server's DNS name",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "passkey", why)
}

/// `POST /api/v1/passkeys/options`: what `navigator.credentials.create` needs.
pub(crate) async fn options(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rp = rp_id(&headers)?;
    let now = app.clock.now_ms();
    let challenge = b64url(&rand::random::<[u8; 32]>());
    let (key, pending) = (
        challenge.clone(),
        Grant {
            holder: s.operator.clone(),
            data: rp.clone(),
            expires_at: now + CHALLENGE_TTL_MS,
        },
    );
    app.passkeys
        .with(move |j| j.put_grant(CHALLENGE, &key, &pending, now))
        .await?;
    let exclude: Vec<serde_json::Value> = app
        .passkeys
        .of(&s.operator)
        .await?
        .iter()
        .map(|k| serde_json::json!({ "type": "public-key", "id": k.credential_id }))
        .collect();
    Ok(Json(serde_json::json!({
        "challenge": challenge,
        "rp": { "id": rp, "name": format!("Drover ({})", app.config.name) },
        "user": { "id": b64url(s.operator.as_bytes()), "name": s.operator, "displayName": s.operator },
        // ES256 first: authenticators take the first they support. RS256 is listed as browsers
        // expect, and a credential made with it is refused with a clear message at registration.
        "pubKeyCredParams": [
            { "type": "public-key", "alg": passkey::ES256 },
            { "type": "public-key", "alg": -257 },
        ],
        "attestation": "none",
        "authenticatorSelection": { "residentKey": "preferred", "userVerification": "preferred" },
        "excludeCredentials": exclude,
        "timeout": CHALLENGE_TTL_MS,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    challenge: String,
    credential_id: String,
    client_data_json: String,
    authenticator_data: String,
    public_key: String,
    public_key_algorithm: i64,
}

/// `POST /api/v1/passkeys`: a credential created in the browser, kept pending until its
/// operator certifies it with their SSH key.
pub(crate) async fn register(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    Body(b): Body<RegisterBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = app.clock.now_ms();
    let key = b.challenge.clone();
    let taken = app
        .passkeys
        .with(move |j| j.take_grant(CHALLENGE, &key, now))
        .await?;
    let Some((operator, rp)) = taken
        .filter(|g| g.holder == s.operator)
        .map(|g| (g.holder, g.data))
    else {
        return Err(refused(
            "the registration challenge is unknown, used, expired or someone else's: start again",
        ));
    };
    let challenge =
        passkey::from_b64url("challenge", &b.challenge).map_err(|e| refused(e.to_string()))?;
    let (id, public_key) = passkey::check_registration(
        &passkey::Registration {
            credential_id: &b.credential_id,
            client_data_json: &b.client_data_json,
            authenticator_data: &b.authenticator_data,
            public_key_spki: &b.public_key,
            algorithm: b.public_key_algorithm,
        },
        &challenge,
        &rp,
    )
    .map_err(|e| {
        audit(
            &app,
            &operator,
            "passkey.register",
            "refused",
            Some(&e.to_string()),
        );
        refused(e.to_string())
    })?;
    let cert = Certificate {
        operator: operator.clone(),
        rp_id: rp,
        credential_id: id,
        public_key,
        time: drover_engine::run_record::rfc3339(now),
    };
    let fingerprint = passkey::fingerprint(&cert.public_key);
    let stored = Stored {
        credential_id: b64url(&cert.credential_id),
        operator: operator.clone(),
        certificate: cert.to_text().map_err(|e| refused(e.to_string()))?,
        certificate_signature: None,
    };
    let new = stored.clone();
    let added = app
        .passkeys
        .with(move |j| {
            if j.grant(PASSKEY, &new.credential_id, now)?.is_some() {
                return Ok(false);
            }
            j.put_grant(PASSKEY, &new.credential_id, &grant(&new)?, now)?;
            // Pending passkeys nobody certifies do not pile up: an operator keeps the newest few.
            let pending: Vec<String> = j
                .grants_of(PASSKEY, &new.operator, 0)?
                .into_iter()
                .filter(|(_, g)| parsed(g).is_ok_and(|k| k.certificate_signature.is_none()))
                .map(|(key, _)| key)
                .collect();
            let extra = pending.len().saturating_sub(MAX_PENDING);
            for key in pending.iter().take(extra) {
                j.take_grant(PASSKEY, key, 0)?;
            }
            Ok(true)
        })
        .await?;
    if !added {
        return Err(refused("this passkey is registered already"));
    }
    audit(
        &app,
        &operator,
        "passkey.register",
        "pending",
        Some(&format!("passkey {fingerprint} on {}", cert.rp_id)),
    );
    Ok(Json(serde_json::json!({
        "credential_id": stored.credential_id,
        "fingerprint": fingerprint,
        "confirmed": false,
        "confirm": "drover passkey confirm --server URL",
    })))
}

fn listed(k: &Stored) -> serde_json::Value {
    let cert = Certificate::parse(&k.certificate).ok();
    serde_json::json!({
        "credential_id": k.credential_id,
        "operator": k.operator,
        "fingerprint": cert.as_ref().map(|c| passkey::fingerprint(&c.public_key)),
        "rp_id": cert.as_ref().map(|c| c.rp_id.clone()),
        "registered_at": cert.as_ref().map(|c| c.time.clone()),
        "confirmed": k.certificate_signature.is_some(),
        "certificate": k.certificate,
        "namespace": passkey::PASSKEY_NAMESPACE,
    })
}

/// `GET /api/v1/passkeys`: the caller's passkeys, pending and confirmed, with the certificate
/// text a pending one needs signed.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys: Vec<serde_json::Value> = app
        .passkeys
        .of(&s.operator)
        .await?
        .iter()
        .map(listed)
        .collect();
    Ok(Json(serde_json::json!({ "passkeys": keys })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfirmBody {
    signature: String,
}

/// `POST /api/v1/passkeys/{credential}/confirm`: the operator's SSHSIG over the pending
/// passkey's certificate, verified against the roster (the signer must be the caller).
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    Extension(s): Extension<super::auth::Session>,
    Path(credential): Path<String>,
    Body(b): Body<ConfirmBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(k) = app
        .passkeys
        .of(&s.operator)
        .await?
        .into_iter()
        .find(|k| k.credential_id == credential)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such passkey of yours",
        ));
    };
    let signer = drover_identity::verify_in(
        passkey::PASSKEY_NAMESPACE,
        &app.roster,
        &k.certificate,
        &b.signature,
    )
    .map_err(|e| {
        audit(
            &app,
            &s.operator,
            "passkey.confirm",
            "refused",
            Some(&e.to_string()),
        );
        refused(e.to_string())
    })?;
    if signer.operator != s.operator {
        let why = format!(
            "the certificate was signed by {}, not by {} whose passkey it is",
            signer.operator, s.operator
        );
        audit(&app, &s.operator, "passkey.confirm", "refused", Some(&why));
        return Err(refused(why));
    }
    let confirmed = Stored {
        certificate_signature: Some(b.signature.clone()),
        ..k.clone()
    };
    let now = app.clock.now_ms();
    let entry = confirmed.clone();
    let kept = app
        .passkeys
        .with(move |j| j.put_grant(PASSKEY, &entry.credential_id, &grant(&entry)?, now))
        .await?;
    if !kept {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such passkey of yours",
        ));
    }
    let signed = drover_engine::signed::SignedStatement {
        statement: k.certificate.clone(),
        signature: b.signature,
    };
    super::audit_signed(
        &app,
        &s.operator,
        "passkey.confirm",
        "ok",
        Some(&format!(
            "passkey {} certified with key {}",
            listed(&confirmed)["fingerprint"]
                .as_str()
                .unwrap_or_default(),
            signer.fingerprint
        )),
        Some(&signed),
    );
    Ok(Json(listed(&confirmed)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Assertion {
    pub(crate) credential_id: String,
    pub(crate) authenticator_data: String,
    pub(crate) client_data_json: String,
    pub(crate) signature: String,
}

/// The armored passkey signature of `a` by `operator`'s confirmed passkey, for the approval
/// path to verify like an SSHSIG.
pub(crate) async fn armored(app: &App, operator: &str, a: Assertion) -> Result<String, ApiError> {
    let k = app.passkeys.confirmed(operator, &a.credential_id).await?.ok_or_else(|| {
        refused(format!(
            "this passkey is not a confirmed passkey of {operator}: register it in the console and certify it with `drover passkey confirm`"
        ))
    })?;
    Ok(PasskeySignature {
        certificate: k.certificate,
        certificate_signature: k.certificate_signature.unwrap_or_default(),
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
    }
    .to_armored())
}

/// The confirmed passkeys of `operator` (credential ids), for `navigator.credentials.get`.
pub(crate) async fn credentials_of(app: &App, operator: &str) -> Result<Vec<String>, ApiError> {
    Ok(app
        .passkeys
        .of(operator)
        .await?
        .into_iter()
        .filter(|k| k.certificate_signature.is_some())
        .map(|k| k.credential_id)
        .collect())
}
