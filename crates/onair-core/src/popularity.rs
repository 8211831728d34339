//! Room popularity and statistics.
//!
//! Popularity ranks the room list: the online count now, plus messages, likes and
//! gift coins counted with exponential decay (a half-life), so a room that was busy
//! an hour ago falls behind one that is busy now. Statistics are plain totals.

use serde::Serialize;

use crate::Millis;

/// Popularity weights and decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PopularityWeights {
    /// Points per online member.
    pub online: f64,
    /// Points per recent message.
    pub message: f64,
    /// Points per recent like.
    pub like: f64,
    /// Points per recent gift coin.
    pub gift_coin: f64,
    /// Half-life of the decayed counters.
    pub half_life_ms: u64,
}

impl Default for PopularityWeights {
    fn default() -> Self {
        PopularityWeights { online: 10.0, message: 2.0, like: 0.2, gift_coin: 1.0, half_life_ms: 10 * 60_000 }
    }
}

/// A count that halves every half-life.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Decaying {
    value: f64,
    at: Millis,
}

impl Decaying {
    /// The value at `now`.
    pub fn value(&self, now: Millis, half_life_ms: u64) -> f64 {
        if half_life_ms == 0 {
            return 0.0;
        }
        let age = now.saturating_sub(self.at) as f64;
        self.value * (-age / half_life_ms as f64 * std::f64::consts::LN_2).exp()
    }

    /// Adds `amount` at `now`.
    pub fn add(&mut self, amount: f64, now: Millis, half_life_ms: u64) {
        let now = now.max(self.at);
        self.value = self.value(now, half_life_ms) + amount;
        self.at = now;
    }
}

/// Per-room statistics (totals since creation) and the decayed activity.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStats {
    /// Highest online count seen.
    pub peak_online: u64,
    /// Delivered messages.
    pub messages: u64,
    /// Accepted likes.
    pub likes: u64,
    /// Gifts sent (pieces).
    pub gifts: u64,
    /// Coins spent on gifts.
    pub gift_value: u64,
    /// Total time members spent in the room (closed sessions), ms.
    pub watch_ms: u64,
    #[serde(skip)]
    recent_messages: Decaying,
    #[serde(skip)]
    recent_likes: Decaying,
    #[serde(skip)]
    recent_gift_value: Decaying,
}

impl RoomStats {
    /// Stats resumed from stored totals (the decayed parts start at zero).
    pub fn restore(peak_online: u64, messages: u64, likes: u64, gifts: u64, gift_value: u64, watch_ms: u64) -> Self {
        RoomStats { peak_online, messages, likes, gifts, gift_value, watch_ms, ..Default::default() }
    }

    /// Records the online count.
    pub fn online(&mut self, online: u64) {
        self.peak_online = self.peak_online.max(online);
    }

    /// Records delivered messages.
    pub fn messages(&mut self, n: u64, now: Millis, w: &PopularityWeights) {
        self.messages += n;
        self.recent_messages.add(n as f64, now, w.half_life_ms);
    }

    /// Records accepted likes.
    pub fn likes(&mut self, n: u64, now: Millis, w: &PopularityWeights) {
        self.likes += n;
        self.recent_likes.add(n as f64, now, w.half_life_ms);
    }

    /// Records gifts.
    pub fn gifts(&mut self, pieces: u64, coins: u64, now: Millis, w: &PopularityWeights) {
        self.gifts += pieces;
        self.gift_value += coins;
        self.recent_gift_value.add(coins as f64, now, w.half_life_ms);
    }

    /// Records a finished watch session.
    pub fn watched(&mut self, ms: u64) {
        self.watch_ms += ms;
    }

    /// The popularity score at `now` with `online` members.
    pub fn popularity(&self, online: u64, now: Millis, w: &PopularityWeights) -> f64 {
        online as f64 * w.online
            + self.recent_messages.value(now, w.half_life_ms) * w.message
            + self.recent_likes.value(now, w.half_life_ms) * w.like
            + self.recent_gift_value.value(now, w.half_life_ms) * w.gift_coin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_halves_every_half_life() {
        let mut d = Decaying::default();
        d.add(100.0, 0, 1_000);
        assert!((d.value(1_000, 1_000) - 50.0).abs() < 1e-9);
        assert!((d.value(2_000, 1_000) - 25.0).abs() < 1e-9);
        d.add(25.0, 2_000, 1_000);
        assert!((d.value(2_000, 1_000) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_busy_room_now_beats_a_busy_room_earlier() {
        let w = PopularityWeights { half_life_ms: 60_000, ..Default::default() };
        let mut earlier = RoomStats::default();
        earlier.messages(1_000, 0, &w);
        let mut now = RoomStats::default();
        now.messages(200, 600_000, &w);
        assert!(now.popularity(0, 600_000, &w) > earlier.popularity(0, 600_000, &w));
        assert_eq!(earlier.messages, 1_000, "totals do not decay");
        let mut watched = RoomStats::default();
        watched.online(3);
        watched.online(2);
        assert_eq!(watched.peak_online, 3);
        assert!(watched.popularity(5, 0, &w) > watched.popularity(1, 0, &w));
    }
}
