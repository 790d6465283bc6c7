//! Reads that find a file gone. A query node knows the store's files from its last
//! listing; upkeep on another node may replace or expire some of them before the next
//! one. A read that fails on a missing file lists the store again and is made once more,
//! instead of failing until the next listing.

use std::future::Future;

use datafusion::error::DataFusionError;
use datafusion::parquet::errors::ParquetError;

use super::Store;
use crate::error::{Error, Result};

/// Reads made again after a listing because a file was gone.
pub const RELISTED_READS_METRIC: &str = "meshscope_store_reads_relisted_total";

impl Store {
    /// Makes `read`; on a store other nodes write, a read that failed because a file it
    /// was listed with is gone is made again after listing the store anew. Counted in
    /// [`RELISTED_READS_METRIC`].
    pub(crate) async fn read_relisting_once<T, F, Fut>(&self, read: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match read().await {
            Err(error) if self.inner.files.is_read_only() && is_missing_file(&error) => {
                tracing::info!(%error, "a listed file is gone; listing the store again");
                metrics::counter!(RELISTED_READS_METRIC).increment(1);
                self.refresh_files().await?;
                read().await
            }
            read => read,
        }
    }
}

/// Whether `error` says that a file to be read is not in the store.
pub(crate) fn is_missing_file(error: &Error) -> bool {
    match error {
        Error::DataFusion(error) => missing_in_datafusion(error),
        _ => false,
    }
}

fn missing_in_datafusion(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::ObjectStore(error) => {
            matches!(**error, object_store::Error::NotFound { .. })
        }
        DataFusionError::ParquetError(error) => missing_in_parquet(error),
        DataFusionError::Context(_, inner) => missing_in_datafusion(inner),
        DataFusionError::Shared(inner) => missing_in_datafusion(inner),
        DataFusionError::External(inner) => {
            if let Some(error) = inner.downcast_ref::<object_store::Error>() {
                matches!(error, object_store::Error::NotFound { .. })
            } else if let Some(error) = inner.downcast_ref::<DataFusionError>() {
                missing_in_datafusion(error)
            } else if let Some(error) = inner.downcast_ref::<ParquetError>() {
                missing_in_parquet(error)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// The Parquet reader passes the object store's error on as text: "Object at location
/// ... not found" is how `object_store` words a missing object, for every store kind.
fn missing_in_parquet(error: &ParquetError) -> bool {
    match error {
        ParquetError::General(text) => {
            text.contains("Object at location") && text.contains("not found")
        }
        ParquetError::External(inner) => inner
            .downcast_ref::<object_store::Error>()
            .is_some_and(|error| matches!(error, object_store::Error::NotFound { .. })),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_object_is_told_apart_from_other_failures() {
        let gone = || object_store::Error::NotFound {
            path: "edge_minute/x.parquet".into(),
            source: "gone".into(),
        };
        let as_text = ParquetError::General(format!("Failed to fetch metadata: {}", gone()));
        assert!(is_missing_file(&Error::DataFusion(
            DataFusionError::ParquetError(Box::new(as_text))
        )));
        assert!(is_missing_file(&Error::DataFusion(
            DataFusionError::ObjectStore(Box::new(gone()))
        )));
        assert!(is_missing_file(&Error::DataFusion(
            DataFusionError::External(Box::new(gone()))
        )));
        let refused = object_store::Error::PermissionDenied {
            path: "edge_minute/x.parquet".into(),
            source: "no".into(),
        };
        assert!(!is_missing_file(&Error::DataFusion(
            DataFusionError::ObjectStore(Box::new(refused))
        )));
        assert!(!is_missing_file(&Error::InvalidQuery("not found".into())));
    }
}
