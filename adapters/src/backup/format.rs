//! The on-disk layout (see `docs/backup-format.md`): magic, version, header core, key envelope,
//! chunk frames, manifest frame. Reading is strict and bounded: every length is checked before
//! anything is allocated, so no input can make the reader allocate more than one chunk.

use crate::backup::error::BackupError;
use crate::backup::key_provider::{Envelope, strict_hex};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// The first eight bytes of every backup.
pub const MAGIC: &[u8; 8] = b"DRVRBKP\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Plaintext bytes per chunk unless told otherwise (1 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// The largest chunk a reader accepts (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// The smallest chunk size (tests use small chunks to exercise boundaries).
pub const MIN_CHUNK_SIZE: u32 = 16;
/// The largest header core, envelope or manifest.
const MAX_META: u32 = 64 * 1024;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

pub(crate) const FRAME_DATA: u8 = b'D';
pub(crate) const FRAME_FINAL: u8 = b'F';
pub(crate) const FRAME_MANIFEST: u8 = b'M';

/// The authenticated part of the header: everything but the key envelope. Its exact bytes are
/// hashed into every chunk's associated data, so no field can change without every chunk failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// Format version (also the byte after the magic).
    pub format: u8,
    /// 128-bit random backup id (hex).
    pub backup_id: String,
    /// The data set's name.
    pub dataset: String,
    /// When the data was captured (RFC 3339): the recovery point, for RPO.
    pub recovery_point: String,
    /// When the backup was written (RFC 3339).
    pub created_at: String,
    /// Plaintext bytes per chunk (the last chunk may be shorter).
    pub chunk_size: u32,
    /// `AES-256-GCM`.
    pub cipher: String,
    /// `HKDF-SHA256`.
    pub kdf: String,
    /// Key commitment: HKDF of the data key; a wrong key is refused before any decryption.
    pub commitment: String,
}

/// Hashes and counts, written after the last chunk and authenticated by a tag under the data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// SHA-256 of the plaintext.
    pub plaintext_sha256: String,
    /// SHA-256 of the chunk frames as stored (checkable without a key).
    pub ciphertext_sha256: String,
    /// Plaintext length.
    pub plaintext_bytes: u64,
    /// Number of chunks.
    pub chunks: u64,
}

/// A parsed header with what the reader derives from it.
#[derive(Debug, Clone)]
pub struct ParsedHeader {
    /// The authenticated header.
    pub header: BackupHeader,
    /// The key envelope.
    pub envelope: Envelope,
    /// The backup id's bytes.
    pub backup_id: [u8; 16],
    /// The key commitment's bytes.
    pub commitment: [u8; 32],
    /// SHA-256 over the version byte and the header core's exact bytes.
    pub header_hash: [u8; 32],
    /// The header's length on disk (magic to the end of the envelope).
    pub len: u64,
}

fn malformed(msg: impl Into<String>) -> BackupError {
    BackupError::Malformed(msg.into())
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => malformed(format!("truncated in the {what}")),
        _ => BackupError::Io {
            context: format!("reading the {what}"),
            source: e,
        },
    })
}

fn read_u32(r: &mut impl Read, what: &str) -> Result<u32, BackupError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn read_meta(r: &mut impl Read, what: &str) -> Result<Vec<u8>, BackupError> {
    let len = read_u32(r, what)?;
    if len == 0 || len > MAX_META {
        return Err(malformed(format!("{what} length {len} is out of range")));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact(r, &mut buf, what)?;
    Ok(buf)
}

pub(crate) fn hash_core(core: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([FORMAT_VERSION]);
    h.update(core);
    h.finalize().into()
}

/// Reads and validates the header (no key needed).
///
/// # Errors
/// [`BackupError::Malformed`] or [`BackupError::UnsupportedVersion`].
pub fn read_header(r: &mut impl Read) -> Result<ParsedHeader, BackupError> {
    let mut magic = [0u8; 8];
    read_exact(r, &mut magic, "magic")?;
    if &magic != MAGIC {
        return Err(malformed("it does not start with the Drover backup magic"));
    }
    let mut v = [0u8; 1];
    read_exact(r, &mut v, "version")?;
    if v[0] != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(v[0]));
    }
    let core = read_meta(r, "header")?;
    let env = read_meta(r, "key envelope")?;
    let header: BackupHeader =
        serde_json::from_slice(&core).map_err(|e| malformed(format!("header: {e}")))?;
    let envelope: Envelope =
        serde_json::from_slice(&env).map_err(|e| malformed(format!("key envelope: {e}")))?;
    if header.format != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(header.format));
    }
    if header.cipher != "AES-256-GCM" || header.kdf != "HKDF-SHA256" {
        return Err(malformed(format!(
            "unknown cipher {} / kdf {}",
            header.cipher, header.kdf
        )));
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&header.chunk_size) {
        return Err(malformed(format!(
            "chunk size {} is out of range",
            header.chunk_size
        )));
    }
    let mut backup_id = [0u8; 16];
    strict_hex(&header.backup_id, &mut backup_id)
        .ok_or_else(|| malformed("the backup id is not 32 lowercase hex digits"))?;
    let mut commitment = [0u8; 32];
    strict_hex(&header.commitment, &mut commitment)
        .ok_or_else(|| malformed("the key commitment is not 64 lowercase hex digits"))?;
    Ok(ParsedHeader {
        header_hash: hash_core(&core),
        header,
        envelope,
        backup_id,
        commitment,
        len: 8 + 1 + 4 + core.len() as u64 + 4 + env.len() as u64,
    })
}

/// Writes the header: magic, version, core bytes, envelope.
pub(crate) fn write_header(
    w: &mut impl Write,
    core: &[u8],
    envelope: &Envelope,
) -> std::io::Result<u64> {
    let env = serde_json::to_vec(envelope).map_err(std::io::Error::other)?;
    let core_len = u32::try_from(core.len()).map_err(std::io::Error::other)?;
    let env_len = u32::try_from(env.len()).map_err(std::io::Error::other)?;
    w.write_all(MAGIC)?;
    w.write_all(&[FORMAT_VERSION])?;
    w.write_all(&core_len.to_le_bytes())?;
    w.write_all(core)?;
    w.write_all(&env_len.to_le_bytes())?;
    w.write_all(&env)?;
    Ok(8 + 1 + 4 + core.len() as u64 + 4 + env.len() as u64)
}

/// Reads the exact bytes of the header core (for rewrap, which must copy them unchanged).
pub(crate) fn read_raw_header(r: &mut impl Read) -> Result<(Vec<u8>, Vec<u8>), BackupError> {
    let mut magic = [0u8; 9];
    read_exact(r, &mut magic, "magic")?;
    let core = read_meta(r, "header")?;
    let env = read_meta(r, "key envelope")?;
    Ok((core, env))
}

/// One frame read by [`FrameReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A data chunk (`index`, whether it is the final one); the payload is in the buffer.
    Data { index: u64, last: bool },
    /// The manifest; the buffer holds its JSON followed by the 16-byte tag.
    Manifest,
}

/// Reads frames in order, enforcing the structure: data chunks of exactly the header's size but the
/// last, one final chunk, then the manifest, then the end of the file.
pub(crate) struct FrameReader<R> {
    r: R,
    chunk_size: u32,
    next_index: u64,
    seen_final: bool,
    seen_manifest: bool,
    /// SHA-256 over the data frames as stored, when asked for.
    pub(crate) ciphertext_hash: Option<Sha256>,
}

impl<R: Read> FrameReader<R> {
    pub(crate) fn new(r: R, chunk_size: u32, hash_ciphertext: bool) -> Self {
        Self {
            r,
            chunk_size,
            next_index: 0,
            seen_final: false,
            seen_manifest: false,
            ciphertext_hash: hash_ciphertext.then(Sha256::new),
        }
    }

    /// Reads the next frame into `buf`. `Ok(None)` at a clean end of file (after the manifest).
    pub(crate) fn next(&mut self, buf: &mut Vec<u8>) -> Result<Option<FrameKind>, BackupError> {
        let mut kind = [0u8; 1];
        let n = loop {
            match self.r.read(&mut kind) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BackupError::io("reading a chunk")(e)),
            }
        };
        if n == 0 {
            return if self.seen_manifest {
                Ok(None)
            } else if self.seen_final {
                Err(malformed("truncated: the manifest is missing"))
            } else {
                Err(malformed(format!(
                    "truncated after chunk {}: the final chunk is missing",
                    self.next_index
                )))
            };
        }
        if self.seen_manifest {
            return Err(malformed("unexpected bytes after the manifest"));
        }
        let len = read_u32(&mut self.r, "chunk length")?;
        let frame = match kind[0] {
            FRAME_DATA | FRAME_FINAL => {
                if self.seen_final {
                    return Err(malformed("a chunk follows the final chunk"));
                }
                let full = self.chunk_size as usize + TAG_LEN;
                let ok = if kind[0] == FRAME_DATA {
                    len as usize == full
                } else {
                    (TAG_LEN..=full).contains(&(len as usize))
                };
                if !ok {
                    return Err(malformed(format!(
                        "chunk {} has length {len}",
                        self.next_index
                    )));
                }
                let last = kind[0] == FRAME_FINAL;
                self.seen_final = last;
                let index = self.next_index;
                self.next_index += 1;
                FrameKind::Data { index, last }
            }
            FRAME_MANIFEST => {
                if !self.seen_final {
                    return Err(malformed("the manifest comes before the final chunk"));
                }
                if len as usize <= TAG_LEN || len > MAX_META {
                    return Err(malformed(format!("manifest length {len} is out of range")));
                }
                self.seen_manifest = true;
                FrameKind::Manifest
            }
            other => return Err(malformed(format!("unknown frame type {other:#04x}"))),
        };
        buf.resize(len as usize, 0);
        read_exact(&mut self.r, buf, "chunk")?;
        if let (Some(h), FrameKind::Data { .. }) = (self.ciphertext_hash.as_mut(), frame) {
            hash_frame(h, kind[0], len, &[&buf[..]]);
        }
        Ok(Some(frame))
    }

    /// Chunks read so far.
    pub(crate) fn chunks(&self) -> u64 {
        self.next_index
    }
}

/// Adds one data frame as stored — type byte, length, then `parts` (payload and tag) — to the
/// manifest's ciphertext hash. The writer and every reader hash frames through here.
pub(crate) fn hash_frame(h: &mut Sha256, kind: u8, len: u32, parts: &[&[u8]]) {
    h.update([kind]);
    h.update(len.to_le_bytes());
    for p in parts {
        h.update(p);
    }
}

/// Parses a manifest frame's JSON (without checking its tag).
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BackupError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("manifest: {e}")))
}

/// Reads a whole backup without a key: header, structure, and the ciphertext hash against the
/// manifest. Returns the header and the manifest.
///
/// # Errors
/// Any structural fault or a ciphertext hash that does not match.
pub fn scan(r: &mut impl Read) -> Result<(ParsedHeader, Manifest), BackupError> {
    let header = read_header(r)?;
    let mut frames = FrameReader::new(r, header.header.chunk_size, true);
    let mut buf = Vec::new();
    let mut manifest = None;
    while let Some(kind) = frames.next(&mut buf)? {
        if kind == FrameKind::Manifest {
            let body = &buf[..buf.len() - TAG_LEN];
            manifest = Some(parse_manifest(body)?);
        }
    }
    let manifest = manifest.ok_or_else(|| malformed("the manifest is missing"))?;
    let computed = hex::encode(
        frames
            .ciphertext_hash
            .take()
            .map(Sha256::finalize)
            .unwrap_or_default(),
    );
    if manifest.chunks != frames.chunks() {
        return Err(BackupError::HashMismatch(format!(
            "the manifest lists {} chunks, the file holds {}",
            manifest.chunks,
            frames.chunks()
        )));
    }
    if computed != manifest.ciphertext_sha256 {
        return Err(BackupError::HashMismatch(format!(
            "ciphertext SHA-256 is {computed}, the manifest says {}",
            manifest.ciphertext_sha256
        )));
    }
    Ok((header, manifest))
}
