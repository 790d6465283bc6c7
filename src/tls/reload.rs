//! Key material that follows its files: the server's certificate and key, and the CA that
//! signs the proxies' client certificates. Each handshake reads the files (a few kilobytes,
//! next to the handshake's own cost); when their bytes changed, they are parsed again and,
//! if they make a valid pair (or a valid CA), used for that handshake and every later one.
//! Comparing bytes rather than modification times catches a rewrite within the same clock
//! tick, and a Kubernetes secret volume's swap of its symlink. Connections already
//! open keep the keys they were made with, so a rotation never drops a stream. Files caught
//! half written are tried again once they change again; until then the last good material
//! stays in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::RwLock;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore};
use tokio_rustls::rustls::{Error as TlsError, SignatureScheme};
use tracing::{info, warn};

/// What a set of files held when last read (`None` for a file that could not be read).
/// A changed stamp is what makes them be parsed again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp(Vec<Option<Vec<u8>>>);

impl FileStamp {
    fn of(paths: &[&Path]) -> FileStamp {
        FileStamp(paths.iter().map(|path| std::fs::read(path).ok()).collect())
    }
}

/// Material in use, and the stamp of the files it was last tried from.
struct Current<T> {
    value: T,
    /// The stamp of the last read, good or bad: a bad read is not tried again until the
    /// files change once more.
    tried: FileStamp,
}

/// Re-reads `paths` with `load` when their stamp differs from the last one tried; keeps the
/// old value when the new files do not load.
fn refresh<T: Clone>(
    current: &RwLock<Current<T>>,
    paths: &[&Path],
    what: &str,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> T {
    let stamp = FileStamp::of(paths);
    {
        let held = current.read();
        if held.tried == stamp {
            return held.value.clone();
        }
    }
    let mut held = current.write();
    if held.tried != stamp {
        held.tried = stamp;
        match load() {
            Ok(value) => {
                held.value = value;
                info!(what, "reloaded after its files changed");
            }
            Err(error) => warn!(
                what,
                error = format!("{error:#}"),
                "changed files do not load; the previous ones stay in use"
            ),
        }
    }
    held.value.clone()
}

/// The server's certificate chain and private key, read from PEM files and reloaded when
/// they change. Serves every handshake whatever name the client asks for.
pub(crate) struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current<Arc<CertifiedKey>>>,
}

impl ReloadingCertificate {
    /// Reads the pair once; an error here (a missing file, a key that does not match the
    /// certificate) stops the server from starting.
    pub(crate) fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let tried = FileStamp::of(&[cert_path, key_path]);
        let value = load_certified_key(cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Current { value, tried }),
        })
    }

    /// The pair to present now, read again first if its files changed.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        refresh(
            &self.current,
            &[&self.cert_path, &self.key_path],
            "server certificate",
            || load_certified_key(&self.cert_path, &self.key_path, &self.provider),
        )
    }
}

impl std::fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = read_certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the private key {}", key_path.display()))?;
    let pair = CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "the key {} does not go with the certificate {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(Arc::new(pair))
}

/// Every certificate of a PEM file, in order; an error when it holds none.
pub(crate) fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certificates)
}

/// Requires a client certificate signed by the CAs of a PEM file, read again when the file
/// changes. The list of acceptable CAs is not sent to clients (Envoy presents its
/// certificate without it).
pub(crate) struct ReloadingClientVerifier {
    ca_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current<Arc<dyn ClientCertVerifier>>>,
}

impl ReloadingClientVerifier {
    pub(crate) fn load(ca_path: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let tried = FileStamp::of(&[ca_path]);
        let value = load_client_verifier(ca_path, &provider)?;
        Ok(Self {
            ca_path: ca_path.to_path_buf(),
            provider,
            current: RwLock::new(Current { value, tried }),
        })
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        refresh(&self.current, &[&self.ca_path], "client CA", || {
            load_client_verifier(&self.ca_path, &self.provider)
        })
    }
}

fn load_client_verifier(
    ca_path: &Path,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca_path)? {
        roots
            .add(certificate)
            .with_context(|| format!("a CA certificate in {}", ca_path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .with_context(|| format!("the client CA {}", ca_path.display()))
}

impl std::fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}
