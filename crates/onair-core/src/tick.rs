//! How often a room delivers. Every round costs one socket write per member, and a
//! loopback write costs microseconds of CPU, so a room of 20,000 viewers ticking every
//! 50 ms would need more CPU than a small machine has. Small rooms tick at the minimum
//! interval (lowest latency); big rooms stretch their tick, batching more messages per
//! write, so their fan-out stays within a share of one core.
//!
//! How far to stretch depends on what a write costs, which varies several times over
//! between machines, kernels and loads. So the policy takes the cost as an input: the
//! shell measures the CPU time its rooms' writes take per socket write
//! ([`WriteCostMeter`], fed with running totals of CPU time and writes) and the policy
//! picks each room's tick from it ([`TickPolicy::tick`]). Nothing here reads a clock.
//!
//! For a room of `m` members and a cost `c` per write, a round takes `m·c` of CPU, so a
//! tick `T` uses `m·c / T` of a core. The policy picks the shortest tick that keeps that
//! within `cpu_share`: `T = max(min_ms, m·c / cpu_share)`, at most `max_ms`. The last
//! member of a round gets its frame about `T + m·c` after a message arrived; when that
//! exceeds `latency_target_ms` the CPU share has won over the latency target, and the
//! tick says so ([`Tick::over_target`]) for the metrics.
//!
//! A round written to every member at once makes a message wait for the next tick and
//! then for its viewer's turn in the sweep: up to `T + m·c`, about `2T` once the sweep
//! fills the tick. So a stretched tick is cut into slots ([`Tick::slots`]): the room
//! runs a round every slot and writes to one group of members per slot, each member
//! once per tick, with everything since its last write. A member then waits at most
//! a tick plus a slot or two, for the same number of writes (see `stagger`).

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
    /// Slot of a stretched tick, ms: a room whose tick is longer than `min_ms` runs a
    /// round every slot and writes to one group of its members per slot
    /// ([`Tick::slots`]). 0 = no slots: every member gets each round at once.
    pub slot_ms: u64,
}

impl Default for TickPolicy {
    fn default() -> Self {
        TickPolicy {
            min_ms: 50,
            max_ms: 500,
            writes_per_sec: None,
            cpu_share: 0.8,
            latency_target_ms: 400,
            slot_ms: DEFAULT_SLOT_MS,
        }
    }
}

/// The slot of a stretched tick by default, ms. Short enough that the slot adds
/// little to the delay (a message waits up to a slot for its round, and the group's
/// writes take up to a slot), long enough that a round costs nothing measurable.
pub const DEFAULT_SLOT_MS: u64 = 10;

/// A room's tick as the policy chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Interval between two rounds, ms.
    pub ms: u64,
    /// The expected delivery delay (`ms` plus the time to write the round) exceeds the
    /// latency target: the CPU share (or `max_ms`/`min_ms`) forced a longer tick.
    pub over_target: bool,
    /// How the tick is cut: a round every `slot_ms`, members written in `groups` turns.
    pub slots: Slots,
}

/// A tick cut into slots: the room runs a round every `slot_ms` and writes to one of
/// `groups` groups of members per slot, so each member is written once per
/// `slot_ms × groups` (the tick) with everything delivered since its last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Interval between two rounds, ms.
    pub slot_ms: u64,
    /// Groups the members are split into (1 = everyone every round).
    pub groups: u64,
}

/// Members are spread over this many buckets ([`bucket_of`]); each slot of a tick
/// writes the next run of buckets ([`Sweep`]).
pub const BUCKETS: usize = 256;

/// The bucket of a member with this `phase` (any number fixed per member, e.g. the
/// order it joined in). Fibonacci hashing: consecutive phases land far apart, so
/// buckets stay even as members come and go.
pub fn bucket_of(phase: u64) -> u8 {
    // The top 8 bits: one of BUCKETS = 256.
    (phase.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Where a room's writes are in its cycle over the buckets. A slot moves it on by
/// `1 / groups` of the cycle, so each bucket is passed once per tick; the position is
/// kept when the number of groups changes (a growing room), so a member's turn stays
/// about a tick after its last one instead of jumping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Position in thousandths of a bucket, below `BUCKETS × 1000`.
    at: u64,
}

impl Sweep {
    const CYCLE: u64 = BUCKETS as u64 * 1000;

    /// Moves on by `slots` slots of a tick cut into `groups` (more than one when the
    /// room's round ran late, or the room was idle); returns the buckets passed, in
    /// order, each at most once (all of them when `groups` ≤ `slots`).
    pub fn advance(&mut self, groups: u64, slots: u64) -> impl Iterator<Item = usize> + use<> {
        let span = Self::CYCLE.div_ceil(groups.max(1)).saturating_mul(slots).min(Self::CYCLE);
        let from = self.at;
        let to = from + span;
        self.at = to % Self::CYCLE;
        (from.div_ceil(1000)..to.div_ceil(1000)).map(|b| (b % BUCKETS as u64) as usize)
    }
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
        let slots = if self.slot_ms == 0 || ms <= self.min_ms {
            Slots { slot_ms: ms, groups: 1 }
        } else {
            let slot_ms = self.slot_ms.min(ms);
            Slots { slot_ms, groups: ms.div_ceil(slot_ms) }
        };
        // Unslotted, the last member is written a whole round after the tick; slotted,
        // a message waits up to a slot for its round and its group's writes take up to
        // another slot.
        let delay = if slots.groups > 1 { (slots.slot_ms * (slots.groups + 2)) as f64 } else { ms as f64 + round_ms };
        Tick { ms, over_target: delay > self.latency_target_ms as f64, slots }
    }

    /// The tick's interval alone, ms (see [`TickPolicy::tick`]).
    pub fn interval_ms(&self, members: usize, write_cost_ns: f64) -> u64 {
        self.tick(members, write_cost_ns).ms
    }
}

/// Smoothed CPU cost of one socket write, from periodic samples of two running totals:
/// the CPU time spent writing and the writes it made.
///
/// A period counts only when it wrote enough for the sample to mean something
/// ([`WriteCostMeter::MIN_WRITES`]); quieter periods keep the last estimate (small
/// rounds are cheap whatever the cost). The hub feeds it the CPU time of its rooms'
/// turns of writes alone, so other work on the node does not inflate it.
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
    /// Weight of a new sample in the moving average (about the last 2 periods count):
    /// samples are of many writes each, and after a burst of other work (a join storm)
    /// the tick must come back within seconds.
    pub const SMOOTHING: f64 = 0.5;
    /// Bounds of a sample, ns: a clock glitch must not make rooms tick absurdly.
    pub const BOUNDS_NS: (f64, f64) = (100.0, 200_000.0);

    /// A new meter, with no estimate yet.
    pub fn new() -> WriteCostMeter {
        WriteCostMeter::default()
    }

    /// Records the CPU time (ns) and write count totals now; returns the period's
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
        TickPolicy { slot_ms: 0, ..TickPolicy::default() }
    }

    fn tick(ms: u64, over_target: bool) -> Tick {
        Tick { ms, over_target, slots: Slots { slot_ms: ms, groups: 1 } }
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
            assert_eq!(p.tick(members, 5_000.0), tick(50, false), "{members}");
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
        assert_eq!(p.tick(10_000, 5_000.0), tick(63, false));
        // Dearer writes, longer ticks: 10,000 × 15 µs = 150 ms → 188 ms (delay 338 ms).
        assert_eq!(p.tick(10_000, 15_000.0), tick(188, false));
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
        assert_eq!(p.tick(19_900, 14_000.0), tick(349, true));
        // Past max_ms the tick stops growing (the rounds' drain wait paces it then).
        assert_eq!(p.tick(100_000, 14_000.0), tick(500, true));
        // Within the target: 19,900 × 5 µs = 99.5 ms → 125 ms, 225 ms delay.
        assert_eq!(p.tick(19_900, 5_000.0), tick(125, false));
        // A target below the minimum tick is always missed, and reported.
        let strict = TickPolicy { latency_target_ms: 20, ..p };
        assert!(strict.tick(10, 5_000.0).over_target);
    }

    #[test]
    fn stretched_ticks_are_cut_into_slots_of_groups() {
        let p = TickPolicy::default();
        // Small rooms: one group, a round every tick, as unslotted.
        assert_eq!(p.tick(100, 14_000.0).slots, Slots { slot_ms: 50, groups: 1 });
        // 10,000 × 14 µs / 0.8 = 175 ms: 18 slots of 10 ms, each member written every 180 ms.
        let t = p.tick(10_000, 14_000.0);
        assert_eq!((t.ms, t.slots), (175, Slots { slot_ms: 10, groups: 18 }));
        assert!(!t.over_target, "175 ms tick + 2 slots is within 400 ms");
        // 19,900 × 14 µs: 349 ms, 35 groups, delay ≈ 370 ms, within the target now.
        let t = p.tick(19_900, 14_000.0);
        assert_eq!((t.ms, t.slots.groups, t.over_target), (349, 35, false));
        // Every bucket comes up once per tick, in turn, however many groups: between
        // two turns of a bucket lie `groups` slots (one fewer now and then, as a slot's
        // span is rounded up), never more.
        for groups in [1, 2, 18, 35, 50, 255, 256, 1000] {
            let mut sweep = Sweep::default();
            let mut turns: Vec<Vec<u64>> = vec![Vec::new(); BUCKETS];
            for slot in 0..groups * 4 {
                for b in sweep.advance(groups, 1) {
                    turns[b].push(slot);
                }
            }
            for (b, at) in turns.iter().enumerate() {
                assert!(at.len() >= 4, "{groups}: bucket {b} passed {at:?}");
                for pair in at.windows(2) {
                    let gap = pair[1] - pair[0];
                    assert!(gap == groups || (groups > 1 && gap == groups - 1), "{groups}: bucket {b} at {at:?}");
                }
            }
        }
        // A change of groups keeps the position: no bucket is skipped or passed twice.
        let mut sweep = Sweep::default();
        let mut order: Vec<usize> = (0..10).flat_map(|_| sweep.advance(18, 1).collect::<Vec<_>>()).collect();
        order.extend((0..20).flat_map(|_| sweep.advance(19, 1).collect::<Vec<_>>()));
        let first_cycle: Vec<usize> = order.iter().copied().take(BUCKETS).collect();
        assert_eq!(first_cycle, (0..BUCKETS).collect::<Vec<_>>());
        // Late slots catch up; a long pause passes every bucket once.
        let mut sweep = Sweep::default();
        assert_eq!(sweep.advance(64, 3).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
        assert_eq!(sweep.advance(64, 1000).count(), BUCKETS);
        assert_eq!(sweep.advance(64, 1).collect::<Vec<_>>(), [12, 13, 14, 15]);
        // Phases spread members evenly over the buckets.
        let mut sizes = vec![0u32; BUCKETS];
        for phase in 0..19_900u64 {
            sizes[usize::from(bucket_of(phase))] += 1;
        }
        let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 4, "{min}..{max}");
        // slot_ms = 0 turns slots off: one group, the old delay estimate.
        let off = TickPolicy { slot_ms: 0, ..p };
        assert_eq!(off.tick(19_900, 14_000.0).slots.groups, 1);
        assert!(off.tick(19_900, 14_000.0).over_target);
        // A slot longer than the tick is the tick.
        let wide = TickPolicy { slot_ms: 1000, ..p };
        assert_eq!(wide.tick(10_000, 14_000.0).slots, Slots { slot_ms: 175, groups: 1 });
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
        // Then 1.3 s for 100,000 (13 µs): half of the way.
        assert_eq!(m.observe(2_800_000_000, 200_000), Some(13_000.0));
        assert_eq!(m.cost_ns(), 9_000.0);
        // A quiet period (other work, few writes) keeps the estimate.
        assert_eq!(m.observe(3_800_000_000, 200_500), None);
        assert_eq!(m.cost_ns(), 9_000.0);
        // …and is not mixed into the next one.
        assert_eq!(m.observe(4_500_000_000, 300_500), Some(7_000.0));
        assert_eq!(m.cost_ns(), 8_000.0);
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
