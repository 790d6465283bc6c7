use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("storage: {0}")]
    Storage(#[from] meshscope_storage::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The write-ahead log could not be read or started.
    #[error("write-ahead log: {0}")]
    Log(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
