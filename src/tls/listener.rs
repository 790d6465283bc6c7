//! A TCP listener whose connections come out already through the TLS handshake, for tonic
//! (as a stream of connections) and for axum (as a [`axum::serve::Listener`]).
//!
//! Each handshake runs in its own task with a deadline, so a slow or silent client never
//! holds up the others. A failed handshake (plaintext, no client certificate, a certificate
//! from another CA) closes that connection, is counted in
//! `meshscope_tls_handshakes_failed_total` by listener and reason, and is logged.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

/// How long a client has to finish its handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections through their handshake and not yet taken by the server.
const READY_QUEUE: usize = 128;
/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) const HANDSHAKES_FAILED: &str = "meshscope_tls_handshakes_failed_total";

type Ready = (TlsStream<TcpStream>, SocketAddr);

/// Connections through their TLS handshake, in the order they finished it.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<Ready>,
    local_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`; `name` labels the counters and logs (`grpc`, `http`).
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        name: &'static str,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, sender, name));
        Ok(Self {
            ready,
            local_addr,
            accept_task,
        })
    }

    /// The connections as tonic's incoming stream.
    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let (stream, _) = listener.ready.recv().await?;
            Some((Ok(stream), listener))
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<Ready>,
    name: &'static str,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(listener = name, %error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => {
                    let reason = failure_reason(&error);
                    metrics::counter!(HANDSHAKES_FAILED, "listener" => name, "reason" => reason)
                        .increment(1);
                    info!(listener = name, %peer, reason, %error, "TLS handshake refused");
                }
                Err(_) => {
                    metrics::counter!(HANDSHAKES_FAILED, "listener" => name, "reason" => "timeout")
                        .increment(1);
                    info!(listener = name, %peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// A short label for why a handshake failed, for the counter.
fn failure_reason(error: &io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "not_tls",
        rustls::Error::AlertReceived(_) => "alert_from_client",
        rustls::Error::NoApplicationProtocol => "no_common_protocol",
        rustls::Error::PeerIncompatible(_) => "incompatible_client",
        _ => "other",
    }
}
