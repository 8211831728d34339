//! Delivery-round pacing: the shell side of [`onair_core::tick`]. The faces count their
//! socket writes here ([`Hub::count_socket_write`]), the server samples the process's
//! CPU clock about once a second ([`Hub::observe_cpu`]), and every room's ticker asks
//! for its tick from the smoothed cost per write.

use std::sync::atomic::{AtomicU64, Ordering};

use onair_core::tick::{Tick, TickPolicy, WriteCostMeter};
use parking_lot::Mutex;

use crate::Hub;

/// The tick policy with its measured input.
pub(crate) struct Pacing {
    pub(crate) policy: TickPolicy,
    /// Socket writes since start (all connections, all faces).
    writes: AtomicU64,
    /// The smoothed cost per write, ns, as `f64` bits (read by every round).
    cost_ns: AtomicU64,
    meter: Mutex<WriteCostMeter>,
}

impl Pacing {
    pub(crate) fn new(policy: TickPolicy) -> Pacing {
        let meter = WriteCostMeter::new();
        let cost_ns = AtomicU64::new(meter.cost_ns().to_bits());
        Pacing { policy, writes: AtomicU64::new(0), cost_ns, meter: Mutex::new(meter) }
    }

    /// The tick of a room of `members` connections at the current cost.
    pub(crate) fn tick(&self, members: usize) -> Tick {
        self.policy.tick(members, self.cost_ns())
    }

    /// The smoothed cost per write, ns.
    fn cost_ns(&self) -> f64 {
        f64::from_bits(self.cost_ns.load(Ordering::Relaxed))
    }

    /// Takes a sample of the process CPU time (ns since start) against the writes
    /// counted so far; returns the writes and the new smoothed cost.
    fn observe(&self, cpu_ns: u64) -> (u64, f64) {
        let writes = self.writes.load(Ordering::Relaxed);
        let cost = {
            let mut meter = self.meter.lock();
            meter.observe(cpu_ns, writes);
            meter.cost_ns()
        };
        self.cost_ns.store(cost.to_bits(), Ordering::Relaxed);
        (writes, cost)
    }
}

impl Hub {
    /// Counts one socket write of a connection (a batch of frames written at once
    /// counts once: that is the unit the pacing's cost is measured in).
    pub fn count_socket_write(&self) {
        self.pacing.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Feeds the pacing a sample of this process's CPU time used since start (ns, all
    /// threads), taken about once a second by the server; updates the cost per write
    /// and the pacing gauges of `/metrics`.
    pub fn observe_cpu(&self, cpu_ns: u64) {
        let (writes, cost) = self.pacing.observe(cpu_ns);
        metrics::counter!("onair_fanout_socket_writes_total").absolute(writes);
        metrics::gauge!("onair_fanout_write_cost_ns").set(cost);
        let sizes: Vec<usize> = self.rooms.read().values().map(|r| r.members.lock().len()).collect();
        let (mut longest, mut stretched, mut over) = (self.pacing.policy.min_ms, 0u64, 0u64);
        for members in sizes {
            let tick = self.pacing.tick(members);
            longest = longest.max(tick.ms);
            stretched += u64::from(tick.ms > self.pacing.policy.min_ms);
            over += u64::from(tick.over_target);
        }
        metrics::gauge!("onair_fanout_tick_ms").set(longest as f64);
        metrics::gauge!("onair_fanout_stretched_rooms").set(stretched as f64);
        metrics::gauge!("onair_fanout_over_target_rooms").set(over as f64);
    }

    /// The smoothed CPU cost of one socket write, ns (the policy's default until
    /// measured).
    pub fn write_cost_ns(&self) -> f64 {
        self.pacing.cost_ns()
    }

    /// The tick a room of `members` connections gets now.
    pub fn room_tick(&self, members: usize) -> Tick {
        self.pacing.tick(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_cost_moves_big_rooms_ticks() {
        let pacing = Pacing::new(TickPolicy::default());
        // Before any measurement: the default 5 µs per write.
        assert_eq!(pacing.tick(10_000).ms, 63);
        assert_eq!(pacing.observe(1_000_000_000), (0, 5_000.0));
        // 20,000 writes in 0.2 s of CPU: 10 µs each → 10,000 members tick every 125 ms.
        for _ in 0..20_000 {
            pacing.writes.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(pacing.observe(1_200_000_000), (20_000, 10_000.0));
        assert_eq!(pacing.tick(10_000).ms, 125);
        assert_eq!(pacing.tick(100).ms, 50, "small rooms keep the minimum");
        // A fixed budget ignores the measurement.
        let fixed = Pacing::new(TickPolicy { writes_per_sec: Some(100_000), ..TickPolicy::default() });
        fixed.cost_ns.store(50_000f64.to_bits(), Ordering::Relaxed);
        assert_eq!(fixed.tick(10_000).ms, 100);
    }
}
