//! Parquet files under `<store>/<table>/date=YYYY-MM-DD[/hour=HH]/…`, read and written
//! only through `object_store`, in the node's data directory or in a bucket (`location`).
//! On the local disk a file becomes visible by a rename from a temporary name once its
//! contents are flushed to disk, and the directory is flushed after the rename
//! (`durable`), so a crash or a power loss never leaves a half file that a query reads. A
//! bucket's upload becomes visible whole when it completes, so there a new file is written
//! straight under its final name. Files that replace others (compaction, rollups) become
//! visible through `replace`, which makes the swap atomic.
//!
//! Several writers may share one store: each one's file names carry its id
//! (`file_names`), and each lists, cleans up and recovers only its own names.
//!
//! Over 600 lines: the listing at start (with its checks), the opening of writers and what
//! a write goes through are the one life of a data file; what a name says is in
//! `file_names`, how one file is written in `file_writer`.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Timelike};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::clock::Clock;
use crate::crash_point;
use crate::durable::LocalDurability;
use crate::error::{Error, Result};
use crate::file_names::{
    StemSequence, TEMPORARY_SUFFIX, partition_of, stem_order, temporary_path, times_in_name,
    visible_path,
};
pub(crate) use crate::file_writer::{ClosedFile, FileWriter, in_time_order};
use crate::file_writer::{Target, time_span};
use crate::location::Location;
use crate::model::EpochMillis;
use crate::quarantine;
use crate::write_health::{WriteHealth, carries_object_store_error, telling_io_kind};

pub(crate) const HOUR_MS: EpochMillis = 3_600_000;
pub(crate) const DAY_MS: EpochMillis = 24 * HOUR_MS;

/// The start of the hour `t` falls in: the partition its rows are written under.
pub fn hour_of(t: EpochMillis) -> EpochMillis {
    t.div_euclid(HOUR_MS) * HOUR_MS
}

/// How much time one row (and one partition directory) of a table covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    pub fn suffix(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// The span of one partition directory: an hour for minutes and hours, a day for days.
    pub(crate) fn partition_ms(self) -> EpochMillis {
        match self {
            Granularity::Minute | Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }
}

/// One visible Parquet file and the partition it belongs to.
#[derive(Clone, Debug)]
pub(crate) struct FileEntry {
    pub(crate) path: Path,
    pub(crate) size: u64,
    /// Start of the partition (hour or day) that holds every row of the file.
    pub(crate) partition: EpochMillis,
    /// First and last time in the file, both included, for files written by this process;
    /// a reopened file is known only by its partition. Lets a read of the last minutes skip
    /// the hour's other files without opening them.
    pub(crate) times: Option<(EpochMillis, EpochMillis)>,
}

pub(crate) struct DataFiles {
    /// The local directory's store and its path on disk; `None` for a remote store.
    local: Option<(Arc<LocalFileSystem>, std::path::PathBuf)>,
    url: ObjectStoreUrl,
    pub(crate) write_path: WritePath,
    stems: StemSequence,
    /// Set for a reader beside a running server: it must not write, and must not take a
    /// temporary file the server is about to rename for a crash's leftover.
    read_only: bool,
    /// For a reader beside a running server: files that a replacement under way has
    /// already superseded (or not yet made visible), which are not listed.
    hidden: parking_lot::Mutex<HashSet<String>>,
}

impl DataFiles {
    /// The files at `location`, named by `writer` and dated by `clock`.
    pub(crate) fn open(location: &Location, writer: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        if let Location::Local(dir) = location {
            std::fs::create_dir_all(dir)?;
        }
        Self::with_store(location, writer, false, clock)
    }

    /// The files at `location`, for reading only.
    pub(crate) fn open_read_only(location: &Location, clock: Arc<dyn Clock>) -> Result<Self> {
        if let Location::Local(dir) = location
            && !dir.is_dir()
        {
            return Err(Error::NoDataDir(dir.to_path_buf()));
        }
        Self::with_store(location, "", true, clock)
    }

    fn with_store(
        location: &Location,
        writer: &str,
        read_only: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        if !writer.is_empty() && !crate::location::valid_writer_id(writer) {
            return Err(Error::Location(format!(
                "{writer:?} is not a writer id: 1 to 63 letters, digits and '-'"
            )));
        }
        let (reads, durability, local): (Arc<dyn ObjectStore>, _, _) = match location {
            Location::Local(data_dir) => {
                let local = Arc::new(LocalFileSystem::new_with_prefix(data_dir)?);
                let root = std::fs::canonicalize(data_dir)?;
                (
                    local.clone(),
                    LocalDurability::new(local.clone(), &root),
                    Some((local, root)),
                )
            }
            Location::Remote { store, .. } => (store.clone(), LocalDurability::remote(), None),
        };
        let store: Arc<dyn ObjectStore> = match slow_writes() {
            Some(config) => Arc::new(object_store::throttle::ThrottledStore::new(
                reads.clone(),
                config,
            )),
            None => reads.clone(),
        };
        if !read_only {
            WriteHealth::register();
            quarantine::register();
        }
        Ok(Self {
            write_path: WritePath {
                store,
                reads,
                durability,
                health: Arc::new(WriteHealth::default()),
                clock,
                straight_to_final_name: local.is_none(),
            },
            local,
            url: ObjectStoreUrl::parse("meshscope://data/")?,
            stems: StemSequence::for_writer(writer),
            read_only,
            hidden: parking_lot::Mutex::new(HashSet::new()),
        })
    }

    /// Whether the files are in a local directory (flushed and renamed into place).
    pub(crate) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Whether a name found in the store is one this writer made (see `StemSequence`).
    pub(crate) fn is_own(&self, name: &str) -> bool {
        self.stems.is_own(name)
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn health(&self) -> &WriteHealth {
        &self.write_path.health
    }

    /// Files a reader beside a running server must not list (see `replace`), in place
    /// of those named before.
    pub(crate) fn hide(&self, paths: impl IntoIterator<Item = String>) {
        let mut hidden = self.hidden.lock();
        hidden.clear();
        hidden.extend(paths);
    }

    /// The store reads go through (never slowed down, see `SLOW_WRITES_ENV`).
    pub(crate) fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.write_path.reads.clone()
    }

    pub(crate) fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// Writes `batches`, rows of one table and partition, as one new file. Batches that
    /// hold disjoint, ordered times (a closing minute's slices) are written one after
    /// another as they are; others are joined and sorted first. The file goes out as it is
    /// encoded: a minute of endpoint rows is some 10 MB of Parquet, which was held whole
    /// (and in a buffer grown by doubling) beside the batches it came from.
    pub(crate) async fn write(
        &self,
        table: &str,
        granularity: Granularity,
        partition: EpochMillis,
        batches: &[RecordBatch],
    ) -> Result<FileEntry> {
        let batches = in_time_order(batches)?;
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Err(Error::Parquet("no batch to write".into()));
        };
        // Known before the first byte: a remote store's file is written under its final
        // name, which carries them.
        let times = match (
            batches.iter().find_map(time_span),
            batches.iter().rev().find_map(time_span),
        ) {
            (Some((first, _)), Some((_, last))) => Some((first, last)),
            _ => None,
        };
        let mut writer = self.new_writer(table, granularity, partition, schema, times)?;
        for batch in &batches {
            writer.write(batch).await?;
        }
        writer.finish().await
    }

    /// A new file of the partition written a batch at a time and sent out as it goes
    /// (multipart), so that merging a partition's files never holds the merged file. The
    /// batches must come in time order.
    pub(crate) fn writer(
        &self,
        table: &str,
        granularity: Granularity,
        partition: EpochMillis,
        schema: SchemaRef,
    ) -> Result<FileWriter> {
        self.new_writer(table, granularity, partition, schema, None)
    }

    /// A new file of the partition. With `times` known up front and a remote store, it is
    /// written straight under its final name (an upload is visible only once complete);
    /// otherwise under a temporary name, renamed into place by `finish` or `replace`.
    fn new_writer(
        &self,
        table: &str,
        granularity: Granularity,
        partition: EpochMillis,
        schema: SchemaRef,
        times: Option<(EpochMillis, EpochMillis)>,
    ) -> Result<FileWriter> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let stem = self.new_stem();
        let dir = partition_dir(table, granularity, partition);
        let target = match times {
            Some(times) if self.write_path.straight_to_final_name => {
                Target::Final(visible_path(&dir, &stem, Some(times)))
            }
            _ => Target::Temporary(temporary_path(&dir, &stem)),
        };
        FileWriter::start(
            self.write_path.clone(),
            target,
            dir,
            stem,
            partition,
            schema,
        )
    }

    /// A name for a new file, after every name written before (see `StemSequence`).
    pub(crate) fn new_stem(&self) -> String {
        self.stems.next(self.write_path.clock.now_ms())
    }

    /// A file's rows, `rows_per_batch` at a time, decoded as they are asked for and read
    /// from the file a row group at a time: a minute of endpoint rows is some 10 MB
    /// encoded and several times that decoded, and neither is held whole. A local file is
    /// read in place; a remote one is fetched whole first (`fetch_encoded`).
    pub(crate) fn stream_local(
        &self,
        path: &Path,
        rows_per_batch: usize,
    ) -> Result<impl Iterator<Item = Result<RecordBatch>> + Send + 'static> {
        let Some((local, _)) = &self.local else {
            return Err(Error::ObjectStore(format!(
                "{path} is in a remote store: it cannot be read in place"
            )));
        };
        let file = std::fs::File::open(local.path_to_filesystem(path)?)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(rows_per_batch)
            .build()?;
        Ok(reader.map(|batch| crate::batch::with_later_counters(batch?)))
    }

    /// A file's rows, `rows_per_batch` at a time: read in place from a local directory,
    /// decoded from the whole file fetched from a remote store.
    pub(crate) async fn stream(
        &self,
        path: &Path,
        rows_per_batch: usize,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'static>> {
        if self.is_local() {
            return Ok(Box::new(self.stream_local(path, rows_per_batch)?));
        }
        let bytes = self.write_path.reads.get(path).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .with_batch_size(rows_per_batch)
            .build()?;
        Ok(Box::new(
            reader.map(|batch| crate::batch::with_later_counters(batch?)),
        ))
    }

    /// A file's rows, decoded whole; files written before the later counters read with
    /// them null.
    pub(crate) async fn read_batches(&self, path: &Path) -> Result<Vec<RecordBatch>> {
        Ok(self.read_with_schema(path).await?.1)
    }

    /// A file's Arrow schema, with the metadata it was written with.
    pub(crate) async fn arrow_schema_of(&self, path: &Path) -> Result<SchemaRef> {
        let bytes = self.write_path.reads.get(path).await?.bytes().await?;
        Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?
            .schema()
            .clone())
    }

    /// A file's Arrow schema, with the metadata it was written with, and its rows decoded
    /// whole, from one read of the file.
    pub(crate) async fn read_with_schema(
        &self,
        path: &Path,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let bytes = self.write_path.reads.get(path).await?.bytes().await?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let schema = builder.schema().clone();
        let batches = builder
            .build()?
            .map(|batch| crate::batch::with_later_counters(batch?))
            .collect::<Result<_>>()?;
        Ok((schema, batches))
    }

    pub(crate) async fn delete(&self, path: &Path) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.write_path.delete(path).await
    }

    /// Deletes files written by a write that then failed as a whole, so that writing it
    /// again does not add their rows twice.
    pub(crate) async fn discard(&self, files: &[FileEntry]) {
        let paths: Vec<Path> = files.iter().map(|file| file.path.clone()).collect();
        for path in &paths {
            if let Err(error) = self.delete(path).await {
                tracing::error!(%error, %path, "a file of a failed write could not be deleted");
            }
        }
        if let Err(error) = self.write_path.durability.sync_dirs_of(&paths).await {
            tracing::warn!(%error, "flushing directories after a failed write failed");
        }
    }

    /// The visible files of a table, found by listing its directory. Temporary files this
    /// writer's crash left are deleted: their rename never happened, so nothing refers to
    /// them (`replace::recover` has run first); other writers' are left alone. A local
    /// file whose footer is damaged is moved to the quarantine directory (a reader beside
    /// a server only skips it).
    pub(crate) async fn list(&self, table: &str) -> Result<Vec<FileEntry>> {
        self.list_except(table, &HashSet::new(), true).await
    }

    /// The visible files of a table but those in `known`, listed again while the store
    /// is in use: nothing is deleted, and only new files' footers are checked.
    pub(crate) async fn list_again(
        &self,
        table: &str,
        known: &HashSet<Path>,
    ) -> Result<Vec<FileEntry>> {
        self.list_except(table, known, false).await
    }

    async fn list_except(
        &self,
        table: &str,
        known: &HashSet<Path>,
        at_start: bool,
    ) -> Result<Vec<FileEntry>> {
        let objects: Vec<_> = self
            .write_path
            .reads
            .list(Some(&Path::from(table)))
            .try_collect()
            .await?;
        let hidden = self.hidden.lock().clone();
        let mut files = Vec::new();
        for object in objects {
            let name = object.location.filename().unwrap_or_default();
            self.stems.observe(name);
            if name.ends_with(TEMPORARY_SUFFIX) {
                if self.read_only || !at_start || !self.is_own(name) {
                    continue;
                }
                tracing::warn!(path = %object.location, "removing a file whose write did not finish");
                self.delete(&object.location).await?;
                continue;
            }
            if !name.ends_with(".parquet") || hidden.contains(object.location.as_ref()) {
                continue;
            }
            let Some(partition) = partition_of(&object.location) else {
                tracing::warn!(path = %object.location, "ignoring a file outside the date/hour layout");
                continue;
            };
            let span = if object
                .location
                .parts()
                .any(|p| p.as_ref().starts_with("hour="))
            {
                HOUR_MS
            } else {
                DAY_MS
            };
            let times = times_in_name(name, partition, span);
            files.push(FileEntry {
                path: object.location,
                size: object.size,
                partition,
                times,
            });
        }
        let (old, new): (Vec<FileEntry>, Vec<FileEntry>) = files
            .into_iter()
            .partition(|file| known.contains(&file.path));
        let mut files = old;
        files.extend(self.without_damaged(new).await?);
        Ok(files)
    }

    /// The names of the visible Parquet files this writer made directly in `dir` (a
    /// partition directory).
    pub(crate) async fn own_files_in(
        &self,
        dir: &str,
    ) -> Result<std::collections::BTreeSet<String>> {
        let listed: Vec<_> = self
            .write_path
            .reads
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|object| object.location.filename().map(str::to_owned))
            .filter(|name| {
                name.ends_with(".parquet") && !name.starts_with('.') && self.is_own(name)
            })
            .collect())
    }

    /// `files` but those whose footer is damaged, which are moved aside (or, read-only,
    /// skipped).
    async fn without_damaged(&self, files: Vec<FileEntry>) -> Result<Vec<FileEntry>> {
        // A remote store's uploads appear whole or not at all.
        let Some((local, root)) = self.local.clone() else {
            return Ok(files);
        };
        let read_only = self.read_only;
        tokio::task::spawn_blocking(move || {
            let mut whole = Vec::with_capacity(files.len());
            for file in files {
                let on_disk = local.path_to_filesystem(&file.path)?;
                let Some(reason) = quarantine::parquet_damage(&on_disk) else {
                    whole.push(file);
                    continue;
                };
                if read_only {
                    tracing::warn!(path = %file.path, reason, "skipping a damaged Parquet file");
                    continue;
                }
                quarantine::move_aside(&root, &on_disk, file.path.as_ref(), &reason)?;
            }
            Ok(whole)
        })
        .await
        .map_err(|error| Error::Io(std::io::Error::other(error)))?
    }
}

/// What a write goes through: the object store, the local disk's flushes, the record of
/// failed writes and the clock that dates them.
#[derive(Clone)]
pub(crate) struct WritePath {
    /// Where files are written, renamed and deleted.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Where they are listed and read: the same files, never slowed down for a test.
    pub(crate) reads: Arc<dyn ObjectStore>,
    pub(crate) durability: LocalDurability,
    pub(crate) health: Arc<WriteHealth>,
    pub(crate) clock: Arc<dyn Clock>,
    /// A remote store: an upload becomes visible whole, so a new file whose times are
    /// known is written under its final name, with no rename.
    pub(crate) straight_to_final_name: bool,
}

impl WritePath {
    /// `result`, its error counted as a failed write.
    pub(crate) fn counted<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            self.health.failed(error, self.clock.now_ms());
        }
        result
    }

    pub(crate) async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    pub(crate) async fn exists(&self, path: &Path) -> Result<bool> {
        match self.reads.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Makes a closed file visible under its final name, durably.
    pub(crate) async fn publish(&self, closed: ClosedFile) -> Result<FileEntry> {
        crash_point::reached(crash_point::FILE_SYNCED);
        let renamed = async {
            self.store
                .rename(&closed.temporary, &closed.entry.path)
                .await?;
            self.durability
                .sync_dirs_of(std::slice::from_ref(&closed.entry.path))
                .await
        }
        .await;
        match self.counted(renamed) {
            Ok(()) => {
                self.health.succeeded(self.clock.now_ms());
                Ok(closed.entry)
            }
            Err(error) => {
                let _ = self.delete(&closed.temporary).await;
                Err(error)
            }
        }
    }
}

/// The newest name among `files`.
pub(crate) fn newest_stem(files: &[FileEntry]) -> Option<(i64, u64)> {
    files
        .iter()
        .filter_map(|file| stem_order(file.path.filename()?))
        .max()
}

/// For tests of a slow disk: `MESHSCOPE_TEST_SLOW_WRITES_MS=<ms>` makes every write call
/// to the store (a file's parts, a rename, a delete) wait that long first. Reads are not
/// slowed (object_store's throttle cannot read a local file in place).
fn slow_writes() -> Option<object_store::throttle::ThrottleConfig> {
    let wait_ms: u64 = std::env::var(SLOW_WRITES_ENV).ok()?.parse().ok()?;
    let wait = std::time::Duration::from_millis(wait_ms);
    Some(object_store::throttle::ThrottleConfig {
        wait_put_per_call: wait,
        wait_delete_per_call: wait,
        ..Default::default()
    })
}

/// The environment variable that slows the store's writes down, for tests.
pub const SLOW_WRITES_ENV: &str = "MESHSCOPE_TEST_SLOW_WRITES_MS";

pub(crate) fn partition_dir(
    table: &str,
    granularity: Granularity,
    partition: EpochMillis,
) -> String {
    let time = DateTime::from_timestamp_millis(partition).unwrap_or_default();
    let date = time.format("%Y-%m-%d");
    match granularity {
        Granularity::Day => format!("{table}/date={date}"),
        Granularity::Minute | Granularity::Hour => {
            format!("{table}/date={date}/hour={:02}", time.hour())
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(error: object_store::Error) -> Self {
        match telling_io_kind(&error) {
            // A full disk and the like are told apart by their kind (`write_health`).
            Some(kind) => Error::Io(std::io::Error::new(kind, error.to_string())),
            None => Error::ObjectStore(error.to_string()),
        }
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(error: datafusion::parquet::errors::ParquetError) -> Self {
        match telling_io_kind(&error) {
            Some(kind) => Error::Io(std::io::Error::new(kind, error.to_string())),
            None if carries_object_store_error(&error) => Error::ObjectStore(error.to_string()),
            None => Error::Parquet(error.to_string()),
        }
    }
}
