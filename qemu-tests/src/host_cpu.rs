//! CPU time a host process has used, from /proc: what a guest costs the host (the idle and
//! boot benchmarks read QEMU's).

use anyhow::{Context, Result};

/// Linux's USER_HZ: /proc reports utime and stime in these ticks (100 on x86).
pub const USER_HZ: f64 = 100.0;

/// CPU time a process has used so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    /// utime + stime from /proc/PID/stat, in USER_HZ ticks.
    pub ticks: u64,
    /// The sum of the run times in /proc/PID/task/*/schedstat, in ns.
    pub sched_ns: u64,
}

pub fn cpu_time(pid: u32) -> Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let field = |n: usize| -> Result<u64> {
        // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
        Ok(rest
            .split_whitespace()
            .nth(n - 3)
            .context("short stat")?
            .parse()?)
    };
    let mut sched_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(path) {
            sched_ns += s
                .split_whitespace()
                .next()
                .context("empty schedstat")?
                .parse::<u64>()?;
        }
    }
    Ok(CpuTime {
        ticks: field(14)? + field(15)?,
        sched_ns,
    })
}

impl CpuTime {
    /// Seconds of CPU time, from the per-thread run times (nanosecond resolution).
    pub fn seconds(&self) -> f64 {
        self.sched_ns as f64 / 1e9
    }
}
