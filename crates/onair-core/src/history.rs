//! The in-memory tail of a room's delivered messages: what a newcomer sees on join
//! and what a reconnecting client resumes from. The durable copy lives in the store;
//! this ring is refilled from it at start so resume works across restarts.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::Millis;
use crate::message::ChatMessage;

/// Result of asking to resume after a given seq.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Every message after the given seq, in order (possibly none).
    Complete(Vec<Arc<ChatMessage>>),
    /// The ring no longer holds the first missing message: the gap cannot be filled.
    NotRecoverable {
        /// The oldest seq still held.
        oldest_available: u64,
    },
}

/// A bounded ring of the latest delivered messages.
pub struct HistoryRing {
    capacity: usize,
    messages: VecDeque<Arc<ChatMessage>>,
}

impl HistoryRing {
    /// An empty ring holding at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        HistoryRing { capacity: capacity.max(1), messages: VecDeque::new() }
    }

    /// Appends a delivered message (seqs must increase).
    pub fn push(&mut self, msg: Arc<ChatMessage>) {
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
        }
        self.messages.push_back(msg);
    }

    /// Removes a recalled message so newcomers never see it; whether it was held.
    pub fn recall(&mut self, seq: u64) -> bool {
        match self.messages.binary_search_by_key(&seq, |m| m.seq) {
            Ok(i) => self.messages.remove(i).is_some(),
            Err(_) => false,
        }
    }

    /// Whether the message with this seq is held (delivered, not recalled).
    pub fn holds(&self, seq: u64) -> bool {
        self.messages.binary_search_by_key(&seq, |m| m.seq).is_ok()
    }

    /// The newest seq held, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.messages.back().map(|m| m.seq)
    }

    /// The last `limit` messages not older than `max_age_ms`, oldest first.
    pub fn recent(&self, limit: usize, now: Millis, max_age_ms: u64) -> Vec<Arc<ChatMessage>> {
        let cutoff = now.saturating_sub(max_age_ms);
        let mut out: Vec<_> =
            self.messages.iter().rev().take(limit).take_while(|m| m.time_ms >= cutoff).cloned().collect();
        out.reverse();
        out
    }

    /// Everything after `last_seen`, or `NotRecoverable` if some of it fell out.
    /// `next_seq` is the seq the room will assign next (to tell "nothing new" from a gap
    /// in an empty ring).
    pub fn since(&self, last_seen: u64, next_seq: u64) -> Resume {
        if last_seen + 1 >= next_seq {
            return Resume::Complete(Vec::new());
        }
        match self.messages.front() {
            Some(first) if first.seq <= last_seen + 1 => {
                Resume::Complete(self.messages.iter().filter(|m| m.seq > last_seen).cloned().collect())
            }
            Some(first) => Resume::NotRecoverable { oldest_available: first.seq },
            None => Resume::NotRecoverable { oldest_available: next_seq },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Priority, SenderProfile};

    fn msg(seq: u64, time_ms: Millis) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            seq,
            time_ms,
            sender: SenderProfile::default(),
            priority: Priority::Normal,
            random: 0,
            body: vec![],
            cloud_custom_data: String::new(),
        })
    }

    #[test]
    fn recent_respects_limit_and_age() {
        let mut ring = HistoryRing::new(100);
        for seq in 1..=50 {
            ring.push(msg(seq, seq * 1000));
        }
        let r = ring.recent(20, 50_000, 86_400_000);
        assert_eq!(r.iter().map(|m| m.seq).collect::<Vec<_>>(), (31..=50).collect::<Vec<_>>());
        let r = ring.recent(20, 50_000, 5_000);
        assert_eq!(r.iter().map(|m| m.seq).collect::<Vec<_>>(), (45..=50).collect::<Vec<_>>());
    }

    #[test]
    fn recalled_messages_are_gone_for_newcomers() {
        let mut ring = HistoryRing::new(10);
        for seq in 1..=5 {
            ring.push(msg(seq, 0));
        }
        assert!(ring.holds(3));
        assert!(ring.recall(3));
        assert!(!ring.holds(3));
        assert!(!ring.recall(3));
        assert_eq!(ring.recent(10, 0, 1).iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
        match ring.since(1, 6) {
            Resume::Complete(v) => assert_eq!(v.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 4, 5]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resume_without_gap_or_duplicate_or_says_not_recoverable() {
        let mut ring = HistoryRing::new(10);
        for seq in 1..=25 {
            ring.push(msg(seq, 0));
        }
        assert_eq!(ring.since(25, 26), Resume::Complete(vec![]));
        match ring.since(18, 26) {
            Resume::Complete(v) => {
                assert_eq!(v.iter().map(|m| m.seq).collect::<Vec<_>>(), (19..=25).collect::<Vec<_>>())
            }
            other => panic!("{other:?}"),
        }
        match ring.since(15, 26) {
            Resume::Complete(v) => assert_eq!(v.first().map(|m| m.seq), Some(16)),
            other => panic!("{other:?}"),
        }
        assert_eq!(ring.since(14, 26), Resume::NotRecoverable { oldest_available: 16 });
        assert_eq!(HistoryRing::new(5).since(3, 9), Resume::NotRecoverable { oldest_available: 9 });
    }
}
