//! Gifts: the catalog rules and combo merging.
//!
//! Money moves in the store (one transaction per gift request); this module decides
//! what the room sees. A request with an explicit count (a preselected 99) is one
//! event. Repeated single clicks on the same gift form a combo: the first click is
//! shown at once (the room should see the gift start without waiting), later clicks
//! are merged into one event per `batch` gifts or per `window_ms`, whichever comes
//! first, each carrying the running combo total; when the clicks stop for
//! `end_after_ms` a final event closes the combo. 99 rapid clicks are 6 events
//! instead of 99, plus the end.

use std::collections::HashMap;

use serde::Serialize;

use crate::{Code, Millis, Rejection};

/// Longest gift id, name and URL accepted in the catalog.
pub const MAX_GIFT_ID: usize = 64;
/// Longest gift name.
pub const MAX_GIFT_NAME: usize = 64;
/// Longest icon or animation URL.
pub const MAX_GIFT_URL: usize = 512;
/// Highest price of one gift, in coins.
pub const MAX_PRICE: u64 = 10_000_000;
/// Most gifts in one request.
pub const MAX_COUNT: u64 = 9_999;

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gift {
    /// Stable id (`[A-Za-z0-9_-]`).
    pub gift_id: String,
    /// Display name.
    pub name: String,
    /// Price of one, in coins.
    pub price: u64,
    /// Icon URL.
    pub icon: String,
    /// Animation URL (may be empty).
    pub animation: String,
}

impl Gift {
    /// Checks the catalog rules.
    pub fn validate(&self) -> Result<(), Rejection> {
        let bad = |info: String| Err(Rejection::new(Code::InvalidParam, info));
        if self.gift_id.is_empty()
            || self.gift_id.len() > MAX_GIFT_ID
            || !self.gift_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad(format!("giftId must be 1..={MAX_GIFT_ID} characters of A-Z, a-z, 0-9, '_' or '-'"));
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_GIFT_NAME {
            return bad(format!("name must be 1..={MAX_GIFT_NAME} bytes"));
        }
        if self.price == 0 || self.price > MAX_PRICE {
            return bad(format!("price must be 1..={MAX_PRICE} coins"));
        }
        if self.icon.len() > MAX_GIFT_URL || self.animation.len() > MAX_GIFT_URL {
            return bad(format!("icon and animation URLs are at most {MAX_GIFT_URL} bytes"));
        }
        Ok(())
    }
}

/// Checks the count of one gift request and returns its cost.
pub fn cost(price: u64, count: u64) -> Result<u64, Rejection> {
    if count == 0 || count > MAX_COUNT {
        return Err(Rejection::new(Code::InvalidParam, format!("count must be 1..={MAX_COUNT}")));
    }
    price
        .checked_mul(count)
        .ok_or_else(|| Rejection::new(Code::InvalidParam, "the total price of this request is too large"))
}

/// Combo tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComboConfig {
    /// Merge at most this many clicks into one event.
    pub batch: u64,
    /// Emit merged clicks at least this often.
    pub window_ms: u64,
    /// A combo ends when no click came for this long.
    pub end_after_ms: u64,
}

impl Default for ComboConfig {
    fn default() -> Self {
        ComboConfig { batch: 20, window_ms: 1_000, end_after_ms: 1_000 }
    }
}

/// Who sends which gift: one combo per pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComboKey {
    /// Sender account.
    pub from: String,
    /// Gift id.
    pub gift_id: String,
}

/// One event for the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComboEmit {
    /// Sender and gift.
    pub key: ComboKey,
    /// The combo this event belongs to (unique per tracker).
    pub combo_id: u64,
    /// Gifts in this event (0 for the end event).
    pub count: u64,
    /// Running total of the combo, this event included.
    pub combo: u64,
    /// This event closes the combo.
    pub end: bool,
}

#[derive(Debug)]
struct Combo {
    id: u64,
    total: u64,
    pending: u64,
    first_pending_at: Millis,
    last_click_at: Millis,
}

/// Open combos of one room.
#[derive(Debug)]
pub struct ComboTracker {
    config: ComboConfig,
    open: HashMap<ComboKey, Combo>,
    next_id: u64,
}

impl ComboTracker {
    /// An empty tracker; combo ids start after `first_id` (pass something unique
    /// per process, e.g. the start time, so ids do not repeat across restarts).
    pub fn new(config: ComboConfig, first_id: u64) -> Self {
        ComboTracker { config, open: HashMap::new(), next_id: first_id }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A paid gift request. `count > 1` is one event of its own; single clicks
    /// join the sender's combo for that gift. Returns what to show now.
    pub fn gift(&mut self, key: ComboKey, count: u64, now: Millis) -> Vec<ComboEmit> {
        if count != 1 {
            let combo_id = self.new_id();
            return vec![ComboEmit { key, combo_id, count, combo: count, end: true }];
        }
        let batch = self.config.batch.max(1);
        if let Some(combo) = self.open.get_mut(&key) {
            combo.total += 1;
            combo.last_click_at = now;
            if combo.pending == 0 {
                combo.first_pending_at = now;
            }
            combo.pending += 1;
            if combo.pending >= batch {
                let emit = ComboEmit { key, combo_id: combo.id, count: combo.pending, combo: combo.total, end: false };
                combo.pending = 0;
                return vec![emit];
            }
            return Vec::new();
        }
        let id = self.new_id();
        self.open.insert(key.clone(), Combo { id, total: 1, pending: 0, first_pending_at: now, last_click_at: now });
        vec![ComboEmit { key, combo_id: id, count: 1, combo: 1, end: false }]
    }

    /// Emits merged clicks whose window passed and ends quiet combos.
    pub fn poll(&mut self, now: Millis) -> Vec<ComboEmit> {
        let mut out = Vec::new();
        let mut ended = Vec::new();
        for (key, combo) in &mut self.open {
            if combo.pending > 0 && now.saturating_sub(combo.first_pending_at) >= self.config.window_ms {
                out.push(ComboEmit {
                    key: key.clone(),
                    combo_id: combo.id,
                    count: combo.pending,
                    combo: combo.total,
                    end: false,
                });
                combo.pending = 0;
            }
            if combo.pending == 0 && now.saturating_sub(combo.last_click_at) >= self.config.end_after_ms {
                out.push(ComboEmit { key: key.clone(), combo_id: combo.id, count: 0, combo: combo.total, end: true });
                ended.push(key.clone());
            }
        }
        for key in ended {
            self.open.remove(&key);
        }
        // Stable order for the room (and for tests): by combo id, end last.
        out.sort_by_key(|e| (e.combo_id, e.end));
        out
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.open
            .values()
            .map(|c| {
                let end = c.last_click_at + self.config.end_after_ms;
                if c.pending > 0 { end.min(c.first_pending_at + self.config.window_ms) } else { end }
            })
            .min()
    }

    /// Whether `key` has an open combo.
    pub fn is_open(&self, key: &ComboKey) -> bool {
        self.open.contains_key(key)
    }

    /// Whether any combo is open.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(from: &str) -> ComboKey {
        ComboKey { from: from.into(), gift_id: "rose".into() }
    }

    /// Drives clicks at the given times (ms) and polls every 10 ms until quiet.
    fn run(clicks: &[Millis]) -> Vec<ComboEmit> {
        let mut t = ComboTracker::new(ComboConfig::default(), 0);
        let mut out = Vec::new();
        let mut clicks = clicks.iter().peekable();
        let mut now = 0;
        while clicks.peek().is_some() || !t.is_idle() {
            while let Some(&&at) = clicks.peek() {
                if at > now {
                    break;
                }
                out.extend(t.gift(key("a"), 1, at));
                clicks.next();
            }
            out.extend(t.poll(now));
            now += 10;
        }
        out
    }

    #[test]
    fn ninety_nine_rapid_clicks_are_six_events_and_an_end() {
        let clicks: Vec<Millis> = (0..99).map(|i| i * 20).collect(); // 50 clicks/s for 2 s
        let out = run(&clicks);
        let counts: Vec<u64> = out.iter().map(|e| e.count).collect();
        assert_eq!(counts, vec![1, 20, 20, 20, 20, 18, 0], "{out:?}");
        let combos: Vec<u64> = out.iter().map(|e| e.combo).collect();
        assert_eq!(combos, vec![1, 21, 41, 61, 81, 99, 99]);
        assert!(out.last().is_some_and(|e| e.end) && out.iter().filter(|e| e.end).count() == 1);
        assert_eq!(out.iter().map(|e| e.count).sum::<u64>(), 99);
        assert!(out.iter().all(|e| e.combo_id == out[0].combo_id));
    }

    #[test]
    fn slow_clicks_flush_once_per_window() {
        // 5 clicks/s for 3 s: the first at once, then one event per second.
        let clicks: Vec<Millis> = (0..15).map(|i| i * 200).collect();
        let out = run(&clicks);
        assert_eq!(out.iter().map(|e| e.count).sum::<u64>(), 15);
        assert!(out.len() <= 6, "{out:?}");
        assert!(out.last().is_some_and(|e| e.end && e.combo == 15));
    }

    #[test]
    fn a_pause_longer_than_end_after_starts_a_new_combo() {
        let out = run(&[0, 100, 3_000]);
        let ends: Vec<&ComboEmit> = out.iter().filter(|e| e.end).collect();
        assert_eq!(ends.len(), 2);
        assert_eq!(ends[0].combo, 2);
        assert_eq!(ends[1].combo, 1);
        assert_ne!(ends[0].combo_id, ends[1].combo_id);
    }

    #[test]
    fn an_explicit_count_is_one_event() {
        let mut t = ComboTracker::new(ComboConfig::default(), 0);
        let out = t.gift(key("a"), 99, 0);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].count, out[0].combo, out[0].end), (99, 99, true));
        assert!(t.is_idle() && t.poll(10_000).is_empty());
    }

    #[test]
    fn senders_have_their_own_combos() {
        let mut t = ComboTracker::new(ComboConfig { batch: 2, window_ms: 1_000, end_after_ms: 1_000 }, 0);
        t.gift(key("a"), 1, 0);
        t.gift(key("b"), 1, 0);
        assert_eq!(t.gift(key("a"), 1, 1), vec![]);
        let out = t.gift(key("a"), 1, 2);
        assert_eq!((out[0].count, out[0].combo), (2, 3));
        assert_eq!(t.next_deadline(), Some(1_000));
    }

    #[test]
    fn cost_and_catalog_rules() {
        assert!(cost(10, 0).is_err());
        assert!(cost(10, MAX_COUNT + 1).is_err());
        assert!(cost(u64::MAX, 2).is_err());
        assert_eq!(cost(10, 3).ok(), Some(30));
        let mut g = Gift {
            gift_id: "rose".into(),
            name: "Rose".into(),
            price: 1,
            icon: String::new(),
            animation: String::new(),
        };
        assert!(g.validate().is_ok());
        g.gift_id = "ro se".into();
        assert!(g.validate().is_err());
        g.gift_id = "rose".into();
        g.price = 0;
        assert!(g.validate().is_err());
    }
}
