//! `azblob://ACCOUNT/CONTAINER/PATH` backup locations on Azure Blob Storage (the
//! `azure_storage_blobs` crate, the same 0.21 family as the network adapter): block uploads in
//! 8 MiB blocks committed by one Put Block List that never replaces a blob (`If-None-Match: *`),
//! streaming ranged reads, prefix listing, and the blob's immutability policy and legal hold read
//! back from the response headers.
//!
//! Credentials, first that applies: a credential given with the location (a connection string or
//! SAS token, named in an inventory or a step as `env(NAME)`); `AZURE_STORAGE_CONNECTION_STRING`;
//! `AZURE_STORAGE_SAS_TOKEN`; else the network adapter's chain (`DROVER_AZURE_TOKEN`, the
//! environment's service principal, managed identity, Azure CLI). A connection string's
//! `BlobEndpoint` (Azurite, a private endpoint) is honoured; `AZURE_STORAGE_BLOB_ENDPOINT` sets
//! it for the other two. Secrets are never printed: errors name the account, container and blob,
//! and any SAS signature in a message is cut.
//!
//! As with `s3://`, each read or write runs its calls on a thread with its own runtime.

use crate::backup::{BackupError, Location, PendingWrite, Retention};
use crate::object_io::{ChannelReader, in_background, on_own_runtime};
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::*;
use futures::StreamExt;
use std::io::{Read, Write};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BLOCK: usize = 8 << 20;
/// Reads fetch ranges of this size, `READ_AHEAD` at a time.
const RANGE: u64 = 8 << 20;
const READ_AHEAD: usize = 4;
/// Blocks sent at once.
const IN_FLIGHT: usize = 3;
/// A connection string (`AccountName=…;AccountKey=…` or `…;SharedAccessSignature=…`).
pub const CONNECTION_STRING_ENV: &str = "AZURE_STORAGE_CONNECTION_STRING";
/// A SAS token for the account or container.
pub const SAS_TOKEN_ENV: &str = "AZURE_STORAGE_SAS_TOKEN";
/// The blob endpoint when it is not `https://ACCOUNT.blob.core.windows.net`.
pub const BLOB_ENDPOINT_ENV: &str = "AZURE_STORAGE_BLOB_ENDPOINT";

/// A secret handed to a location; never shown.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A blob (or, for listing, a prefix) in an Azure Storage account.
#[derive(Debug, Clone)]
pub struct AzureBlobLocation {
    account: String,
    container: String,
    path: String,
    credential: Option<Secret>,
}

impl AzureBlobLocation {
    /// Parses `azblob://ACCOUNT/CONTAINER/PATH`.
    ///
    /// # Errors
    /// If the account or the container is missing.
    pub fn parse(uri: &str) -> Result<Self, BackupError> {
        let rest = uri
            .strip_prefix("azblob://")
            .ok_or_else(|| BackupError::Invalid(format!("{uri} is not an azblob:// URI")))?;
        let mut parts = rest.splitn(3, '/');
        let account = parts.next().unwrap_or_default();
        let container = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default();
        if account.is_empty() || container.is_empty() {
            return Err(BackupError::Invalid(format!(
                "{uri}: write azblob://ACCOUNT/CONTAINER/PATH"
            )));
        }
        Ok(Self {
            account: account.to_owned(),
            container: container.to_owned(),
            path: path.to_owned(),
            credential: None,
        })
    }

    /// Uses this connection string or SAS token instead of the environment's.
    #[must_use]
    pub fn with_credential(mut self, secret: String) -> Self {
        self.credential = Some(Secret(secret));
        self
    }

    /// The storage account.
    #[must_use]
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The container.
    #[must_use]
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The blob name (or prefix).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    fn at(&self, path: &str) -> Self {
        Self {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    /// A container client and the headers of the last response it received.
    fn client(&self) -> Result<(ContainerClient, Arc<Captured>), BackupError> {
        let (creds, cloud) = self.credentials()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| BackupError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        let seen = Arc::new(Captured::default());
        let transport = Arc::new(Capture {
            http,
            seen: seen.clone(),
        });
        let client = ClientBuilder::with_location(cloud, creds)
            .transport(azure_core::TransportOptions::new(transport))
            .container_client(&self.container);
        Ok((client, seen))
    }

    fn credentials(&self) -> Result<(StorageCredentials, CloudLocation), BackupError> {
        let from_env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let secret = self
            .credential
            .as_ref()
            .map(|s| s.0.clone())
            .or_else(|| from_env(CONNECTION_STRING_ENV))
            .or_else(|| from_env(SAS_TOKEN_ENV));
        let endpoint = |e: Option<&str>| -> Result<CloudLocation, BackupError> {
            match e {
                None => Ok(CloudLocation::Public {
                    account: self.account.clone(),
                }),
                Some(e) => Ok(CloudLocation::Custom {
                    account: self.account.clone(),
                    uri: azure_core::Url::parse(e)
                        .map_err(|err| {
                            BackupError::Invalid(format!(
                                "the blob endpoint {e} is not a URL: {err}"
                            ))
                        })?
                        .to_string(),
                }),
            }
        };
        let env_endpoint = from_env(BLOB_ENDPOINT_ENV);
        match secret {
            Some(s) if s.contains("AccountName=") || s.contains("BlobEndpoint=") => {
                let cs = ConnectionString::new(&s).map_err(|_| {
                    BackupError::Invalid(format!(
                        "{}: the Azure Storage connection string cannot be read",
                        self.describe()
                    ))
                })?;
                if let Some(name) = cs.account_name.filter(|n| *n != self.account) {
                    return Err(BackupError::Invalid(format!(
                        "{}: the connection string is for the account {name}, not {}",
                        self.describe(),
                        self.account
                    )));
                }
                let creds = cs.storage_credentials().map_err(|_| {
                    BackupError::Invalid(format!(
                        "{}: the connection string has neither an account key nor a SAS",
                        self.describe()
                    ))
                })?;
                Ok((
                    creds,
                    endpoint(cs.blob_endpoint.or(env_endpoint.as_deref()))?,
                ))
            }
            Some(sas) => {
                let creds =
                    StorageCredentials::sas_token(sas.trim_start_matches('?')).map_err(|_| {
                        BackupError::Invalid(format!(
                            "{}: the SAS token cannot be read",
                            self.describe()
                        ))
                    })?;
                Ok((creds, endpoint(env_endpoint.as_deref())?))
            }
            None => {
                let cred = crate::azure_common::credential().map_err(|e| {
                    BackupError::Invalid(format!(
                        "{}: no Azure credential ({e}); set {CONNECTION_STRING_ENV} or {SAS_TOKEN_ENV}, or sign in as for the network adapter",
                        self.describe()
                    ))
                })?;
                Ok((
                    StorageCredentials::token_credential(cred),
                    endpoint(env_endpoint.as_deref())?,
                ))
            }
        }
    }

    fn blob(&self) -> Result<(BlobClient, Arc<Captured>), BackupError> {
        let (c, seen) = self.client()?;
        Ok((c.blob_client(&self.path), seen))
    }

    fn error(&self, call: &str, e: &azure_core::Error) -> BackupError {
        BackupError::Io {
            context: format!("Azure Blob {call} {}", self.describe()),
            source: std::io::Error::other(scrub(&e.to_string())),
        }
    }
}

/// Cuts SAS signatures (and any query string carrying one) out of a message.
fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        match word.find('?') {
            Some(q) if word.contains("sig=") => {
                out.push_str(&word[..q]);
                out.push_str("?…");
                if word.ends_with(char::is_whitespace) {
                    out.push(' ');
                }
            }
            _ => out.push_str(word),
        }
    }
    out
}

fn is_status(e: &azure_core::Error, code: u16) -> bool {
    matches!(e.kind(), azure_core::error::ErrorKind::HttpResponse { status, .. } if u16::from(*status) == code)
}

/// What a HEAD answered about immutability: the policy's mode and until-date, the legal hold.
#[derive(Debug, Default, Clone)]
struct Immutability {
    mode: Option<String>,
    until: Option<String>,
    legal_hold: bool,
}

/// The immutability headers of the last HEAD response.
#[derive(Debug, Default)]
struct Captured(Mutex<Option<Immutability>>);

/// reqwest, remembering the immutability policy and legal hold a HEAD answered.
#[derive(Debug)]
struct Capture {
    http: reqwest::Client,
    seen: Arc<Captured>,
}

#[async_trait::async_trait]
impl azure_core::HttpClient for Capture {
    async fn execute_request(
        &self,
        request: &azure_core::Request,
    ) -> azure_core::Result<azure_core::Response> {
        let r = self.http.execute_request(request).await?;
        if *request.method() == azure_core::Method::Head {
            let h = r.headers();
            let get = |n: &'static str| {
                h.get_optional_string(&azure_core::headers::HeaderName::from_static(n))
            };
            let hold = get("x-ms-legal-hold").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if let Ok(mut g) = self.seen.0.lock() {
                *g = Some(Immutability {
                    mode: get("x-ms-immutability-policy-mode"),
                    until: get("x-ms-immutability-policy-until-date"),
                    legal_hold: hold,
                });
            }
        }
        Ok(r)
    }
}

enum Msg {
    Block(Vec<u8>),
    Commit(SyncSender<Result<(), String>>),
}

struct BlobWriter {
    tx: SyncSender<Msg>,
    buf: Vec<u8>,
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BLOCK {
            let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
            self.tx
                .send(Msg::Block(block))
                .map_err(|_| std::io::Error::other("the Azure Blob upload stopped"))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PendingWrite for BlobWriter {
    fn commit(mut self: Box<Self>) -> Result<(), BackupError> {
        let last = std::mem::take(&mut self.buf);
        let (done_tx, done_rx) = sync_channel(1);
        let stopped = || BackupError::Invalid("the Azure Blob upload stopped".into());
        if !last.is_empty() {
            self.tx.send(Msg::Block(last)).map_err(|_| stopped())?;
        }
        self.tx.send(Msg::Commit(done_tx)).map_err(|_| stopped())?;
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BackupError::Io {
                context: "Azure Blob block upload".into(),
                source: std::io::Error::other(e),
            }),
            Err(_) => Err(stopped()),
        }
    }
}

/// A block id: the same length for every block of a blob, as the service requires.
fn block_id(upload: &str, n: usize) -> BlockId {
    BlockId::new(format!("{upload}-{n:08}").into_bytes())
}

impl Location for AzureBlobLocation {
    fn describe(&self) -> String {
        format!("azblob://{}/{}/{}", self.account, self.container, self.path)
    }

    fn exists(&self) -> Result<bool, BackupError> {
        let (blob, _) = self.blob()?;
        let me = self.clone();
        on_own_runtime(async move {
            match blob.get_properties().await {
                Ok(_) => Ok(true),
                Err(e) if is_status(&e, 404) => Ok(false),
                Err(e) => Err(me.error("Get Blob Properties", &e)),
            }
        })?
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, BackupError> {
        let (blob, _) = self.blob()?;
        let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(2);
        let me = self.clone();
        in_background(async move {
            let fail = |e: &azure_core::Error| {
                let kind = if is_status(e, 404) {
                    std::io::ErrorKind::NotFound
                } else {
                    std::io::ErrorKind::Other
                };
                std::io::Error::new(
                    kind,
                    format!("Get Blob {}: {}", me.describe(), scrub(&e.to_string())),
                )
            };
            let size = match blob.get_properties().await {
                Ok(p) => p.blob.properties.content_length,
                Err(e) => {
                    let _ = tx.send(Err(fail(&e)));
                    return;
                }
            };
            // Ranges fetched READ_AHEAD at a time, delivered in order.
            let ranges = (0..size)
                .step_by(RANGE as usize)
                .map(move |start| start..(start + RANGE).min(size));
            let mut parts = futures::stream::iter(ranges)
                .map(|r| {
                    let blob = blob.clone();
                    async move {
                        let page = blob.get().range(r).into_stream().next().await;
                        match page {
                            Some(Ok(p)) => p.data.collect().await.map(Vec::from),
                            Some(Err(e)) => Err(e),
                            None => Ok(Vec::new()),
                        }
                    }
                })
                .buffered(READ_AHEAD);
            while let Some(part) = parts.next().await {
                let item = part.map_err(|e| fail(&e));
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader::new(rx)))
    }

    fn create(&self, replace: bool) -> Result<Box<dyn PendingWrite>, BackupError> {
        if !replace && self.exists()? {
            return Err(BackupError::Invalid(format!(
                "{} exists; refusing to overwrite it",
                self.describe()
            )));
        }
        let (blob, _) = self.blob()?;
        // The writer is synchronous (and may be driven from inside an async function): its
        // blocks cross a plain channel to a thread that hands them to the uploading runtime.
        let (tx, from_writer) = sync_channel::<Msg>(1);
        let (to_upload, mut rx) = tokio::sync::mpsc::channel::<Msg>(1);
        std::thread::spawn(move || {
            while let Ok(m) = from_writer.recv() {
                if to_upload.blocking_send(m).is_err() {
                    return;
                }
            }
        });
        let me = self.clone();
        // Blocks stay uncommitted (invisible, collected by the service) until the list is put.
        let upload = format!("{:016x}", rand::random::<u64>());
        in_background(async move {
            let mut ids = Vec::new();
            let mut failed: Option<String> = None;
            // Up to IN_FLIGHT blocks are sent at once; the list commits them in order.
            let mut sending: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
            let note = |r: Option<Result<Result<(), String>, tokio::task::JoinError>>,
                        failed: &mut Option<String>| {
                let err = match r {
                    Some(Ok(Err(e))) => Some(e),
                    Some(Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                if failed.is_none() {
                    *failed = err;
                }
            };
            while let Some(m) = rx.recv().await {
                match m {
                    Msg::Block(data) if failed.is_none() => {
                        while sending.len() >= IN_FLIGHT {
                            let r = sending.join_next().await;
                            note(r, &mut failed);
                        }
                        let n = ids.len();
                        let id = block_id(&upload, n);
                        ids.push(BlobBlockType::new_uncommitted(id.clone()));
                        let (blob, what) = (blob.clone(), me.describe());
                        sending.spawn(async move {
                            blob.put_block(id, data).await.map(|_| ()).map_err(|e| {
                                format!("Put Block {} of {what}: {}", n + 1, scrub(&e.to_string()))
                            })
                        });
                    }
                    Msg::Block(_) => {}
                    Msg::Commit(done) => {
                        while !sending.is_empty() {
                            let r = sending.join_next().await;
                            note(r, &mut failed);
                        }
                        if let Some(f) = failed {
                            let _ = done.send(Err(f));
                            return;
                        }
                        let mut put = blob.put_block_list(BlockList { blocks: ids });
                        if !replace {
                            put = put.if_match(
                                azure_core::request_options::IfMatchCondition::NotMatch("*".into()),
                            );
                        }
                        let r = put.await.map(|_| ()).map_err(|e| {
                            if is_status(&e, 409) || is_status(&e, 412) {
                                format!("{} exists; refusing to overwrite it", me.describe())
                            } else {
                                format!(
                                    "Put Block List {}: {}",
                                    me.describe(),
                                    scrub(&e.to_string())
                                )
                            }
                        });
                        let _ = done.send(r);
                        return;
                    }
                }
            }
            // Dropped without a commit: the staged blocks are never committed.
            sending.abort_all();
        });
        Ok(Box::new(BlobWriter {
            tx,
            buf: Vec::with_capacity(BLOCK),
        }))
    }

    fn retention(&self) -> Result<Option<Retention>, BackupError> {
        let (blob, seen) = self.blob()?;
        let me = self.clone();
        on_own_runtime(async move {
            blob.get_properties()
                .await
                .map_err(|e| me.error("Get Blob Properties", &e))?;
            let got = seen.0.lock().ok().and_then(|mut g| g.take());
            Ok(match got {
                Some(Immutability {
                    mode: Some(mode),
                    until: Some(until),
                    ..
                }) => Some(Retention {
                    // Azure's policy states are `Locked` (cannot be shortened: compliance) and
                    // `Unlocked` (can be: governance).
                    mode: match mode.to_ascii_lowercase().as_str() {
                        "locked" => "COMPLIANCE".to_owned(),
                        _ => "GOVERNANCE".to_owned(),
                    },
                    retain_until: http_date_to_rfc3339(&until),
                }),
                Some(Immutability {
                    legal_hold: true, ..
                }) => Some(Retention {
                    mode: "LEGAL_HOLD".to_owned(),
                    retain_until: String::new(),
                }),
                _ => None,
            })
        })?
    }

    fn site(&self) -> Result<String, BackupError> {
        // Blob storage does not state its region; the account is where it lives.
        Ok(format!("azure:{}", self.account))
    }

    fn list(&self) -> Result<Vec<Box<dyn Location>>, BackupError> {
        let (container, _) = self.client()?;
        let me = self.clone();
        let names = on_own_runtime(async move {
            let mut names = Vec::new();
            let mut pages = container.list_blobs().prefix(me.path.clone()).into_stream();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| me.error("List Blobs", &e))?;
                for b in page.blobs.blobs() {
                    let head = container
                        .blob_client(&b.name)
                        .get()
                        .range(0u64..8)
                        .into_stream()
                        .next()
                        .await;
                    if let Some(Ok(r)) = head
                        && let Ok(bytes) = r.data.collect().await
                        && bytes.as_ref() == crate::backup::MAGIC
                    {
                        names.push(b.name.clone());
                    }
                }
            }
            Ok::<_, BackupError>(names)
        })??;
        Ok(names
            .into_iter()
            .map(|n| Box::new(self.at(&n)) as Box<dyn Location>)
            .collect())
    }
}

/// `Tue, 01 Jan 2030 00:00:00 GMT` (or RFC 3339 already) as RFC 3339.
fn http_date_to_rfc3339(text: &str) -> String {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    let t = text.replace("GMT", "+0000");
    time::OffsetDateTime::parse(&t, &Rfc2822)
        .or_else(|_| time::OffsetDateTime::parse(text, &Rfc3339))
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let l = AzureBlobLocation::parse("azblob://acct/box/ehr/b1.drover")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.account(), l.container(), l.path()),
            ("acct", "box", "ehr/b1.drover")
        );
        assert!(AzureBlobLocation::parse("azblob://acct").is_err());
        assert!(AzureBlobLocation::parse("azblob:///box/x").is_err());
    }

    #[test]
    fn a_sas_signature_never_reaches_a_message() {
        let m = scrub("GET http://h/c/b?sv=2021&sig=SECRETSIG%3D&se=x failed: 403");
        assert!(!m.contains("SECRETSIG"), "{m}");
        assert!(m.contains("http://h/c/b?…"), "{m}");
        let secret = AzureBlobLocation::parse("azblob://a/c/p")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_credential("AccountKey=TOPSECRET".into());
        assert!(!format!("{secret:?}").contains("TOPSECRET"));
    }

    #[test]
    fn http_dates_become_rfc3339() {
        assert_eq!(
            http_date_to_rfc3339("Tue, 01 Jan 2030 00:00:00 GMT"),
            "2030-01-01T00:00:00Z"
        );
    }
}
