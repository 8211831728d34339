//! Duplicate suppression: the same `Random` from the same sender within a window
//! (the cloud's 5 minutes) is the same message, retried by a client that never saw
//! its ack. It is answered with the first one's outcome instead of delivered twice.

use std::collections::{HashMap, VecDeque};

use crate::Millis;

/// What the room remembers of a `(sender, random)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Still waiting for frequency control.
    Pending,
    /// Delivered with this seq.
    Delivered(u64),
    /// Cut by frequency control.
    Cut,
}

/// A bounded, time-windowed set of recently sent `(sender, random)` pairs.
pub struct DuplicateFilter {
    window_ms: u64,
    capacity: usize,
    seen: HashMap<(String, u32), (Millis, Seen)>,
    order: VecDeque<(Millis, String, u32)>,
}

impl DuplicateFilter {
    /// Remembers pairs for `window_ms`, at most `capacity` of them (oldest forgotten first).
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        DuplicateFilter { window_ms, capacity: capacity.max(1), seen: HashMap::new(), order: VecDeque::new() }
    }

    /// Records a new pair and returns `None`, or returns what is known of the earlier one.
    pub fn check_and_insert(&mut self, sender: &str, random: u32, now: Millis) -> Option<Seen> {
        self.expire(now);
        let key = (sender.to_owned(), random);
        if let Some((_, seen)) = self.seen.get(&key) {
            return Some(*seen);
        }
        while self.seen.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, s, r)) => {
                    self.seen.remove(&(s, r));
                }
                None => break,
            }
        }
        self.order.push_back((now, sender.to_owned(), random));
        self.seen.insert(key, (now, Seen::Pending));
        None
    }

    /// Updates the outcome of a pair that is still remembered.
    pub fn resolve(&mut self, sender: &str, random: u32, outcome: Seen) {
        if let Some(entry) = self.seen.get_mut(&(sender.to_owned(), random)) {
            entry.1 = outcome;
        }
    }

    /// Pairs remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Millis) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_sub(*at) < self.window_ms {
                break;
            }
            if let Some((at, s, r)) = self.order.pop_front() {
                let key = (s, r);
                if self.seen.get(&key).is_some_and(|(t, _)| *t == at) {
                    self.seen.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_sender_same_random_within_window_is_a_duplicate() {
        let mut f = DuplicateFilter::new(300_000, 100);
        assert_eq!(f.check_and_insert("a", 1, 0), None);
        assert_eq!(f.check_and_insert("a", 1, 1_000), Some(Seen::Pending));
        f.resolve("a", 1, Seen::Delivered(7));
        assert_eq!(f.check_and_insert("a", 1, 299_999), Some(Seen::Delivered(7)));
        assert_eq!(f.check_and_insert("b", 1, 2_000), None, "other sender");
        assert_eq!(f.check_and_insert("a", 2, 2_000), None, "other random");
        assert_eq!(f.check_and_insert("a", 1, 300_000), None, "window over");
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut f = DuplicateFilter::new(300_000, 10);
        for r in 0..1_000 {
            f.check_and_insert("a", r, 0);
        }
        assert_eq!(f.len(), 10);
        assert_eq!(f.check_and_insert("a", 999, 0), Some(Seen::Pending));
    }
}
