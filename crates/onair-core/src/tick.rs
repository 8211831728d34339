//! How often a room delivers. Every tick costs one socket write per member, and a
//! loopback write costs microseconds, so a room of 20,000 viewers ticking every
//! 50 ms would need more CPU than a small machine has. Small rooms tick at the
//! minimum interval (lowest latency); big rooms stretch their tick so the room's
//! socket writes per second stay within a budget, batching more messages per write.

/// Tick scheduling of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickPolicy {
    /// Shortest tick, ms (the default 50).
    pub min_ms: u64,
    /// Longest tick, ms, however big the room.
    pub max_ms: u64,
    /// Socket writes per second one room may cause (members × ticks/s).
    pub writes_per_sec: u64,
}

impl TickPolicy {
    /// The tick for a room with `members` connections.
    pub fn interval_ms(&self, members: usize) -> u64 {
        let budget = self.writes_per_sec.max(1);
        let needed = (members as u64).saturating_mul(1000).div_ceil(budget);
        needed.clamp(self.min_ms, self.max_ms.max(self.min_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_rooms_tick_fast_big_rooms_stretch_within_bounds() {
        let p = TickPolicy { min_ms: 50, max_ms: 200, writes_per_sec: 100_000 };
        assert_eq!(p.interval_ms(0), 50);
        assert_eq!(p.interval_ms(5_000), 50);
        assert_eq!(p.interval_ms(10_000), 100);
        assert_eq!(p.interval_ms(19_000), 190);
        assert_eq!(p.interval_ms(1_000_000), 200);
        let fixed = TickPolicy { min_ms: 50, max_ms: 50, writes_per_sec: 1 };
        assert_eq!(fixed.interval_ms(1_000_000), 50);
    }
}
