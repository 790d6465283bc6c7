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
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
