//! API errors: each knows its HTTP status and renders as `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A parameter the caller can fix: a bad window, an unknown protocol, a missing field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("storage failed: {0}")]
    Storage(#[from] meshscope_storage::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Storage(
                meshscope_storage::Error::InvalidQuery(_) | meshscope_storage::Error::Refused(_),
            ) => StatusCode::BAD_REQUEST,
            Error::Storage(meshscope_storage::Error::LimitExceeded(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            // A query naming an unknown table or column is the caller's to fix.
            Error::Storage(meshscope_storage::Error::DataFusion(e))
                if matches!(
                    e.find_root(),
                    DataFusionError::Plan(_)
                        | DataFusionError::SchemaError(..)
                        | DataFusionError::SQL(..)
                        | DataFusionError::NotImplemented(_)
                ) =>
            {
                StatusCode::BAD_REQUEST
            }
            Error::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (status, Json(body)).into_response()
    }
}
