//! Request ids made new in every round. The pool is encoded once and sent round after
//! round, so without this every request id would come back every few milliseconds, which
//! no proxy does (Envoy makes a new UUID per request): pairing by request id would see one
//! id reused thousands of times. Each id is marked when the pool is built and the mark is
//! overwritten at send time with the round's number, so that the two sides of a request
//! still share their id within a round and no id repeats across rounds (for 2^32 rounds).

/// The eight bytes that mark where the round's number goes: no other field of an entry
/// holds them.
const MARK: &str = "\u{1}round\u{1}\u{1}";

/// Marks `id` for [`stamp`]: a UUID (Envoy's ids) has its first eight hexadecimal digits
/// replaced, so that its length does not change and the rest, random too, keeps it apart
/// from the round's other ids; any other id gets the mark in front. An empty id (none
/// logged) stays empty.
pub(super) fn mark(id: &mut String) {
    if id.is_empty() {
        return;
    }
    let uuid = id.len() == 36 && id.as_bytes()[8] == b'-' && id.is_char_boundary(8);
    if uuid {
        id.replace_range(..MARK.len(), MARK);
    } else {
        id.insert_str(0, MARK);
    }
}

/// Where the marks are in an encoded message.
pub(super) fn offsets(bytes: &[u8]) -> Vec<usize> {
    let mark = MARK.as_bytes();
    bytes
        .windows(mark.len())
        .enumerate()
        .filter(|(_, w)| *w == mark)
        .map(|(i, _)| i)
        .collect()
}

/// Writes `round` as eight lowercase hexadecimal digits at `offset`.
pub(super) fn stamp(buf: &mut [u8], offset: usize, round: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in buf[offset..offset + MARK.len()].iter_mut().enumerate() {
        *byte = HEX[((round >> (28 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_keeps_its_length_and_any_other_id_gets_the_mark_in_front() {
        let mut uuid = "7c9e6679-7425-40de-944b-e07fc1f90ae7".to_string();
        mark(&mut uuid);
        assert_eq!(uuid.len(), 36);
        assert!(uuid.ends_with("-7425-40de-944b-e07fc1f90ae7"));
        let mut other = "sim-12345-frontend".to_string();
        mark(&mut other);
        assert_eq!(other.len(), 26);
        assert!(other.ends_with("sim-12345-frontend"), "kept whole");
        let mut none = String::new();
        mark(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn each_mark_becomes_the_rounds_number() {
        let mut ids = [
            "7c9e6679-7425-40de-944b-e07fc1f90ae7".to_string(),
            "ab".to_string(),
        ];
        ids.iter_mut().for_each(mark);
        let mut bytes = format!("x{}y{}z", ids[0], ids[1]).into_bytes();
        let at = offsets(&bytes);
        assert_eq!(at, vec![1, 38]);
        for offset in at {
            stamp(&mut bytes, offset, 0x00ab_12ef);
        }
        assert_eq!(
            bytes,
            b"x00ab12ef-7425-40de-944b-e07fc1f90ae7y00ab12efabz".as_slice()
        );
    }
}
