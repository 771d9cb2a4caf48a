//! Create, verify, restore, rewrap and inspect.
//!
//! The heavy operations are pipelines of threads joined by bounded channels, so memory stays at a
//! few chunks whatever the backup's size and the stages run on different cores:
//! - keyed reads (verify, restore): read and decrypt (GCM chunks are independent and `ring`
//!   decrypts several GB/s) → hash the plaintext (SHA-256 is sequential: this stage bounds the
//!   speed) → write, with early write-back so the disk works while the hash is computed;
//! - create: read and hash the plaintext → encrypt → hash the chunk frames → write.
//!
//! These functions do blocking I/O: from an async context, call them through
//! `tokio::task::spawn_blocking` (the key provider calls are the only awaits).

use crate::backup::aead::Aes256Gcm;
use crate::backup::data_key::ChunkKey;
use crate::backup::error::BackupError;
use crate::backup::format::{
    BackupHeader, DEFAULT_CHUNK_SIZE, FORMAT_VERSION, FRAME_DATA, FRAME_FINAL, FRAME_MANIFEST,
    FrameKind, FrameReader, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Manifest, ParsedHeader, TAG_LEN,
    hash_core, hash_frame, parse_manifest, read_header, read_raw_header, scan, write_header,
};
use crate::backup::key_provider::{Envelope, KeyProvider, WrapContext};
use crate::backup::location::{LocalLocation, Location, PendingWrite};
use crate::backup::lock::WriteLock;
use crate::backup::progress::Progress;
use crate::backup::report::{BackupReport, Inspection, VerifyLevel};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Chunks in flight between two stages: enough to ride out one stage's hiccup, few enough that
/// memory stays flat (a few MiB at the default chunk size).
const IN_FLIGHT: usize = 4;

/// Options of [`create`].
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The data set's name.
    pub dataset: String,
    /// When the data was captured (the recovery point); defaults to `created_at`.
    pub recovery_point: Option<OffsetDateTime>,
    /// When the backup is written (the caller's clock).
    pub created_at: OffsetDateTime,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// A write-once lock to put on the backup as it is written (object stores only); read back
    /// after writing.
    pub lock: Option<WriteLock>,
}

impl CreateOptions {
    /// Options with the default chunk size.
    #[must_use]
    pub fn new(dataset: impl Into<String>, created_at: OffsetDateTime) -> Self {
        Self {
            dataset: dataset.into(),
            recovery_point: None,
            created_at,
            chunk_size: DEFAULT_CHUNK_SIZE,
            lock: None,
        }
    }
}

const DOMAIN_CHUNK: u8 = 0;
const DOMAIN_MANIFEST: u8 = 1;

/// The nonce of chunk `index` (or of the manifest tag): a domain byte and the index. Unique within
/// a backup, and every backup has its own key, so no (key, nonce) pair repeats.
fn nonce(domain: u8, index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = domain;
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

/// Associated data of chunk `index`: the header hash, the index and the final flag. Reordering,
/// dropping, duplicating or truncating chunks, or editing the header, fails authentication.
fn chunk_aad(header_hash: &[u8; 32], index: u64, last: bool) -> [u8; 41] {
    let mut aad = [0u8; 41];
    aad[..32].copy_from_slice(header_hash);
    aad[32..40].copy_from_slice(&index.to_be_bytes());
    aad[40] = u8::from(last);
    aad
}

fn manifest_tag(
    cipher: &Aes256Gcm,
    header_hash: &[u8; 32],
    manifest: &[u8],
) -> Result<[u8; TAG_LEN], BackupError> {
    let mut aad = Vec::with_capacity(32 + manifest.len());
    aad.extend_from_slice(header_hash);
    aad.extend_from_slice(manifest);
    cipher
        .seal(nonce(DOMAIN_MANIFEST, 0), &aad, &mut [])
        .map_err(|_| BackupError::Tampered("cannot compute the manifest tag".into()))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn cipher_for(key: &ChunkKey) -> Result<Aes256Gcm, BackupError> {
    Aes256Gcm::new(&key.0).map_err(|_| BackupError::Invalid("bad key length".into()))
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn fill(r: &mut (dyn Read + Send), buf: &mut [u8]) -> Result<usize, BackupError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BackupError::io("reading the input")(e)),
        }
    }
    Ok(n)
}

fn frame_len(payload: usize) -> std::io::Result<u32> {
    u32::try_from(payload + TAG_LEN).map_err(std::io::Error::other)
}

fn write_frame(w: &mut dyn Write, kind: u8, payload: &[u8], tag: &[u8]) -> std::io::Result<()> {
    w.write_all(&[kind])?;
    w.write_all(&frame_len(payload.len())?.to_le_bytes())?;
    w.write_all(payload)?;
    w.write_all(tag)
}

/// One chunk on its way through [`encrypt_stream`]: `buf[..len]` is its plaintext, then its
/// ciphertext once `tag` is set.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    index: u64,
    last: bool,
    tag: [u8; TAG_LEN],
}

impl Chunk {
    fn kind(&self) -> u8 {
        if self.last { FRAME_FINAL } else { FRAME_DATA }
    }
}

/// Waits for a pipeline stage.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> Result<T, BackupError> {
    h.join()
        .map_err(|_| BackupError::Invalid("a backup pipeline thread panicked".into()))
}

/// Encrypts `input` into chunk frames on `out`, in four stages on their own threads: read and
/// hash the plaintext → encrypt → hash the frames as stored → write. Returns the manifest.
fn encrypt_stream(
    input: &mut (dyn Read + Send),
    cipher: &Aes256Gcm,
    header_hash: &[u8; 32],
    size: usize,
    out: &mut dyn PendingWrite,
    ctx_msg: &str,
    progress: &dyn Progress,
) -> Result<Manifest, BackupError> {
    let (plain_tx, plain_rx) = sync_channel::<Chunk>(IN_FLIGHT);
    let (sealed_tx, sealed_rx) = sync_channel::<Chunk>(IN_FLIGHT);
    let (hashed_tx, hashed_rx) = sync_channel::<Chunk>(IN_FLIGHT);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(3 * IN_FLIGHT + 2);
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<([u8; 32], u64), BackupError> {
            let mut h = Sha256::new();
            let mut total = 0u64;
            let mut cur = vec![0u8; size];
            let mut cur_len = fill(input, &mut cur)?;
            let mut index = 0u64;
            loop {
                // One chunk ahead, to know whether this one is the last.
                let mut next = back_rx.try_recv().unwrap_or_else(|_| vec![0u8; size]);
                let next_len = if cur_len == size {
                    fill(input, &mut next)?
                } else {
                    0
                };
                let last = next_len == 0;
                h.update(&cur[..cur_len]);
                total += cur_len as u64;
                let chunk = Chunk {
                    buf: cur,
                    len: cur_len,
                    index,
                    last,
                    tag: [0; TAG_LEN],
                };
                // A later stage stopped on an error, which it reports.
                if plain_tx.send(chunk).is_err() || last {
                    break;
                }
                index += 1;
                cur = next;
                cur_len = next_len;
            }
            Ok((h.finalize().into(), total))
        });
        let hasher = s.spawn(move || -> Result<[u8; 32], BackupError> {
            let mut h = Sha256::new();
            for c in sealed_rx {
                let len = frame_len(c.len).map_err(BackupError::io(ctx_msg))?;
                hash_frame(&mut h, c.kind(), len, &[&c.buf[..c.len], &c.tag]);
                if hashed_tx.send(c).is_err() {
                    break;
                }
            }
            Ok(h.finalize().into())
        });
        let writer = s.spawn(move || -> Result<(), BackupError> {
            for c in hashed_rx {
                write_frame(out, c.kind(), &c.buf[..c.len], &c.tag)
                    .map_err(BackupError::io(ctx_msg))?;
                progress.advance(c.len as u64);
                let _ = back_tx.try_send(c.buf);
            }
            Ok(())
        });
        let mut sealed = Ok(0u64);
        for mut c in plain_rx {
            let aad = chunk_aad(header_hash, c.index, c.last);
            match cipher.seal(nonce(DOMAIN_CHUNK, c.index), &aad, &mut c.buf[..c.len]) {
                Ok(tag) => c.tag = tag,
                Err(_) => {
                    sealed = Err(BackupError::Invalid("encryption failed".into()));
                    break;
                }
            }
            if sealed_tx.send(c).is_err() {
                break;
            }
            sealed = sealed.map(|n| n + 1);
        }
        drop(sealed_tx);
        let written = joined(writer)?;
        let ct_hash = joined(hasher)?;
        let read = joined(reader)?;
        // The first failure is where the pipeline broke: a stage upstream of it stopped cleanly.
        written?;
        let ct_hash = ct_hash?;
        let chunks = sealed?;
        let (plain_hash, total) = read?;
        Ok(Manifest {
            plaintext_sha256: hex::encode(plain_hash),
            ciphertext_sha256: hex::encode(ct_hash),
            plaintext_bytes: total,
            chunks,
        })
    })
}

/// Encrypts `input` into a new backup at `out` under a fresh data key wrapped by `key`. The backup
/// appears at `out` only when complete (written to a temporary name, synced, renamed); an existing
/// backup is never overwritten.
///
/// # Errors
/// Key, I/O or argument errors; nothing is left at `out` on failure.
pub async fn create(
    input: &mut (dyn Read + Send),
    out: &dyn Location,
    key: &dyn KeyProvider,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&opts.chunk_size) {
        return Err(BackupError::Invalid(format!(
            "chunk size must be {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes"
        )));
    }
    if opts.dataset.is_empty() || opts.dataset.len() > 256 {
        return Err(BackupError::Invalid(
            "the data set name must be 1 to 256 characters".into(),
        ));
    }
    let mut backup_id = [0u8; 16];
    rand::fill(&mut backup_id);
    let ctx = WrapContext { backup_id };
    let (data_key, envelope) = key.generate(&ctx).await?;
    let (chunk_key, commitment) = data_key.derive(&backup_id);
    let header = BackupHeader {
        format: FORMAT_VERSION,
        backup_id: hex::encode(backup_id),
        dataset: opts.dataset.clone(),
        recovery_point: rfc3339(opts.recovery_point.unwrap_or(opts.created_at)),
        created_at: rfc3339(opts.created_at),
        chunk_size: opts.chunk_size,
        cipher: "AES-256-GCM".into(),
        kdf: "HKDF-SHA256".into(),
        commitment: hex::encode(commitment),
    };
    let core = serde_json::to_vec(&header).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let header_hash = hash_core(&core);
    let cipher = cipher_for(&chunk_key)?;
    let mut w = match &opts.lock {
        Some(lock) => out.create_locked(lock)?,
        None => out.create(false)?,
    };
    let ctx_msg = format!("writing {}", out.describe());
    write_header(&mut w, &core, &envelope).map_err(BackupError::io(ctx_msg.clone()))?;

    progress.start(None);
    let manifest = encrypt_stream(
        input,
        &cipher,
        &header_hash,
        opts.chunk_size as usize,
        &mut *w,
        &ctx_msg,
        progress,
    )?;
    let mbytes = serde_json::to_vec(&manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let tag = manifest_tag(&cipher, &header_hash, &mbytes)?;
    write_frame(&mut *w, FRAME_MANIFEST, &mbytes, &tag).map_err(BackupError::io(ctx_msg))?;
    w.commit()?;
    progress.finish();
    let mut report = BackupReport::new(
        out.describe(),
        &header,
        envelope.key_id,
        &manifest,
        VerifyLevel::Full,
    );
    if let Some(lock) = &opts.lock {
        report.retention = out.retention()?;
        lock.check(&report.location, report.retention.as_ref())?;
    }
    Ok(report)
}

/// Unwraps the data key and checks the key commitment: the wrong key is refused here, before any
/// chunk is decrypted.
async fn open_key(parsed: &ParsedHeader, key: &dyn KeyProvider) -> Result<Aes256Gcm, BackupError> {
    let ctx = WrapContext {
        backup_id: parsed.backup_id,
    };
    let data_key = key
        .unwrap(&parsed.envelope, &ctx)
        .await
        .map_err(|e| match e {
            crate::backup::key_provider::KeyError::Unwrap(_)
            | crate::backup::key_provider::KeyError::WrongProvider { .. } => BackupError::WrongKey(
                format!("{e} (the backup's key is {})", parsed.envelope.key_id),
            ),
            other => BackupError::Key(other),
        })?;
    let (chunk_key, commitment) = data_key.derive(&parsed.backup_id);
    if !bool::from(commitment.ct_eq(&parsed.commitment)) {
        return Err(BackupError::WrongKey(
            "the key commitment does not match".into(),
        ));
    }
    cipher_for(&chunk_key)
}

/// What the decryption pipeline found.
struct Decrypted {
    manifest: Manifest,
    plaintext_sha256: String,
    bytes: u64,
}

/// Decrypts every chunk into `sink` (or nowhere, to verify), then checks the manifest's tag, hash,
/// length and chunk count. Three stages on their own threads: read and decrypt (this thread) →
/// hash the plaintext → write.
fn decrypt_stream(
    r: &mut dyn Read,
    parsed: &ParsedHeader,
    cipher: &Aes256Gcm,
    sink: Option<&mut (dyn Write + Send)>,
    progress: &dyn Progress,
) -> Result<Decrypted, BackupError> {
    let mut frames = FrameReader::new(r, parsed.header.chunk_size, false);
    let header_hash = parsed.header_hash;
    let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(IN_FLIGHT);
    let (write_tx, write_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (back_tx, back_rx) = sync_channel::<Vec<u8>>(2 * IN_FLIGHT + 2);
    std::thread::scope(|s| {
        let writer = sink.map(|sink| {
            let back_tx = back_tx.clone();
            s.spawn(move || -> Result<(), BackupError> {
                for buf in write_rx {
                    sink.write_all(&buf)
                        .map_err(BackupError::io("writing the plaintext"))?;
                    let _ = back_tx.try_send(buf);
                }
                sink.flush()
                    .map_err(BackupError::io("writing the plaintext"))
            })
        });
        let to_writer = writer.is_some().then_some(write_tx);
        let hasher = s.spawn(move || -> ([u8; 32], u64) {
            let mut h = Sha256::new();
            let mut n = 0u64;
            for buf in rx {
                h.update(&buf);
                n += buf.len() as u64;
                progress.advance(buf.len() as u64);
                match &to_writer {
                    // The writer stopped on an error; it is reported by its join.
                    Some(w) => {
                        if w.send(buf).is_err() {
                            break;
                        }
                    }
                    None => {
                        let _ = back_tx.try_send(buf);
                    }
                }
            }
            (h.finalize().into(), n)
        });
        let mut manifest_frame: Option<Vec<u8>> = None;
        let read_result = (|| -> Result<(), BackupError> {
            loop {
                let mut buf = back_rx.try_recv().unwrap_or_default();
                match frames.next(&mut buf)? {
                    None => return Ok(()),
                    Some(FrameKind::Manifest) => manifest_frame = Some(buf),
                    Some(FrameKind::Data { index, last }) => {
                        let split = buf.len() - TAG_LEN;
                        let (body, tag) = buf.split_at_mut(split);
                        let aad = chunk_aad(&header_hash, index, last);
                        cipher
                            .open(nonce(DOMAIN_CHUNK, index), &aad, body, tag)
                            .map_err(|_| {
                                BackupError::Tampered(format!(
                                    "chunk {index} failed authentication"
                                ))
                            })?;
                        buf.truncate(split);
                        if tx.send(buf).is_err() {
                            // A later stage stopped on an error; it is reported by its join.
                            return Ok(());
                        }
                    }
                }
            }
        })();
        drop(tx);
        let (hash, bytes) = joined(hasher)?;
        let written = writer.map(joined).transpose()?;
        read_result?;
        written.transpose()?;
        let frame = manifest_frame
            .ok_or_else(|| BackupError::Malformed("the manifest is missing".into()))?;
        let split = frame.len() - TAG_LEN;
        let (mbytes, tag) = frame.split_at(split);
        let expected = manifest_tag(cipher, &header_hash, mbytes)?;
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return Err(BackupError::Tampered(
                "the manifest failed authentication".into(),
            ));
        }
        let manifest = parse_manifest(mbytes)?;
        let plaintext_sha256 = hex::encode(hash);
        if manifest.plaintext_sha256 != plaintext_sha256
            || manifest.plaintext_bytes != bytes
            || manifest.chunks != frames.chunks()
        {
            return Err(BackupError::HashMismatch(format!(
                "plaintext SHA-256 {plaintext_sha256} ({bytes} bytes, {} chunks) does not match the manifest",
                frames.chunks()
            )));
        }
        Ok(Decrypted {
            manifest,
            plaintext_sha256,
            bytes,
        })
    })
}

fn check_expected(d: &Decrypted, expect_sha256: Option<&str>) -> Result<(), BackupError> {
    match expect_sha256 {
        Some(e) if !e.eq_ignore_ascii_case(&d.plaintext_sha256) => Err(BackupError::HashMismatch(
            format!("plaintext SHA-256 is {}, expected {e}", d.plaintext_sha256),
        )),
        _ => Ok(()),
    }
}

/// Verifies a backup. Without a key: structure and ciphertext hash. With a key: full
/// authenticated decryption in memory and the plaintext SHA-256 (against the manifest and
/// `expect_sha256`); no plaintext is written anywhere.
///
/// # Errors
/// The first fault found.
pub async fn verify(
    loc: &dyn Location,
    key: Option<&dyn KeyProvider>,
    expect_sha256: Option<&str>,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let mut r = loc.open()?;
    progress.start(None);
    let Some(key) = key else {
        let (parsed, manifest) = scan(&mut r)?;
        progress.finish();
        let report = BackupReport::new(
            loc.describe(),
            &parsed.header,
            parsed.envelope.key_id,
            &manifest,
            VerifyLevel::Structure,
        );
        return with_retention(loc, report);
    };
    let parsed = read_header(&mut r)?;
    let cipher = open_key(&parsed, key).await?;
    let d = decrypt_stream(&mut r, &parsed, &cipher, None, progress)?;
    progress.finish();
    check_expected(&d, expect_sha256)?;
    let _ = d.bytes;
    let report = BackupReport::new(
        loc.describe(),
        &parsed.header,
        parsed.envelope.key_id.clone(),
        &d.manifest,
        VerifyLevel::Full,
    );
    with_retention(loc, report)
}

/// Adds the location's write-once retention to a verification report.
fn with_retention(
    loc: &dyn Location,
    mut report: BackupReport,
) -> Result<BackupReport, BackupError> {
    report.retention = loc.retention()?;
    Ok(report)
}

/// Restores a backup to `dest`: decrypts into a temporary file beside it, syncs, and renames it
/// into place only after every chunk, the manifest and the plaintext hash verified. On any failure
/// nothing is left at `dest` and the temporary file is removed. An existing `dest` is replaced
/// only with `replace`.
///
/// # Errors
/// The first fault found.
pub async fn restore(
    loc: &dyn Location,
    dest: &Path,
    key: &dyn KeyProvider,
    expect_sha256: Option<&str>,
    replace: bool,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    if !replace && dest.exists() {
        return Err(BackupError::Invalid(format!(
            "{} exists; refusing to overwrite it",
            dest.display()
        )));
    }
    let mut r = loc.open()?;
    let parsed = read_header(&mut r)?;
    let cipher = open_key(&parsed, key).await?;
    // The same pending write as a backup written to a local path: a temporary file beside
    // `dest`, written back early, synced and renamed into place only on commit.
    let mut w = LocalLocation::new(dest).create(replace)?;
    progress.start(None);
    let d = decrypt_stream(&mut r, &parsed, &cipher, Some(&mut *w), progress)?;
    check_expected(&d, expect_sha256)?;
    w.commit()?;
    progress.finish();
    Ok(BackupReport::new(
        loc.describe(),
        &parsed.header,
        parsed.envelope.key_id.clone(),
        &d.manifest,
        VerifyLevel::Full,
    ))
}

/// Re-encrypts only the wrapped data key from `from` to `to` (key rotation). The header core and
/// every chunk are copied byte for byte; the new envelope is checked against the key commitment
/// before the backup is replaced (atomically).
///
/// # Errors
/// If `from` cannot unwrap, `to` cannot wrap, or the copy fails; the original is then unchanged.
pub async fn rewrap(
    loc: &dyn Location,
    from: &dyn KeyProvider,
    to: &dyn KeyProvider,
) -> Result<BackupReport, BackupError> {
    let mut r = loc.open()?;
    let (core, env_bytes) = read_raw_header(&mut r)?;
    let parsed = read_header(&mut std::io::Cursor::new(rebuild_header(&core, &env_bytes)))?;
    let ctx = WrapContext {
        backup_id: parsed.backup_id,
    };
    // The old key must open the backup (commitment included) before anything is rewritten.
    open_key(&parsed, from).await?;
    let envelope: Envelope = from.rewrap(&parsed.envelope, &ctx, to).await?;
    let check = ParsedHeader {
        envelope: envelope.clone(),
        ..parsed.clone()
    };
    open_key(&check, to).await?;
    let mut w = loc.create(true)?;
    let msg = format!("rewriting {}", loc.describe());
    write_header(&mut w, &core, &envelope).map_err(BackupError::io(msg.clone()))?;
    std::io::copy(&mut r, &mut w).map_err(BackupError::io(msg))?;
    w.commit()?;
    // Read the result back without a key: structure and ciphertext hash unchanged.
    let mut r = loc.open()?;
    let (after, manifest) = scan(&mut r)?;
    Ok(BackupReport::new(
        loc.describe(),
        &after.header,
        envelope.key_id,
        &manifest,
        VerifyLevel::Structure,
    ))
}

fn rebuild_header(core: &[u8], env: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(core.len() + env.len() + 17);
    out.extend_from_slice(crate::backup::format::MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&u32::try_from(core.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(core);
    out.extend_from_slice(&u32::try_from(env.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(env);
    out
}

/// Reads the header and the manifest without a key (checking structure and the ciphertext hash on
/// the way).
///
/// # Errors
/// Any structural fault.
pub fn inspect(loc: &dyn Location) -> Result<Inspection, BackupError> {
    let mut r = loc.open()?;
    let (parsed, manifest) = scan(&mut r)?;
    Ok(Inspection {
        header_bytes: parsed.len,
        key_provider: parsed.envelope.provider.clone(),
        key_id: parsed.envelope.key_id.clone(),
        header: parsed.header,
        manifest,
    })
}
