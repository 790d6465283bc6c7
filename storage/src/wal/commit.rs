//! The writing thread of the log: waits for a group of records (at once with `always`,
//! every `sync_interval` otherwise, sooner when the buffer grows large), writes it to its
//! segments, fsyncs it unless the policy is `never`, and tells the waiters. A failed write
//! loses its group (and whatever else was buffered for that segment), cuts the file back
//! to its last whole record, and makes the next append start a new segment. Segments are
//! written around the page cache when the config asks for it, until the device falls
//! behind the records coming in; the next segments are then written through the cache.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::wal::direct_file::DirectFile;
use crate::wal::record::Position;
use crate::wal::segment::{self, MAGIC, MAGIC_BYTES};
use crate::wal::stats;
use crate::wal::writer::{Chunk, LOST_KEPT, Shared, SyncPolicy, WAKE_BYTES, WalConfig};

/// The open segment file the thread appends to.
struct OpenFile {
    seq: u64,
    file: SegmentFile,
}

/// A segment written around the page cache, or a plain file where that is refused.
enum SegmentFile {
    Direct(DirectFile),
    Plain(File),
}

impl SegmentFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            SegmentFile::Direct(file) => file.append(bytes),
            SegmentFile::Plain(file) => file.write_all(bytes),
        }
    }

    fn sync_data(&self) -> std::io::Result<()> {
        match self {
            SegmentFile::Direct(file) => file.sync_data(),
            SegmentFile::Plain(file) => file.sync_data(),
        }
    }

    fn sync_all(&self) -> std::io::Result<()> {
        match self {
            SegmentFile::Direct(file) => file.sync_all(),
            SegmentFile::Plain(file) => file.sync_all(),
        }
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        match self {
            SegmentFile::Direct(file) => file.set_len(len),
            SegmentFile::Plain(file) => file.set_len(len),
        }
    }
}

/// The writing thread: waits for a group, writes it, syncs it, tells waiters.
pub(super) fn write_loop(shared: &Shared) {
    let config = &shared.config;
    let slow_disk = config.slow_disk_file.clone();
    // Cleared for good when writes around the page cache fall behind (see `falls_behind`).
    let mut direct_allowed = config.direct_writes;
    // Direct groups in a row after which the records waiting were half the bound.
    let mut behind_groups = 0u32;
    let mut open: Option<OpenFile> = None;
    let mut failed_segment: Option<u64> = None;
    let mut last_write = Instant::now();
    loop {
        let chunks = {
            let mut state = shared.state.lock();
            loop {
                let due = match config.sync {
                    SyncPolicy::Always => true,
                    SyncPolicy::Interval | SyncPolicy::Never => {
                        state.closed
                            || state.buffered >= WAKE_BYTES
                            || last_write.elapsed() >= config.sync_interval
                    }
                };
                if !state.chunks.is_empty() && due {
                    break;
                }
                if state.closed && state.chunks.is_empty() {
                    if let Some(open) = open.take()
                        && config.sync != SyncPolicy::Never
                        && let Err(error) = open.file.sync_all()
                    {
                        stats::write_failure("sync");
                        error!(%error, "syncing the log at close failed");
                    }
                    return;
                }
                let wait = match config.sync {
                    SyncPolicy::Always => Duration::from_secs(1),
                    _ => config
                        .sync_interval
                        .saturating_sub(last_write.elapsed())
                        .max(Duration::from_millis(1)),
                };
                shared.wake.wait_for(&mut state, wait);
                if state.chunks.is_empty() {
                    last_write = Instant::now();
                }
            }
            let chunks: Vec<Chunk> = state.chunks.drain(..).collect();
            state.buffered = 0;
            chunks
        };
        last_write = Instant::now();
        let started = Instant::now();
        if let Some(file) = &slow_disk {
            wait_for_slow_disk(file, started);
        }
        let mut lost = Vec::new();
        let mut upto = None;
        let mut written = 0u64;
        for chunk in &chunks {
            let range = (
                Position {
                    segment: chunk.segment,
                    offset: chunk.start,
                },
                chunk.end(),
            );
            upto = Some(range.1);
            if failed_segment == Some(chunk.segment) {
                lost.push(range);
                continue;
            }
            match write_chunk(config, direct_allowed, &mut open, chunk) {
                Ok(bytes) => written += bytes,
                Err((reason, error)) => {
                    stats::write_failure(reason);
                    error!(%error, reason, segment = chunk.segment, "a write to the log failed; its records are lost and a new segment starts");
                    failed_segment = Some(chunk.segment);
                    if let Some(file) = open.take() {
                        // Best effort: cut what was half written, so the file ends whole.
                        let _ = file.file.set_len(chunk.start);
                    }
                    shared.state.lock().roll_next = true;
                    lost.push(range);
                }
            }
        }
        if config.sync != SyncPolicy::Never
            && let Some(file) = &open
            && let Err(error) = file.file.sync_data()
        {
            stats::write_failure("sync");
            error!(%error, "syncing the log failed; the last group's records are lost");
            failed_segment = Some(file.seq);
            open = None;
            shared.state.lock().roll_next = true;
            for chunk in chunks.iter().filter(|c| Some(c.segment) == failed_segment) {
                lost.push((
                    Position {
                        segment: chunk.segment,
                        offset: chunk.start,
                    },
                    chunk.end(),
                ));
            }
        }
        metrics::histogram!(stats::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        let direct = matches!(
            &open,
            Some(OpenFile {
                file: SegmentFile::Direct(_),
                ..
            })
        );
        behind_groups = if direct && falls_behind(shared) {
            behind_groups + 1
        } else {
            0
        };
        // Once: the segment open when it happens is written to its end as it began.
        if direct_allowed && behind_groups >= BEHIND_GROUPS_BEFORE_PLAIN {
            direct_allowed = false;
            let waiting_bytes = {
                let mut state = shared.state.lock();
                state.roll_next = true;
                state.buffered
            };
            warn!(
                waiting_bytes,
                "the device does not keep up with writes around the page cache; the log's next segments are written through it"
            );
        }
        metrics::gauge!(stats::DIRECT_WRITES).set(if direct { 1.0 } else { 0.0 });
        metrics::counter!(stats::BYTES_WRITTEN).increment(written);
        if !lost.is_empty() {
            let records: u64 = lost.len() as u64;
            metrics::counter!(stats::RECORDS_LOST).increment(records);
        }
        if let Some(upto) = upto {
            shared.durable.send_modify(|durability| {
                durability.upto = durability.upto.max(upto);
                if !lost.is_empty() {
                    let kept = Arc::make_mut(&mut durability.lost);
                    kept.extend(lost.iter().copied());
                    while kept.len() > LOST_KEPT {
                        kept.pop_front();
                    }
                }
            });
        }
        shared.state.lock().recycle(chunks);
    }
}

/// Direct groups in a row that must each leave half the buffer's bound waiting before the
/// log turns to plain writes. One such group only says that the writing thread was held
/// up once (two cores busy with the load kept it off the processor for a tenth of a
/// second, and a run at full load turned to plain writes for good); a device slower than
/// the load leaves the buffer full group after group, so three take it there within about
/// a second.
const BEHIND_GROUPS_BEFORE_PLAIN: u32 = 3;

/// Whether the records appended while the last group was written are half the buffer's
/// bound: the device took them more slowly than they came.
fn falls_behind(shared: &Shared) -> bool {
    shared.state.lock().buffered >= shared.config.max_buffered_bytes / 2
}

/// The environment variable naming a file that, while it holds a number, makes every
/// group the log writes take that many milliseconds longer, as on a slow disk: for tests.
/// Emptying or deleting the file ends the slowness at once, as a disk that recovers.
pub const SLOW_DISK_ENV: &str = "MESHSCOPE_TEST_SLOW_WAL_FILE";

/// Waits, in short steps, until the group started at `started` has taken as long as
/// `file` says (rereading it, so that a recovery shows at once).
fn wait_for_slow_disk(file: &std::path::Path, started: Instant) {
    loop {
        let delay_ms: u64 = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        if started.elapsed() >= Duration::from_millis(delay_ms) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes one chunk at the end of its segment, opening (and creating) the segment as
/// needed; the number of bytes written, or why not.
fn write_chunk(
    config: &WalConfig,
    direct_allowed: bool,
    open: &mut Option<OpenFile>,
    chunk: &Chunk,
) -> Result<u64, (&'static str, std::io::Error)> {
    let mut written = 0;
    if open.as_ref().map(|o| o.seq) != Some(chunk.segment) {
        if let Some(previous) = open.take()
            && config.sync != SyncPolicy::Never
        {
            previous.file.sync_data().map_err(|e| ("sync", e))?;
        }
        let path = segment::path(&config.dir, chunk.segment);
        let fresh = !path.exists();
        let direct = match fresh && direct_allowed {
            true => DirectFile::create(&path, MAGIC).map_err(|e| ("create", e))?,
            false => None,
        };
        let (mut file, len) = match direct {
            Some(direct) => (SegmentFile::Direct(direct), 0),
            None => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| ("create", e))?;
                let len = file.metadata().map_err(|e| ("create", e))?.len();
                (SegmentFile::Plain(file), len)
            }
        };
        if len == 0 {
            // Written with the first group when around the page cache.
            if let SegmentFile::Plain(file) = &mut file {
                file.write_all(MAGIC).map_err(|e| ("write", e))?;
            }
            written += MAGIC_BYTES;
            if config.sync != SyncPolicy::Never {
                File::open(&config.dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|e| ("sync", e))?;
            }
        } else if len != chunk.start {
            return Err((
                "write",
                std::io::Error::other(format!(
                    "segment {} is {len} bytes, expected {}",
                    chunk.segment, chunk.start
                )),
            ));
        }
        *open = Some(OpenFile {
            seq: chunk.segment,
            file,
        });
    }
    let file = &mut open.as_mut().expect("opened above").file;
    file.append(&chunk.bytes).map_err(|e| ("write", e))?;
    Ok(written + chunk.bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::wal::reader::read_log;
    use crate::wal::record::RecordKind;
    use crate::wal::writer::WalWriter;

    fn entries(dir: &Path) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        read_log(dir, &dir.join("quarantine"), |r| {
            if r.kind == RecordKind::Entry {
                seen.push(r.payload.to_vec());
            }
        })
        .unwrap();
        seen
    }

    /// A writer whose groups each take as many milliseconds longer as the file `slow`
    /// holds (300 at first), with a 64 kB bound; whether O_DIRECT works where it writes.
    fn writer_on_a_slow_device(dir: &Path) -> (WalWriter, PathBuf, PathBuf, bool) {
        let wal = dir.join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let direct_here = DirectFile::create(&dir.join("probe"), MAGIC)
            .unwrap()
            .is_some();
        let slow_disk = dir.join("slow");
        std::fs::write(&slow_disk, "300").unwrap();
        let writer = WalWriter::start(
            WalConfig {
                sync_interval: Duration::from_millis(20),
                max_buffered_bytes: 64 * 1024,
                direct_writes: true,
                slow_disk_file: Some(slow_disk.clone()),
                ..WalConfig::in_dir(&wal)
            },
            1,
            1,
            Vec::new(),
        )
        .unwrap();
        (writer, wal, slow_disk, direct_here)
    }

    fn segment_lengths(wal: &Path) -> Vec<u64> {
        segment::list(wal)
            .unwrap()
            .iter()
            .map(|(_, path)| std::fs::metadata(path).unwrap().len())
            .collect()
    }

    /// A device slower than the records come, group after group, makes the next segment
    /// a plain one; every record is kept across the change.
    #[tokio::test]
    async fn writes_around_the_page_cache_give_way_when_the_device_falls_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, wal, slow_disk, direct_here) = writer_on_a_slow_device(dir.path());
        let stream = writer.open_stream(b"h".to_vec());
        // 10 kB every 20 ms for 1.5 s: each 300 ms group leaves far over half the bound
        // waiting behind it, five groups in a row.
        let mut want = Vec::new();
        let mut end = None;
        for burst in 0..75u32 {
            for i in 0..10u32 {
                let record = vec![(burst * 10 + i) as u8; 1000];
                end = Some(writer.append(stream, 0, &record).unwrap().end);
                want.push(record);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        writer.wait_durable(end.unwrap()).await.unwrap();
        std::fs::write(&slow_disk, "").unwrap();
        want.push(vec![200u8; 777]);
        let last = writer.append(stream, 0, want.last().unwrap()).unwrap().end;
        writer.wait_durable(last).await.unwrap();
        writer.close();

        assert_eq!(entries(&wal), want, "every record, in order");
        let lengths = segment_lengths(&wal);
        if !direct_here {
            // A filesystem that refuses O_DIRECT (tmpfs) gets plain writes from the start.
            assert_eq!(lengths.len(), 1, "{lengths:?}");
            return;
        }
        assert_eq!(
            lengths.len(),
            2,
            "one new segment after falling behind: {lengths:?}"
        );
        assert_eq!(lengths[0] % 4096, 0, "the first written around the cache");
        assert_ne!(lengths[1] % 4096, 0, "the second through it: {lengths:?}");
    }

    /// One group held up (the writing thread kept off the processor, say) leaves the log
    /// written around the page cache: the records after it go on in the same segment.
    #[tokio::test]
    async fn one_group_held_up_keeps_writes_around_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, wal, slow_disk, direct_here) = writer_on_a_slow_device(dir.path());
        let stream = writer.open_stream(b"h".to_vec());
        let mut want = vec![vec![0u8; 1000]];
        writer.append(stream, 0, &want[0]).unwrap();
        // The first group is held up; 40 kB, over half the bound, come meanwhile.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 1..=40u8 {
            want.push(vec![i; 1000]);
            writer.append(stream, 0, want.last().unwrap()).unwrap();
        }
        std::fs::write(&slow_disk, "").unwrap();
        for i in 41..=60u8 {
            want.push(vec![i; 1000]);
            let end = writer.append(stream, 0, want.last().unwrap()).unwrap().end;
            writer.wait_durable(end).await.unwrap();
        }
        writer.close();

        assert_eq!(entries(&wal), want, "every record, in order");
        let lengths = segment_lengths(&wal);
        assert_eq!(lengths.len(), 1, "no new segment: {lengths:?}");
        if direct_here {
            assert_eq!(
                lengths[0] % 4096,
                0,
                "written around the cache: {lengths:?}"
            );
        }
    }
}
