//! User levels from activity.
//!
//! A score is a weighted sum of what a user did (watch time, delivered messages,
//! likes, coins spent on gifts, membership); levels are thresholds on the score
//! that grow quadratically, so early levels come quickly and high ones mean
//! something. Counters only ever grow, so the server recomputes a level from the
//! running totals after each change without replaying anything.

use serde::{Deserialize, Serialize};

/// How much each activity is worth (the `[levels]` config section).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LevelWeights {
    /// Points per minute online in a room.
    pub online_minute: f64,
    /// Points per delivered message.
    pub message: f64,
    /// Points per like.
    pub like: f64,
    /// Points per coin spent on gifts.
    pub gift_coin: f64,
    /// Points for being a member (a paid or verified tier).
    pub member: f64,
    /// Score needed for level 2; level `n` needs `step × (n − 1)²`.
    pub step: f64,
    /// Highest level.
    pub max_level: u32,
}

impl Default for LevelWeights {
    fn default() -> Self {
        LevelWeights {
            online_minute: 1.0,
            message: 2.0,
            like: 0.1,
            gift_coin: 1.0,
            member: 500.0,
            step: 10.0,
            max_level: 100,
        }
    }
}

/// A user's running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Milliseconds spent in rooms (all connections, closed sessions only).
    pub online_ms: u64,
    /// Delivered messages.
    pub messages: u64,
    /// Accepted likes.
    pub likes: u64,
    /// Coins spent on gifts.
    pub gift_value: u64,
    /// Member flag.
    pub member: bool,
}

impl Activity {
    /// Adds another tally's counters (the member flag is not a counter: unchanged).
    pub fn add_counts(&mut self, other: &Activity) {
        self.online_ms += other.online_ms;
        self.messages += other.messages;
        self.likes += other.likes;
        self.gift_value += other.gift_value;
    }

    /// The counters gained since `before` (member flag false).
    pub fn counts_since(&self, before: &Activity) -> Activity {
        Activity {
            online_ms: self.online_ms.saturating_sub(before.online_ms),
            messages: self.messages.saturating_sub(before.messages),
            likes: self.likes.saturating_sub(before.likes),
            gift_value: self.gift_value.saturating_sub(before.gift_value),
            member: false,
        }
    }

    /// The weighted score.
    pub fn score(&self, w: &LevelWeights) -> f64 {
        (self.online_ms as f64 / 60_000.0) * w.online_minute
            + self.messages as f64 * w.message
            + self.likes as f64 * w.like
            + self.gift_value as f64 * w.gift_coin
            + if self.member { w.member } else { 0.0 }
    }
}

/// The score needed to reach `level`.
pub fn threshold(level: u32, w: &LevelWeights) -> f64 {
    let n = f64::from(level.saturating_sub(1));
    w.step * n * n
}

/// The level of a score (1 for nothing done, at most `max_level`).
pub fn level_for(score: f64, w: &LevelWeights) -> u32 {
    if w.step <= 0.0 || !score.is_finite() || score <= 0.0 {
        return 1;
    }
    let n = (score / w.step).sqrt().floor();
    let level = if n >= f64::from(w.max_level) { w.max_level } else { n as u32 + 1 };
    // Guard the float rounding at exact thresholds in both directions.
    let mut level = level.clamp(1, w.max_level.max(1));
    while level > 1 && threshold(level, w) > score {
        level -= 1;
    }
    while level < w.max_level && threshold(level + 1, w) <= score {
        level += 1;
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_thresholds() {
        let w = LevelWeights::default();
        assert_eq!(level_for(0.0, &w), 1);
        assert_eq!(level_for(9.99, &w), 1);
        assert_eq!(level_for(10.0, &w), 2);
        assert_eq!(level_for(39.9, &w), 2);
        assert_eq!(level_for(40.0, &w), 3);
        assert_eq!(level_for(1e12, &w), 100);
        assert_eq!(level_for(f64::NAN, &w), 1);
        for level in 1..=100 {
            assert_eq!(level_for(threshold(level, &w), &w), level);
        }
    }

    #[test]
    fn weights_shape_the_score() {
        let w = LevelWeights::default();
        let a = Activity { online_ms: 30 * 60_000, messages: 10, likes: 100, gift_value: 50, member: false };
        assert!((a.score(&w) - (30.0 + 20.0 + 10.0 + 50.0)).abs() < 1e-9);
        let m = Activity { member: true, ..a };
        assert!(level_for(m.score(&w), &w) > level_for(a.score(&w), &w));
        let only_messages = LevelWeights { online_minute: 0.0, like: 0.0, gift_coin: 0.0, member: 0.0, ..w };
        assert!((a.score(&only_messages) - 20.0).abs() < 1e-9);
    }
}
