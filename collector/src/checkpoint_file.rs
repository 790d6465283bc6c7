//! Checkpoint files under `<data-dir>/checkpoints/`: one per checkpoint, named after the
//! log position it covers (`checkpoint-<segment>-<offset>.ckpt`, so names sort by
//! position), written whole (a temporary name, flushed, renamed, the directory flushed).
//! The newest two are kept, so that one found damaged at start leaves another to try.
//!
//! A file is a magic (`MSCKPT01`), the body's length (8 bytes, little-endian), its CRC-32
//! (4 bytes), then the body: the [`CheckpointState`] in CBOR. A file whose magic, length
//! or checksum does not match, or whose body does not decode, is damaged: it is moved to
//! `<data-dir>/quarantine/` with a `.reason` file beside it, and counted.

use std::path::{Path, PathBuf};

use meshscope_storage::wal::Position;
use tracing::warn;

use crate::checkpoint_state::CheckpointState;

const MAGIC: &[u8; 8] = b"MSCKPT01";
const HEAD_BYTES: usize = MAGIC.len() + 8 + 4;
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".ckpt";
/// Checkpoint files kept: the newest and the one before it.
const KEPT: usize = 2;

/// The process dies here (`MESHSCOPE_CRASH_AT`) once a checkpoint's temporary file is
/// flushed, before its rename.
pub const CRASH_CHECKPOINT_SYNCED: &str = "checkpoint-synced";
/// ... once a checkpoint is renamed into place, before older ones are deleted.
pub const CRASH_CHECKPOINT_RENAMED: &str = "checkpoint-renamed";

/// The file name of a checkpoint covering the log before `position`.
pub fn file_name(position: Position) -> String {
    format!(
        "{PREFIX}{:020}-{:020}{SUFFIX}",
        position.segment, position.offset
    )
}

/// The checkpoint's bytes as written to its file. The body is encoded behind room left
/// for the head, which is filled in afterwards: a checkpoint of tens of megabytes is not
/// copied a second time.
pub fn encode(state: &CheckpointState) -> Vec<u8> {
    // Room for what is known to be large: the packed requests, and 512 bytes a parked
    // entry (they take about 400); the rest (rows, names, what was learned) grows as it
    // needs.
    let room = state.packed_requests.len() + state.parked.len() * 512 + (1 << 20);
    let mut bytes = Vec::with_capacity(HEAD_BYTES + room);
    bytes.extend_from_slice(MAGIC);
    bytes.resize(HEAD_BYTES, 0);
    ciborium::into_writer(state, &mut bytes).expect("writing to memory does not fail");
    let body = &bytes[HEAD_BYTES..];
    let len = (body.len() as u64).to_le_bytes();
    let crc = crc32fast::hash(body).to_le_bytes();
    bytes[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&len);
    bytes[MAGIC.len() + 8..HEAD_BYTES].copy_from_slice(&crc);
    bytes
}

/// A checkpoint read back from its bytes; why not, when they are damaged.
pub fn decode(bytes: &[u8]) -> Result<CheckpointState, String> {
    if bytes.len() < HEAD_BYTES || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a checkpoint file: no magic".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = &bytes[HEAD_BYTES..];
    if body.len() as u64 != len {
        return Err(format!(
            "cut short or overlong: its body is {} bytes, its head says {len}",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    ciborium::from_reader(body).map_err(|error| format!("body does not decode: {error}"))
}

/// Writes `state` into `dir` whole, then deletes all but the newest [`KEPT`] checkpoints;
/// the bytes written.
pub fn write(dir: &Path, state: &CheckpointState) -> meshscope_storage::Result<usize> {
    let bytes = encode(state);
    meshscope_storage::write_whole_file(
        dir,
        &file_name(state.position),
        &bytes,
        Some(CRASH_CHECKPOINT_SYNCED),
    )?;
    meshscope_storage::crash_point(CRASH_CHECKPOINT_RENAMED);
    let files = list(dir)?;
    for old in files.iter().rev().skip(KEPT) {
        if let Err(error) = std::fs::remove_file(old) {
            warn!(%error, path = %old.display(), "an old checkpoint could not be deleted");
        }
    }
    Ok(bytes.len())
}

/// The checkpoint files in `dir`, oldest first; temporary files a crash left are deleted.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path())?;
        } else if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The newest whole checkpoint in `dir`, if any; damaged ones on the way are moved under
/// `quarantine_dir` and counted in `meshscope_quarantined_files_total{kind="checkpoint"}`.
pub fn newest(dir: &Path, quarantine_dir: &Path) -> std::io::Result<Option<CheckpointState>> {
    for path in list(dir)?.into_iter().rev() {
        let bytes = std::fs::read(&path)?;
        match decode(&bytes) {
            Ok(state) => return Ok(Some(state)),
            Err(reason) => quarantine(&path, quarantine_dir, &reason)?,
        }
    }
    Ok(None)
}

/// Moves a checkpoint that cannot be used aside, with the reason beside it.
pub fn quarantine(path: &Path, quarantine_dir: &Path, reason: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(quarantine_dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let target = quarantine_dir.join(name.as_ref());
    std::fs::rename(path, &target)?;
    std::fs::write(
        quarantine_dir.join(format!("{name}.reason")),
        format!("{reason}\n"),
    )?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    metrics::counter!(meshscope_storage::QUARANTINED_METRIC, "kind" => "checkpoint").increment(1);
    warn!(
        path = %path.display(),
        moved_to = %target.display(),
        reason,
        "a checkpoint cannot be used; moved to quarantine, the log is replayed without it"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::UnclosedRows;
    use crate::wal_mark::PersistedMark;

    fn state(segment: u64) -> CheckpointState {
        CheckpointState {
            position: Position { segment, offset: 9 },
            taken_at_ms: 1_000,
            mark: PersistedMark::default(),
            unclosed: UnclosedRows::default(),
            parked: Vec::new(),
            parked_reporters: Vec::new(),
            packed_requests: Default::default(),
            requests: Vec::new(),
            learned: Default::default(),
            counters: Default::default(),
            proxy_rows: Vec::new(),
        }
    }

    #[test]
    fn the_newest_whole_checkpoint_is_read_and_a_damaged_one_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let quarantine_dir = dir.path().join("quarantine");
        for segment in [3, 4, 5] {
            write(&checkpoints, &state(segment)).unwrap();
        }
        assert_eq!(
            list(&checkpoints).unwrap().len(),
            KEPT,
            "older ones deleted"
        );
        // The newest is cut short: the one before it is used.
        let newest_path = checkpoints.join(file_name(state(5).position));
        let bytes = std::fs::read(&newest_path).unwrap();
        std::fs::write(&newest_path, &bytes[..bytes.len() - 3]).unwrap();
        let found = newest(&checkpoints, &quarantine_dir).unwrap().unwrap();
        assert_eq!(found.position.segment, 4);
        let reason = std::fs::read_to_string(
            quarantine_dir.join(format!("{}.reason", file_name(state(5).position))),
        )
        .unwrap();
        assert!(reason.contains("cut short"), "{reason}");
        // A flipped byte in the body is found by the checksum.
        let path = checkpoints.join(file_name(state(4).position));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(newest(&checkpoints, &quarantine_dir).unwrap().is_none());
        assert!(list(&checkpoints).unwrap().is_empty());
    }
}
