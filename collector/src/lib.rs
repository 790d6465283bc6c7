//! meshscope's collector: gRPC receivers for what Envoy proxies send, identity and peer
//! resolution, and per-minute aggregation into the store.

pub mod config;
pub mod error;

use std::sync::Arc;

use meshscope_storage::Store;

pub use config::CollectorConfig;
pub use error::{Error, Result};

/// The collector: owns the receivers' shared state and the aggregation buffers.
pub struct Collector {
    #[allow(dead_code)]
    config: CollectorConfig,
    #[allow(dead_code)]
    store: Arc<Store>,
}

impl Collector {
    pub fn new(config: CollectorConfig, store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self { config, store })
    }

    /// The tonic routes of every receiver, to serve on the gRPC address.
    pub fn grpc_routes(self: &Arc<Self>) -> tonic::service::Routes {
        tonic::service::Routes::default()
    }

    /// Runs until `shutdown` resolves: publishes open minutes for live reads and hands
    /// closed minutes to the store. On shutdown it flushes everything still open.
    pub async fn run_flusher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        shutdown.await;
    }
}
