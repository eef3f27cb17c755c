//! TLS (feature `tls`): the handshake is part of connecting, so a
//! handshake failure is a failed attempt carrying the TLS error, and a
//! connection is never up without it (no plaintext fallback).
//!
//! After the handshake the driver keeps the rustls session next to the TCP
//! socket and moves bytes through it with the same non-blocking reads and
//! batched writes as plain TCP.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::net::TcpStream;

pub use rustls;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The system's certificate store could not be read or was empty.
    #[error("cannot load the system's root certificates: {0}")]
    SystemRoots(String),
    /// The client certificate or key was refused.
    #[error("invalid client certificate or key: {0}")]
    ClientAuth(#[source] rustls::Error),
    /// The server name override is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// TLS settings of a connection: trusted roots, optional client
/// certificate, optional server name override (by default the endpoint's
/// host name is sent as SNI and checked against the certificate).
///
/// ```
/// use redial::{Options, TlsConfig};
///
/// let opts = Options::new().tls(TlsConfig::webpki());
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    // The ring provider supports the safe default versions: cannot fail.
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS))
}

impl TlsConfig {
    /// Trusts the Mozilla roots bundled with `webpki-roots`.
    ///
    /// ```
    /// let tls = redial::TlsConfig::webpki();
    /// # let _ = tls;
    /// ```
    pub fn webpki() -> Self {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(roots)
    }

    /// Trusts the operating system's root certificates.
    ///
    /// ```no_run
    /// let tls = redial::TlsConfig::system()?;
    /// # let _ = tls; Ok::<(), redial::TlsError>(())
    /// ```
    pub fn system() -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no certificates found".into());
            return Err(TlsError::SystemRoots(why));
        }
        Ok(Self::with_roots(roots))
    }

    /// Trusts exactly these roots (a private CA, say).
    ///
    /// ```
    /// let tls = redial::TlsConfig::with_roots(redial::tls::rustls::RootCertStore::empty());
    /// # let _ = tls;
    /// ```
    pub fn with_roots(roots: RootCertStore) -> Self {
        TlsConfig {
            config: Arc::new(
                builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ),
            server_name: None,
        }
    }

    /// Trusts these roots and presents a client certificate.
    ///
    /// ```no_run
    /// # fn f(roots: redial::tls::rustls::RootCertStore,
    /// #      chain: Vec<redial::tls::rustls::pki_types::CertificateDer<'static>>,
    /// #      key: redial::tls::rustls::pki_types::PrivateKeyDer<'static>) -> Result<(), redial::TlsError> {
    /// let tls = redial::TlsConfig::with_client_auth(roots, chain, key)?;
    /// # let _ = tls; Ok(()) }
    /// ```
    pub fn with_client_auth(
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let config = builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(TlsError::ClientAuth)?;
        Ok(TlsConfig {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// Uses a rustls configuration built by the caller, as it is.
    ///
    /// ```
    /// # let config = std::sync::Arc::new(
    /// #     redial::tls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
    /// #         redial::tls::rustls::crypto::ring::default_provider()))
    /// #     .with_safe_default_protocol_versions().unwrap()
    /// #     .with_root_certificates(redial::tls::rustls::RootCertStore::empty())
    /// #     .with_no_client_auth());
    /// let tls = redial::TlsConfig::from_client_config(config);
    /// # let _ = tls;
    /// ```
    pub fn from_client_config(config: Arc<ClientConfig>) -> Self {
        TlsConfig {
            config,
            server_name: None,
        }
    }

    /// Sends and checks this name instead of the endpoint's host.
    ///
    /// ```
    /// let tls = redial::TlsConfig::webpki().server_name("cache.internal")?;
    /// # let _ = tls; Ok::<(), redial::TlsError>(())
    /// ```
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let n = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.into()))?;
        self.server_name = Some(n);
        Ok(self)
    }
}

/// Runs the handshake over a connected TCP stream.
pub(crate) async fn handshake(
    tcp: TcpStream,
    tls: &TlsConfig,
    host: Option<&str>,
) -> io::Result<TlsTransport> {
    let name = match (&tls.server_name, host) {
        (Some(n), _) => n.clone(),
        (None, Some(h)) => ServerName::try_from(h.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {h:?}"),
            )
        })?,
        (None, None) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS needs a server name: set TlsConfig::server_name",
            ))
        }
    };
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
    let (tcp, conn) = stream.into_inner();
    Ok(TlsTransport {
        tcp,
        conn: Mutex::new(conn),
    })
}

/// A TCP stream with its rustls session.
pub(crate) struct TlsTransport {
    pub(crate) tcp: TcpStream,
    conn: Mutex<ClientConnection>,
}

/// `std::io` over the non-blocking socket, for rustls.
struct Io<'a>(&'a TcpStream);

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsTransport {
    fn conn(&self) -> MutexGuard<'_, ClientConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes pending ciphertext; `Ok(true)` when none is left.
    fn flush_tls(&self, conn: &mut ClientConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut Io(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut conn = self.conn();
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer sent close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match conn.read_tls(&mut Io(&self.tcp)) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = conn.process_new_packets() {
                // Tell the peer why before giving up, as TLS expects.
                let _ = self.flush_tls(&mut conn);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {e}"),
                ));
            }
            // Key updates and alerts may need an answer.
            self.flush_tls(&mut conn)?;
        }
    }

    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = self.conn();
        if !self.flush_tls(&mut conn)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = conn.writer().write(buf)?;
        self.flush_tls(&mut conn)?;
        Ok(n)
    }

    /// Writes ciphertext rustls still holds; `Ok(true)` when none is left.
    pub(crate) fn flush_pending(&self) -> io::Result<bool> {
        let mut conn = self.conn();
        self.flush_tls(&mut conn)
    }

    /// Sends close_notify (best effort) before the TCP FIN.
    pub(crate) fn close_notify(&self) {
        let mut conn = self.conn();
        conn.send_close_notify();
        let _ = self.flush_tls(&mut conn);
    }
}
