//! The writer: records go into a shared buffer under a short lock (a copy, no system
//! call), and one thread (`commit`) writes the buffer out and syncs it, a group at a time. What that
//! thread does, and when a record counts as kept, is the sync policy's:
//!
//! - `always`: the thread wakes on every append and writes and fsyncs whatever is
//!   buffered by then, so appenders that came meanwhile share one fsync; a caller that
//!   waits with [`WalWriter::wait_durable`] acts on its record only once it is on disk.
//! - `interval`: the buffer is written and fsynced every `sync_interval` (100 ms by
//!   default): a crash of the machine loses at most the records of the last interval.
//! - `never`: the buffer is written every `sync_interval` and never fsynced: the records
//!   survive the process (kill -9) once written, and the machine at the kernel's pace.
//!
//! A new segment starts when the current one passes `segment_bytes` or has held records
//! for `segment_age_ms`, and after a failed write, so that a damaged file is never
//! appended to. Records of a failed write are lost and counted; callers waiting on them get
//! an error.
//!
//! Over 600 lines with its tests (about 130 of them, which drive appends, segment rolls
//! and the sync policies through this module's private state); the code itself is under 500.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::warn;

use crate::wal::WalError;
use crate::wal::commit;
use crate::wal::record::{self, Position, RecordKind, StreamId};
use crate::wal::segment::{self, MAGIC_BYTES, SegmentInfo};
use crate::wal::stats;

/// When a record counts as kept; see the module's documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    Always,
    #[default]
    Interval,
    Never,
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(SyncPolicy::Always),
            "interval" => Ok(SyncPolicy::Interval),
            "never" => Ok(SyncPolicy::Never),
            other => Err(format!(
                "unknown sync policy {other:?}: always, interval or never"
            )),
        }
    }
}

impl SyncPolicy {
    pub fn name(self) -> &'static str {
        match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Interval => "interval",
            SyncPolicy::Never => "never",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub sync: SyncPolicy,
    /// How often the buffer is written out (and, with `interval`, fsynced).
    pub sync_interval: Duration,
    pub segment_bytes: u64,
    /// A segment that has held records this long is closed at the next append, so that
    /// old segments can be deleted even when traffic is light.
    pub segment_age_ms: i64,
    /// Past this many buffered bytes, [`Appended::over_bound`] asks the caller to wait.
    pub max_buffered_bytes: usize,
    /// Write segments around the page cache where the filesystem allows it
    /// ([`crate::wal::direct_file`]), for as long as the device keeps up: writes around
    /// the cache wait for the device, so when half of `max_buffered_bytes` is waiting
    /// after each of three groups in a row, the next segments are written through the
    /// page cache instead (the rest of the process's life). Plain writes throughout when
    /// false.
    pub direct_writes: bool,
    /// A file whose number makes every group take that many milliseconds longer, as on a
    /// slow disk (for tests; [`crate::wal::SLOW_DISK_ENV`] names it by default).
    pub slow_disk_file: Option<PathBuf>,
}

impl WalConfig {
    pub fn in_dir(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            sync: SyncPolicy::Interval,
            sync_interval: Duration::from_millis(100),
            segment_bytes: 64 * 1024 * 1024,
            segment_age_ms: 60_000,
            max_buffered_bytes: 64 * 1024 * 1024,
            direct_writes: true,
            slow_disk_file: std::env::var_os(super::commit::SLOW_DISK_ENV).map(PathBuf::from),
        }
    }
}

/// Past this many buffered bytes the writing thread is woken before its interval is up.
pub(super) const WAKE_BYTES: usize = 4 * 1024 * 1024;
/// Lost ranges remembered for callers still to learn of them.
pub(super) const LOST_KEPT: usize = 256;
/// The capacity a chunk's buffer starts with: twice the bytes that wake the writing
/// thread, so that a chunk filled while the thread writes the last one rarely grows.
const CHUNK_CAPACITY: usize = 2 * WAKE_BYTES;
/// Written chunks' buffers kept for the next chunks, so that appends neither grow a buffer
/// (a copy of all it holds) nor touch fresh pages; at most this many, of at most
/// `2 * CHUNK_CAPACITY` bytes each, so what is kept stays bounded (32 MiB).
const SPARE_BUFFERS: usize = 2;

/// Where the records written out (or synced, by the policy) end, and the ranges lost.
#[derive(Clone, Debug, Default)]
pub(super) struct Durability {
    pub(super) upto: Position,
    pub(super) lost: Arc<VecDeque<(Position, Position)>>,
}

/// Bytes appended to one segment, not yet written out.
pub(super) struct Chunk {
    pub(super) segment: u64,
    pub(super) start: u64,
    pub(super) bytes: Vec<u8>,
}

impl Chunk {
    pub(super) fn end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.start + self.bytes.len() as u64,
        }
    }
}

struct OpenStream {
    header: Arc<[u8]>,
    /// The segment its header was last written into.
    written_in: Option<u64>,
}

pub(super) struct State {
    segment: u64,
    /// Where the next record goes in `segment`.
    offset: u64,
    first_time_ms: Option<i64>,
    pub(super) chunks: VecDeque<Chunk>,
    pub(super) buffered: usize,
    streams: HashMap<StreamId, OpenStream>,
    next_stream: StreamId,
    segments: BTreeMap<u64, SegmentInfo>,
    pub(super) roll_next: bool,
    pub(super) closed: bool,
    /// Emptied buffers of written chunks, reused by the next chunks.
    spare_buffers: Vec<Vec<u8>>,
}

impl State {
    /// Takes back the buffers of chunks the writing thread has written, keeping at most
    /// [`SPARE_BUFFERS`] of them (emptied) for the next chunks.
    pub(super) fn recycle(&mut self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            if self.spare_buffers.len() >= SPARE_BUFFERS {
                break;
            }
            let mut bytes = chunk.bytes;
            if bytes.capacity() <= 2 * CHUNK_CAPACITY {
                bytes.clear();
                self.spare_buffers.push(bytes);
            }
        }
    }
}

pub(super) struct Shared {
    pub(super) config: WalConfig,
    pub(super) state: Mutex<State>,
    pub(super) wake: Condvar,
    pub(super) durable: watch::Sender<Durability>,
}

/// The log's writer; see the module's documentation. Dropping it writes out what is
/// buffered.
pub struct WalWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A record appended.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    /// Where the record ends: it is kept once [`WalWriter::wait_durable`] says so.
    pub end: Position,
    /// The buffer is over its bound: the caller should wait for this record before
    /// taking more.
    pub over_bound: bool,
}

thread_local! {
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl WalWriter {
    /// Starts a writer whose first segment is `first_segment` (past every segment on
    /// disk) and whose streams are numbered from `first_stream`. `existing` are the
    /// segments already on disk, which it deletes when asked.
    pub fn start(
        config: WalConfig,
        first_segment: u64,
        first_stream: StreamId,
        existing: Vec<SegmentInfo>,
    ) -> Result<WalWriter, WalError> {
        std::fs::create_dir_all(&config.dir)?;
        let mut segments: BTreeMap<u64, SegmentInfo> =
            existing.into_iter().map(|s| (s.seq, s)).collect();
        segments.insert(
            first_segment,
            SegmentInfo {
                seq: first_segment,
                bytes: MAGIC_BYTES,
                max_time_ms: i64::MIN,
            },
        );
        metrics::gauge!(stats::SEGMENTS).set(segments.len() as f64);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                segment: first_segment,
                offset: MAGIC_BYTES,
                first_time_ms: None,
                chunks: VecDeque::new(),
                buffered: 0,
                streams: HashMap::new(),
                next_stream: first_stream,
                segments,
                roll_next: false,
                closed: false,
                spare_buffers: Vec::new(),
            }),
            wake: Condvar::new(),
            durable: watch::Sender::new(Durability {
                upto: Position {
                    segment: first_segment,
                    offset: MAGIC_BYTES,
                },
                lost: Arc::default(),
            }),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || commit::write_loop(&thread_shared))?;
        Ok(WalWriter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        self.shared.config.sync
    }

    /// Opens a stream whose records need `header` to be read; the header goes into the
    /// log before the stream's first record in each segment.
    pub fn open_stream(&self, header: Vec<u8>) -> StreamId {
        let mut state = self.shared.state.lock();
        let id = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(
            id,
            OpenStream {
                header: header.into(),
                written_in: None,
            },
        );
        id
    }

    pub fn close_stream(&self, stream: StreamId) {
        self.shared.state.lock().streams.remove(&stream);
    }

    /// Appends one record of `stream`. The record is encoded (and its checksum taken)
    /// before the lock; under it, it is copied into the buffer.
    pub fn append(
        &self,
        stream: StreamId,
        time_ms: i64,
        payload: &[u8],
    ) -> Result<Appended, WalError> {
        ENCODED.with_borrow_mut(|encoded| {
            encoded.clear();
            record::encode(encoded, RecordKind::Entry, stream, time_ms, payload);
            let appended = self.append_encoded(stream, time_ms, encoded);
            if encoded.capacity() > 1024 * 1024 {
                *encoded = Vec::new();
            }
            appended
        })
    }

    fn append_encoded(
        &self,
        stream: StreamId,
        time_ms: i64,
        encoded: &[u8],
    ) -> Result<Appended, WalError> {
        let config = &self.shared.config;
        let mut guard = self.shared.state.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(WalError::Closed);
        }
        let full = state.offset + encoded.len() as u64 > config.segment_bytes
            && state.offset > MAGIC_BYTES;
        let old = state
            .first_time_ms
            .is_some_and(|first| time_ms.saturating_sub(first) >= config.segment_age_ms);
        if full || old || state.roll_next {
            state.roll_next = false;
            state.segment += 1;
            state.offset = MAGIC_BYTES;
            state.first_time_ms = None;
            let seq = state.segment;
            state.segments.insert(
                seq,
                SegmentInfo {
                    seq,
                    bytes: MAGIC_BYTES,
                    max_time_ms: i64::MIN,
                },
            );
            metrics::gauge!(stats::SEGMENTS).set(state.segments.len() as f64);
        }
        let Some(open) = state.streams.get_mut(&stream) else {
            return Err(WalError::NotKept(format!("stream {stream} is not open")));
        };
        let mut header_bytes = Vec::new();
        if open.written_in != Some(state.segment) {
            open.written_in = Some(state.segment);
            record::encode(
                &mut header_bytes,
                RecordKind::StreamHeader,
                stream,
                time_ms,
                &open.header,
            );
        }
        let (segment, start) = (state.segment, state.offset);
        let added = header_bytes.len() + encoded.len();
        match state.chunks.back_mut() {
            Some(chunk) if chunk.segment == segment => {
                chunk.bytes.extend_from_slice(&header_bytes);
                chunk.bytes.extend_from_slice(encoded);
            }
            _ => {
                let mut bytes = state
                    .spare_buffers
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(added.max(CHUNK_CAPACITY)));
                bytes.extend_from_slice(&header_bytes);
                bytes.extend_from_slice(encoded);
                state.chunks.push_back(Chunk {
                    segment,
                    start,
                    bytes,
                });
            }
        }
        state.offset += added as u64;
        state.buffered += added;
        state.first_time_ms.get_or_insert(time_ms);
        if let Some(info) = state.segments.get_mut(&segment) {
            info.bytes = state.offset;
            info.max_time_ms = info.max_time_ms.max(time_ms);
        }
        let end = Position {
            segment,
            offset: state.offset,
        };
        let over_bound = state.buffered > config.max_buffered_bytes;
        let wake = config.sync == SyncPolicy::Always || state.buffered >= WAKE_BYTES;
        drop(guard);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(Appended { end, over_bound })
    }

    /// Where the next record will start: every record appended so far is before it.
    pub fn position(&self) -> Position {
        let state = self.shared.state.lock();
        Position {
            segment: state.segment,
            offset: state.offset,
        }
    }

    /// Waits until the record ending at `end` is written out and, unless the policy is
    /// `never`, fsynced; an error when its write failed.
    pub async fn wait_durable(&self, end: Position) -> Result<(), WalError> {
        let mut receiver = self.shared.durable.subscribe();
        loop {
            {
                let durability = receiver.borrow_and_update();
                if durability
                    .lost
                    .iter()
                    .any(|(start, stop)| *start < end && end <= *stop)
                {
                    return Err(WalError::NotKept("its write to the log failed".to_string()));
                }
                if durability.upto >= end {
                    return Ok(());
                }
            }
            if receiver.changed().await.is_err() {
                return Err(WalError::Closed);
            }
        }
    }

    /// Deletes the segments, other than the one being written, whose records all have
    /// times before `time_ms` or whose number is below `segment`; returns how many.
    pub fn delete_segments_before(&self, time_ms: i64, segment: u64) -> usize {
        self.delete_where(|info| info.max_time_ms < time_ms || info.seq < segment)
    }

    fn delete_where(&self, deletable: impl Fn(&SegmentInfo) -> bool) -> usize {
        let doomed: Vec<u64> = {
            let mut state = self.shared.state.lock();
            let current = state.segment;
            let pending: Vec<u64> = state.chunks.iter().map(|c| c.segment).collect();
            let doomed: Vec<u64> = state
                .segments
                .values()
                .filter(|info| {
                    info.seq < current && !pending.contains(&info.seq) && deletable(info)
                })
                .map(|info| info.seq)
                .collect();
            for seq in &doomed {
                state.segments.remove(seq);
            }
            metrics::gauge!(stats::SEGMENTS).set(state.segments.len() as f64);
            doomed
        };
        let mut deleted = 0;
        for seq in doomed {
            match std::fs::remove_file(segment::path(&self.shared.config.dir, seq)) {
                Ok(()) => deleted += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => deleted += 1,
                Err(error) => {
                    stats::write_failure("delete");
                    warn!(%error, seq, "a log segment could not be deleted");
                }
            }
        }
        deleted
    }

    /// The segments on disk (or about to be), in order.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared
            .state
            .lock()
            .segments
            .values()
            .cloned()
            .collect()
    }

    /// Writes out and syncs what is buffered, then stops the writing thread; appends
    /// fail from then on.
    pub fn close(&self) {
        self.shared.state.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::wal::reader::read_log;

    fn config(dir: &std::path::Path, sync: SyncPolicy) -> WalConfig {
        WalConfig {
            sync,
            sync_interval: Duration::from_millis(20),
            ..WalConfig::in_dir(dir)
        }
    }

    fn read(dir: &std::path::Path) -> Vec<(RecordKind, StreamId, i64, Vec<u8>)> {
        let mut seen = Vec::new();
        read_log(dir, &dir.join("quarantine"), |r| {
            seen.push((r.kind, r.stream, r.time_ms, r.payload.to_vec()))
        })
        .unwrap();
        seen
    }

    /// Around the page cache and through it alike.
    #[tokio::test]
    async fn records_of_concurrent_streams_are_kept_each_with_its_header_per_segment() {
        for direct_writes in [true, false] {
            concurrent_streams_are_kept(direct_writes).await;
        }
    }

    async fn concurrent_streams_are_kept(direct_writes: bool) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Arc::new(
            WalWriter::start(
                WalConfig {
                    segment_bytes: 4096,
                    direct_writes,
                    ..config(dir.path(), SyncPolicy::Always)
                },
                1,
                100,
                Vec::new(),
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for task in 0..4u8 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let stream = writer.open_stream(vec![b'h', task]);
                for i in 0..50u8 {
                    let appended = writer
                        .append(stream, i64::from(i), &[task, i].repeat(100))
                        .unwrap();
                    writer.wait_durable(appended.end).await.unwrap();
                }
                stream
            }));
        }
        let mut streams = Vec::new();
        for task in tasks {
            streams.push(task.await.unwrap());
        }
        writer.close();
        let summary = read_log(dir.path(), &dir.path().join("quarantine"), |_| {}).unwrap();
        assert_eq!(summary.torn_tails, 0, "closed segments end clean");
        let records = read(dir.path());
        let segments = segment::list(dir.path()).unwrap();
        assert!(
            segments.len() > 5,
            "small segments roll: {}",
            segments.len()
        );
        for (task, stream) in streams.iter().enumerate() {
            let entries: Vec<&Vec<u8>> = records
                .iter()
                .filter(|r| r.1 == *stream && r.0 == RecordKind::Entry)
                .map(|r| &r.3)
                .collect();
            let want: Vec<Vec<u8>> = (0..50u8).map(|i| [task as u8, i].repeat(100)).collect();
            assert_eq!(entries, want.iter().collect::<Vec<_>>());
        }
        // Each segment opens with the header of every stream that writes into it, before
        // that stream's first entry there.
        for (seq, _) in segments {
            let mut seen = Vec::new();
            let only = dir.path().join(format!("only-{seq}"));
            std::fs::create_dir_all(&only).unwrap();
            std::fs::copy(segment::path(dir.path(), seq), segment::path(&only, seq)).unwrap();
            for (kind, stream, _, payload) in read(&only) {
                match kind {
                    RecordKind::StreamHeader => {
                        let task = streams.iter().position(|s| *s == stream).unwrap() as u8;
                        assert_eq!(payload, [b'h', task]);
                        seen.push(stream);
                    }
                    RecordKind::Entry => assert!(seen.contains(&stream), "segment {seq}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn interval_writes_without_being_woken_and_old_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let writer = WalWriter::start(
            WalConfig {
                segment_age_ms: 1_000,
                ..config(dir.path(), SyncPolicy::Interval)
            },
            7,
            1,
            Vec::new(),
        )
        .unwrap();
        let stream = writer.open_stream(b"h".to_vec());
        let mut last = None;
        for second in 0..5i64 {
            last = Some(writer.append(stream, second * 1_000, b"entry").unwrap().end);
        }
        let started = Instant::now();
        writer.wait_durable(last.unwrap()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        let seqs: Vec<u64> = writer.segments().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [7, 8, 9, 10, 11]);
        // Segments whose records are all before 2.5 s go; the one being written stays.
        assert_eq!(writer.delete_segments_before(2_500, 0), 3);
        let left: Vec<u64> = segment::list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, [10, 11]);
        assert_eq!(writer.delete_segments_before(i64::MIN, u64::MAX), 1);
        writer.close();
        assert_eq!(
            read(dir.path()).len(),
            2,
            "the last segment's header and entry"
        );
        assert!(writer.append(stream, 0, b"late").is_err());
    }
}
