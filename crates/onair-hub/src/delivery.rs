//! A room's delivery: the ticker, its rounds, and the writes of a round's frames to
//! the members' outboxes.
//!
//! A round (frequency control, seqs, history, acks) runs every slot; what it delivers
//! is staged ([`onair_core::stagger::Staged`]) and written to the members whose turn it
//! is, each with everything since its last write in one frame. A small room's slot is
//! its tick, so every member is written every round, as before slots existed. A big
//! room's tick is cut into slots ([`onair_core::tick::Slots`]) and each slot writes the
//! next run of member buckets ([`onair_core::tick::Sweep`]): the same number of socket
//! writes as one round per tick, spread evenly over the tick instead of a sweep of every
//! member after it, so a message waits about one tick, not two.

use std::sync::Arc;
use std::time::Duration;

use onair_core::chat::{Outcome, TickOutput};
use onair_core::event::RoomEvent;
use onair_core::message::ChatMessage;
use onair_core::moderation::Expired;
use onair_core::random::{RandomSource, SplitMix64};
use onair_core::tick::{BUCKETS, Slots, Sweep};
use onair_shell::{now_ms, seed};
use serde_json::json;
use tokio::time::Instant;

use crate::outbox::{DrainMark, Frame, FrameClass, Pushed};
use crate::{DROP_FREQUENCY, Hub, Reply, Room, SendResult, Ticket, msg_id};

/// How often a ticker looks again at a bucket whose last frame has not drained.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// What one round (or a cluster mirror's flush) delivered, as members are sent it.
pub(crate) struct StagedRound {
    msgs: Vec<Arc<ChatMessage>>,
    events: Vec<RoomEvent>,
}

/// Where the room is in its cycle over the member buckets, each bucket's last frame,
/// and which buckets' turn came while that frame was still being written.
struct Turns {
    sweep: Sweep,
    /// Per bucket: the drain mark of its last frame, how many members got it, when.
    last: Vec<Option<(DrainMark, usize, Instant)>>,
    /// Per bucket: its turn came and was put off.
    owed: Vec<bool>,
}

impl Default for Turns {
    fn default() -> Self {
        Turns { sweep: Sweep::default(), last: vec![None; BUCKETS], owed: vec![false; BUCKETS] }
    }
}

impl Turns {
    /// The buckets to write now: those the sweep passes in the `passed` slots since
    /// the last call (of a tick cut into `slots.groups`; 0 between slots) and any put off
    /// before, each only once nine in ten of its members have written its last frame
    /// (or `max_wait` passed). When members are slow — a saturated machine, a huge
    /// room — a bucket's frames then wait and carry more messages, instead of piling up
    /// in every outbox.
    fn due(&mut self, slots: Slots, passed: u64, now: Instant, max_wait: Duration) -> Vec<bool> {
        if passed > 0 {
            for b in self.sweep.advance(slots.groups, passed) {
                self.owed[b] = true;
            }
        }
        let mut due = vec![false; BUCKETS];
        for (b, owed) in self.owed.iter_mut().enumerate() {
            let drained = match &self.last[b] {
                None => true,
                Some((mark, members, at)) => {
                    Arc::strong_count(mark) - 1 <= members / 10 || now.duration_since(*at) >= max_wait
                }
            };
            if *owed && drained {
                due[b] = true;
                *owed = false;
            } else if *owed && passed > 0 {
                metrics::counter!("onair_fanout_deferred_turns_total").increment(1);
            }
        }
        due
    }

    fn any_owed(&self) -> bool {
        self.owed.contains(&true)
    }

    /// Nothing is staged: no turn is owed any more.
    fn settle(&mut self) {
        self.owed.iter_mut().for_each(|o| *o = false);
    }

    fn written(&mut self, written: Vec<(usize, DrainMark, usize)>, now: Instant) {
        for (b, mark, members) in written {
            if let Some(last) = self.last.get_mut(b) {
                *last = Some((mark, members, now));
            }
        }
    }
}

impl Room {
    /// Stages what a round delivered: each member is sent it on its turn.
    pub(crate) fn stage(&self, msgs: Vec<Arc<ChatMessage>>, events: Vec<RoomEvent>) {
        if !msgs.is_empty() || !events.is_empty() {
            self.staged.lock().push(StagedRound { msgs, events });
        }
    }

    /// Whether some member has not been sent everything staged.
    pub(crate) fn has_staged(&self) -> bool {
        !self.staged.lock().is_empty()
    }

    /// Writes everything staged since their cursor to the members of the `due` buckets
    /// (indexed by bucket) and to the connections `also` names, one frame each; frames
    /// are encoded once per distinct cursor.
    pub(crate) fn write_turn(&self, due: &[bool], also: &[u64]) -> Written {
        let started = thread_cpu_ns();
        let mut members = self.members.lock();
        let mut staged = self.staged.lock();
        let head = staged.head();
        let mut frames: Vec<(u64, Frame, FrameClass, u64)> = Vec::new();
        let mut marks: Vec<Option<(DrainMark, usize)>> = vec![None; due.len()];
        let mut lowest = head;
        let (mut deliveries, mut direct) = (0u64, 0u64);
        for (id, member) in members.iter_mut() {
            if member.cursor < head {
                let bucket = usize::from(member.bucket);
                let in_turn = due.get(bucket).copied().unwrap_or(false);
                if in_turn || also.contains(id) {
                    let i = match frames.iter().position(|f| f.0 == member.cursor) {
                        Some(i) => i,
                        None => {
                            let (frame, class, msgs) = encode_rounds(&self.id, staged.since(member.cursor));
                            frames.push((member.cursor, frame, class, msgs));
                            frames.len() - 1
                        }
                    };
                    let (_, frame, class, msgs) = &frames[i];
                    let mark = in_turn.then(|| {
                        let (mark, count) = marks[bucket].get_or_insert_with(|| (DrainMark::default(), 0));
                        *count += 1;
                        mark.clone()
                    });
                    if member.outbox.push_marked(*class, frame.clone(), mark) == Pushed::Written {
                        direct += 1;
                    }
                    deliveries += msgs;
                    member.cursor = head;
                }
            }
            lowest = lowest.min(member.cursor);
        }
        staged.trim(lowest);
        metrics::counter!("onair_push_frames_total").increment(frames.len() as u64);
        metrics::counter!("onair_push_deliveries_total").increment(deliveries);
        metrics::counter!("onair_fanout_direct_writes_total").increment(direct);
        drop((staged, members));
        Written {
            marks: marks.into_iter().enumerate().filter_map(|(g, m)| m.map(|(mark, n)| (g, mark, n))).collect(),
            direct,
            cpu_ns: thread_cpu_ns().saturating_sub(started),
        }
    }

    /// Sends the connections in `conns` everything staged, now (before they are told
    /// something that must follow it: an ack, a kick).
    pub(crate) fn write_now(&self, conns: &[u64]) {
        if !conns.is_empty() && self.has_staged() {
            self.write_turn(&[], conns);
        }
    }
}

/// What a turn wrote.
pub(crate) struct Written {
    /// Per bucket written: its frame's drain mark and how many members got it.
    marks: Vec<(usize, DrainMark, usize)>,
    /// Members written straight to their sockets, in this thread.
    direct: u64,
    /// This thread's CPU time for the turn, ns: encoding, queueing and the direct
    /// writes' system calls — the cost the pacing divides by `direct`.
    cpu_ns: u64,
}

/// CPU time of the calling thread, ns (0 where the clock cannot be read). A turn runs
/// without awaiting, so the thread is the same at both ends of it.
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
        .unwrap_or(0)
}

/// One push frame holding `rounds` in order; its class and how many messages it holds.
fn encode_rounds<'a>(room: &str, rounds: impl Iterator<Item = &'a StagedRound>) -> (Frame, FrameClass, u64) {
    let (mut msgs, mut events) = (Vec::new(), Vec::new());
    for round in rounds {
        msgs.extend(round.msgs.iter().cloned());
        events.extend(round.events.iter().cloned());
    }
    let frame = Frame::from(onair_proto::encode_push(room, &msgs, &events));
    (frame, classify(&msgs, &events), msgs.len() as u64)
}

/// How expendable a push frame is: the outbox drops the lowest class first.
fn classify(delivered: &[Arc<ChatMessage>], events: &[RoomEvent]) -> FrameClass {
    if events.iter().any(|e| !e.is_refreshable()) {
        FrameClass::Essential
    } else if let Some(p) = delivered.iter().map(|m| m.priority).max() {
        FrameClass::Chat(p)
    } else {
        FrameClass::Refresh
    }
}

impl Hub {
    pub(crate) async fn run_ticker(self: Arc<Self>, room: Arc<Room>) {
        let mut rng = SplitMix64::new(seed());
        let mut last_slot = Instant::now();
        let mut slot = 0u64;
        let mut turns = Turns::default();
        let max_wait = Duration::from_millis(self.pacing.policy.max_ms);
        loop {
            let staged = room.has_staged();
            if !staged {
                turns.settle();
            }
            let idle = !staged && !room.has_round_work();
            if idle {
                // Idle until something happens or a mute/ban runs out: expiry is
                // the server's job, so a muted client learns it at once.
                let expiry = room.moderation.lock().next_expiry();
                let wait =
                    expiry.map_or(Duration::from_secs(3600), |at| Duration::from_millis(at.saturating_sub(now_ms())));
                tokio::select! {
                    _ = room.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.shutdown.cancelled() => break,
                }
            }
            // Slots are at least one interval apart: an idle room delivers at once, a
            // busy one batches everything of the last interval into one round. The
            // interval follows the room's size and the measured cost per write.
            let tick = self.pacing.tick(room.members.lock().len());
            let next_slot = last_slot + Duration::from_millis(tick.slots.slot_ms);
            let wake = if turns.any_owed() { next_slot.min(Instant::now() + DRAIN_POLL) } else { next_slot };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.shutdown.cancelled() => break,
            }
            let now = Instant::now();
            if now < next_slot {
                // Between slots: only buckets put off until their last frame drained.
                let due = turns.due(tick.slots, 0, now, max_wait);
                if due.contains(&true) {
                    let written = room.write_turn(&due, &[]);
                    self.pacing.record_fanout(written.cpu_ns, written.direct);
                    turns.written(written.marks, now);
                }
                continue;
            }
            // Slots keep time even when a round ran late (its history commit is
            // awaited) or the room was idle: the sweep moves on by every slot that
            // passed, so a member's turn comes once per tick of wall time.
            let slot_ms = tick.slots.slot_ms.max(1);
            let passed = 1 + now.duration_since(next_slot).as_millis() as u64 / slot_ms;
            last_slot = next_slot + Duration::from_millis((passed - 1) * slot_ms);
            if passed > 1 && !idle {
                metrics::counter!("onair_fanout_late_slots_total").increment(passed - 1);
            }
            let due = turns.due(tick.slots, passed, now, max_wait);
            // Counted once per tick of the room.
            let groups = tick.slots.groups.max(1);
            if tick.over_target && (slot + passed) / groups > slot / groups {
                metrics::counter!("onair_fanout_over_target_rounds_total").increment(1);
            }
            slot += passed;
            let written = self.deliver_round(&room, &mut rng, &due).await;
            self.pacing.record_fanout(written.cpu_ns, written.direct);
            turns.written(written.marks, now);
            if room.is_closed() {
                break;
            }
        }
        // Final round, written to everyone, so nothing queued is left without an outcome.
        self.deliver_round(&room, &mut rng, &[true; BUCKETS]).await;
    }

    /// One round: decides what is delivered, stages it, writes the `due` groups (and
    /// the senders of what was delivered, before their acks), then resolves the
    /// outcomes. Returns the groups written with their drain marks.
    async fn deliver_round(self: &Arc<Self>, room: &Room, rng: &mut impl RandomSource, due: &[bool]) -> Written {
        let _delivery = room.delivery.lock().await;
        let now = now_ms();
        if !room.sequencing() {
            // Another node numbers this room: this round stages what it published
            // since the last one. Restrictions still run out here.
            room.moderation.lock().expire(now);
            if let Some(cl) = room.cl.as_ref() {
                cl.flush_mirror(room);
            }
            return room.write_turn(due, &[]);
        }
        let expired = room.moderation.lock().expire(now);
        for ended in expired {
            let (user, mute) = match ended {
                Expired::Mute(user) => (user, true),
                Expired::Ban(user) => (user, false),
            };
            let stored = if mute {
                self.store.set_mute(&room.id, &user, 0).await
            } else {
                self.store.set_ban(&room.id, &user, None).await
            };
            if let Err(e) = stored {
                tracing::warn!(room = %room.id, error = %e, "could not clear an expired restriction");
            }
            if mute {
                room.chat.lock().push_event(RoomEvent::Muted { user_id: user, muted_until: 0 });
            }
        }
        let out: TickOutput<Ticket> = room.chat.lock().tick(now, rng);
        metrics::counter!("onair_ticks_total").increment(1);
        if !out.delivered.is_empty() {
            // Commit before anyone sees the messages: an ack then means "stored".
            if let Err(e) = self.writer.append(&room.id, out.delivered.clone()).await {
                tracing::error!(room = %room.id, error = %e, "history write failed; delivering anyway");
            }
            metrics::counter!("onair_messages_delivered_total").increment(out.delivered.len() as u64);
        }
        if let Some(cl) = room.cl.as_ref().filter(|_| !out.is_quiet()) {
            cl.publish_round(room, &out.delivered, &out.events);
        }
        if !out.delivered.is_empty() {
            self.chat_overlay_feed(room, &out.delivered, now);
        }
        room.stage(out.delivered.clone(), out.events);
        // A sender sees its message before the ack that says it was delivered, even
        // when its group's turn is later in the tick.
        let senders: Vec<u64> = out
            .outcomes
            .iter()
            .filter_map(|(ticket, outcome)| match (&ticket.reply, outcome) {
                (Reply::Ws { conn, .. }, Outcome::Delivered { .. }) => Some(*conn),
                _ => None,
            })
            .collect();
        let written = room.write_turn(due, &senders);
        let first_seq = out.delivered.first().map_or(0, |m| m.seq);
        let mut credited = Vec::new();
        for (ticket, outcome) in out.outcomes {
            let result = match outcome {
                Outcome::Delivered { seq, time_ms } => {
                    let delivered = seq.checked_sub(first_seq).and_then(|i| out.delivered.get(i as usize));
                    if let Some(m) = delivered.filter(|_| !ticket.ctx.system) {
                        credited.push(m.clone());
                    }
                    if let Some(m) = delivered.filter(|_| !ticket.ctx.forbid_after) {
                        self.callbacks.after(
                            "Group.CallbackAfterSendMsg",
                            json!({
                                "GroupId": room.id, "Type": "AVChatRoom", "From_Account": m.sender.user_id,
                                "Operator_Account": ticket.ctx.operator, "Random": m.random, "OnlineOnlyFlag": 0,
                                "MsgSeq": m.seq, "MsgTime": m.time_secs(), "MsgId": msg_id(m), "MsgBody": m.body,
                                "CloudCustomData": m.cloud_custom_data,
                            }),
                            ticket.ctx.origin.clone(),
                        );
                    }
                    SendResult { seq, time: time_ms / 1000, drop_reason: String::new() }
                }
                Outcome::Cut(_) => {
                    metrics::counter!("onair_messages_cut_total").increment(1);
                    SendResult { seq: 0, time: now_ms() / 1000, drop_reason: DROP_FREQUENCY.into() }
                }
            };
            ticket.reply.resolve(result);
        }
        if !credited.is_empty() {
            room.biz.lock().delivered(&credited, now, &self.business.popularity);
            for m in &credited {
                self.credit(&m.sender.user_id, |a| a.messages += 1);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(groups: u64) -> Slots {
        Slots { slot_ms: 10, groups }
    }

    fn buckets(due: &[bool]) -> Vec<usize> {
        due.iter().enumerate().filter(|(_, d)| **d).map(|(b, _)| b).collect()
    }

    #[test]
    fn a_bucket_waits_for_its_last_frame_to_drain() {
        let mut turns = Turns::default();
        let t0 = Instant::now();
        let wait = Duration::from_millis(500);
        // 128 groups: two buckets per slot.
        assert_eq!(buckets(&turns.due(slots(128), 1, t0, wait)), [0, 1]);
        // Bucket 0 got a frame held by 10 members; 2 of them have not written it.
        let mark = DrainMark::default();
        let held: Vec<DrainMark> = (0..2).map(|_| mark.clone()).collect();
        turns.written(vec![(0, mark, 10)], t0);
        for _ in 1..128 {
            turns.due(slots(128), 1, t0, wait);
        }
        assert_eq!(buckets(&turns.due(slots(128), 1, t0, wait)), [1], "20 % undrained: put off");
        assert!(turns.any_owed());
        assert!(buckets(&turns.due(slots(128), 0, t0, wait)).is_empty());
        drop(held.into_iter().next());
        assert_eq!(buckets(&turns.due(slots(128), 0, t0, wait)), [0], "10 % left: goes");
        assert!(!turns.any_owed());
    }

    #[test]
    fn an_undrained_bucket_goes_after_the_longest_wait() {
        let mut turns = Turns::default();
        let t0 = Instant::now();
        let wait = Duration::from_millis(500);
        let mark = DrainMark::default();
        let _held = mark.clone();
        assert_eq!(buckets(&turns.due(slots(1), 1, t0, wait)).len(), BUCKETS, "one group: everyone");
        turns.written(vec![(7, mark, 1)], t0);
        let due = turns.due(slots(1), 1, t0 + Duration::from_millis(499), wait);
        assert!(!due[7] && due[6] && due[8]);
        assert!(turns.due(slots(1), 0, t0 + wait, wait)[7]);
    }

    #[test]
    fn settling_clears_debts() {
        let mut turns = Turns::default();
        let t0 = Instant::now();
        let wait = Duration::from_millis(500);
        let mark = DrainMark::default();
        let _held = mark.clone();
        turns.due(slots(256), 1, t0, wait);
        turns.written(vec![(0, mark, 1)], t0);
        for _ in 0..256 {
            turns.due(slots(256), 1, t0, wait);
        }
        assert!(turns.any_owed());
        turns.settle();
        assert!(!turns.any_owed());
    }
}
