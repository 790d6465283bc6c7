//! The tonic routes of every receiver, kept apart from the collector so that the receivers
//! depend on the collector and not the other way round.

use std::sync::Arc;

use crate::collector::Collector;
use crate::{als, metrics_service};

impl Collector {
    /// The tonic routes of every receiver, to serve on the gRPC address.
    pub fn grpc_routes(self: &Arc<Self>) -> tonic::service::Routes {
        tonic::service::Routes::new(als::AlsReceiver::server(self.clone()))
            .add_service(metrics_service::MetricsReceiver::server(self.clone()))
    }
}
