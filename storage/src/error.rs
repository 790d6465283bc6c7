use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("latency sketch could not be decoded: {reason}")]
    Sketch { reason: String },
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    ObjectStore(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A SQL statement that is not a read-only query; the reason names what was refused.
    #[error("query refused: only one read-only SELECT query is allowed: {0}")]
    Refused(String),
    /// A query stopped by its time, row or memory limit.
    #[error("query stopped: {0}")]
    LimitExceeded(String),
    /// A write or delete through a store opened with `Store::open_read_only`.
    #[error("the store is open read-only")]
    ReadOnly,
    /// A `store` URL that names no object store meshscope can open, or a bad writer id.
    #[error("store location: {0}")]
    Location(String),
    #[error("no data directory at {0}")]
    NoDataDir(std::path::PathBuf),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
