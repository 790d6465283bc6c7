//! The minutes a writer holds open, shared through the store: a collector writes the rows
//! of its unclosed minutes every few seconds to `open-minutes/<writer>/<table>.parquet`
//! (each write replaces the last, whole: a PUT), and a query node, as it lists the store
//! again, reads every writer's as its live minutes. A writer's rows of a minute its own
//! files already hold are left out, so that a minute closed between two publications is
//! read once; a writer silent for `OPEN_MINUTES_MAX_AGE_MS` (stopped, or cut off from the
//! store) is left out altogether.

use std::collections::BTreeMap;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::Store;
use crate::error::{Error, Result};
use crate::file_names::writer_of;
use crate::files::{FileEntry, Granularity};
use crate::model::{EpochMillis, MINUTE_MS, Table};

/// The directory of the store that holds each writer's open minutes.
pub const OPEN_MINUTES_DIR: &str = "open-minutes";

/// A writer's open minutes older than this are not read: its writer has not published
/// for five minutes, longer than any minute stays open.
pub const OPEN_MINUTES_MAX_AGE_MS: EpochMillis = 5 * MINUTE_MS;

impl Store {
    /// Writes the rows of the minutes this writer holds open (not yet in its files) to
    /// the store, replacing what it wrote there before; a table with none has its file
    /// removed. A store without a writer id publishes nothing.
    pub async fn publish_open_minutes(&self) -> Result<()> {
        let writer = &self.inner.config.writer_id;
        if writer.is_empty() {
            return Ok(());
        }
        let store = self.inner.files.object_store();
        for table in Table::ALL {
            let stored = self.table(table, Granularity::Minute);
            let batches: Vec<RecordBatch> = stored
                .live
                .batches(stored.covered_before())?
                .into_iter()
                .filter(|batch| batch.num_rows() > 0)
                .collect();
            let path = Path::from(format!(
                "{OPEN_MINUTES_DIR}/{writer}/{}.parquet",
                table.name()
            ));
            if batches.is_empty() {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
                continue;
            }
            let mut bytes = Vec::new();
            let mut encoder = ArrowWriter::try_new(&mut bytes, batches[0].schema(), None)?;
            for batch in &batches {
                encoder.write(batch)?;
            }
            encoder.close()?;
            store.put(&path, PutPayload::from(bytes)).await?;
        }
        Ok(())
    }

    /// Every writer's open minutes, per minute table and writer, as published lately.
    pub(crate) async fn read_open_minutes(
        &self,
    ) -> Result<BTreeMap<Table, Vec<(String, Vec<RecordBatch>)>>> {
        let store = self.inner.files.object_store();
        let listed: Vec<_> = store
            .list(Some(&Path::from(OPEN_MINUTES_DIR)))
            .try_collect()
            .await?;
        let now = self.now_ms();
        let mut read: BTreeMap<Table, Vec<(String, Vec<RecordBatch>)>> = BTreeMap::new();
        for object in listed {
            if object.last_modified.timestamp_millis() + OPEN_MINUTES_MAX_AGE_MS < now {
                continue;
            }
            let parts: Vec<_> = object.location.parts().collect();
            let [_, writer, name] = parts.as_slice() else {
                continue;
            };
            let Some(table) = Table::ALL
                .into_iter()
                .find(|t| format!("{}.parquet", t.name()) == name.as_ref())
            else {
                continue;
            };
            let bytes = match store.get(&object.location).await {
                Ok(got) => got.bytes().await?,
                // Removed since the listing: its writer has no open minute there now.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)?
                .build()?
                .map(|batch| crate::batch::with_later_counters(batch?))
                .collect::<Result<Vec<_>>>()?;
            read.entry(table)
                .or_default()
                .push((writer.as_ref().to_owned(), batches));
        }
        Ok(read)
    }

    /// Makes `open` the minute tables' live rows, each writer's rows of minutes its own
    /// files hold left out.
    pub(crate) fn take_open_minutes(
        &self,
        mut open: BTreeMap<Table, Vec<(String, Vec<RecordBatch>)>>,
    ) -> Result<()> {
        for table in Table::ALL {
            let stored = self.table(table, Granularity::Minute);
            let files = stored.files_overlapping(None, None);
            let mut live = Vec::new();
            for (writer, batches) in open.remove(&table).unwrap_or_default() {
                for batch in batches {
                    let kept = not_in_files(&batch, &writer, &files)?;
                    if kept.num_rows() > 0 {
                        live.push(kept);
                    }
                }
            }
            stored.set_live_batches(live);
        }
        Ok(())
    }
}

/// The rows of `batch` whose minute no file of `writer` among `files` holds.
fn not_in_files(batch: &RecordBatch, writer: &str, files: &[FileEntry]) -> Result<RecordBatch> {
    let held: Vec<(EpochMillis, EpochMillis)> = files
        .iter()
        .filter(|file| {
            file.path
                .filename()
                .and_then(writer_of)
                .is_some_and(|w| w == writer)
        })
        .filter_map(|file| file.times)
        .collect();
    if held.is_empty() || batch.num_columns() == 0 {
        return Ok(batch.clone());
    }
    let Some(minutes) = batch
        .column(0)
        .as_primitive_opt::<TimestampMillisecondType>()
    else {
        return Err(Error::Parquet("open minutes without a time column".into()));
    };
    let keep: BooleanArray = (0..minutes.len())
        .map(|i| {
            let minute = minutes.value(i);
            Some(!held.iter().any(|(lo, hi)| *lo <= minute && minute <= *hi))
        })
        .collect();
    Ok(filter_record_batch(batch, &keep)?)
}
