//! Delivery-round pacing: the shell side of [`onair_core::tick`]. Every room's turn
//! of writes measures itself — its thread's CPU time over the members it wrote to their
//! sockets — and adds to the totals here; the server has them folded into the smoothed
//! cost per write about once a second ([`Hub::observe_fanout`]), and every room's
//! ticker asks for its tick from that cost. Measuring the turns alone (rather than the
//! process's CPU time over all its writes) keeps joins, API calls and media out of the
//! cost, so a burst of other work does not stretch the rooms' ticks for seconds after.
//! The faces count the writes their connections make ([`Hub::count_socket_write`]),
//! the outboxes their direct writes, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use onair_core::tick::{Tick, TickPolicy, WriteCostMeter};
use parking_lot::Mutex;

use crate::Hub;

/// The tick policy with its measured input.
pub(crate) struct Pacing {
    pub(crate) policy: TickPolicy,
    /// Socket writes since start (all connections, all faces), for `/metrics`.
    writes: AtomicU64,
    /// Turns' CPU time and their direct writes since start: the meter's input.
    fanout_cpu_ns: AtomicU64,
    fanout_writes: AtomicU64,
    /// The smoothed cost per write, ns, as `f64` bits (read by every round).
    cost_ns: AtomicU64,
    meter: Mutex<WriteCostMeter>,
}

impl Pacing {
    pub(crate) fn new(policy: TickPolicy) -> Pacing {
        let meter = WriteCostMeter::new();
        let cost_ns = AtomicU64::new(meter.cost_ns().to_bits());
        Pacing {
            policy,
            writes: AtomicU64::new(0),
            fanout_cpu_ns: AtomicU64::new(0),
            fanout_writes: AtomicU64::new(0),
            cost_ns,
            meter: Mutex::new(meter),
        }
    }

    /// The tick of a room of `members` connections at the current cost.
    pub(crate) fn tick(&self, members: usize) -> Tick {
        self.policy.tick(members, self.cost_ns())
    }

    /// The smoothed cost per write, ns.
    fn cost_ns(&self) -> f64 {
        f64::from_bits(self.cost_ns.load(Ordering::Relaxed))
    }

    /// Adds one turn: its thread's CPU time and the members it wrote directly.
    pub(crate) fn record_fanout(&self, cpu_ns: u64, writes: u64) {
        if writes > 0 {
            self.fanout_cpu_ns.fetch_add(cpu_ns, Ordering::Relaxed);
            self.fanout_writes.fetch_add(writes, Ordering::Relaxed);
        }
    }

    /// Folds the turns since the last call into the smoothed cost; returns the new cost.
    fn observe(&self) -> f64 {
        let (cpu, writes) = (self.fanout_cpu_ns.load(Ordering::Relaxed), self.fanout_writes.load(Ordering::Relaxed));
        let cost = {
            let mut meter = self.meter.lock();
            meter.observe(cpu, writes);
            meter.cost_ns()
        };
        self.cost_ns.store(cost.to_bits(), Ordering::Relaxed);
        cost
    }
}

impl Hub {
    /// Counts one socket write of a connection (a batch of frames written at once
    /// counts once: that is the unit the pacing's cost is measured in).
    pub fn count_socket_write(&self) {
        self.pacing.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Folds the rooms' turns since the last call into the cost per write (called
    /// about once a second by the server) and updates the pacing gauges of `/metrics`.
    pub fn observe_fanout(&self) {
        let cost = self.pacing.observe();
        let writes = self.pacing.writes.load(Ordering::Relaxed) + crate::outbox::direct_writes_total();
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
        assert_eq!(pacing.observe(), 5_000.0);
        // Turns of 20,000 direct writes in 0.2 s of CPU: 10 µs each → 10,000 members
        // tick every 125 ms.
        for _ in 0..100 {
            pacing.record_fanout(2_000_000, 200);
        }
        pacing.record_fanout(123, 0); // a turn that wrote nothing directly: ignored
        assert_eq!(pacing.observe(), 10_000.0);
        assert_eq!(pacing.tick(10_000).ms, 125);
        assert_eq!(pacing.tick(100).ms, 50, "small rooms keep the minimum");
        // A fixed budget ignores the measurement.
        let fixed = Pacing::new(TickPolicy { writes_per_sec: Some(100_000), ..TickPolicy::default() });
        fixed.cost_ns.store(50_000f64.to_bits(), Ordering::Relaxed);
        assert_eq!(fixed.tick(10_000).ms, 100);
    }
}
