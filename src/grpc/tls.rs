//! TLS on the gRPC port with certificates that can change while the server runs: the files are
//! read again every `tls.reload_interval_ms`, and new connections get what they hold then
//! (cert-manager renews certificates in place; tonic's own TLS reads them once).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::RwLock;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use super::settings::TlsSettings;
use crate::reload::{self, Reread};

/// A client that has not finished its handshake by then is dropped, so that it cannot hold a
/// connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate, key or client CA cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the TLS {0} holds no certificate in PEM")]
    NoCertificate(&'static str),
    #[error("the TLS key holds no private key in PEM: {0}")]
    NoKey(String),
    #[error("the client CA: {0}")]
    ClientCa(String),
    #[error("the TLS certificate and key: {0}")]
    CertificateAndKey(rustls::Error),
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// The files' contents and the configuration made from them.
struct Loaded {
    files: Vec<Vec<u8>>,
    config: Arc<ServerConfig>,
}

pub struct Tls {
    settings: TlsSettings,
    loaded: RwLock<Loaded>,
}

impl Tls {
    /// None when no certificate is configured (plain text).
    pub fn load(settings: &TlsSettings) -> Result<Option<Self>, TlsError> {
        let Some(files) = read_files(settings)? else {
            return Ok(None);
        };
        let config = server_config(&files)?;
        Ok(Some(Self {
            settings: settings.clone(),
            loaded: RwLock::new(Loaded { files, config }),
        }))
    }

    /// Reads the files again and, when they changed and make a valid configuration, puts it in
    /// force for new connections.
    fn reload(&self) -> Result<Reread, TlsError> {
        let files = read_files(&self.settings)?.expect("configured at start-up");
        if files == self.loaded.read().files {
            return Ok(Reread::Unchanged);
        }
        let config = server_config(&files)?;
        *self.loaded.write() = Loaded { files, config };
        Ok(Reread::Changed("the TLS certificate and key".into()))
    }

    pub fn keep_reloading(self: Arc<Self>, stopping: watch::Receiver<bool>) {
        if let Some(interval) = self.settings.reload_interval() {
            reload::every("tls", interval, stopping, move || self.reload());
        }
    }

    /// The connections of `tcp` once their handshakes succeed. Handshakes run side by side; one
    /// that fails or stalls is dropped (and logged at debug level: scanners make many).
    pub fn accept(
        self: Arc<Self>,
        mut tcp: TcpIncoming,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (done, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let connection = tokio::select! {
                    next = tcp.next() => next,
                    // The server stopped taking connections: stop accepting them.
                    () = done.closed() => return,
                };
                let stream = match connection {
                    Some(Ok(stream)) => stream,
                    Some(Err(e)) => {
                        // Out of file descriptors, say: retrying at once would only spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    None => return,
                };
                let acceptor = TlsAcceptor::from(Arc::clone(&self.loaded.read().config));
                let done = done.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(handshaken)
    }
}

/// The certificate chain, key and client CA (if any), as read; None without a certificate.
fn read_files(settings: &TlsSettings) -> Result<Option<Vec<Vec<u8>>>, TlsError> {
    let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
        return Ok(None);
    };
    let read = |path: &Path, what: &'static str| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let mut files = vec![read(cert, "certificate")?, read(key, "key")?];
    if let Some(ca) = &settings.client_ca_file {
        files.push(read(ca, "client CA")?);
    }
    Ok(Some(files))
}

/// rustls' server configuration from the files' contents: HTTP/2 over TLS, client certificates
/// required when a client CA is given.
fn server_config(files: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?;
    let builder = match files.get(2) {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "client CA")? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key =
        PrivateKeyDer::from_pem_slice(&files[1]).map_err(|e| TlsError::NoKey(e.to_string()))?;
    let mut config = builder
        .with_single_cert(certificates(&files[0], "certificate")?, key)
        .map_err(TlsError::CertificateAndKey)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    Ok(certs)
}
