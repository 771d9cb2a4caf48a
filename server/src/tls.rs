//! TLS for `drover server` (rustls): a certificate and key from files, or a self-signed
//! certificate generated once into the state directory (kept, so its fingerprint — which
//! clients pin — does not change across restarts). One port serves both: a connection that
//! opens with a TLS handshake gets TLS; plain HTTP is accepted only when the operator allows it
//! (by default, when the server listens on a loopback address).

use sha2::{Digest, Sha256};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a client has to finish its TLS handshake (or send its first byte).
const HANDSHAKE_MS: u64 = 10_000;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file.
    #[error("{path}: {why}")]
    File {
        /// Which.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Generating the self-signed certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate or key.
    #[error("the certificate or key is not usable: {0}")]
    Config(String),
}

/// The server's TLS setup.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate (DER), as `AB:CD:…` (what `openssl x509 -fingerprint
    /// -sha256` prints).
    pub fingerprint: String,
    /// Where the certificate is.
    pub cert_path: PathBuf,
    /// Whether the server generated it.
    pub self_signed: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// `AB:CD:…`: SHA-256 of `der`.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

impl Tls {
    /// TLS from a PEM certificate chain and a PEM private key.
    ///
    /// # Errors
    /// A file does not read or parse; the key does not match.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        use rustls_pki_types::pem::PemObject;
        let cert_pem = read(cert)?;
        let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::File {
                    path: cert.display().to_string(),
                    why: format!("not a PEM certificate: {e}"),
                })?;
        let Some(first) = chain.first() else {
            return Err(TlsError::File {
                path: cert.display().to_string(),
                why: "no certificate in it".into(),
            });
        };
        let fingerprint = fingerprint(first);
        let key_pem = read(key)?;
        let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            TlsError::File {
                path: key.display().to_string(),
                why: format!("not a PEM private key: {e}"),
            }
        })?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            fingerprint,
            cert_path: cert.to_path_buf(),
            self_signed: false,
        })
    }

    /// The self-signed certificate kept in `dir` (`cert.pem`, `key.pem` mode 0600), generated
    /// for `names` (host names and addresses) the first time.
    ///
    /// # Errors
    /// The directory cannot hold it; generation fails.
    pub fn self_signed(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !cert.exists() || !key.exists() {
            let file_err = |p: &Path, e: io::Error| TlsError::File {
                path: p.display().to_string(),
                why: e.to_string(),
            };
            std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
            let made = rcgen::generate_simple_self_signed(names.to_vec())
                .map_err(|e| TlsError::Generate(e.to_string()))?;
            write_private(&key, made.signing_key.serialize_pem().as_bytes())
                .map_err(|e| file_err(&key, e))?;
            std::fs::write(&cert, made.cert.pem()).map_err(|e| file_err(&cert, e))?;
        }
        let mut tls = Self::from_files(&cert, &key)?;
        tls.self_signed = true;
        Ok(tls)
    }
}

/// Writes a file only its owner reads, whole or not at all.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A connection: TLS, or plain HTTP where allowed.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The peer of a connection (what rate limits count by).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Accepts connections, finishing TLS handshakes on tasks of their own (a slow client does
/// not hold up the next one).
pub struct Listener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener {
    /// Serves `tcp` with `tls` (if any); plain HTTP is accepted when `plain` is true (and
    /// always without `tls`).
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn new(tcp: TcpListener, tls: Option<&Tls>, plain: bool) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(Arc::clone(&t.config)));
        let plain = plain || acceptor.is_none();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        // Too many open files and the like: wait a little rather than spin.
                        drover_engine::clock::Clock::sleep(&drover_engine::clock::SystemClock, 50)
                            .await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let conn = tokio::time::timeout(
                        std::time::Duration::from_millis(HANDSHAKE_MS),
                        open(tcp, acceptor, plain),
                    )
                    .await;
                    match conn {
                        Ok(Ok(c)) => {
                            let _ = tx.send((c, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection refused"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            acceptor: task,
        })
    }
}

/// TLS when the client opens with a handshake record (0x16), else plain HTTP where allowed.
async fn open(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    plain: bool,
) -> io::Result<Conn> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    match acceptor {
        Some(a) if n == 1 && first[0] == 0x16 => Ok(Conn::Tls(Box::new(a.accept(tcp).await?))),
        _ if plain => Ok(Conn::Plain(tcp)),
        _ => {
            // A plain HTTP request to a TLS-only port: say so, in HTTP, and close.
            use tokio::io::AsyncWriteExt;
            let mut tcp = tcp;
            let body = "{\"code\":\"tls_required\",\"message\":\"this server speaks HTTPS only: use https://\"}";
            let _ = tcp
                .write_all(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            Err(io::Error::other("plain HTTP on a TLS-only port"))
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The acceptor stopped (aborted on drop): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
