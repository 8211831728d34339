//! One room's chat engine: admission (validation, duplicate suppression), frequency
//! control, sequencing, history, presence and system events, combined behind a
//! submit / tick interface.
//!
//! The shell calls [`RoomChat::submit`] as messages arrive and [`RoomChat::tick`]
//! every tick (≤ 50 ms). A tick returns everything to deliver as one batch —
//! messages with their fresh seqs, system events, and the outcome of every message
//! decided in this tick — which the shell persists, encodes once and fans out.

use std::sync::Arc;

use crate::Millis;
use crate::Rejection;
use crate::dedup::{DuplicateFilter, Seen};
use crate::event::{MemberBrief, RoomEvent};
use crate::freq::{CutReason, FreqConfig, FrequencyControl};
use crate::history::{HistoryRing, Resume};
use crate::message::{ChatMessage, Outgoing, validate_body};
use crate::presence::{Presence, PresenceConfig, RecentMember};
use crate::random::RandomSource;

/// Tuning of one room's chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatConfig {
    /// Frequency control.
    pub freq: FreqConfig,
    /// Presence reporting.
    pub presence: PresenceConfig,
    /// Messages a newcomer receives on join (the seed's 20; at most 100).
    pub history_on_join: usize,
    /// Only messages younger than this are replayed on join (24 h).
    pub history_max_age_ms: u64,
    /// Messages kept in memory for resume.
    pub resume_buffer: usize,
    /// Duplicate-`Random` window (5 min).
    pub dedup_window_ms: u64,
    /// Most `(sender, random)` pairs remembered per room.
    pub dedup_capacity: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            freq: FreqConfig::default(),
            presence: PresenceConfig::default(),
            history_on_join: 20,
            history_max_age_ms: 24 * 3600 * 1000,
            resume_buffer: 1000,
            dedup_window_ms: 5 * 60 * 1000,
            dedup_capacity: 100_000,
        }
    }
}

/// The result of submitting a message.
#[derive(Debug, PartialEq)]
pub enum Submit<T> {
    /// Waiting for the next tick; its outcome comes from [`RoomChat::tick`].
    Queued,
    /// The same sender sent the same `Random` recently: not delivered again.
    Duplicate(T, Seen),
    /// Invalid; nothing was queued.
    Rejected(T, Rejection),
}

/// What happened to a submitted message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered (and to be stored) with this seq and time.
    Delivered {
        /// Per-room sequence number.
        seq: u64,
        /// Server time, Unix ms.
        time_ms: Millis,
    },
    /// Cut by frequency control: not delivered, not stored.
    Cut(CutReason),
}

/// Everything one tick decided.
pub struct TickOutput<T> {
    /// Messages delivered in this tick, in seq order.
    pub delivered: Vec<Arc<ChatMessage>>,
    /// System events, in order.
    pub events: Vec<RoomEvent>,
    /// Outcome for each message decided in this tick, with its ticket.
    pub outcomes: Vec<(T, Outcome)>,
}

impl<T> TickOutput<T> {
    /// True when there is nothing to send to members (outcomes may still exist).
    pub fn is_quiet(&self) -> bool {
        self.delivered.is_empty() && self.events.is_empty()
    }
}

/// What a newcomer receives.
pub struct JoinSnapshot {
    /// Recent history (or the resumed gap), oldest first.
    pub history: Vec<Arc<ChatMessage>>,
    /// Whether a requested resume could be served without a gap.
    pub resume: Option<Result<(), u64>>,
    /// Exact online count including the newcomer.
    pub online: u64,
}

struct Queued<T> {
    ticket: T,
    msg: Outgoing,
}

/// One room's chat state.
pub struct RoomChat<T> {
    cfg: ChatConfig,
    next_seq: u64,
    freq: FrequencyControl<Queued<T>>,
    dedup: DuplicateFilter,
    history: HistoryRing,
    presence: Presence,
    events: Vec<RoomEvent>,
    early_cuts: Vec<(T, Outcome)>,
}

impl<T> RoomChat<T> {
    /// A room whose last stored message had seq `next_seq - 1`; `restored` are the
    /// latest stored messages (oldest first) to serve history and resume after a restart.
    pub fn new(cfg: ChatConfig, next_seq: u64, restored: Vec<Arc<ChatMessage>>) -> Self {
        let mut history = HistoryRing::new(cfg.resume_buffer);
        for m in restored {
            history.push(m);
        }
        RoomChat {
            freq: FrequencyControl::new(cfg.freq),
            dedup: DuplicateFilter::new(cfg.dedup_window_ms, cfg.dedup_capacity),
            presence: Presence::new(cfg.presence),
            history,
            next_seq: next_seq.max(1),
            events: Vec::new(),
            early_cuts: Vec::new(),
            cfg,
        }
    }

    /// The seq the next delivered message will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Exact online count.
    pub fn online(&self) -> u64 {
        self.presence.online()
    }

    /// Whether this user is in the room on some connection.
    pub fn has_member(&self, user_id: &str) -> bool {
        self.presence.contains(user_id)
    }

    /// The most recently joined members, newest first.
    pub fn recent_members(&self, limit: usize) -> Vec<RecentMember> {
        self.presence.recent_members(limit)
    }

    /// Offers a message for delivery.
    pub fn submit(&mut self, ticket: T, msg: Outgoing, now: Millis) -> Submit<T> {
        if let Err(r) = validate_body(&msg.body, &msg.cloud_custom_data) {
            return Submit::Rejected(ticket, r);
        }
        if let Some(seen) = self.dedup.check_and_insert(&msg.sender.user_id, msg.random, now) {
            return Submit::Duplicate(ticket, seen);
        }
        let priority = msg.priority;
        if let Some((cut, reason)) = self.freq.offer(priority, Queued { ticket, msg }, now) {
            self.dedup.resolve(&cut.msg.sender.user_id, cut.msg.random, Seen::Cut);
            self.early_cuts.push((cut.ticket, Outcome::Cut(reason)));
        }
        Submit::Queued
    }

    /// Recalls a delivered message: gone from history, members told. Whether it was
    /// still in the in-memory history (older ones are recalled in storage only).
    pub fn recall(&mut self, seq: u64, operator: &str) -> bool {
        let held = self.history.recall(seq);
        self.events.push(RoomEvent::Recall { seq, operator: operator.to_owned() });
        held
    }

    /// Queues a system event for the next tick (never subject to frequency control).
    pub fn push_event(&mut self, event: RoomEvent) {
        self.events.push(event);
    }

    /// A connection joins (`None` = anonymous). With `resume_after`, the history is
    /// exactly the messages after that seq, or the recent history plus a
    /// not-recoverable marker when the gap fell out of the buffer.
    pub fn join(&mut self, member: Option<MemberBrief>, resume_after: Option<u64>, now: Millis) -> JoinSnapshot {
        self.presence.join(member, now);
        let (history, resume) = match resume_after {
            Some(last) => match self.history.since(last, self.next_seq) {
                Resume::Complete(msgs) => (msgs, Some(Ok(()))),
                Resume::NotRecoverable { oldest_available } => (self.recent_history(now), Some(Err(oldest_available))),
            },
            None => (self.recent_history(now), None),
        };
        JoinSnapshot { history, resume, online: self.presence.online() }
    }

    /// A connection leaves (`None` = anonymous).
    pub fn leave(&mut self, user_id: Option<&str>) {
        self.presence.leave(user_id);
    }

    /// The newest history a newcomer gets.
    pub fn recent_history(&self, now: Millis) -> Vec<Arc<ChatMessage>> {
        self.history.recent(self.cfg.history_on_join.min(100), now, self.cfg.history_max_age_ms)
    }

    /// Whether ticking is still needed (waiting messages, events, or a rationed
    /// online count to report).
    pub fn has_work(&self) -> bool {
        self.freq.waiting() > 0 || !self.events.is_empty() || !self.early_cuts.is_empty() || self.presence.has_pending()
    }

    /// Records messages another node's sequencer delivered (this node mirrors the
    /// room for its own members): history and the next seq follow; messages already
    /// held are skipped. Returns how many were new.
    pub fn mirror(&mut self, delivered: &[Arc<ChatMessage>]) -> usize {
        let mut new = 0;
        for m in delivered {
            if m.seq < self.next_seq {
                continue;
            }
            self.history.push(m.clone());
            self.next_seq = m.seq + 1;
            new += 1;
        }
        new
    }

    /// Makes this room's core the sequencer again after another node held that role:
    /// numbering resumes at `next_seq` (the store's last seq + 1) or later.
    pub fn take_over(&mut self, next_seq: u64) {
        self.next_seq = self.next_seq.max(next_seq);
    }

    /// Replaces the history with what the store holds (oldest first) and numbers on
    /// from after it: a mirror that missed rounds while it served nobody here.
    pub fn reset_history(&mut self, restored: Vec<Arc<ChatMessage>>) {
        let mut history = HistoryRing::new(self.cfg.resume_buffer);
        for m in restored {
            self.next_seq = self.next_seq.max(m.seq + 1);
            history.push(m);
        }
        self.history = history;
    }

    /// Drops a recalled message from the history only (a mirror learning of a recall
    /// from the sequencer, which told the members already).
    /// Whether the recent history holds the message with this seq (a recall of a
    /// message that is neither here nor stored must push nothing).
    pub fn holds(&self, seq: u64) -> bool {
        self.history.holds(seq)
    }

    pub fn forget(&mut self, seq: u64) {
        self.history.recall(seq);
    }

    /// Hands over every message still waiting for a round, oldest first, and the
    /// system events not yet delivered (the sequencer moved to another node).
    pub fn hand_over(&mut self) -> (Vec<(T, Outgoing)>, Vec<RoomEvent>) {
        let queued = self.freq.drain().into_iter().map(|q| (q.ticket, q.msg)).collect();
        (queued, std::mem::take(&mut self.events))
    }

    /// Cuts decided before a round (queue overflow) still waiting to be reported.
    pub fn take_early_cuts(&mut self) -> Vec<(T, Outcome)> {
        std::mem::take(&mut self.early_cuts)
    }

    /// Runs one delivery round.
    pub fn tick(&mut self, now: Millis, rng: &mut impl RandomSource) -> TickOutput<T> {
        let selection = self.freq.select(now, rng);
        let mut outcomes = std::mem::take(&mut self.early_cuts);
        let mut delivered = Vec::with_capacity(selection.admitted.len());
        for Queued { ticket, msg } in selection.admitted {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.dedup.resolve(&msg.sender.user_id, msg.random, Seen::Delivered(seq));
            let m = Arc::new(ChatMessage {
                seq,
                time_ms: now,
                sender: msg.sender,
                priority: msg.priority,
                random: msg.random,
                body: msg.body,
                cloud_custom_data: msg.cloud_custom_data,
            });
            self.history.push(m.clone());
            delivered.push(m);
            outcomes.push((ticket, Outcome::Delivered { seq, time_ms: now }));
        }
        for (Queued { ticket, msg }, reason) in selection.cut {
            self.dedup.resolve(&msg.sender.user_id, msg.random, Seen::Cut);
            outcomes.push((ticket, Outcome::Cut(reason)));
        }
        let mut events = self.presence.tick(now);
        // Membership first, then other system events in the order they happened.
        events.append(&mut self.events);
        TickOutput { delivered, events, outcomes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MsgElem, Priority, SenderProfile, TextElem};
    use crate::random::SplitMix64;

    fn out(user: &str, random: u32, priority: Priority) -> Outgoing {
        Outgoing {
            sender: SenderProfile {
                user_id: user.into(),
                nick: format!("{user}-nick"),
                avatar: String::new(),
                level: 3,
            },
            priority,
            random,
            body: vec![MsgElem::Text(TextElem { text: "hi".into() })],
            cloud_custom_data: String::new(),
        }
    }

    fn brief(u: &str) -> Option<MemberBrief> {
        Some(MemberBrief { user_id: u.into(), nick: String::new(), avatar: String::new(), level: 0 })
    }

    #[test]
    fn seqs_increase_without_gaps_and_profiles_are_stamped() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        let mut rng = SplitMix64::new(1);
        for i in 0..5 {
            assert_eq!(room.submit(i, out("a", i, Priority::Normal), 0), Submit::Queued);
        }
        let t = room.tick(50, &mut rng);
        assert_eq!(t.delivered.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(t.delivered[0].sender.nick, "a-nick");
        assert_eq!(t.delivered[0].sender.level, 3);
        assert!(t.outcomes.iter().all(|(_, o)| matches!(o, Outcome::Delivered { .. })));
        room.submit(9, out("a", 9, Priority::Normal), 60);
        let t = room.tick(100, &mut rng);
        assert_eq!(t.delivered[0].seq, 6);
    }

    #[test]
    fn duplicates_get_the_first_outcome_and_are_not_delivered_twice() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        let mut rng = SplitMix64::new(1);
        room.submit(1, out("a", 42, Priority::Normal), 0);
        assert_eq!(room.submit(2, out("a", 42, Priority::Normal), 1), Submit::Duplicate(2, Seen::Pending));
        let t = room.tick(50, &mut rng);
        assert_eq!(t.delivered.len(), 1);
        assert_eq!(room.submit(3, out("a", 42, Priority::Normal), 100), Submit::Duplicate(3, Seen::Delivered(1)));
        assert_eq!(room.submit(4, out("b", 42, Priority::Normal), 100), Submit::Queued);
    }

    #[test]
    fn invalid_bodies_are_rejected_before_anything_else() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        let mut m = out("a", 1, Priority::Normal);
        m.body.clear();
        assert!(matches!(room.submit(1, m, 0), Submit::Rejected(1, _)));
        assert!(!room.has_work());
    }

    #[test]
    fn overload_cuts_are_reported_and_not_in_history() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        let mut rng = SplitMix64::new(5);
        for i in 0..300u32 {
            let p = if i % 10 == 0 { Priority::High } else { Priority::Low };
            room.submit(i, out(&format!("u{}", i % 7), i, p), u64::from(i) * 1000 / 300);
        }
        let mut delivered = vec![];
        let mut cut = 0;
        let mut now = 0;
        while room.has_work() && now < 5_000 {
            now += 50;
            let t = room.tick(now, &mut rng);
            delivered.extend(t.delivered);
            cut += t.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Cut(_))).count();
        }
        assert_eq!(delivered.len() + cut, 300);
        assert_eq!(delivered.iter().filter(|m| m.priority == Priority::High).count(), 30);
        let hist = room.recent_history(now);
        assert!(hist.iter().all(|m| delivered.iter().any(|d| d.seq == m.seq)));
        assert!(delivered.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    #[test]
    fn join_gives_history_and_resume_after_restart() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig { resume_buffer: 50, ..Default::default() }, 1, vec![]);
        let mut rng = SplitMix64::new(2);
        for i in 0..60u32 {
            room.submit(i, out("a", i, Priority::Normal), u64::from(i) * 100);
            room.tick(u64::from(i) * 100 + 50, &mut rng);
        }
        let snap = room.join(brief("b"), None, 10_000);
        assert_eq!(snap.history.len(), 20);
        assert_eq!(snap.history.last().map(|m| m.seq), Some(60));
        assert_eq!(snap.online, 1);
        let snap = room.join(None, Some(55), 10_000);
        assert_eq!(snap.history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![56, 57, 58, 59, 60]);
        assert_eq!(snap.resume, Some(Ok(())));
        let snap = room.join(None, Some(3), 10_000);
        assert_eq!(snap.resume, Some(Err(11)));
        // A restarted room continues the sequence from storage.
        let restored = room.recent_history(10_000);
        let mut again: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 61, restored);
        assert_eq!(again.join(None, Some(58), 10_000).history.len(), 2);
        again.submit(1, out("a", 1000, Priority::Normal), 10_000);
        assert_eq!(again.tick(10_050, &mut rng).delivered[0].seq, 61);
    }

    #[test]
    fn system_events_bypass_frequency_control() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        let mut rng = SplitMix64::new(2);
        for i in 0..200u32 {
            room.submit(i, out("a", i, Priority::High), 0);
        }
        for _ in 0..100 {
            room.push_event(RoomEvent::Notification { content: "x".into() });
        }
        let t = room.tick(0, &mut rng);
        assert_eq!(t.events.len(), 100);
        assert!(t.delivered.len() <= 10);
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::message::{MsgElem, Priority, SenderProfile, TextElem};
    use crate::random::SplitMix64;

    fn msg(seq: u64) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            seq,
            time_ms: seq * 10,
            sender: SenderProfile { user_id: "a".into(), ..Default::default() },
            priority: Priority::Normal,
            random: seq as u32,
            body: vec![MsgElem::Text(TextElem { text: format!("m{seq}") })],
            cloud_custom_data: String::new(),
        })
    }

    fn out(random: u32) -> Outgoing {
        Outgoing {
            sender: SenderProfile { user_id: "b".into(), ..Default::default() },
            priority: Priority::Normal,
            random,
            body: vec![MsgElem::Text(TextElem { text: "x".into() })],
            cloud_custom_data: String::new(),
        }
    }

    #[test]
    fn a_mirror_keeps_order_skips_what_it_has_and_serves_resume() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        assert_eq!(room.mirror(&[msg(1), msg(2)]), 2);
        assert_eq!(room.mirror(&[msg(2), msg(3)]), 1, "seq 2 again is not new");
        assert_eq!(room.next_seq(), 4);
        let snap = room.join(None, Some(1), 100);
        assert_eq!(snap.history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(snap.resume, Some(Ok(())));
    }

    #[test]
    fn taking_over_continues_numbering_after_the_store() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        room.mirror(&[msg(1), msg(2)]);
        room.take_over(10);
        room.submit(1, out(1), 0);
        let t = room.tick(50, &mut SplitMix64::new(1));
        assert_eq!(t.delivered[0].seq, 10);
        room.take_over(3);
        room.submit(2, out(2), 60);
        assert_eq!(room.tick(120, &mut SplitMix64::new(1)).delivered[0].seq, 11, "never goes back");
    }

    #[test]
    fn handing_over_returns_the_queue_in_arrival_order() {
        let mut room: RoomChat<u32> = RoomChat::new(ChatConfig::default(), 1, vec![]);
        room.submit(1, out(1), 0);
        room.submit(2, out(2), 1);
        room.push_event(RoomEvent::Notification { content: "n".into() });
        let (queued, events) = room.hand_over();
        assert_eq!(queued.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(events.len(), 1);
        assert!(room.tick(50, &mut SplitMix64::new(1)).delivered.is_empty());
    }
}
