//! API errors: each knows its HTTP status and renders as `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

#[derive(Debug, Error)]
pub enum Error {
    /// A parameter the caller can fix: a bad window, an unknown protocol, a missing field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Storage errors that are the caller's to fix (refused SQL, limits, unknown tables)
    /// read as the store words them; the others are prefixed as failures.
    #[error("{}", storage_message(.0))]
    Storage(#[from] meshscope_storage::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Storage(error) => Self::storage_status(error),
        }
    }

    fn storage_status(error: &meshscope_storage::Error) -> StatusCode {
        use meshscope_storage::Error as Storage;
        match error {
            Storage::InvalidQuery(_) | Storage::Refused(_) => StatusCode::BAD_REQUEST,
            Storage::LimitExceeded(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // A query naming an unknown table or column is the caller's to fix.
            Storage::DataFusion(e)
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
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
}

fn storage_message(error: &meshscope_storage::Error) -> String {
    if Error::storage_status(error).is_client_error() {
        error.to_string()
    } else {
        format!("storage failed: {error}")
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// The body of every error answer of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words for a person.
    pub error: String,
}
