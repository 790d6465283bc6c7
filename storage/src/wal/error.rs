//! What can go wrong writing or reading the log.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum WalError {
    #[error("wal io: {0}")]
    Io(#[from] std::io::Error),
    /// The log could not make a record durable (a failed write or sync); the record is
    /// lost and the caller must not act on it as if it were kept.
    #[error("the write-ahead log could not keep a record: {0}")]
    NotKept(String),
    /// The writer was stopped.
    #[error("the write-ahead log is closed")]
    Closed,
}
