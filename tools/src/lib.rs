//! The load tools behind the `meshscope` binary's `simulate`, `simulate-wide`, `replay`,
//! `bench` and `sink` subcommands, and the demo mesh of `serve --demo`.
//!
//! Each tool is a module with its command-line flags (a `clap::Args` struct the binary
//! mounts as a subcommand) and an async `run` that does the work. They talk to a collector
//! the way Envoy does, over the access log and metrics gRPC services, so they need nothing
//! of meshscope's internals but the collector's wire limits and codec.

pub mod bench;
mod child_process;
pub mod error;
mod proc_stats;
pub mod replay;
pub mod simulate;
pub mod sink;

pub use error::{Error, Result};
