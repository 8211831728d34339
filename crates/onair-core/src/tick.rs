//! How often a room delivers. Every round costs one socket write per member, and a
//! loopback write costs microseconds of CPU, so a room of 20,000 viewers ticking every
//! 50 ms would need more CPU than a small machine has. Small rooms tick at the minimum
//! interval (lowest latency); big rooms stretch their tick, batching more messages per
//! write, so their fan-out stays within a share of one core.
//!
//! How far to stretch depends on what a write costs, which varies several times over
//! between machines, kernels and loads. So the policy takes the cost as an input: the
//! shell measures the process's CPU time per socket write ([`WriteCostMeter`], fed with
//! samples of the process CPU clock and a write counter) and the policy picks each
//! room's tick from it ([`TickPolicy::tick`]). Nothing here reads a clock.
//!
//! For a room of `m` members and a cost `c` per write, a round takes `m·c` of CPU, so a
//! tick `T` uses `m·c / T` of a core. The policy picks the shortest tick that keeps that
//! within `cpu_share`: `T = max(min_ms, m·c / cpu_share)`, at most `max_ms`. The last
//! member of a round gets its frame about `T + m·c` after a message arrived; when that
//! exceeds `latency_target_ms` the CPU share has won over the latency target, and the
//! tick says so ([`Tick::over_target`]) for the metrics.

/// The cost per write assumed until one is measured: 5 µs of CPU, 200,000 writes per
/// second of one core (the fixed budget this policy replaced).
pub const DEFAULT_WRITE_COST_NS: f64 = 5_000.0;

/// Tick scheduling of a room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickPolicy {
    /// Shortest tick, ms (the default 50).
    pub min_ms: u64,
    /// Longest tick, ms, however big the room.
    pub max_ms: u64,
    /// A fixed budget instead of the measured cost: socket writes per second one room
    /// may cause (members × ticks/s). `None` = adaptive.
    pub writes_per_sec: Option<u64>,
    /// Share of one core a room's fan-out may use, given the measured write cost
    /// (adaptive mode; 0.8 by default).
    pub cpu_share: f64,
    /// Delivery delay (tick plus the time to write the round) the tick is kept under,
    /// unless the CPU share needs a longer one, ms.
    pub latency_target_ms: u64,
}

impl Default for TickPolicy {
    fn default() -> Self {
        TickPolicy { min_ms: 50, max_ms: 500, writes_per_sec: None, cpu_share: 0.8, latency_target_ms: 400 }
    }
}

/// A room's tick as the policy chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Interval between two rounds, ms.
    pub ms: u64,
    /// The expected delivery delay (`ms` plus the time to write the round) exceeds the
    /// latency target: the CPU share (or `max_ms`/`min_ms`) forced a longer tick.
    pub over_target: bool,
}

impl TickPolicy {
    /// The tick for a room with `members` connections when a socket write costs
    /// `write_cost_ns` of CPU (see [`WriteCostMeter::cost_ns`]).
    pub fn tick(&self, members: usize, write_cost_ns: f64) -> Tick {
        let max = self.max_ms.max(self.min_ms);
        let cost_ns =
            if write_cost_ns.is_finite() && write_cost_ns > 0.0 { write_cost_ns } else { DEFAULT_WRITE_COST_NS };
        // CPU time one round takes, ms.
        let round_ms = members as f64 * cost_ns / 1e6;
        let ms = match self.writes_per_sec {
            Some(budget) => (members as u64).saturating_mul(1000).div_ceil(budget.max(1)),
            None => {
                let share = if self.cpu_share.is_finite() && self.cpu_share > 0.0 { self.cpu_share } else { 1.0 };
                // f64 → u64 saturates; the clamp below bounds it anyway.
                (round_ms / share).ceil() as u64
            }
        }
        .clamp(self.min_ms, max);
        Tick { ms, over_target: ms as f64 + round_ms > self.latency_target_ms as f64 }
    }

    /// The tick's interval alone, ms (see [`TickPolicy::tick`]).
    pub fn interval_ms(&self, members: usize, write_cost_ns: f64) -> u64 {
        self.tick(members, write_cost_ns).ms
    }
}

/// Smoothed CPU cost of one socket write, from periodic samples of the process's CPU
/// time and of its count of socket writes (both totals since start).
///
/// The process's CPU time includes everything else it does, so a sample is taken only
/// when the period wrote enough for the fan-out to dominate ([`WriteCostMeter::MIN_WRITES`]);
/// quieter periods keep the last estimate (small rounds are cheap whatever the cost).
/// The other work still inflates the estimate: with `o` of a core spent elsewhere, a
/// room paced at `cpu_share` reads `c / (1 − o / cpu_share)` for a true cost `c`
/// (fewer writes carry the same other work) — 7 % at 5 % of other work, and bounded
/// as long as the other work stays under the share; past it, `max_ms` and
/// [`WriteCostMeter::BOUNDS_NS`] bound the ticks.
#[derive(Debug, Clone, Default)]
pub struct WriteCostMeter {
    /// The previous sample: CPU ns and writes.
    last: Option<(u64, u64)>,
    /// The smoothed cost, ns per write, once measured.
    cost_ns: Option<f64>,
}

impl WriteCostMeter {
    /// Fewest writes in a period for it to count.
    pub const MIN_WRITES: u64 = 10_000;
    /// Weight of a new sample in the moving average (about the last 4 periods count).
    pub const SMOOTHING: f64 = 0.25;
    /// Bounds of a sample, ns: a clock glitch must not make rooms tick absurdly.
    pub const BOUNDS_NS: (f64, f64) = (100.0, 200_000.0);

    /// A new meter, with no estimate yet.
    pub fn new() -> WriteCostMeter {
        WriteCostMeter::default()
    }

    /// Records the process's CPU time (ns) and write count now; returns the period's
    /// cost per write when the period counted.
    pub fn observe(&mut self, cpu_ns: u64, writes: u64) -> Option<f64> {
        let last = self.last.replace((cpu_ns, writes));
        let (cpu0, writes0) = last?;
        let dw = writes.checked_sub(writes0)?;
        let dc = cpu_ns.checked_sub(cpu0)?;
        if dw < Self::MIN_WRITES {
            return None;
        }
        let sample = (dc as f64 / dw as f64).clamp(Self::BOUNDS_NS.0, Self::BOUNDS_NS.1);
        let smoothed = match self.cost_ns {
            Some(prev) => prev + Self::SMOOTHING * (sample - prev),
            None => sample,
        };
        self.cost_ns = Some(smoothed);
        Some(sample)
    }

    /// The smoothed cost per write, ns ([`DEFAULT_WRITE_COST_NS`] until measured).
    pub fn cost_ns(&self) -> f64 {
        self.cost_ns.unwrap_or(DEFAULT_WRITE_COST_NS)
    }

    /// Whether a cost has been measured yet.
    pub fn measured(&self) -> bool {
        self.cost_ns.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> TickPolicy {
        TickPolicy { min_ms: 50, max_ms: 500, writes_per_sec: None, cpu_share: 0.8, latency_target_ms: 400 }
    }

    #[test]
    fn fixed_budget_stretches_big_rooms_within_bounds() {
        let p = TickPolicy { min_ms: 50, max_ms: 200, writes_per_sec: Some(100_000), ..adaptive() };
        // The measured cost does not matter with a fixed budget.
        for cost in [1.0, 5_000.0, 50_000.0] {
            assert_eq!(p.interval_ms(0, cost), 50);
            assert_eq!(p.interval_ms(5_000, cost), 50);
            assert_eq!(p.interval_ms(10_000, cost), 100);
            assert_eq!(p.interval_ms(19_000, cost), 190);
            assert_eq!(p.interval_ms(1_000_000, cost), 200);
        }
        let fixed = TickPolicy { min_ms: 50, max_ms: 50, writes_per_sec: Some(1), ..adaptive() };
        assert_eq!(fixed.interval_ms(1_000_000, 5_000.0), 50);
        let zero = TickPolicy { writes_per_sec: Some(0), ..adaptive() };
        assert_eq!(zero.interval_ms(10, 5_000.0), 500);
    }

    #[test]
    fn small_rooms_keep_the_minimum_tick() {
        let p = adaptive();
        for members in [0, 1, 100, 1_000] {
            assert_eq!(p.tick(members, 5_000.0), Tick { ms: 50, over_target: false }, "{members}");
        }
        // 8,000 × 5 µs = 40 ms of CPU per round: 50 ms is within 80 % of a core.
        assert_eq!(p.interval_ms(8_000, 5_000.0), 50);
        // Cheap writes keep even a big room at the minimum.
        assert_eq!(p.interval_ms(19_900, 1_000.0), 50);
    }

    #[test]
    fn big_rooms_stretch_to_the_cpu_share_of_the_measured_cost() {
        let p = adaptive();
        // 10,000 × 5 µs = 50 ms per round → 62.5 ms keeps it at 80 %.
        assert_eq!(p.tick(10_000, 5_000.0), Tick { ms: 63, over_target: false });
        // Dearer writes, longer ticks: 10,000 × 15 µs = 150 ms → 188 ms (delay 338 ms).
        assert_eq!(p.tick(10_000, 15_000.0), Tick { ms: 188, over_target: false });
        // A full share is allowed to use the whole core.
        let full = TickPolicy { cpu_share: 1.0, ..p };
        assert_eq!(full.interval_ms(10_000, 15_000.0), 150);
        // The CPU use the tick allows never exceeds the share (below max_ms).
        for members in (1_000..40_000).step_by(997) {
            for cost in [500.0, 2_000.0, 7_000.0, 12_000.0] {
                let t = p.tick(members, cost);
                let round_ms = members as f64 * cost / 1e6;
                if t.ms < p.max_ms {
                    assert!(round_ms / t.ms as f64 <= p.cpu_share + 1e-9, "{members} {cost} {t:?}");
                }
                assert!((p.min_ms..=p.max_ms).contains(&t.ms));
            }
        }
    }

    #[test]
    fn the_cpu_share_wins_over_the_latency_target_and_says_so() {
        let p = adaptive();
        // 19,900 × 14 µs = 279 ms per round → 349 ms tick, 628 ms expected delay.
        assert_eq!(p.tick(19_900, 14_000.0), Tick { ms: 349, over_target: true });
        // Past max_ms the tick stops growing (the rounds' drain wait paces it then).
        assert_eq!(p.tick(100_000, 14_000.0), Tick { ms: 500, over_target: true });
        // Within the target: 19,900 × 5 µs = 99.5 ms → 125 ms, 225 ms delay.
        assert_eq!(p.tick(19_900, 5_000.0), Tick { ms: 125, over_target: false });
        // A target below the minimum tick is always missed, and reported.
        let strict = TickPolicy { latency_target_ms: 20, ..p };
        assert!(strict.tick(10, 5_000.0).over_target);
    }

    #[test]
    fn bad_inputs_fall_back_to_sane_values() {
        let p = adaptive();
        assert_eq!(p.interval_ms(10_000, f64::NAN), p.interval_ms(10_000, DEFAULT_WRITE_COST_NS));
        assert_eq!(p.interval_ms(10_000, -1.0), p.interval_ms(10_000, DEFAULT_WRITE_COST_NS));
        assert_eq!(p.interval_ms(usize::MAX, 1e300), 500);
        let odd = TickPolicy { cpu_share: 0.0, max_ms: 10, ..p };
        assert_eq!(odd.interval_ms(10_000, 5_000.0), 50, "max below min: min wins");
        assert_eq!(TickPolicy { cpu_share: f64::NAN, ..p }.interval_ms(10_000, 5_000.0), 50);
    }

    #[test]
    fn meter_smooths_periods_that_wrote_enough() {
        let mut m = WriteCostMeter::new();
        assert!(!m.measured());
        assert_eq!(m.cost_ns(), DEFAULT_WRITE_COST_NS);
        assert_eq!(m.observe(1_000_000_000, 0), None, "the first sample only sets the origin");
        // 0.5 s of CPU for 100,000 writes: 5 µs.
        assert_eq!(m.observe(1_500_000_000, 100_000), Some(5_000.0));
        assert_eq!(m.cost_ns(), 5_000.0);
        // Then 1.3 s for 100,000 (13 µs): a quarter of the way.
        assert_eq!(m.observe(2_800_000_000, 200_000), Some(13_000.0));
        assert_eq!(m.cost_ns(), 7_000.0);
        // A quiet period (other work, few writes) keeps the estimate.
        assert_eq!(m.observe(3_800_000_000, 200_500), None);
        assert_eq!(m.cost_ns(), 7_000.0);
        // …and is not mixed into the next one.
        assert_eq!(m.observe(4_500_000_000, 300_500), Some(7_000.0));
        assert_eq!(m.cost_ns(), 7_000.0);
        assert!(m.measured());
    }

    #[test]
    fn meter_survives_odd_clocks() {
        let mut m = WriteCostMeter::new();
        m.observe(1_000, 0);
        // A counter or clock going backwards is ignored (and re-bases).
        assert_eq!(m.observe(500, 50_000), None);
        assert_eq!(m.observe(600, 10), None);
        // No CPU for many writes (a coarse clock): clamped, not zero.
        assert_eq!(m.observe(600, 100_010), Some(WriteCostMeter::BOUNDS_NS.0));
        let mut m = WriteCostMeter::new();
        m.observe(0, 0);
        assert_eq!(m.observe(u64::MAX, 10_000), Some(WriteCostMeter::BOUNDS_NS.1));
    }
}
