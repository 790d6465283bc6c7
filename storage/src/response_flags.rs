//! Response flags counted by kind: how many of a row's calls the proxy logged with each
//! flag. The kinds kept are the ones a proxy sets most often for a failed, refused or cut
//! call; each is a `UInt64` column of every minute and rollup table (`flag_uf`,
//! `flag_urx`, …), nullable so that files written before them read as 0.
//!
//! Kinds kept, by their short code:
//!
//! | code | column      | meaning                                            |
//! |------|-------------|----------------------------------------------------|
//! | LH   | `flag_lh`   | local health check failed                          |
//! | UH   | `flag_uh`   | no healthy upstream                                |
//! | UT   | `flag_ut`   | upstream request timeout                           |
//! | LR   | `flag_lr`   | connection local reset                             |
//! | UR   | `flag_ur`   | upstream remote reset                              |
//! | UF   | `flag_uf`   | upstream connection failure                        |
//! | UC   | `flag_uc`   | upstream connection termination                    |
//! | UO   | `flag_uo`   | upstream overflow (circuit breaking)               |
//! | NR   | `flag_nr`   | no route                                           |
//! | DI   | `flag_di`   | delay injected                                     |
//! | FI   | `flag_fi`   | fault injected                                     |
//! | RL   | `flag_rl`   | rate limited                                       |
//! | UAEX | `flag_uaex` | refused by the external authorization service      |
//! | DC   | `flag_dc`   | downstream connection termination                  |
//! | URX  | `flag_urx`  | upstream retry or connect-attempt limit exceeded   |
//! | SI   | `flag_si`   | stream idle timeout                                |
//!
//! Other flags still count as failures where they mean one (see the collector) but are
//! not kept by kind.

/// How many kinds are kept.
pub const RESPONSE_FLAG_KINDS: usize = 16;

/// The kinds kept, by short code, in column order.
pub const RESPONSE_FLAG_CODES: [&str; RESPONSE_FLAG_KINDS] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "DC", "URX",
    "SI",
];

/// The kinds' columns, in the order of [`RESPONSE_FLAG_CODES`].
pub const RESPONSE_FLAG_COLUMNS: [&str; RESPONSE_FLAG_KINDS] = [
    "flag_lh",
    "flag_uh",
    "flag_ut",
    "flag_lr",
    "flag_ur",
    "flag_uf",
    "flag_uc",
    "flag_uo",
    "flag_nr",
    "flag_di",
    "flag_fi",
    "flag_rl",
    "flag_uaex",
    "flag_dc",
    "flag_urx",
    "flag_si",
];

/// Calls per response flag kind, in the order of [`RESPONSE_FLAG_CODES`]. Most rows never
/// see a flag, so the counts are only allocated when the first one is added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlagCounts(Option<Box<[u64; RESPONSE_FLAG_KINDS]>>);

impl ResponseFlagCounts {
    /// The count of kind `kind` (an index into [`RESPONSE_FLAG_CODES`]).
    #[inline]
    pub fn get(&self, kind: usize) -> u64 {
        self.0.as_ref().map_or(0, |counts| counts[kind])
    }

    /// The count of kind `kind`, to add to; allocates the counts on first use.
    #[inline]
    pub fn get_mut(&mut self, kind: usize) -> &mut u64 {
        &mut self.0.get_or_insert_with(Default::default)[kind]
    }

    /// Adds another row's counts.
    pub fn merge(&mut self, other: &ResponseFlagCounts) {
        if let Some(theirs) = &other.0 {
            let ours = self.0.get_or_insert_with(Default::default);
            for (a, b) in ours.iter_mut().zip(theirs.iter()) {
                *a += b;
            }
        }
    }

    /// Each kind with a non-zero count, as (code, count), in column order.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RESPONSE_FLAG_CODES
            .iter()
            .enumerate()
            .map(|(kind, code)| (*code, self.get(kind)))
            .filter(|(_, n)| *n > 0)
    }

    /// Whether no kind was counted.
    pub fn is_empty(&self) -> bool {
        self.nonzero().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_list_only_the_kinds_seen() {
        let mut a = ResponseFlagCounts::default();
        assert!(a.is_empty());
        *a.get_mut(5) += 3;
        let mut b = ResponseFlagCounts::default();
        *b.get_mut(14) += 1;
        *b.get_mut(5) += 1;
        a.merge(&b);
        assert_eq!(a.nonzero().collect::<Vec<_>>(), vec![("UF", 4), ("URX", 1)]);
        assert_eq!(RESPONSE_FLAG_COLUMNS[14], "flag_urx");
    }
}
