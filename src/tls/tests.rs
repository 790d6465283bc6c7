//! The listeners' TLS against a rustls client: certificates and CAs follow their files
//! without dropping open connections, and handshakes without a good client certificate
//! fail.

use std::path::Path;
use std::sync::Arc;

use axum::serve::Listener as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::Resumption;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{ServerTls, TlsFiles, TlsListener};

#[path = "../../tests/support/certs.rs"]
#[allow(dead_code, unreachable_pub)]
mod certs;

use certs::{CertFiles, TestCa};

fn client_config(ca: &Path, identity: Option<&CertFiles>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(super::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    // Each connection a full handshake, so that it shows the certificate in use now.
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// Connects and says hello; the connection and the certificate the server showed.
async fn connect(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    echo(&mut tls, b"hello").await?;
    Ok((tls, shown))
}

async fn echo(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    message: &[u8],
) -> std::io::Result<()> {
    tls.write_all(message).await?;
    tls.flush().await?;
    let mut back = vec![0u8; message.len()];
    tls.read_exact(&mut back).await?;
    assert_eq!(back, message);
    Ok(())
}

/// An echo server on a TLS listener, over the gRPC listener's configuration.
async fn serve_echo(tls: &ServerTls) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut listener = TlsListener::new(tcp, tls.grpc.clone(), "grpc").unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await;
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn der_of(files: &CertFiles) -> Vec<u8> {
    CertificateDer::from_pem_file(&files.cert).unwrap().to_vec()
}

fn install(from: &CertFiles, to: &CertFiles) {
    std::fs::copy(&from.key, &to.key).unwrap();
    std::fs::copy(&from.cert, &to.cert).unwrap();
}

#[tokio::test]
async fn certificates_follow_their_files_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let first = ca.issue("first", &["DNS:localhost"]);
    let second = ca.issue("second", &["DNS:localhost"]);
    let proxy = ca.issue("proxy", &["URI:spiffe://td/ns/shop/sa/frontend"]);
    let live = CertFiles {
        cert: dir.path().join("live.pem"),
        key: dir.path().join("live.key"),
    };
    install(&first, &live);
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::copy(&ca.files.cert, &client_ca).unwrap();
    let tls = ServerTls::load(&TlsFiles {
        cert: live.cert.clone(),
        key: live.key.clone(),
        grpc_client_ca: Some(client_ca.clone()),
    })
    .unwrap();
    let addr = serve_echo(&tls).await;
    let trusting = client_config(&ca.files.cert, Some(&proxy));

    let (mut open, shown) = connect(addr, trusting.clone()).await.unwrap();
    assert_eq!(shown, der_of(&first));

    // A rotation: new connections get the new certificate, the open one goes on.
    install(&second, &live);
    let (_, shown) = connect(addr, trusting.clone()).await.unwrap();
    assert_eq!(shown, der_of(&second));
    echo(&mut open, b"still here").await.unwrap();

    // Files caught half written (a key that is not the certificate's) leave the last good
    // pair in use; once whole, they are taken.
    std::fs::copy(&first.cert, &live.cert).unwrap();
    let (_, shown) = connect(addr, trusting.clone()).await.unwrap();
    assert_eq!(shown, der_of(&second));
    std::fs::copy(&first.key, &live.key).unwrap();
    let (_, shown) = connect(addr, trusting.clone()).await.unwrap();
    assert_eq!(shown, der_of(&first));

    // The client CA follows its file too: a proxy of a new CA is refused until the file
    // names that CA, and taken from then on.
    let next_ca = TestCa::new(dir.path(), "next-ca");
    let next_proxy = next_ca.issue("next-proxy", &["URI:spiffe://td/ns/shop/sa/frontend"]);
    let trusting_next = client_config(&ca.files.cert, Some(&next_proxy));
    assert!(connect(addr, trusting_next.clone()).await.is_err());
    let both = [
        std::fs::read_to_string(&ca.files.cert).unwrap(),
        std::fs::read_to_string(&next_ca.files.cert).unwrap(),
    ]
    .concat();
    std::fs::write(&client_ca, both).unwrap();
    connect(addr, trusting_next).await.unwrap();
    echo(&mut open, b"and still here").await.unwrap();
}

#[tokio::test]
async fn handshakes_without_a_good_client_certificate_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.issue("server", &["DNS:localhost"]);
    let proxy = ca.issue("proxy", &["URI:spiffe://td/ns/shop/sa/frontend"]);
    let other_ca = TestCa::new(dir.path(), "other-ca");
    let foreign = other_ca.issue("foreign", &["URI:spiffe://td/ns/shop/sa/frontend"]);
    let tls = ServerTls::load(&TlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        grpc_client_ca: Some(ca.files.cert.clone()),
    })
    .unwrap();
    let addr = serve_echo(&tls).await;

    connect(addr, client_config(&ca.files.cert, Some(&proxy)))
        .await
        .unwrap();
    assert!(
        connect(addr, client_config(&ca.files.cert, None))
            .await
            .is_err()
    );
    assert!(
        connect(addr, client_config(&ca.files.cert, Some(&foreign)))
            .await
            .is_err()
    );
    // Plaintext gets no echo: the server answers with a TLS alert or closes.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"hello\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"hello"), "{answer:?}");
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let one = ca.issue("one", &["DNS:localhost"]);
    let two = ca.issue("two", &["DNS:localhost"]);
    let Err(error) = ServerTls::load(&TlsFiles {
        cert: one.cert.clone(),
        key: two.key.clone(),
        grpc_client_ca: None,
    }) else {
        panic!("a mismatched key loaded");
    };
    assert!(
        format!("{error:#}").contains("does not go with"),
        "{error:#}"
    );
    let Err(error) = ServerTls::load(&TlsFiles {
        cert: dir.path().join("missing.pem"),
        key: one.key.clone(),
        grpc_client_ca: None,
    }) else {
        panic!("a missing certificate loaded");
    };
    assert!(format!("{error:#}").contains("missing.pem"), "{error:#}");
}
