//! What a process costs, read from Linux's `/proc`: CPU time and resident memory.

use crate::error::{Error, Result};

/// User and system CPU time of a process, all threads, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    let unexpected = || Error::Proc("unexpected /proc stat".into());
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(unexpected)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Result<f64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(unexpected)
    };
    let utime = field(11)?;
    let stime = field(12)?;
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / ticks)
}

/// The highest resident set size the process has had, in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Result<f64> {
    Ok(proc_kib(pid, "status", "VmHWM:")? / 1024.0)
}

/// The resident set size now, in MiB.
pub(crate) fn rss_mib(pid: u32) -> Result<f64> {
    Ok(proc_kib(pid, "status", "VmRSS:")? / 1024.0)
}

/// Pages the allocator gave back lazily (MADV_FREE) that still count as resident, in MiB.
pub(crate) fn lazily_freed_mib(pid: u32) -> Result<f64> {
    Ok(proc_kib(pid, "smaps_rollup", "LazyFree:")? / 1024.0)
}

/// A `Field:  1234 kB` line of one of a process's `/proc` files.
fn proc_kib(pid: u32, file: &str, field: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).map_err(Error::io(format!("reading {path}")))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| Error::Proc(format!("no {field} in {path}")))?;
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| Error::Proc(format!("malformed {path}")))
}
