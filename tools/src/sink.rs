//! `meshscope sink`: a decode-and-discard access log receiver. It decodes each message with
//! prost and drops it: the floor cost of receiving, against which `bench` measures meshscope.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use meshscope_proto::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use meshscope_proto::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use meshscope_proto::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use tracing::info;

use crate::error::{Error, Result};

/// The flags of `meshscope sink`.
#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Where to listen for access log streams
    #[arg(long, default_value = "127.0.0.1:11900")]
    grpc_addr: SocketAddr,
}

/// Runs `meshscope sink` until Ctrl-C (SIGINT): receive and decode, keep nothing.
pub async fn run(args: SinkArgs) -> Result<()> {
    let sink = DiscardingReceiver {
        entries: Arc::new(AtomicU64::new(0)),
    };
    info!(grpc_addr = %args.grpc_addr, "decode-and-discard sink listening");
    tonic::transport::Server::builder()
        .add_service(
            AccessLogServiceServer::new(sink)
                .max_decoding_message_size(meshscope_collector::als::MAX_MESSAGE_BYTES),
        )
        .serve_with_shutdown(args.grpc_addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| Error::Transport {
            what: "sink server",
            source,
        })
}

/// An access log service that counts the entries it decoded and drops them.
struct DiscardingReceiver {
    entries: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl AccessLogService for DiscardingReceiver {
    async fn stream_access_logs(
        &self,
        request: tonic::Request<tonic::Streaming<StreamAccessLogsMessage>>,
    ) -> Result<tonic::Response<StreamAccessLogsResponse>, tonic::Status> {
        let mut stream = request.into_inner();
        while let Some(message) = stream.message().await? {
            let n = match &message.log_entries {
                Some(LogEntries::HttpLogs(h)) => h.log_entry.len(),
                Some(LogEntries::TcpLogs(t)) => t.log_entry.len(),
                None => 0,
            };
            self.entries.fetch_add(n as u64, Ordering::Relaxed);
            drop(std::hint::black_box(message));
        }
        Ok(tonic::Response::new(StreamAccessLogsResponse {}))
    }
}
