//! Feeds the delivery rounds' pacing (`onair_core::tick`) with this process's CPU
//! time, once a second: the hub divides it by the socket writes it counted in between
//! and smooths the result into the cost per write that picks big rooms' ticks.

use std::sync::Arc;
use std::time::Duration;

use onair_hub::Hub;
use tokio_util::sync::CancellationToken;

/// How often the CPU clock is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI
/// this runs on; reading it needs `sysconf`, i.e. `unsafe`).
const USER_HZ: u64 = 100;

/// Samples the process CPU time into the hub until shutdown. Does nothing where
/// `/proc/self/stat` cannot be read (the policy then keeps its default cost).
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    if process_cpu_ns().is_none() {
        tracing::info!("no /proc/self/stat: delivery rounds are paced with the default cost per socket write");
        return;
    }
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if let Some(cpu_ns) = process_cpu_ns() {
            hub.observe_cpu(cpu_ns);
        }
    }
}

/// User + system CPU time of this process (all threads) since start, ns.
fn process_cpu_ns() -> Option<u64> {
    parse_stat_cpu_ns(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/PID/stat` line, ns. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ns(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11); // state … cmajflt
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime).saturating_mul(1_000_000_000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_fields_after_the_command_name() {
        let line = "4242 (on air) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ns(line), Some(3_800_000_000));
        assert_eq!(parse_stat_cpu_ns("4242 (onair) S 1 2 3"), None);
        assert_eq!(parse_stat_cpu_ns("garbage"), None);
        assert!(process_cpu_ns().is_some() || !cfg!(target_os = "linux"));
    }
}
