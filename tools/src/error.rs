//! What can go wrong in a load tool: the collector unreachable or refusing a stream, a
//! capture file that does not parse, a child `meshscope` process that misbehaves.

use std::path::PathBuf;

/// The one error type of the load tools.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The collector's address is not a valid URI.
    #[error("collector address")]
    CollectorAddress(#[source] tonic::transport::Error),
    /// No gRPC connection could be made to `target`.
    #[error("connecting to the collector at {target}")]
    Connect {
        target: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A gRPC connection or server failed; `what` names the step.
    #[error("{what}")]
    Transport {
        what: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
    /// The collector answered a stream with an error status; `what` names the stream.
    #[error("{what}")]
    Refused {
        what: &'static str,
        #[source]
        source: tonic::Status,
    },
    /// The collector closed a stream the tool was still sending on.
    #[error("the collector closed {0}")]
    StreamClosed(&'static str),
    /// A file, socket or process could not be read, written or started.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A capture file could not be read.
    #[error("reading {}", path.display())]
    ReadCapture {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A capture file or its index is malformed.
    #[error("{0}")]
    Capture(String),
    /// A captured message does not decode as the protobuf it should be.
    #[error(transparent)]
    Decode(#[from] prost::DecodeError),
    /// JSON that did not parse or serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A child `meshscope` process or its HTTP API did not behave as expected.
    #[error("{0}")]
    Child(String),
    /// A `/proc` file did not hold what Linux puts there.
    #[error("{0}")]
    Proc(String),
    /// A sending task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The system clock reads a time before 1970.
    #[error(transparent)]
    Clock(#[from] std::time::SystemTimeError),
}

/// The result of a load tool's step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with the step it happened in.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// A connection error to the collector at `target`.
    pub(crate) fn connect(target: &str) -> impl FnOnce(tonic::transport::Error) -> Error {
        let target = target.to_owned();
        move |source| Error::Connect { target, source }
    }

    /// An error status from the collector on the stream `what` names.
    pub(crate) fn refused(what: &'static str) -> impl FnOnce(tonic::Status) -> Error {
        move |source| Error::Refused { what, source }
    }
}
