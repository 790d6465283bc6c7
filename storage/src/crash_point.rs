//! Named points on the write path where a test can have the process die at once, as
//! `kill -9` would: no destructor runs and nothing buffered is flushed. Set
//! `MESHSCOPE_CRASH_AT=<point>` to die the first time `<point>` is reached, or
//! `<point>:<n>` to die the n-th time. Unset (always, outside such tests), a point costs
//! one look at a value read once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that names the point to die at.
pub const CRASH_AT_ENV: &str = "MESHSCOPE_CRASH_AT";

/// A new file's contents are on disk under its temporary name, not yet renamed.
pub(crate) const FILE_SYNCED: &str = "file-synced";
/// A replacement's record is on disk; no new file is visible yet.
pub(crate) const REPLACEMENT_RECORDED: &str = "replacement-recorded";
/// A replacement's new files are visible; the files they replace are still there.
pub(crate) const REPLACEMENT_RENAMED: &str = "replacement-renamed";
/// The replaced files are gone; the record is still there.
pub(crate) const REPLACEMENT_DELETED: &str = "replacement-deleted";

struct Plan {
    point: String,
    nth: u64,
    reached: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let value = std::env::var(CRASH_AT_ENV).ok()?;
        let (point, nth) = match value.rsplit_once(':') {
            Some((point, nth)) => (point.to_string(), nth.parse().ok()?),
            None => (value, 1),
        };
        Some(Plan {
            point,
            nth,
            reached: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Aborts the process if the test asked to die at this passing of `point`.
pub fn reached(point: &'static str) {
    let Some(plan) = plan() else {
        return;
    };
    if plan.point == point && plan.reached.fetch_add(1, Ordering::SeqCst) + 1 == plan.nth {
        eprintln!("{CRASH_AT_ENV}: dying at {point} (passing {})", plan.nth);
        std::process::abort();
    }
}
