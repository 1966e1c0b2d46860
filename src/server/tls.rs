//! TLS for `serve --tls-cert --tls-key`: the certificate chain and key from PEM files, served
//! with rustls, and swapped in place when the files are reloaded (on SIGHUP).
//!
//! Handshakes ask [`CurrentCert`] for the certificate, so a reload takes effect for the next
//! handshake while connections already open keep theirs. A reload that fails (a missing file,
//! a key that does not match the certificate) keeps the certificate in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, pki_types};
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be loaded. Never shows a key's content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no PEM certificate in {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("no usable private key in {} (PEM: PKCS#8, PKCS#1 or SEC1)", path.display())]
    Key { path: PathBuf },
    #[error("the key in {} does not fit the certificate in {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// The server's TLS: where its certificate comes from, and the acceptor that serves it.
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads the certificate chain (leaf first) and its key.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = certified_key(cert_file, key_file, &provider)?;
        let current = Arc::new(CurrentCert(ArcSwap::from_pointee(key)));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // The server speaks HTTP/1.1 only (see `conn`).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and serves what they hold from the next handshake on; on an error
    /// the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = certified_key(&self.cert_file, &self.key_file, &self.provider)?;
        self.current.0.store(Arc::new(key));
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}

/// The certificate every handshake gets.
#[derive(Debug)]
struct CurrentCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert_file.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_file.to_owned(),
            reason: "the file holds no CERTIFICATE section".to_owned(),
        });
    }
    // The parser's own errors may quote the file; for a key, say only that it failed.
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|_| TlsError::Key {
        path: key_file.to_owned(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::Mismatch {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        reason: e.to_string(),
    })
}
