//! Reading the log back at start: every whole record of every segment, in the order they
//! were appended. A torn tail (a write cut short by a crash) is cut off at the last whole
//! record; a segment damaged in its middle gives up the records before the damage and is
//! moved to the quarantine directory with the reason beside it.

use std::path::Path;

use tracing::{info, warn};

use crate::wal::WalError;
use crate::wal::record::{self, Position, RecordKind, StreamId};
use crate::wal::segment::{self, Ending, SegmentInfo};
use crate::wal::stats;

/// One record as read back.
#[derive(Clone, Copy, Debug)]
pub struct ReadRecord<'a> {
    pub position: Position,
    pub kind: RecordKind,
    pub stream: StreamId,
    pub time_ms: i64,
    pub payload: &'a [u8],
}

/// What a read of the log found.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// The segments left on disk, in order, with their sizes and latest times.
    pub segments: Vec<SegmentInfo>,
    pub records: u64,
    pub bytes: u64,
    /// The highest stream number seen, so that a writer started next numbers past it.
    pub max_stream: StreamId,
    /// Segments whose torn tail was cut off.
    pub torn_tails: u64,
    /// Segments moved to the quarantine directory.
    pub quarantined: u64,
    /// Segments passed over unread (see [`SkippedSegments`]).
    pub skipped: u64,
}

/// Segments a read passes over unread (a checkpoint holds what they logged): those
/// numbered below `before_segment`, whose records all have times at or before
/// `max_time_ms`. They stay on disk and are listed, so that they are deleted as usual.
#[derive(Clone, Copy, Debug)]
pub struct SkippedSegments {
    pub before_segment: u64,
    pub max_time_ms: i64,
}

/// Reads every segment in `dir` in order and hands each whole record to `each`. Repairs
/// as it goes: torn tails are cut off, segments damaged in the middle are moved under
/// `quarantine_dir` after their records before the damage are handed out.
pub fn read_log(
    dir: &Path,
    quarantine_dir: &Path,
    each: impl FnMut(ReadRecord<'_>),
) -> Result<ReplaySummary, WalError> {
    read_log_from(dir, quarantine_dir, None, each)
}

/// [`read_log`], passing over the segments `skip` names without reading them.
pub fn read_log_from(
    dir: &Path,
    quarantine_dir: &Path,
    skip: Option<SkippedSegments>,
    mut each: impl FnMut(ReadRecord<'_>),
) -> Result<ReplaySummary, WalError> {
    let mut summary = ReplaySummary::default();
    if !dir.exists() {
        return Ok(summary);
    }
    for (seq, path) in segment::list(dir)? {
        if let Some(skip) = skip
            && seq < skip.before_segment
        {
            summary.segments.push(SegmentInfo {
                seq,
                bytes: std::fs::metadata(&path)?.len(),
                max_time_ms: skip.max_time_ms,
            });
            summary.skipped += 1;
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let scan = segment::scan(&bytes);
        let mut max_time_ms = i64::MIN;
        for &at in &scan.records {
            let decoded = record::decode(&bytes[at..]).expect("scanned as whole");
            summary.max_stream = summary.max_stream.max(decoded.stream);
            if decoded.kind == RecordKind::Entry {
                max_time_ms = max_time_ms.max(decoded.time_ms);
            }
            summary.records += 1;
            each(ReadRecord {
                position: Position {
                    segment: seq,
                    offset: at as u64,
                },
                kind: decoded.kind,
                stream: decoded.stream,
                time_ms: decoded.time_ms,
                payload: decoded.payload,
            });
        }
        summary.bytes += scan.valid_len as u64;
        match scan.ending {
            Ending::Clean => {}
            Ending::TornTail if scan.valid_len == 0 => {
                info!(path = %path.display(), "removing a segment a crash left before its first record");
                std::fs::remove_file(&path)?;
                summary.torn_tails += 1;
                continue;
            }
            Ending::TornTail => {
                warn!(
                    path = %path.display(),
                    kept_bytes = scan.valid_len,
                    cut_bytes = bytes.len() - scan.valid_len,
                    "cutting off a torn tail: the last record's write did not finish"
                );
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(scan.valid_len as u64)?;
                file.sync_all()?;
                summary.torn_tails += 1;
            }
            Ending::CorruptMiddle { reason } => {
                quarantine(&path, quarantine_dir, reason, scan.valid_len)?;
                summary.quarantined += 1;
                continue;
            }
        }
        summary.segments.push(SegmentInfo {
            seq,
            bytes: scan.valid_len as u64,
            max_time_ms,
        });
    }
    Ok(summary)
}

/// Moves a damaged segment aside, with a note of why beside it, and counts it.
fn quarantine(
    path: &Path,
    quarantine_dir: &Path,
    reason: &str,
    read_bytes: usize,
) -> Result<(), WalError> {
    std::fs::create_dir_all(quarantine_dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = quarantine_dir.join(format!("wal-{name}"));
    std::fs::rename(path, &target)?;
    std::fs::write(
        quarantine_dir.join(format!("wal-{name}.reason")),
        format!("{reason}; records before byte {read_bytes} were replayed\n"),
    )?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    metrics::counter!(stats::QUARANTINED, "kind" => "wal").increment(1);
    warn!(
        path = %path.display(),
        moved_to = %target.display(),
        reason,
        replayed_bytes = read_bytes,
        "a log segment is damaged in its middle; moved to quarantine, the rest is replayed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{encode, encoded_len};
    use crate::wal::segment::MAGIC;

    fn write_segment(dir: &Path, seq: u64, records: &[(RecordKind, u64, i64, &[u8])]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (kind, stream, time, payload) in records {
            encode(&mut bytes, *kind, *stream, *time, payload);
        }
        std::fs::write(segment::path(dir, seq), &bytes).unwrap();
        bytes
    }

    /// Position, stream, time and payload of each record read.
    type Seen = Vec<(Position, u64, i64, Vec<u8>)>;

    fn read_all(dir: &Path, quarantine: &Path) -> (Seen, ReplaySummary) {
        let mut seen = Vec::new();
        let summary = read_log(dir, quarantine, |r| {
            seen.push((r.position, r.stream, r.time_ms, r.payload.to_vec()))
        })
        .unwrap();
        (seen, summary)
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_repairs_stick() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("wal");
        let quarantine = dir.path().join("quarantine");
        std::fs::create_dir_all(&log).unwrap();
        use RecordKind::{Entry, StreamHeader};
        write_segment(&log, 1, &[(StreamHeader, 1, 0, b"h"), (Entry, 1, 10, b"a")]);
        // Segment 2 ends in a torn tail: its last record was cut short.
        let two = write_segment(
            &log,
            2,
            &[
                (StreamHeader, 3, 0, b"h"),
                (Entry, 3, 20, b"b"),
                (Entry, 3, 30, b"lost"),
            ],
        );
        std::fs::write(segment::path(&log, 2), &two[..two.len() - 2]).unwrap();
        // Segment 3 is damaged in its middle: one record is replayed, the file moved aside.
        let three = write_segment(
            &log,
            3,
            &[
                (Entry, 3, 40, b"c"),
                (Entry, 3, 50, b"bad"),
                (Entry, 3, 60, b"after"),
            ],
        );
        let mut damaged = three.clone();
        let bad = MAGIC.len() + encoded_len(1) + record::FRAME_BYTES + record::BODY_HEAD_BYTES;
        damaged[bad] ^= 0xff;
        std::fs::write(segment::path(&log, 3), &damaged).unwrap();
        write_segment(&log, 4, &[(StreamHeader, 9, 0, b"h"), (Entry, 9, 70, b"d")]);

        let (seen, summary) = read_all(&log, &quarantine);
        let payloads: Vec<&[u8]> = seen.iter().map(|s| s.3.as_slice()).collect();
        assert_eq!(payloads, [&b"h"[..], b"a", b"h", b"b", b"c", b"h", b"d"]);
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "positions grow");
        assert_eq!(
            seen[4].0,
            Position {
                segment: 3,
                offset: MAGIC.len() as u64
            }
        );
        assert_eq!(
            (summary.torn_tails, summary.quarantined, summary.max_stream),
            (1, 1, 9)
        );
        let kept: Vec<(u64, i64)> = summary
            .segments
            .iter()
            .map(|s| (s.seq, s.max_time_ms))
            .collect();
        assert_eq!(kept, [(1, 10), (2, 20), (4, 70)]);
        assert!(
            quarantine
                .join(format!("wal-{}", segment::file_name(3)))
                .exists()
        );
        let reason = std::fs::read_to_string(
            quarantine.join(format!("wal-{}.reason", segment::file_name(3))),
        )
        .unwrap();
        assert!(reason.contains("checksum mismatch"), "{reason}");

        // A second read finds the repaired log: no torn tail, nothing more to quarantine.
        let (again, summary) = read_all(&log, &quarantine);
        assert_eq!(again.len(), 6);
        assert_eq!((summary.torn_tails, summary.quarantined), (0, 0));
    }
}
