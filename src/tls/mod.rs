//! TLS on the two listeners, with rustls and the ring provider: one server certificate for
//! both, reloaded when its files change, and on the gRPC listener optionally a required
//! client certificate signed by a given CA (the proxies' mTLS to their telemetry cluster).

pub(crate) mod listener;
pub(crate) mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::NoServerSessionStorage;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

pub(crate) use listener::TlsListener;
use reload::{ReloadingCertificate, ReloadingClientVerifier};

/// The PEM files TLS is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// When set, the gRPC listener requires client certificates signed by this CA.
    pub(crate) grpc_client_ca: Option<PathBuf>,
}

/// The rustls configurations of the two listeners, sharing one reloading certificate.
pub(crate) struct ServerTls {
    /// HTTP/2 only (gRPC), with client certificates required when a client CA is set.
    pub(crate) grpc: Arc<ServerConfig>,
    /// HTTP/2 or HTTP/1.1, without client certificates.
    pub(crate) http: Arc<ServerConfig>,
}

impl ServerTls {
    /// Reads the files once (an error here stops the start) and builds both configurations.
    pub(crate) fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let provider = crypto_provider();
        let certificate = Arc::new(ReloadingCertificate::load(
            &files.cert,
            &files.key,
            provider.clone(),
        )?);
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .context("choosing TLS versions")
        };
        let mut grpc = match &files.grpc_client_ca {
            Some(ca) => {
                let verifier: Arc<dyn ClientCertVerifier> =
                    Arc::new(ReloadingClientVerifier::load(ca, provider.clone())?);
                builder()?
                    .with_client_cert_verifier(verifier)
                    .with_cert_resolver(certificate.clone())
            }
            None => builder()?
                .with_no_client_auth()
                .with_cert_resolver(certificate.clone()),
        };
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        // Proxies keep their connections for hours, so resumption saves little; without it
        // every new connection's certificate is checked against the CA file as it is now.
        grpc.session_storage = Arc::new(NoServerSessionStorage {});
        let mut http = builder()?
            .with_no_client_auth()
            .with_cert_resolver(certificate);
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            grpc: Arc::new(grpc),
            http: Arc::new(http),
        })
    }
}

/// rustls over *ring*: a fast build with no C toolchain beyond a compiler. rustls 0.23.48
/// deprecates it because *ring* has no post-quantum key exchange; moving to aws-lc-rs (for
/// X25519MLKEM768) is a change of this function and of the crate features.
#[allow(deprecated)]
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
