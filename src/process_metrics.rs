//! The standard `process_*` metrics of a Prometheus target (CPU time, resident and virtual
//! memory, open and allowed file descriptors, start time), read from Linux's `/proc` at
//! each scrape. Read by hand rather than through a crate: the few fields are two reads of
//! `/proc/self` and one `getrlimit`, where the crates for it bring a whole `/proc` parser.
//! On systems without `/proc` the metrics are simply absent.

use std::sync::OnceLock;

const CPU_SECONDS: &str = "process_cpu_seconds_total";
const RESIDENT_BYTES: &str = "process_resident_memory_bytes";
const VIRTUAL_BYTES: &str = "process_virtual_memory_bytes";
const OPEN_FDS: &str = "process_open_fds";
const MAX_FDS: &str = "process_max_fds";
const START_TIME: &str = "process_start_time_seconds";

/// Gives the process metrics their HELP text and unit.
pub(crate) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        CPU_SECONDS,
        Unit::Seconds,
        "User and system CPU time spent, whole seconds."
    );
    describe_gauge!(RESIDENT_BYTES, Unit::Bytes, "Resident memory size.");
    describe_gauge!(VIRTUAL_BYTES, Unit::Bytes, "Virtual memory size.");
    describe_gauge!(OPEN_FDS, "Open file descriptors.");
    describe_gauge!(MAX_FDS, "Most file descriptors the process may open.");
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
}

/// The figures of this process now, as `/proc/self/stat` and friends tell them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
}

/// Reads the figures and sets the metrics; what cannot be read is left as it was.
pub(crate) fn update() {
    if let Some(figures) = read_stat() {
        // The `metrics` counter is whole; a counter that loses the fraction still rates.
        metrics::counter!(CPU_SECONDS).absolute(figures.cpu_seconds as u64);
        metrics::gauge!(RESIDENT_BYTES).set(figures.resident_bytes as f64);
        metrics::gauge!(VIRTUAL_BYTES).set(figures.virtual_bytes as f64);
        metrics::gauge!(START_TIME).set(figures.start_time_seconds);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor, open while it is read, is not counted.
        let open = entries.count().saturating_sub(1);
        metrics::gauge!(OPEN_FDS).set(open as f64);
    }
    if let Some(max) = max_fds() {
        metrics::gauge!(MAX_FDS).set(max as f64);
    }
}

fn read_stat() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = boot_time_seconds()?;
    parse_stat(&stat, clock_ticks_per_second(), page_size(), boot_time)
}

/// The figures in a `/proc/PID/stat` line (see proc(5)): utime and stime (fields 14 and
/// 15, in clock ticks), starttime (22, ticks after boot), vsize (23, bytes), rss (24, pages).
fn parse_stat(
    stat: &str,
    ticks_per_second: f64,
    page_size: u64,
    boot_time: f64,
) -> Option<ProcessFigures> {
    // The command name is in parentheses and may hold spaces and parentheses itself.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let user = field(14)?;
    let system = field(15)?;
    let start_ticks = field(22)?;
    Some(ProcessFigures {
        cpu_seconds: (user + system) as f64 / ticks_per_second,
        resident_bytes: field(24)? * page_size,
        virtual_bytes: field(23)?,
        start_time_seconds: boot_time + start_ticks as f64 / ticks_per_second,
    })
}

/// When the system booted, from `btime` in `/proc/stat`; read once, it does not change.
fn boot_time_seconds() -> Option<f64> {
    static BOOT_TIME: OnceLock<Option<f64>> = OnceLock::new();
    *BOOT_TIME.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse().ok())
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

/// The soft limit on open file descriptors.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_cpu_memory_and_start_time() {
        // A process named "a) b" (names may hold parentheses and spaces): utime 250 and
        // stime 50 ticks, started 1000 ticks after boot, 8192000 bytes virtual, 300 pages.
        let stat = "1234 (a) b) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    1000 8192000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let figures = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(
            figures,
            ProcessFigures {
                cpu_seconds: 3.0,
                resident_bytes: 300 * 4096,
                virtual_bytes: 8_192_000,
                start_time_seconds: 1_700_000_010.0,
            }
        );
        assert_eq!(parse_stat("garbage", 100.0, 4096, 0.0), None);
    }

    #[test]
    fn this_process_has_figures() {
        let figures = read_stat().expect("/proc/self/stat reads on Linux");
        assert!(figures.resident_bytes > 0);
        assert!(figures.virtual_bytes >= figures.resident_bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(figures.start_time_seconds <= now + 1.0);
        assert!(figures.start_time_seconds > now - 24.0 * 3600.0 * 365.0);
        assert!(max_fds().unwrap() > 0);
    }
}
