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
        self.policy.tick(members, f64::from_bits(self.cost_ns.load(Ordering::Relaxed)))
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
        let writes = self.pacing.writes.load(Ordering::Relaxed);
        let cost = {
            let mut meter = self.pacing.meter.lock();
            meter.observe(cpu_ns, writes);
            meter.cost_ns()
        };
        self.pacing.cost_ns.store(cost.to_bits(), Ordering::Relaxed);
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
        f64::from_bits(self.pacing.cost_ns.load(Ordering::Relaxed))
    }

    /// The tick a room of `members` connections gets now.
    pub fn room_tick(&self, members: usize) -> Tick {
        self.pacing.tick(members)
    }
}
