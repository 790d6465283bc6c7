//! One record of the log as bytes: `len: u32 LE | crc32: u32 LE | body`, where the body is
//! `kind: u8 | stream: u64 LE | time_ms: i64 LE | payload` and the CRC covers the body.
//! A record is whole when its length fits the file and its CRC matches.

/// The bytes before a record's body: its length and its CRC.
pub const FRAME_BYTES: usize = 8;
/// The body's fixed fields: kind, stream and time.
pub const BODY_HEAD_BYTES: usize = 1 + 8 + 8;
/// Largest body accepted on reading; a longer length is damage, not a record.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The number the writer gives a stream of records; unique within a log directory.
pub type StreamId = u64;

/// Where a record starts: its segment's number and its byte offset in that segment.
/// Positions grow with every record appended, across restarts too (a new process starts a
/// new segment), so they order records the way they were appended.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub const ZERO: Position = Position {
        segment: 0,
        offset: 0,
    };
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// What a stream's later records need to be read: written when the stream opens and
    /// again at the start of each segment it writes into.
    StreamHeader,
    /// One item of a stream.
    Entry,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::StreamHeader => 1,
            RecordKind::Entry => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::StreamHeader),
            2 => Some(RecordKind::Entry),
            _ => None,
        }
    }
}

/// The bytes a record takes on disk.
pub fn encoded_len(payload_len: usize) -> usize {
    FRAME_BYTES + BODY_HEAD_BYTES + payload_len
}

/// Appends one record to `out`.
pub fn encode(out: &mut Vec<u8>, kind: RecordKind, stream: StreamId, time_ms: i64, payload: &[u8]) {
    let body_len = BODY_HEAD_BYTES + payload.len();
    let mut head = [0u8; BODY_HEAD_BYTES];
    head[0] = kind.byte();
    head[1..9].copy_from_slice(&stream.to_le_bytes());
    head[9..17].copy_from_slice(&time_ms.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(payload);
    out.reserve(FRAME_BYTES + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
}

/// A whole record read back, borrowing its payload from the segment's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub kind: RecordKind,
    pub stream: StreamId,
    pub time_ms: i64,
    pub payload: &'a [u8],
    /// Bytes the record takes, frame included.
    pub len: usize,
}

/// Why the bytes at an offset are not a whole record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The bytes end before the record does: a write cut short.
    Truncated,
    /// The record's bytes are all there but do not check out (CRC, kind or length).
    Corrupt(&'static str),
}

/// Reads the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, Damage> {
    if bytes.len() < FRAME_BYTES {
        return Err(Damage::Truncated);
    }
    let body_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(BODY_HEAD_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Err(Damage::Corrupt("impossible length"));
    }
    let Some(body) = bytes.get(FRAME_BYTES..FRAME_BYTES + body_len) else {
        return Err(Damage::Truncated);
    };
    if crc32fast::hash(body) != crc {
        return Err(Damage::Corrupt("checksum mismatch"));
    }
    let kind = RecordKind::from_byte(body[0]).ok_or(Damage::Corrupt("unknown record kind"))?;
    Ok(Decoded {
        kind,
        stream: u64::from_le_bytes(body[1..9].try_into().expect("8 bytes")),
        time_ms: i64::from_le_bytes(body[9..17].try_into().expect("8 bytes")),
        payload: &body[BODY_HEAD_BYTES..],
        len: FRAME_BYTES + body_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let mut out = Vec::new();
        encode(&mut out, RecordKind::Entry, 7, -5, b"payload");
        encode(&mut out, RecordKind::StreamHeader, u64::MAX, i64::MAX, b"");
        assert_eq!(out.len(), encoded_len(7) + encoded_len(0));
        let first = decode(&out).unwrap();
        assert_eq!(
            (first.kind, first.stream, first.time_ms, first.payload),
            (RecordKind::Entry, 7, -5, &b"payload"[..])
        );
        let second = decode(&out[first.len..]).unwrap();
        assert_eq!(
            (second.kind, second.stream, second.time_ms, second.payload),
            (RecordKind::StreamHeader, u64::MAX, i64::MAX, &b""[..])
        );
        assert_eq!(first.len + second.len, out.len());
    }

    #[test]
    fn a_cut_record_is_truncated_and_a_changed_one_corrupt() {
        let mut out = Vec::new();
        encode(&mut out, RecordKind::Entry, 1, 2, b"some bytes");
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Err(Damage::Truncated), "cut at {cut}");
        }
        for at in FRAME_BYTES..out.len() {
            let mut changed = out.clone();
            changed[at] ^= 0x40;
            assert!(
                matches!(decode(&changed), Err(Damage::Corrupt(_))),
                "byte {at} changed"
            );
        }
        let mut zeroed = out.clone();
        zeroed[..4].fill(0);
        assert_eq!(decode(&zeroed), Err(Damage::Corrupt("impossible length")));
    }
}
