//! Writing one Parquet file: the batches in time order, encoded and sent out part by
//! part, under a temporary name that a rename makes visible (the local disk) or under its
//! final name, visible whole once the upload completes (a bucket). `files` opens writers;
//! what a write goes through is its `WritePath`.

use datafusion::arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::SortingColumn;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::file_names::{times_in_name, visible_path};
use crate::files::{DAY_MS, FileEntry, WritePath};
use crate::model::EpochMillis;
use crate::schema;

/// Where a `FileWriter`'s bytes go.
pub(crate) enum Target {
    /// A temporary name, made visible by a rename.
    Temporary(Path),
    /// The final name: the upload is visible once it completes.
    Final(Path),
}

impl Target {
    fn path(&self) -> &Path {
        match self {
            Target::Temporary(path) | Target::Final(path) => path,
        }
    }
}

/// A file written and flushed under its temporary name, not yet visible.
pub(crate) struct ClosedFile {
    pub(crate) temporary: Path,
    /// What the file is once visible.
    pub(crate) entry: FileEntry,
}

/// Whether a batch's times never go down; `None` if it has no plain time column.
fn sorted_times(batch: &RecordBatch) -> Option<bool> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    let times = batch
        .columns()
        .first()?
        .as_primitive_opt::<TimestampMillisecondType>()?;
    if times.null_count() > 0 {
        return None;
    }
    Some(times.values().windows(2).all(|w| w[0] <= w[1]))
}

/// The batches in time order. Each closed minute arrives sorted (one time), so ordering
/// the batches by their spans is enough and nothing is copied; joining and sorting would
/// copy a minute whole at the moment memory is highest.
pub(crate) fn in_time_order(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let mut batches: Vec<RecordBatch> = match batches.iter().any(|b| b.num_rows() > 0) {
        true => batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect(),
        // A file of no rows still records its schema.
        false => return Ok(batches.iter().take(1).cloned().collect()),
    };
    if batches.iter().all(|b| sorted_times(b) == Some(true)) {
        batches.sort_by_key(time_span);
        let disjoint = batches
            .windows(2)
            .all(|w| match (time_span(&w[0]), time_span(&w[1])) {
                (Some((_, last)), Some((first, _))) => last <= first,
                _ => false,
            });
        if disjoint {
            return Ok(batches);
        }
    }
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let joined = concat_batches(&first.schema(), &batches)?;
    if joined.num_columns() == 0 {
        return Ok(vec![joined]);
    }
    let indices = sort_to_indices(joined.column(0), None, None)?;
    Ok(vec![take_record_batch(&joined, &indices)?])
}

/// A file being written by `DataFiles::writer`; nothing is visible until `finish` (or,
/// for a file that replaces others, until `replace::commit`).
pub(crate) struct FileWriter {
    writer: AsyncArrowWriter<BufWriter>,
    write_path: WritePath,
    target: Target,
    dir: String,
    stem: String,
    partition: EpochMillis,
    times: Option<(EpochMillis, EpochMillis)>,
}

impl FileWriter {
    /// A writer of the file `target`, which will be `<dir>/<stem>…` once visible.
    pub(crate) fn start(
        write_path: WritePath,
        target: Target,
        dir: String,
        stem: String,
        partition: EpochMillis,
        schema: SchemaRef,
    ) -> Result<FileWriter> {
        // One part in flight: the hour's upkeep holds two writers at once, beside the
        // closing minutes.
        let part_bytes = if write_path.straight_to_final_name {
            REMOTE_PART_BYTES
        } else {
            PART_BYTES
        };
        let sink =
            BufWriter::with_capacity(write_path.store.clone(), target.path().clone(), part_bytes)
                .with_max_concurrency(1);
        Ok(FileWriter {
            writer: AsyncArrowWriter::try_new(
                sink,
                schema.clone(),
                Some(writer_properties(&schema)),
            )?,
            write_path,
            target,
            dir,
            stem,
            partition,
            times: None,
        })
    }

    /// Appends a batch sorted by time, with no time before the previous batch's last.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some((first, last)) = time_span(batch) {
            if sorted_times(batch) != Some(true)
                || self.times.is_some_and(|(_, before)| first < before)
            {
                return Err(Error::Parquet("rows written out of time order".into()));
            }
            self.times = Some(self.times.map_or((first, last), |(lo, _)| (lo, last)));
        }
        let written = self.writer.write(batch).await.map_err(Error::from);
        self.write_path.counted(written)
    }

    /// Completes the file and flushes it to disk under its temporary name; it is not
    /// visible yet. On failure the temporary file is deleted.
    pub(crate) async fn close(self) -> Result<ClosedFile> {
        let FileWriter {
            writer,
            write_path,
            target,
            dir,
            stem,
            partition,
            times,
        } = self;
        let temporary = match target {
            Target::Temporary(path) => path,
            Target::Final(path) => {
                return Err(Error::ObjectStore(format!(
                    "{path} is written under its final name: it cannot be closed unseen"
                )));
            }
        };
        let closed = async {
            writer.close().await?;
            let size = write_path.reads.head(&temporary).await?.size;
            write_path.durability.sync_file(&temporary).await?;
            Ok(size)
        }
        .await;
        match write_path.counted(closed) {
            Ok(size) => Ok(ClosedFile {
                entry: FileEntry {
                    path: visible_path(&dir, &stem, times),
                    size,
                    partition,
                    times,
                },
                temporary,
            }),
            Err(error) => {
                let _ = write_path.delete(&temporary).await;
                Err(error)
            }
        }
    }

    /// Completes the file and makes it visible under its final name, durably.
    pub(crate) async fn finish(self) -> Result<FileEntry> {
        let write_path = self.write_path.clone();
        if let Target::Final(path) = &self.target {
            let path = path.clone();
            return self.complete_upload(path).await;
        }
        let closed = self.close().await?;
        write_path.publish(closed).await
    }

    /// Completes a file written under its final name: the upload's completion is what
    /// makes it visible, whole.
    async fn complete_upload(self, path: Path) -> Result<FileEntry> {
        let FileWriter {
            writer,
            write_path,
            partition,
            times,
            ..
        } = self;
        let expected = times_in_name(path.filename().unwrap_or_default(), partition, DAY_MS);
        let completed = async {
            writer.close().await?;
            Ok(write_path.reads.head(&path).await?.size)
        }
        .await;
        match write_path.counted(completed) {
            Ok(size) if expected == times => {
                write_path.health.succeeded(write_path.clock.now_ms());
                Ok(FileEntry {
                    path,
                    size,
                    partition,
                    times,
                })
            }
            Ok(_) => {
                let _ = write_path.delete(&path).await;
                Err(Error::Parquet(format!(
                    "{path} holds other times than its name says"
                )))
            }
            Err(error) => Err(error),
        }
    }
}

/// The first and last value of a sorted batch's time column.
pub(crate) fn time_span(batch: &RecordBatch) -> Option<(EpochMillis, EpochMillis)> {
    use datafusion::arrow::array::{Array, AsArray};
    if batch.num_columns() == 0 || batch.num_rows() == 0 {
        return None;
    }
    let times = batch
        .column(0)
        .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>()?;
    if times.null_count() > 0 {
        return None;
    }
    Some((times.value(0), times.value(times.len() - 1)))
}

/// How a file of `schema` is written. Metric tables (those with a latency sketch column)
/// compress their sketches with Zstandard and every other column with LZ4: those columns
/// are keys, times and counters that dictionary and run-length encoding already make
/// small, and a Zstandard column costs a read a compression and a decompression context
/// built for every column chunk it opens (parquet's codec makes both), which was about a
/// tenth of the CPU of a cold 1 h read over 5,000 edges; LZ4's codec has no state. The
/// files grew by 5 to 7% (BENCHMARKS.md). Other tables (access log entries, proxy
/// statistics) keep Zstandard throughout.
fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let zstd = Compression::ZSTD(ZstdLevel::default());
    let mut builder = WriterProperties::builder().set_compression(zstd);
    if schema.column_with_name(schema::LATENCY).is_some() {
        builder = builder.set_compression(Compression::LZ4_RAW);
        for sketch in [schema::LATENCY, schema::OVERHEAD] {
            builder = builder.set_column_compression(ColumnPath::from(sketch), zstd);
        }
    }
    builder
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        // A row group is encoded in memory before it goes out: this bounds what a merge
        // of many minute files holds at once.
        .set_max_row_group_row_count(Some(STREAMED_ROW_GROUP))
        .build()
}

/// The part a streamed file goes out in. Local files take parts of any size.
const PART_BYTES: usize = 1 << 20;

/// S3 takes parts of 5 MiB at least (but the last); a smaller file goes out in one PUT.
const REMOTE_PART_BYTES: usize = 5 << 20;

/// Rows per row group: small enough that a streamed file's pending group stays a few MiB
/// even for wide tables; the hour's upkeep holds two such groups while closing minutes
/// come and go beside it.
const STREAMED_ROW_GROUP: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricRow, Metrics, RowKey, ServiceRef, Side, Table};

    fn minute_batch(minutes: &[i64]) -> RecordBatch {
        let rows: Vec<MetricRow> = minutes
            .iter()
            .map(|&minute| MetricRow {
                minute,
                key: RowKey::Service {
                    service: ServiceRef::service("", "a"),
                },
                side: Side::Server,
                metrics: Metrics::default(),
            })
            .collect();
        crate::batch::to_batch(Table::ServiceMinute, &rows).unwrap()
    }

    fn times(batches: &[RecordBatch]) -> Vec<Option<(EpochMillis, EpochMillis)>> {
        batches.iter().map(time_span).collect()
    }

    #[test]
    fn slices_of_minutes_are_written_in_order_without_a_copy() {
        let late = minute_batch(&[0]);
        let slices = [
            minute_batch(&[60_000, 60_000]),
            minute_batch(&[60_000]),
            late,
        ];
        let ordered = in_time_order(&slices).unwrap();
        assert_eq!(
            times(&ordered),
            vec![Some((0, 0)), Some((60_000, 60_000)), Some((60_000, 60_000))]
        );
        // The same buffers, reordered: nothing was joined.
        let first_column = |b: &RecordBatch| b.column(0).to_data().buffers()[0].as_ptr();
        assert_eq!(first_column(&ordered[0]), first_column(&slices[2]));

        let overlapping = [minute_batch(&[60_000, 180_000]), minute_batch(&[120_000])];
        let joined = in_time_order(&overlapping).unwrap();
        assert_eq!(times(&joined), vec![Some((60_000, 180_000))]);
        assert_eq!(joined[0].num_rows(), 3);
        assert!(sorted_times(&joined[0]).unwrap());

        let empty = [minute_batch(&[])];
        assert_eq!(in_time_order(&empty).unwrap()[0].num_rows(), 0);
    }

    /// The codec of every column chunk of a file written with `writer_properties`, by
    /// column name.
    fn codecs_written(batch: &RecordBatch) -> Vec<(String, Compression)> {
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let file = tempfile::tempfile().unwrap();
        let properties = writer_properties(&batch.schema());
        let mut writer =
            ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(properties))
                .unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let group = reader.metadata().row_group(0);
        group
            .columns()
            .iter()
            .map(|chunk| (chunk.column_path().string(), chunk.compression()))
            .collect()
    }

    #[test]
    fn metric_files_keep_zstandard_for_sketches_and_lz4_for_the_rest() {
        let codecs = codecs_written(&minute_batch(&[0, 60_000]));
        let zstd = Compression::ZSTD(ZstdLevel::default());
        for (column, codec) in &codecs {
            let expected = if column == schema::LATENCY || column == schema::OVERHEAD {
                zstd
            } else {
                Compression::LZ4_RAW
            };
            assert_eq!(*codec, expected, "column {column}");
        }
        assert!(codecs.iter().any(|(column, _)| column == "calls"));
        assert!(codecs.iter().any(|(column, _)| column == schema::OVERHEAD));

        let entry = crate::access_log::AccessLogRow {
            time: 0,
            source_namespace: "shop".into(),
            source_name: "frontend".into(),
            target_namespace: "shop".into(),
            target_name: "cart".into(),
            side: Side::Server,
            protocol: crate::model::Protocol::Http,
            method: "GET".into(),
            path: "/cart".into(),
            status: 200,
            response_flags: "-".into(),
            duration_ms: 1.5,
            bytes_sent: 10,
            bytes_received: 20,
            mtls: true,
            request_id: "r-1".into(),
            node: "frontend-1".into(),
        };
        let entries = crate::access_log::to_batch(&[&entry]).unwrap();
        let codecs = codecs_written(&entries);
        assert!(!codecs.is_empty());
        assert!(codecs.iter().all(|(_, codec)| *codec == zstd), "{codecs:?}");
    }
}
