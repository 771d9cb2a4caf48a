//! Where backups live, behind one trait: local paths, `s3://bucket/key` with the AWS adapters,
//! `azblob://account/container/path` with the Azure adapters.
//! Everything streams: a location hands out readers and writers, never whole files.

use crate::backup::error::BackupError;
use crate::backup::writeback::Writeback;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A write in progress: dropped without [`PendingWrite::commit`], it leaves nothing behind.
pub trait PendingWrite: Write + Send {
    /// Makes the written bytes durable and visible at the location, atomically.
    ///
    /// # Errors
    /// If syncing or renaming fails.
    fn commit(self: Box<Self>) -> Result<(), BackupError>;
}

/// One backup's location.
pub trait Location: Send + Sync {
    /// How to name it in messages and reports.
    fn describe(&self) -> String;

    /// Whether something is at this location already.
    ///
    /// # Errors
    /// If it cannot be told (no access, the store does not answer).
    fn exists(&self) -> Result<bool, BackupError>;

    /// A reader of the backup's bytes.
    ///
    /// # Errors
    /// If it cannot be opened.
    fn open(&self) -> Result<Box<dyn Read + Send>, BackupError>;

    /// Starts writing the backup. With `replace` false an existing object is never overwritten.
    ///
    /// # Errors
    /// If it cannot be created.
    fn create(&self, replace: bool) -> Result<Box<dyn PendingWrite>, BackupError>;

    /// Starts writing the backup under a write-once lock set on the object itself; never
    /// overwrites. Only object stores with write-once retention can.
    ///
    /// # Errors
    /// This kind of location has no such lock, the store refuses it (a bucket without Object
    /// Lock), or it cannot be created.
    fn create_locked(
        &self,
        lock: &crate::backup::WriteLock,
    ) -> Result<Box<dyn PendingWrite>, BackupError> {
        let _ = lock;
        Err(BackupError::Invalid(format!(
            "{}: only an object store with write-once retention (s3://) can hold a locked backup",
            self.describe()
        )))
    }

    /// The object's write-once retention (S3 Object Lock), if the store has such a thing.
    ///
    /// # Errors
    /// If it cannot be read.
    fn retention(&self) -> Result<Option<crate::backup::Retention>, BackupError> {
        Ok(None)
    }

    /// Where the bytes physically are, read from the store (not from configuration):
    /// `local`, `aws:REGION` (the bucket's region as S3 reports it), `azure:ACCOUNT`.
    ///
    /// # Errors
    /// If the store cannot be asked.
    fn site(&self) -> Result<String, BackupError> {
        Ok("local".to_owned())
    }

    /// Every backup under this location, if it is a directory or prefix.
    ///
    /// # Errors
    /// If it cannot be listed.
    fn list(&self) -> Result<Vec<Box<dyn Location>>, BackupError>;
}

/// Opens the location a string names: a local path, `s3://BUCKET/KEY` (with the `aws` feature)
/// or `azblob://ACCOUNT/CONTAINER/PATH` (with the `azure` feature).
///
/// # Errors
/// For schemes this build does not support.
pub fn location_from_uri(uri: &str) -> Result<Box<dyn Location>, BackupError> {
    location_with_credential(uri, None)
}

/// What platform a location is on: local disk, S3 or Azure Blob (told by its scheme).
#[must_use]
pub fn platform_of(uri: &str) -> &'static str {
    if uri.starts_with("s3://") {
        "s3"
    } else if uri.starts_with("azblob://") {
        "azure-blob"
    } else {
        "local"
    }
}

/// Like [`location_from_uri`], with a credential reference for stores that take one:
/// `env(NAME)` names the environment variable holding an Azure Storage connection string or SAS
/// token (never the secret itself).
///
/// # Errors
/// For schemes this build does not support, a reference that is not `env(NAME)`, or a variable
/// that is not set.
pub fn location_with_credential(
    uri: &str,
    credential: Option<&str>,
) -> Result<Box<dyn Location>, BackupError> {
    let secret = match credential {
        None => None,
        Some(r) => {
            let name = r
                .strip_prefix("env(")
                .and_then(|n| n.strip_suffix(')'))
                .ok_or_else(|| {
                    BackupError::Invalid(format!(
                        "{uri}: a credential is given as env(NAME), the variable holding it; never the secret itself"
                    ))
                })?;
            Some(
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        BackupError::Invalid(format!(
                            "{uri}: the credential variable {name} is not set"
                        ))
                    })?,
            )
        }
    };
    if uri.starts_with("azblob://") {
        #[cfg(feature = "azure")]
        {
            let loc = crate::azure_blob::AzureBlobLocation::parse(uri)?;
            return Ok(Box::new(match secret {
                Some(s) => loc.with_credential(s),
                None => loc,
            }));
        }
        #[cfg(not(feature = "azure"))]
        {
            let _ = secret;
            return Err(BackupError::Invalid(format!(
                "{uri}: azblob:// locations need a build with the `azure` feature"
            )));
        }
    }
    if uri.starts_with("s3://") {
        #[cfg(feature = "aws")]
        return Ok(Box::new(crate::aws_s3::S3Location::parse(uri)?));
        #[cfg(not(feature = "aws"))]
        return Err(BackupError::Invalid(format!(
            "{uri}: s3:// locations need a build with the `aws` feature"
        )));
    }
    Ok(Box::new(LocalLocation::new(uri)))
}

/// A file on a local (or mounted) file system.
#[derive(Debug, Clone)]
pub struct LocalLocation {
    path: PathBuf,
}

impl LocalLocation {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct LocalWrite {
    /// Written through a buffer, with early write-back so the final sync is short.
    file: Writeback<BufWriter<tempfile::NamedTempFile>>,
    dest: PathBuf,
    replace: bool,
}

impl Write for LocalWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl PendingWrite for LocalWrite {
    fn commit(self: Box<Self>) -> Result<(), BackupError> {
        let dest = self.dest.clone();
        let ctx = format!("writing {}", dest.display());
        let tmp = self
            .file
            .finish()
            .map_err(BackupError::io(ctx.clone()))?
            .into_inner()
            .map_err(|e| BackupError::io(ctx.clone())(e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(BackupError::io(ctx.clone()))?;
        if self.replace {
            tmp.persist(&dest)
                .map_err(|e| BackupError::io(ctx.clone())(e.error))?;
        } else {
            tmp.persist_noclobber(&dest)
                .map_err(|e| BackupError::io(ctx.clone())(e.error))?;
        }
        sync_dir(&dest).map_err(BackupError::io(ctx))
    }
}

/// Makes a rename durable: fsync the directory that holds `path`.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    let _ = path;
    Ok(())
}

/// A temporary file beside `dest` (same directory, so the final rename is atomic), removed on drop.
pub(crate) fn temp_beside(dest: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".drover-tmp")
        .tempfile_in(dir)
}

impl Location for LocalLocation {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn exists(&self) -> Result<bool, BackupError> {
        self.path.try_exists().map_err(BackupError::io(format!(
            "looking at {}",
            self.path.display()
        )))
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, BackupError> {
        let f = std::fs::File::open(&self.path)
            .map_err(BackupError::io(format!("opening {}", self.path.display())))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }

    fn create(&self, replace: bool) -> Result<Box<dyn PendingWrite>, BackupError> {
        if !replace && self.path.exists() {
            return Err(BackupError::Invalid(format!(
                "{} exists; refusing to overwrite it",
                self.path.display()
            )));
        }
        let tmp = temp_beside(&self.path)
            .map_err(BackupError::io(format!("creating {}", self.path.display())))?;
        let ctx = || format!("creating {}", self.path.display());
        let sync = tmp.as_file().try_clone().map_err(BackupError::io(ctx()))?;
        let file = Writeback::new(BufWriter::with_capacity(1 << 20, tmp), sync)
            .map_err(BackupError::io(ctx()))?;
        Ok(Box::new(LocalWrite {
            file,
            dest: self.path.clone(),
            replace,
        }))
    }

    fn list(&self) -> Result<Vec<Box<dyn Location>>, BackupError> {
        let mut out: Vec<PathBuf> = Vec::new();
        let mut stack = vec![self.path.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(BackupError::io(format!("listing {}", dir.display())))?;
            for e in entries {
                let p = e
                    .map_err(BackupError::io(format!("listing {}", dir.display())))?
                    .path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_backup(&p) {
                    out.push(p);
                }
            }
        }
        out.sort();
        Ok(out
            .into_iter()
            .map(|p| Box::new(LocalLocation::new(p)) as Box<dyn Location>)
            .collect())
    }
}

fn is_backup(p: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == crate::backup::format::MAGIC)
}
