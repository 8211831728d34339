//! Reading a process's memory and CPU time from `/proc` (Linux only).

use std::time::Instant;

/// Clock ticks per second of `/proc/PID/stat` times. `USER_HZ` is 100 on
/// every Linux ABI we run on; reading it needs `sysconf`, i.e. `unsafe`.
const CLK_TCK: f64 = 100.0;

/// Resident set size in bytes (`VmRSS`), if the process exists.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds consumed so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// User and system (kernel) CPU seconds consumed so far.
pub fn cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime is field 14 overall → index 11 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / CLK_TCK, stime / CLK_TCK))
}

/// Every thread of `pid`: (tid, name, user + system CPU seconds). Empty when the
/// process is gone.
pub fn busiest_thread_secs(pid: u32) -> Vec<(u32, String, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let secs = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        out.push((tid, name, (secs(11) + secs(12)) / CLK_TCK));
    }
    out
}

/// Machine-wide jiffies from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    busy: u64,
    softirq: u64,
    total: u64,
}

pub fn machine_jiffies() -> Option<Machine> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some(Machine { busy: total - idle, softirq: *v.get(6).unwrap_or(&0), total })
}

/// The machine's cores as `/proc/stat` counts them (its `cpuN` lines). Not
/// `available_parallelism`: under `taskset` that is the tool's own affinity, while the
/// busy figures of `/proc/stat` cover every core.
pub fn machine_cores() -> usize {
    let counted = std::fs::read_to_string("/proc/stat").ok().map(|stat| {
        stat.lines()
            .filter(|l| l.strip_prefix("cpu").and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_digit()))
            .count()
    });
    counted.filter(|n| *n > 0).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// (busy, softirq) share of all cores between two readings, in percent of
/// one core (2 cores fully busy = 200 %).
pub fn machine_busy_pct(a: Option<Machine>, b: Option<Machine>) -> Option<(f64, f64)> {
    let (a, b) = (a?, b?);
    let cores = machine_cores() as f64;
    let dt = b.total.checked_sub(a.total).filter(|d| *d > 0)? as f64;
    let pct = |x: u64, y: u64| y.saturating_sub(x) as f64 / dt * 100.0 * cores;
    Some((pct(a.busy, b.busy), pct(a.softirq, b.softirq)))
}

/// CPU time of a set of processes at one instant.
#[derive(Debug, Clone)]
pub struct CpuMark {
    pub at: Instant,
    pub secs: Vec<Option<f64>>,
}

impl CpuMark {
    pub fn take(pids: &[u32]) -> Self {
        Self { at: Instant::now(), secs: pids.iter().map(|p| cpu_secs(*p)).collect() }
    }

    /// CPU % per process between two marks (100 % = one core).
    pub fn percent_since(&self, earlier: &CpuMark) -> Vec<Option<f64>> {
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        self.secs.iter().zip(&earlier.secs).map(|(a, b)| Some((a.as_ref()? - b.as_ref()?) / wall * 100.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap_or(0) > 0);
        assert!(cpu_secs(me).is_some());
        assert!(rss_bytes(u32::MAX).is_none());
        assert!(machine_jiffies().is_some());
    }
}
