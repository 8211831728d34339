//! Per-room frequency control: at most `rate` user messages per second leave a room.
//!
//! Messages wait in one queue per priority. Each tick the room refills a token
//! bucket (`rate` tokens/s, a small burst) and spends the tokens on the highest
//! priority first, choosing uniformly at random among messages of the same priority
//! when there are more than tokens. A message that waited longer than `max_wait`
//! is cut. Waiting a little instead of deciding on arrival is what lets a gift that
//! arrives just after a burst of chat still win its slot: a per-arrival decision
//! would have spent the budget on whatever came first.

use std::collections::VecDeque;

use crate::Millis;
use crate::message::Priority;
use crate::random::RandomSource;

/// Tuning of frequency control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreqConfig {
    /// User messages per second per room (the cloud's 40).
    pub rate_per_sec: u32,
    /// Tokens that may accumulate while a room is quiet.
    pub burst: u32,
    /// A message not selected within this long is cut.
    pub max_wait_ms: u64,
    /// Most messages that may wait at once; beyond, the lowest priority is cut.
    pub max_pending: usize,
}

impl FreqConfig {
    /// Defaults derived from a rate: a quarter second of burst, half a second of
    /// waiting, room for four seconds' worth of backlog.
    pub fn with_rate(rate_per_sec: u32) -> Self {
        let rate = rate_per_sec.max(1);
        FreqConfig {
            rate_per_sec: rate,
            burst: (rate / 4).max(2),
            max_wait_ms: 500,
            max_pending: (rate as usize * 4).max(64),
        }
    }
}

impl Default for FreqConfig {
    fn default() -> Self {
        FreqConfig::with_rate(40)
    }
}

/// Why a message was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// Not selected within `max_wait`.
    Waited,
    /// The waiting queue overflowed and this was the lowest priority.
    Overflow,
}

struct Waiting<T> {
    arrival: u64,
    since: Millis,
    item: T,
}

/// What one selection round decided.
pub struct Selection<T> {
    /// Messages to deliver now, in arrival order.
    pub admitted: Vec<T>,
    /// Messages cut by frequency control.
    pub cut: Vec<(T, CutReason)>,
}

/// Token bucket plus per-priority waiting queues. `T` is whatever the caller needs
/// to route the outcome back (the core never looks inside it).
pub struct FrequencyControl<T> {
    cfg: FreqConfig,
    /// Tokens in thousandths, so refill stays exact in integer arithmetic.
    milli_tokens: u64,
    last_refill: Option<Millis>,
    queues: [VecDeque<Waiting<T>>; 4],
    arrivals: u64,
    waiting: usize,
}

impl<T> FrequencyControl<T> {
    /// An empty controller with a full bucket.
    pub fn new(cfg: FreqConfig) -> Self {
        FrequencyControl {
            cfg,
            milli_tokens: u64::from(cfg.burst) * 1000,
            last_refill: None,
            queues: Default::default(),
            arrivals: 0,
            waiting: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> FreqConfig {
        self.cfg
    }

    /// Messages currently waiting.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Queues a message. Returns a message cut to make room when the queue is full
    /// (possibly the offered one itself, when nothing waiting is lower).
    pub fn offer(&mut self, priority: Priority, item: T, now: Millis) -> Option<(T, CutReason)> {
        self.arrivals += 1;
        self.queues[priority.index()].push_back(Waiting { arrival: self.arrivals, since: now, item });
        self.waiting += 1;
        if self.waiting <= self.cfg.max_pending {
            return None;
        }
        // Full: cut the newest of the lowest priority present. The newest, not a
        // random one, so a flood cannot push out messages that already waited.
        let lowest = self.queues.iter().position(|q| !q.is_empty())?;
        let cut = self.queues[lowest].pop_back()?;
        self.waiting -= 1;
        Some((cut.item, CutReason::Overflow))
    }

    /// Refills the bucket for the time since the last call, admits what the tokens
    /// allow (highest priority first, random among equals) and cuts what waited
    /// too long.
    pub fn select(&mut self, now: Millis, rng: &mut impl RandomSource) -> Selection<T> {
        self.refill(now);
        let mut admitted: Vec<Waiting<T>> = Vec::new();
        for priority in Priority::HIGH_TO_LOW {
            let tokens = (self.milli_tokens / 1000) as usize;
            if tokens == 0 {
                break;
            }
            let queue = &mut self.queues[priority.index()];
            if queue.is_empty() {
                continue;
            }
            let take = tokens.min(queue.len());
            if take == queue.len() {
                admitted.extend(queue.drain(..));
            } else {
                // Partial Fisher–Yates over the queue: `take` uniform picks among equals.
                let slots = queue.make_contiguous();
                for i in 0..take {
                    let j = i + rng.below(slots.len() - i);
                    slots.swap(i, j);
                }
                admitted.extend(queue.drain(..take));
                // Keep the rest in arrival order for the next round's expiry check.
                queue.make_contiguous().sort_by_key(|w| w.arrival);
            }
            self.milli_tokens -= take as u64 * 1000;
        }
        self.waiting -= admitted.len();
        admitted.sort_by_key(|w| w.arrival);

        let mut cut = Vec::new();
        for queue in &mut self.queues {
            while queue.front().is_some_and(|w| now.saturating_sub(w.since) >= self.cfg.max_wait_ms) {
                if let Some(w) = queue.pop_front() {
                    cut.push((w.item, CutReason::Waited));
                }
            }
        }
        self.waiting -= cut.len();
        Selection { admitted: admitted.into_iter().map(|w| w.item).collect(), cut }
    }

    /// Takes every waiting item out, oldest first (a room whose sequencer moved to
    /// another node hands its queue over instead of deciding it).
    pub fn drain(&mut self) -> Vec<T> {
        let mut all: Vec<Waiting<T>> = self.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
        all.sort_by_key(|w| w.arrival);
        self.waiting = 0;
        all.into_iter().map(|w| w.item).collect()
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = match self.last_refill {
            Some(last) => now.saturating_sub(last),
            None => 0,
        };
        self.last_refill = Some(now.max(self.last_refill.unwrap_or(0)));
        let rate = u64::from(self.cfg.rate_per_sec);
        // A quiet room may save up only `burst`. But what was earned while a
        // message waited belongs to the waiting messages: a round that comes late
        // (a busy server, a long tick) must not lose the room its rate.
        let oldest_wait = self.queues.iter().filter_map(|q| q.front()).map(|w| now.saturating_sub(w.since)).max();
        let cap = (u64::from(self.cfg.burst) * 1000).max(oldest_wait.unwrap_or(0) * rate);
        self.milli_tokens = (self.milli_tokens + elapsed * rate).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix64;

    type Delivered = Vec<(Millis, (Priority, u32))>;

    fn drive(
        fc: &mut FrequencyControl<(Priority, u32)>,
        arrivals: &[(Millis, Priority)],
        until: Millis,
        tick: Millis,
        rng: &mut SplitMix64,
    ) -> (Delivered, Vec<(Priority, u32)>) {
        let mut delivered = Vec::new();
        let mut cut = Vec::new();
        let mut next = 0usize;
        let mut now = 0;
        while now <= until {
            while next < arrivals.len() && arrivals[next].0 <= now {
                if let Some((c, _)) = fc.offer(arrivals[next].1, (arrivals[next].1, next as u32), now) {
                    cut.push(c);
                }
                next += 1;
            }
            let s = fc.select(now, rng);
            delivered.extend(s.admitted.into_iter().map(|m| (now, m)));
            cut.extend(s.cut.into_iter().map(|(m, _)| m));
            now += tick;
        }
        (delivered, cut)
    }

    #[test]
    fn under_the_rate_everything_passes_within_a_tick() {
        let mut fc = FrequencyControl::new(FreqConfig::default());
        let arrivals: Vec<_> = (0..30).map(|i| (i * 33, Priority::Normal)).collect();
        let (delivered, cut) = drive(&mut fc, &arrivals, 2_000, 50, &mut SplitMix64::new(1));
        assert_eq!(delivered.len(), 30);
        assert!(cut.is_empty());
        for (at, (_, i)) in &delivered {
            assert!(*at - arrivals[*i as usize].0 < 100, "waited too long");
        }
    }

    #[test]
    fn overload_is_capped_and_every_high_gets_through() {
        // 300 messages in one second: 30 High, 120 Normal, 90 Low, 60 Lowest, interleaved.
        let pattern = [
            Priority::Normal,
            Priority::Low,
            Priority::Normal,
            Priority::Lowest,
            Priority::Normal,
            Priority::Low,
            Priority::Normal,
            Priority::Lowest,
            Priority::Low,
            Priority::High,
        ];
        let arrivals: Vec<_> = (0..300).map(|i| (i as Millis * 1000 / 300, pattern[i % 10])).collect();
        let mut fc = FrequencyControl::new(FreqConfig::default());
        let (delivered, cut) = drive(&mut fc, &arrivals, 3_000, 50, &mut SplitMix64::new(42));
        assert_eq!(delivered.len() + cut.len(), 300, "every message gets an outcome");
        let highs = delivered.iter().filter(|(_, (p, _))| *p == Priority::High).count();
        assert_eq!(highs, 30, "all High delivered");
        // Any one-second window holds at most rate + burst deliveries.
        for start in (0..3_000).step_by(50) {
            let n = delivered.iter().filter(|(t, _)| *t >= start && *t < start + 1000).count();
            assert!(n <= 40 + 10, "window at {start} had {n}");
        }
        // Lower priorities lose first.
        let lowest = delivered.iter().filter(|(_, (p, _))| *p == Priority::Lowest).count();
        let normal = delivered.iter().filter(|(_, (p, _))| *p == Priority::Normal).count();
        assert!(lowest < normal, "lowest {lowest} normal {normal}");
    }

    #[test]
    fn equals_are_chosen_at_random_not_first_come() {
        // 100 Normal messages at once; tokens for 10. Over many seeds each index
        // should win sometimes, including late arrivals.
        let mut wins = vec![0u32; 100];
        for seed in 0..400 {
            let mut fc =
                FrequencyControl::new(FreqConfig { rate_per_sec: 40, burst: 10, max_wait_ms: 1, max_pending: 1000 });
            for i in 0..100u32 {
                fc.offer(Priority::Normal, i, 0);
            }
            let s = fc.select(0, &mut SplitMix64::new(seed));
            assert_eq!(s.admitted.len(), 10);
            assert!(s.admitted.windows(2).all(|w| w[0] < w[1]), "admitted in arrival order");
            for i in s.admitted {
                wins[i as usize] += 1;
            }
        }
        assert!(wins[90..].iter().sum::<u32>() > 200, "late arrivals win about their share: {:?}", &wins[90..]);
        assert!(wins.iter().all(|&w| w > 0));
    }

    #[test]
    fn overflow_cuts_the_lowest_priority_newest() {
        let mut fc =
            FrequencyControl::new(FreqConfig { rate_per_sec: 1, burst: 1, max_wait_ms: 10_000, max_pending: 3 });
        assert!(fc.offer(Priority::Low, 1, 0).is_none());
        assert!(fc.offer(Priority::High, 2, 0).is_none());
        assert!(fc.offer(Priority::Low, 3, 0).is_none());
        assert_eq!(fc.offer(Priority::Normal, 4, 0), Some((3, CutReason::Overflow)));
        assert_eq!(fc.offer(Priority::Lowest, 5, 0), Some((5, CutReason::Overflow)));
        assert_eq!(fc.waiting(), 3);
    }

    #[test]
    fn a_single_late_round_after_quiet_admits_what_waited() {
        // Quiet, then 28 messages trickle in over 700 ms and the next round comes
        // only then: they earned their slots while waiting.
        let mut fc = FrequencyControl::new(FreqConfig::default());
        let mut rng = SplitMix64::new(1);
        fc.select(0, &mut rng);
        for i in 0..28u64 {
            fc.offer(Priority::Normal, (Priority::Normal, i as u32), 10_000 + i * 25);
        }
        let s = fc.select(10_700, &mut rng);
        assert_eq!(s.admitted.len(), 28);
        assert!(s.cut.is_empty());
    }

    #[test]
    fn late_rounds_do_not_lose_the_rate_while_messages_wait() {
        // 40 msgs/s arriving steadily, but rounds only every 400 ms (a loaded server
        // or a long tick): the full rate must still get through, nothing cut.
        let arrivals: Vec<_> = (0..200).map(|i| (i as Millis * 25, Priority::Normal)).collect();
        let mut fc = FrequencyControl::new(FreqConfig { max_wait_ms: 1_000, ..FreqConfig::default() });
        let (delivered, cut) = drive(&mut fc, &arrivals, 6_000, 400, &mut SplitMix64::new(4));
        assert!(cut.is_empty(), "cut {}", cut.len());
        assert_eq!(delivered.len(), 200);
        // And a quiet room still cannot save up more than the burst.
        let mut fc = FrequencyControl::new(FreqConfig::default());
        let mut rng = SplitMix64::new(1);
        fc.select(0, &mut rng);
        for i in 0..100 {
            fc.offer(Priority::Normal, (Priority::Normal, i), 60_000);
        }
        assert_eq!(fc.select(60_000, &mut rng).admitted.len(), 10);
    }

    #[test]
    fn time_going_backwards_does_not_mint_tokens() {
        let mut fc =
            FrequencyControl::new(FreqConfig { rate_per_sec: 10, burst: 1, max_wait_ms: 10_000, max_pending: 100 });
        let mut rng = SplitMix64::new(3);
        for i in 0..5 {
            fc.offer(Priority::Normal, i, 1_000);
        }
        assert_eq!(fc.select(1_000, &mut rng).admitted.len(), 1);
        assert_eq!(fc.select(500, &mut rng).admitted.len(), 0);
        assert_eq!(fc.select(1_100, &mut rng).admitted.len(), 1);
    }
}
