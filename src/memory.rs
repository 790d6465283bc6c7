//! How the process gives memory back to the system.
//!
//! A closing minute is encoded and written within about a second, and its rows and batches
//! are freed just after. With the allocator's defaults those pages stay resident for a
//! second or more and the next minute's rows are laid on fresh ones, so the peak RSS was
//! the freed minute and the filling one side by side; transparent huge pages rounded every
//! region up to 2 MiB on top. Measured in BENCHMARKS.md (ingest, 1,000 services).

/// Freed pages go back to the system this soon. Immediate purging also cut the peak, but
/// a dashboard read then faulted its memory in afresh each time (about 60% slower).
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// While the store uses much memory for a moment (a closing minute's encoding and write,
/// about half a second a minute; an hour's compaction and rollup, a few minutes an hour
/// at a thousand services) freed pages go back at once: both free and take again tens of
/// megabytes all the while, and with the usual delay they stood freed but resident
/// (`meshscope maintain` over seven minutes of a 1,000-service mesh: 148 MiB at 100 ms,
/// 112 MiB at 0; BENCHMARKS.md). Reads meanwhile pay the faults.
#[cfg(feature = "mimalloc")]
const LARGE_USE_PURGE_DELAY_MS: std::ffi::c_long = 0;

/// Large uses of memory under way (they can overlap: an upkeep pass takes turns with
/// closing minutes).
#[cfg(feature = "mimalloc")]
static LARGE_USES: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// mimalloc's `mi_option_purge_delay` (the same number in its v2 and v3 headers); the
/// bindings name no constant for it.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Whether the purge delay is ours to set: not when `MIMALLOC_PURGE_DELAY` set it. Read
/// once: the hint is called twice a second.
#[cfg(feature = "mimalloc")]
fn purge_delay_is_ours() -> bool {
    static OURS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OURS.get_or_init(|| std::env::var_os("MIMALLOC_PURGE_DELAY").is_none())
}

/// For `StoreConfig::memory_hint`: the purge delay for a large use of memory while one
/// runs, the usual one after, unless `MIMALLOC_PURGE_DELAY` set it for the whole run.
pub(crate) fn large_use_of_memory(starts: bool) {
    #[cfg(feature = "mimalloc")]
    if purge_delay_is_ours() {
        let mut uses = LARGE_USES.lock().unwrap_or_else(|e| e.into_inner());
        *uses = if starts {
            *uses + 1
        } else {
            uses.saturating_sub(1)
        };
        let delay = if *uses > 0 {
            LARGE_USE_PURGE_DELAY_MS
        } else {
            PURGE_DELAY_MS
        };
        // SAFETY: as below, a plain store of an option.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay) };
    }
    #[cfg(not(feature = "mimalloc"))]
    let _ = starts;
}

/// Applies the settings above, unless the standard `MIMALLOC_PURGE_DELAY` variable asks
/// otherwise. Transparent huge pages are turned off before `main`, by
/// [`TRANSPARENT_HUGE_PAGES_OFF_BEFORE_MAIN`].
pub(crate) fn return_freed_memory_promptly() {
    #[cfg(feature = "mimalloc")]
    if purge_delay_is_ours() {
        // SAFETY: setting an option is a plain store that mimalloc reads on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// Turns transparent huge pages off for the process before `main` runs, unless
/// `MIMALLOC_ALLOW_THP` is set: the allocator's first region is mapped by the first
/// allocation, made before `main`, and with huge pages still on that region was faulted
/// in 2 MiB at a time, 4 MiB of an idle server's 11 MiB of anonymous memory (BENCHMARKS.md,
/// "Idle memory"). Turning them off from `main` came too late for those pages.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TRANSPARENT_HUGE_PAGES_OFF_BEFORE_MAIN: extern "C" fn() = transparent_huge_pages_off;

#[cfg(target_os = "linux")]
extern "C" fn transparent_huge_pages_off() {
    // SAFETY: getenv reads the environment the loader set up, with a NUL-terminated name;
    // PR_SET_THP_DISABLE takes plain integers and touches no memory of ours. Nothing here
    // allocates, so it is sound before the Rust runtime starts.
    unsafe {
        if libc::getenv(c"MIMALLOC_ALLOW_THP".as_ptr()).is_null() {
            // Refused only by a kernel without the call; huge pages then stay as they are.
            let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}
