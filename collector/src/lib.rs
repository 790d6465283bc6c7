//! meshscope's collector: gRPC receivers for what Envoy proxies send, identity and peer
//! resolution, and per-minute aggregation into the store.

mod access_log_row;
mod address_learning;
pub mod aggregate;
pub mod als;
pub mod attribution;
pub mod checkpoint_file;
pub mod checkpoint_state;
pub mod codec;
mod collector;
pub mod config;
pub mod endpoint;
pub mod entry;
pub mod error;
mod grpc_routes;
pub mod grpc_stream;
mod hash_state;
pub mod identity;
pub mod ingest;
pub mod logged_address;
pub mod metrics_service;
pub mod names;
mod peer_answer_cache;
mod protobuf_fields;
pub mod proxy_minutes;
pub mod proxy_stats;
pub mod registry;
pub mod reporter_check;
pub mod request_pairs;
pub mod request_settlement;
pub mod resolve;
mod response_flag_bits;
pub mod role;
pub mod stats;
pub mod time_rules;
pub mod wait_queue;
mod waiting_requests;
pub mod wal_checkpoint;
pub mod wal_log;
pub mod wal_mark;
pub mod wal_replay;
pub mod wire;

pub use collector::Collector;
pub use config::CollectorConfig;
pub use error::{Error, Result};
pub use meshscope_storage::clock::{Clock, ManualClock, SystemClock};
