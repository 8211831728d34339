//! Likes: free, high volume, and exact.
//!
//! Clients already batch taps (the SDK sends one `like` op per ~300 ms); the server
//! caps each liker's rate, adds what it accepts to the room's exact total, and
//! publishes at most one `like` event per room per window carrying the delta since
//! the last event and the total. A storm of likes thus costs one event per window
//! whatever its size, and the total never drifts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Like tuning (the `[likes]` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LikeConfig {
    /// Most likes one liker may add per second (excess is not counted).
    pub per_user_per_sec: u64,
    /// At most one `like` event per this many milliseconds (≤ 1000).
    pub window_ms: u64,
}

impl Default for LikeConfig {
    fn default() -> Self {
        LikeConfig { per_user_per_sec: 20, window_ms: 500 }
    }
}

/// What one `like` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LikeFlush {
    /// Likes since the previous event.
    pub delta: u64,
    /// The room's total after them.
    pub total: u64,
}

/// One room's likes.
#[derive(Debug)]
pub struct LikeCounter {
    config: LikeConfig,
    total: u64,
    pending: u64,
    last_flush: Millis,
    /// Likes each liker used in `budget_second`.
    budgets: HashMap<String, u64>,
    budget_second: u64,
}

impl LikeCounter {
    /// A counter resuming from a stored total.
    pub fn new(config: LikeConfig, total: u64) -> Self {
        LikeCounter { config, total, pending: 0, last_flush: 0, budgets: HashMap::new(), budget_second: 0 }
    }

    /// The exact total, pending likes included.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Adds up to `count` likes from `liker` (an account, or a connection key for
    /// anonymous viewers); returns how many were accepted under the rate cap.
    pub fn add(&mut self, liker: &str, count: u64, now: Millis) -> u64 {
        let second = now / 1000;
        if second != self.budget_second {
            // A new second: every budget is fresh, so forget them all instead of
            // keeping one entry per liker forever.
            self.budgets.clear();
            self.budget_second = second;
        }
        let used = self.budgets.get(liker).copied().unwrap_or(0);
        let accepted = count.min(self.config.per_user_per_sec.saturating_sub(used));
        if accepted > 0 {
            match self.budgets.get_mut(liker) {
                Some(used) => *used += accepted,
                None => {
                    self.budgets.insert(liker.to_owned(), accepted);
                }
            }
        }
        self.pending += accepted;
        self.total = self.total.saturating_add(accepted);
        accepted
    }

    /// The event to publish now, if likes are pending and the window has passed.
    pub fn flush(&mut self, now: Millis) -> Option<LikeFlush> {
        if self.pending == 0 || now.saturating_sub(self.last_flush) < self.config.window_ms {
            return None;
        }
        let delta = std::mem::take(&mut self.pending);
        self.last_flush = now;
        Some(LikeFlush { delta, total: self.total })
    }

    /// When [`flush`](Self::flush) will next have something (None when nothing is pending).
    pub fn next_deadline(&self) -> Option<Millis> {
        (self.pending > 0).then_some(self.last_flush + self.config.window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_liker_is_capped_per_second() {
        let mut c = LikeCounter::new(LikeConfig { per_user_per_sec: 10, window_ms: 500 }, 0);
        assert_eq!(c.add("a", 7, 0), 7);
        assert_eq!(c.add("a", 7, 100), 3);
        assert_eq!(c.add("a", 7, 900), 0);
        assert_eq!(c.add("b", 7, 900), 7);
        assert_eq!(c.add("a", 7, 1_000), 7, "a new second, a new budget");
        assert_eq!(c.total(), 24);
    }

    #[test]
    fn events_carry_the_delta_and_the_exact_total() {
        let mut c = LikeCounter::new(LikeConfig { per_user_per_sec: u64::MAX, window_ms: 500 }, 1_000);
        c.add("a", 5, 600);
        assert_eq!(c.flush(600), Some(LikeFlush { delta: 5, total: 1_005 }));
        c.add("b", 3, 700);
        assert_eq!(c.flush(900), None, "one event per window");
        assert_eq!(c.next_deadline(), Some(1_100));
        c.add("c", 2, 1_000);
        assert_eq!(c.flush(1_100), Some(LikeFlush { delta: 5, total: 1_010 }));
        assert_eq!(c.flush(5_000), None, "nothing pending, nothing sent");
    }

    #[test]
    fn a_storm_keeps_an_exact_total() {
        // 100k likes per second from 10k likers for 3 s, flushed every 10 ms.
        let mut c = LikeCounter::new(LikeConfig { per_user_per_sec: 100, window_ms: 1_000 }, 0);
        let mut published = 0;
        let mut events = 0;
        for ms in 0..3_000u64 {
            for i in 0..100u64 {
                c.add(&format!("u{}", (ms * 100 + i) % 10_000), 1, ms);
            }
            if let Some(f) = c.flush(ms) {
                published += f.delta;
                events += 1;
                assert_eq!(f.total, published);
            }
        }
        assert_eq!(c.total(), 300_000);
        assert!(events <= 4, "{events} events");
    }
}
