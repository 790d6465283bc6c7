//! The waiting requests as a checkpoint keeps them: one byte string of fixed-width
//! little-endian records, copied while ingest is paused and written as it is. At the
//! maximum rate about 200,000 requests wait; kept as a list of structures with named
//! fields they took over 100 bytes an entry and 200,000 allocations at every checkpoint,
//! packed they take 36 bytes an entry and one.
//!
//! Layout, per request: its id (u64), its deadline (i64), its entry count (u8), then each
//! entry: source (u32), target (u32), side (u8: 0 client, 1 server), start (i64 ms),
//! duration (f32 ms), attempts (u16), endpoint (u32), outcome bits (u8: 1 error, 2 4xx),
//! source instance (u32), target instance (u32).

use meshscope_storage::Side;
use serde::{Deserialize, Serialize};

use crate::request_pairs::WaitingRequest;
use crate::request_settlement::LoggedSide;

const REQUEST_HEAD_BYTES: usize = 17;
const ENTRY_BYTES: usize = 36;

/// One entry's record, laid out as the module's documentation says.
fn entry_bytes(e: &LoggedSide) -> [u8; ENTRY_BYTES] {
    let mut b = [0u8; ENTRY_BYTES];
    b[0..4].copy_from_slice(&e.source.to_le_bytes());
    b[4..8].copy_from_slice(&e.target.to_le_bytes());
    b[8] = u8::from(e.side == Side::Server);
    b[9..17].copy_from_slice(&e.start_ms.to_le_bytes());
    b[17..21].copy_from_slice(&e.duration_ms.to_le_bytes());
    b[21..23].copy_from_slice(&e.attempts.to_le_bytes());
    b[23..27].copy_from_slice(&e.endpoint.to_le_bytes());
    b[27] = u8::from(e.error) | (u8::from(e.error_4xx) << 1);
    b[28..32].copy_from_slice(&e.source_instance.to_le_bytes());
    b[32..36].copy_from_slice(&e.target_instance.to_le_bytes());
    b
}

/// Waiting requests, packed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PackedRequests {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl PackedRequests {
    /// Nothing held yet, with room for `requests` requests of `entries` entries in all.
    pub(crate) fn with_room(requests: usize, entries: usize) -> PackedRequests {
        PackedRequests {
            bytes: Vec::with_capacity(requests * REQUEST_HEAD_BYTES + entries * ENTRY_BYTES),
        }
    }

    /// Adds one request; at most 255 of its entries (a request holds at most
    /// [`crate::request_pairs::MAX_ENTRIES_PER_REQUEST`]).
    pub(crate) fn push<'a>(
        &mut self,
        request_id: u64,
        deadline_ms: i64,
        entries: impl ExactSizeIterator<Item = &'a LoggedSide>,
    ) {
        let n = entries.len().min(usize::from(u8::MAX));
        let out = &mut self.bytes;
        out.reserve(REQUEST_HEAD_BYTES + n * ENTRY_BYTES);
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&deadline_ms.to_le_bytes());
        out.push(n as u8);
        for e in entries.take(n) {
            out.extend_from_slice(&entry_bytes(e));
        }
    }

    /// The bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The requests, in the order they were added; why not, when the bytes are cut short.
    pub fn unpack(&self) -> Result<Vec<WaitingRequest>, String> {
        let mut reader = Reader(&self.bytes);
        let mut requests = Vec::new();
        while !reader.0.is_empty() {
            let request_id = u64::from_le_bytes(reader.take()?);
            let deadline_ms = i64::from_le_bytes(reader.take()?);
            let [n] = reader.take()?;
            let mut entries = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let source = u32::from_le_bytes(reader.take()?);
                let target = u32::from_le_bytes(reader.take()?);
                let [side] = reader.take()?;
                let start_ms = i64::from_le_bytes(reader.take()?);
                let duration_ms = f32::from_le_bytes(reader.take()?);
                let attempts = u16::from_le_bytes(reader.take()?);
                let endpoint = u32::from_le_bytes(reader.take()?);
                let [outcome] = reader.take()?;
                let source_instance = u32::from_le_bytes(reader.take()?);
                let target_instance = u32::from_le_bytes(reader.take()?);
                entries.push(LoggedSide {
                    source,
                    target,
                    side: if side == 1 {
                        Side::Server
                    } else {
                        Side::Client
                    },
                    start_ms,
                    duration_ms,
                    attempts,
                    endpoint,
                    error: outcome & 1 != 0,
                    error_4xx: outcome & 2 != 0,
                    source_instance,
                    target_instance,
                });
            }
            requests.push(WaitingRequest {
                request_id,
                deadline_ms,
                entries,
            });
        }
        Ok(requests)
    }
}

/// Reads fixed-width fields off the front of a byte string.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "packed waiting requests cut short".to_owned())?;
        self.0 = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_come_back_as_they_were_packed() {
        let entry = |side, start_ms, error, error_4xx| LoggedSide {
            source: 3,
            target: 70_000,
            side,
            start_ms,
            duration_ms: 12.5,
            attempts: 2,
            endpoint: 9,
            error,
            error_4xx,
            source_instance: u32::MAX,
            target_instance: 4,
        };
        let requests = vec![
            WaitingRequest {
                request_id: u64::MAX - 1,
                deadline_ms: 1_764_000_005_000,
                entries: vec![
                    entry(Side::Client, 1_764_000_000_000, true, false),
                    entry(Side::Server, 1_764_000_000_001, true, true),
                ],
            },
            WaitingRequest {
                request_id: 1,
                deadline_ms: -1,
                entries: vec![],
            },
        ];
        let mut packed = PackedRequests::default();
        for r in &requests {
            packed.push(r.request_id, r.deadline_ms, r.entries.iter());
        }
        assert_eq!(packed.len(), 2 * REQUEST_HEAD_BYTES + 2 * ENTRY_BYTES);
        assert_eq!(packed.unpack().unwrap(), requests);
        let mut cut = packed.clone();
        cut.bytes.pop();
        assert!(cut.unpack().is_err());
        // Through the checkpoint's encoding, as a byte string.
        let mut cbor = Vec::new();
        ciborium::into_writer(&packed, &mut cbor).unwrap();
        assert!(cbor.len() < packed.len() + 16, "{} bytes", cbor.len());
        let back: PackedRequests = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, packed);
    }
}
