//! The gRPC and HTTP servers on their bound listeners, over TLS when it is configured and
//! plaintext otherwise, each until its stop signal.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::server::TcpIncoming;

use crate::tls::TlsListener;

/// A server running until its stop signal, then draining.
pub(crate) type RunningServer<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// Serves the collector's gRPC routes. `max_concurrent_streams` bounds the streams of one
/// connection; messages are bounded by each receiver.
pub(crate) fn grpc_server(
    routes: tonic::service::Routes,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    max_concurrent_streams: u32,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<RunningServer<tonic::transport::Error>> {
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(max_concurrent_streams))
        .add_routes(routes);
    Ok(match tls {
        Some(config) => {
            let incoming = TlsListener::new(listener, config, "grpc")?.into_stream();
            Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
        }
    })
}

/// Serves the HTTP API and the dashboard.
pub(crate) fn http_server(
    app: axum::Router,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<RunningServer<std::io::Error>> {
    Ok(match tls {
        Some(config) => {
            let listener = TlsListener::new(listener, config, "http")?;
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future(),
        ),
    })
}
