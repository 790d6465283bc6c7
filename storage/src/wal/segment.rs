//! Segment files: `<seq>.wal` (twenty digits, so names sort in order), each starting with
//! an 8-byte magic, then whole records back to back. This module names them and checks one
//! segment's bytes: where its whole records are, and whether what follows the last of
//! them is a write cut short (a torn tail, cut off) or damage in its middle.

use std::path::{Path, PathBuf};

use crate::wal::direct_file::BLOCK;
use crate::wal::record::{self, Damage};

/// The first bytes of every segment: the format and its version.
pub const MAGIC: &[u8; 8] = b"MSWAL\x00\x00\x01";
pub const MAGIC_BYTES: u64 = MAGIC.len() as u64;
const SUFFIX: &str = ".wal";

/// A segment file and what the log knows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    pub bytes: u64,
    /// The latest record time in it; `i64::MIN` when it holds no entry.
    pub max_time_ms: i64,
}

pub fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(file_name(seq))
}

/// The segments in `dir`, by number; other files are left alone.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((seq, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// What a segment's bytes hold.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Offsets of the whole records, in order.
    pub records: Vec<usize>,
    /// Where the whole records end.
    pub valid_len: usize,
    pub ending: Ending,
}

/// What follows the last whole record.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Nothing: the file ends with a whole record.
    Clean,
    /// A record cut short (or zeroes where one was to be): cut off at `valid_len`.
    TornTail,
    /// Damage followed by more bytes that are not zeroes: the middle of the file is
    /// corrupt, and what follows cannot be trusted.
    CorruptMiddle { reason: &'static str },
}

/// Checks a segment's bytes.
pub fn scan(bytes: &[u8]) -> Scan {
    if bytes.len() < MAGIC.len() {
        // Created but not yet written to: nothing lost.
        let ending = if MAGIC.starts_with(bytes) {
            Ending::TornTail
        } else {
            Ending::CorruptMiddle {
                reason: "not a segment",
            }
        };
        return Scan {
            records: Vec::new(),
            valid_len: 0,
            ending,
        };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Scan {
            records: Vec::new(),
            valid_len: 0,
            ending: Ending::CorruptMiddle {
                reason: "not a segment",
            },
        };
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match record::decode(&bytes[at..]) {
            Ok(decoded) => {
                records.push(at);
                at += decoded.len;
            }
            Err(_) if is_block_padding(bytes.len(), &bytes[at..]) => break,
            Err(damage) => {
                let ending = classify(at, &bytes[at..], damage);
                return Scan {
                    records,
                    valid_len: at,
                    ending,
                };
            }
        }
    }
    Scan {
        records,
        valid_len: at,
        ending: Ending::Clean,
    }
}

/// Whether `rest`, the bytes after the last whole record of a file `file_len` long, is the
/// zero padding that a write around the page cache leaves: fewer than a block of zeroes up
/// to a block boundary ([`crate::wal::direct_file`]).
fn is_block_padding(file_len: usize, rest: &[u8]) -> bool {
    file_len.is_multiple_of(BLOCK) && rest.len() < BLOCK && rest.iter().all(|b| *b == 0)
}

/// A record at `at` that does not check out is the tail of an interrupted write when
/// nothing but zeroes follows it, when it reaches the end of the file, or when zeroes run
/// from it to a block boundary with more bytes after them; otherwise the file is damaged
/// in its middle.
///
/// The last case is a write around the page cache cut short: such a write starts by
/// rewriting the block its predecessor padded with zeroes, and a crash may keep that
/// block's old zeroes and some of the later blocks; the bytes after them continue records
/// that began in the lost block, so none of them can be read.
fn classify(at: usize, rest: &[u8], damage: Damage) -> Ending {
    let reason = match damage {
        Damage::Truncated => return Ending::TornTail,
        Damage::Corrupt(reason) => reason,
    };
    if rest.iter().all(|b| *b == 0) {
        return Ending::TornTail;
    }
    let padding = (BLOCK - at % BLOCK) % BLOCK;
    if padding > 0 && rest.len() > padding && rest[..padding].iter().all(|b| *b == 0) {
        return Ending::TornTail;
    }
    let declared = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    if declared <= record::MAX_BODY_BYTES && record::FRAME_BYTES + declared >= rest.len() {
        return Ending::TornTail;
    }
    Ending::CorruptMiddle { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{RecordKind, encode, encoded_len};

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode(&mut bytes, RecordKind::Entry, 1, i as i64, p);
        }
        bytes
    }

    #[test]
    fn a_whole_segment_scans_clean() {
        let bytes = segment(&[b"one", b"two", b""]);
        let scan = scan(&bytes);
        assert_eq!(scan.ending, Ending::Clean);
        let first = MAGIC.len();
        assert_eq!(
            scan.records,
            [first, first + encoded_len(3), first + 2 * encoded_len(3)]
        );
        assert_eq!(scan.valid_len, bytes.len());
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail_at_the_record_before() {
        let bytes = segment(&[b"first", b"second record"]);
        let second = MAGIC.len() + encoded_len(5);
        for cut in second + 1..bytes.len() {
            let scan = scan(&bytes[..cut]);
            assert_eq!(scan.ending, Ending::TornTail, "cut at {cut}");
            assert_eq!((scan.records.len(), scan.valid_len), (1, second));
        }
        let mut zero_tail = bytes.clone();
        zero_tail.extend_from_slice(&[0; 4096]);
        let scan = scan(&zero_tail);
        assert_eq!((scan.ending, scan.records.len()), (Ending::TornTail, 2));
    }

    #[test]
    fn damage_with_records_after_it_is_a_corrupt_middle() {
        let bytes = segment(&[b"first", b"second", b"third"]);
        let mut damaged = bytes.clone();
        let second_payload = MAGIC.len() + encoded_len(5) + encoded_len(0);
        damaged[second_payload] ^= 0xff;
        let scan = scan(&damaged);
        assert_eq!(
            scan.ending,
            Ending::CorruptMiddle {
                reason: "checksum mismatch"
            }
        );
        assert_eq!(scan.records, [MAGIC.len()]);
        // A damaged last record is the tail of an interrupted write.
        let mut last = bytes.clone();
        let end = last.len();
        last[end - 1] ^= 0xff;
        assert_eq!(scan_ending(&last), Ending::TornTail);
        // So is an empty file, but not a foreign one.
        assert_eq!(scan_ending(b""), Ending::TornTail);
        assert!(matches!(
            scan_ending(b"PAR1 and more"),
            Ending::CorruptMiddle { .. }
        ));
    }

    /// The padded block of one direct write, then blocks of the next one whose rewrite of
    /// that block was lost: the records before the zeroes are kept, the rest cut off.
    #[test]
    fn a_direct_write_that_lost_its_first_block_is_a_torn_tail() {
        let bytes = segment(&[b"first", b"second"]);
        let mut torn = bytes.clone();
        torn.resize(BLOCK, 0);
        torn.extend_from_slice(&[7; 100]);
        let scan = scan(&torn);
        assert_eq!(scan.ending, Ending::TornTail);
        assert_eq!((scan.records.len(), scan.valid_len), (2, bytes.len()));
        // Zeroes that stop short of the block boundary are damage, as before.
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&[0; 64]);
        damaged.extend_from_slice(&segment(&[b"third"])[MAGIC.len()..]);
        assert!(matches!(
            scan_ending(&damaged),
            Ending::CorruptMiddle { .. }
        ));
    }

    fn scan_ending(bytes: &[u8]) -> Ending {
        scan(bytes).ending
    }

    #[test]
    fn names_sort_in_segment_order_and_foreign_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [10, 2, 1_000_000] {
            std::fs::write(path(dir.path(), seq), MAGIC).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("12.wal"), "x").unwrap();
        let seqs: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [2, 10, 1_000_000]);
    }
}
