//! Per-user sending limits in one room: a send rate, slow mode and duplicate-flood
//! suppression (issue 4, item 7).
//!
//! Room frequency control ([`crate::freq`]) caps what a whole room delivers; it does
//! not stop one user from taking the room's whole budget, nor from pasting the same
//! line over and over. These limits do, per user and before a message ever reaches
//! the room queue, and every refusal says exactly how long to wait.
//!
//! The rules, checked together on every message:
//! - **Rate**: a token bucket per user (`user_rate_per_sec`, `user_burst`).
//! - **Slow mode**: at least `slow_mode_ms` between two accepted messages of a user.
//! - **Flood**: the same text (by [`fingerprint`]) more than `flood_max_repeats`
//!   times within `flood_window_ms` is refused.
//!
//! A refused message changes nothing: it spends no token, does not restart slow
//! mode and does not count as a repeat. So the reported wait is a promise: the same
//! message sent again `retry_after_ms` later passes (when several rules refuse, the
//! longest wait is reported, and every rule only relaxes as time passes). Time comes
//! in as `now`; a clock that goes backwards never panics and never mints tokens (the
//! state keeps the latest time it saw and counts from there). Memory is bounded:
//! at most `max_tracked_users` users per room, the least recently active forgotten
//! first, and [`UserLimits::prune`] forgets users whose limits have all lapsed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::Millis;

/// One token of the per-user bucket, in internal units. With this scale a rate of
/// `r` tokens per second refills exactly `r` units per millisecond, so every wait is
/// an exact integer number of milliseconds.
const UNITS_PER_TOKEN: u64 = 1000;

/// Fewest recent texts remembered per user for flood detection (more when
/// `flood_max_repeats` needs it). Bounds memory for users sending many distinct texts.
const MIN_FLOOD_HISTORY: usize = 32;

/// Most recent texts remembered per user, whatever the configuration.
const MAX_FLOOD_HISTORY: usize = 4096;

/// Tuning of the per-user limits of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Messages per second one user may send in one room (token bucket); 0 = unlimited.
    pub user_rate_per_sec: u32,
    /// Burst of the per-user bucket (a fresh user starts with a full bucket; 0 acts as 1).
    pub user_burst: u32,
    /// Slow mode: at least this many ms between two messages of the same user; 0 = off.
    pub slow_mode_ms: u64,
    /// Duplicate flood: the same text from the same user more than `flood_max_repeats`
    /// times within `flood_window_ms` is refused; 0 (either field) = off.
    pub flood_window_ms: u64,
    /// Repeats of one text allowed within `flood_window_ms`.
    pub flood_max_repeats: u32,
    /// Users tracked per room at most (least recently active evicted first; 0 acts as 1).
    pub max_tracked_users: usize,
}

impl Default for LimitsConfig {
    /// Generous defaults: 5 messages/s with a burst of 10, no slow mode, the same
    /// text at most 3 times in 30 s, 100,000 users tracked.
    fn default() -> Self {
        LimitsConfig {
            user_rate_per_sec: 5,
            user_burst: 10,
            slow_mode_ms: 0,
            flood_window_ms: 30_000,
            flood_max_repeats: 3,
            max_tracked_users: 100_000,
        }
    }
}

/// Which rule refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The user's send rate (token bucket) is exhausted.
    Rate,
    /// Slow mode: the user's previous message is too recent.
    SlowMode,
    /// The same text was repeated too often.
    Flood,
}

/// A refused message: which rule, and how long until the same message would pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule that refused (the one with the longest wait when several did).
    pub kind: LimitKind,
    /// Exact milliseconds to wait (always > 0).
    pub retry_after_ms: u64,
}

impl Violation {
    /// A human-readable explanation with the wait rounded up to whole seconds
    /// (at least 1), e.g. `"slow mode: wait 3 s before sending again"`.
    pub fn message(&self) -> String {
        let secs = self.retry_after_secs();
        match self.kind {
            LimitKind::Rate => format!("sending too fast: wait {secs} s"),
            LimitKind::SlowMode => format!("slow mode: wait {secs} s before sending again"),
            LimitKind::Flood => format!("the same message repeated too often: wait {secs} s"),
        }
    }

    /// The wait in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// What is remembered of one user.
#[derive(Debug, Clone)]
struct UserState {
    /// Latest time seen for this user; all elapsed times count from here, so a
    /// clock going backwards adds nothing.
    clock: Millis,
    /// Tokens in the bucket, in [`UNITS_PER_TOKEN`] units, as of `clock`.
    units: u64,
    /// When the last accepted message was sent.
    last_sent: Option<Millis>,
    /// Accepted messages with a text fingerprint, oldest first.
    recent: VecDeque<(Millis, u64)>,
    /// Position in the recency order.
    touch: u64,
}

/// The per-user limits of one room. Pure: the caller passes the time.
#[derive(Debug, Clone)]
pub struct UserLimits {
    cfg: LimitsConfig,
    users: HashMap<String, UserState>,
    /// Recency order: touch counter → user; the first entry is the least recently active.
    order: BTreeMap<u64, String>,
    next_touch: u64,
}

impl UserLimits {
    /// Limits with this configuration and no user tracked yet.
    pub fn new(cfg: LimitsConfig) -> Self {
        UserLimits { cfg, users: HashMap::new(), order: BTreeMap::new(), next_touch: 0 }
    }

    /// The configuration in force.
    pub fn config(&self) -> LimitsConfig {
        self.cfg
    }

    /// Sets slow mode for this room (0 = off). Applies at once, measured from each
    /// user's last accepted message.
    pub fn set_slow_mode(&mut self, ms: u64) {
        self.cfg.slow_mode_ms = ms;
    }

    /// Current slow mode interval in ms (0 = off).
    pub fn slow_mode_ms(&self) -> u64 {
        self.cfg.slow_mode_ms
    }

    /// Users currently tracked.
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    /// Checks and, if allowed, records one message. `fingerprint` identifies the text
    /// (the caller hashes the normalized text, see [`fingerprint`]; 0 = no text, never
    /// a flood). A refused message is not recorded, so sending it again after
    /// `retry_after_ms` succeeds.
    pub fn check(&mut self, user: &str, fingerprint: u64, now: Millis) -> Result<(), Violation> {
        let cfg = self.cfg;
        let capacity = bucket_capacity(&cfg);
        let touch = self.next_touch;
        self.next_touch += 1;

        if let Some(state) = self.users.get_mut(user) {
            self.order.remove(&state.touch);
            state.touch = touch;
            self.order.insert(touch, user.to_owned());
        } else {
            let limit = cfg.max_tracked_users.max(1);
            while self.users.len() >= limit {
                match self.order.pop_first() {
                    Some((_, evicted)) => {
                        self.users.remove(&evicted);
                    }
                    None => break,
                }
            }
            let state = UserState { clock: now, units: capacity, last_sent: None, recent: VecDeque::new(), touch };
            self.users.insert(user.to_owned(), state);
            self.order.insert(touch, user.to_owned());
        }
        let Some(state) = self.users.get_mut(user) else {
            // Just inserted or found above.
            return Ok(());
        };

        // Bring the bucket up to date; time going backwards adds nothing.
        let rate = u64::from(cfg.user_rate_per_sec);
        if now > state.clock {
            let elapsed = now - state.clock;
            state.units = state.units.saturating_add(elapsed.saturating_mul(rate)).min(capacity);
            state.clock = now;
        }
        // Texts old enough to be outside the window no longer count.
        let flood_on = cfg.flood_window_ms > 0 && cfg.flood_max_repeats > 0;
        // (`retain`, not popping the front: a clock that went back leaves them unsorted.)
        state.recent.retain(|&(at, _)| flood_on && at.saturating_add(cfg.flood_window_ms) > now);

        // Every rule that refuses gives its exact wait; the longest one is reported.
        let mut worst: Option<Violation> = None;
        let mut refuse = |kind: LimitKind, wait: u64| {
            if worst.as_ref().is_none_or(|w| wait > w.retry_after_ms) {
                worst = Some(Violation { kind, retry_after_ms: wait });
            }
        };
        if let (true, Some(last)) = (cfg.slow_mode_ms > 0, state.last_sent) {
            let ready = last.saturating_add(cfg.slow_mode_ms);
            if ready > now {
                refuse(LimitKind::SlowMode, ready - now);
            }
        }
        if flood_on && fingerprint != 0 {
            let mut same: Vec<Millis> =
                state.recent.iter().filter(|&&(_, fp)| fp == fingerprint).map(|&(at, _)| at).collect();
            let max = cfg.flood_max_repeats as usize;
            if same.len() >= max {
                // Passes once enough of the oldest copies left the window that fewer
                // than `flood_max_repeats` remain.
                same.sort_unstable();
                let must_expire = same.len() - max;
                if let Some(&at) = same.get(must_expire) {
                    refuse(LimitKind::Flood, at.saturating_add(cfg.flood_window_ms) - now);
                }
            }
        }
        if rate > 0 && state.units < UNITS_PER_TOKEN {
            // Refill counts from `clock`, which is later than `now` if the clock went back.
            let behind = state.clock - now.min(state.clock);
            let refill = (UNITS_PER_TOKEN - state.units).div_ceil(rate);
            refuse(LimitKind::Rate, behind.saturating_add(refill));
        }
        if let Some(violation) = worst {
            return Err(violation);
        }

        // Accepted: record it.
        if rate > 0 {
            state.units -= UNITS_PER_TOKEN;
        }
        state.last_sent = Some(state.last_sent.map_or(now, |last| last.max(now)));
        if flood_on && fingerprint != 0 {
            let history = (cfg.flood_max_repeats as usize).clamp(MIN_FLOOD_HISTORY, MAX_FLOOD_HISTORY);
            while state.recent.len() >= history {
                state.recent.pop_front();
            }
            state.recent.push_back((now, fingerprint));
        }
        Ok(())
    }

    /// Forgets users idle for longer than every window (full bucket, slow mode and
    /// flood window lapsed), so forgetting them changes no answer. Call occasionally.
    pub fn prune(&mut self, now: Millis) {
        let cfg = self.cfg;
        let horizon = idle_horizon(&cfg);
        let order = &mut self.order;
        self.users.retain(|_, state| {
            let last_active = state.last_sent.map_or(state.clock, |sent| sent.max(state.clock));
            let keep = now < last_active.saturating_add(horizon);
            if !keep {
                order.remove(&state.touch);
            }
            keep
        });
    }
}

/// Bucket size in internal units.
fn bucket_capacity(cfg: &LimitsConfig) -> u64 {
    u64::from(cfg.user_burst.max(1)) * UNITS_PER_TOKEN
}

/// How long after its last activity a user's state is indistinguishable from a
/// fresh one.
fn idle_horizon(cfg: &LimitsConfig) -> u64 {
    let refill = match u64::from(cfg.user_rate_per_sec) {
        0 => 0,
        rate => bucket_capacity(cfg).div_ceil(rate),
    };
    refill.max(cfg.slow_mode_ms).max(cfg.flood_window_ms)
}

/// A stable 64-bit fingerprint of a text for flood detection: FNV-1a over the text
/// lowercased with all whitespace removed, so `"Hello  World"` and `"helloworld"`
/// match. A text that is empty after normalisation gives 0 ("no text"); a non-empty
/// one never does.
pub fn fingerprint(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut empty = true;
    let mut buf = [0u8; 4];
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        for lower in c.to_lowercase() {
            empty = false;
            for byte in lower.encode_utf8(&mut buf).bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
    }
    match (empty, hash) {
        (true, _) => 0,
        (false, 0) => 1,
        (false, h) => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No rule but the one under test.
    fn only(f: impl FnOnce(&mut LimitsConfig)) -> LimitsConfig {
        let mut cfg = LimitsConfig {
            user_rate_per_sec: 0,
            user_burst: 1,
            slow_mode_ms: 0,
            flood_window_ms: 0,
            flood_max_repeats: 0,
            max_tracked_users: 100,
        };
        f(&mut cfg);
        cfg
    }

    /// One step of a script: who sends what when, and the expected answer
    /// (`None` = accepted, `Some((kind, wait))` = refused).
    type Step = (&'static str, u64, Millis, Option<(LimitKind, u64)>);

    fn run(name: &str, cfg: LimitsConfig, steps: &[Step]) {
        let mut limits = UserLimits::new(cfg);
        for (i, &(user, fp, now, expected)) in steps.iter().enumerate() {
            let got = limits.check(user, fp, now).err().map(|v| (v.kind, v.retry_after_ms));
            assert_eq!(got, expected, "{name}: step {i} ({user}, fp {fp}, t {now})");
        }
    }

    use LimitKind::{Flood, Rate, SlowMode};

    #[test]
    fn rate_table() {
        let cases: Vec<(&str, LimitsConfig, Vec<Step>)> = vec![
            (
                "burst then exact refill at 5/s",
                only(|c| {
                    c.user_rate_per_sec = 5;
                    c.user_burst = 2;
                }),
                vec![
                    ("a", 1, 1000, None),
                    ("a", 2, 1000, None),
                    ("a", 3, 1000, Some((Rate, 200))),
                    ("a", 3, 1100, Some((Rate, 100))),
                    ("a", 3, 1199, Some((Rate, 1))),
                    ("a", 3, 1200, None),
                    ("a", 4, 1200, Some((Rate, 200))),
                ],
            ),
            (
                "uneven rate rounds the wait up",
                only(|c| {
                    c.user_rate_per_sec = 3;
                    c.user_burst = 1;
                }),
                vec![
                    ("a", 1, 0, None),
                    ("a", 2, 0, Some((Rate, 334))),
                    ("a", 2, 333, Some((Rate, 1))),
                    ("a", 2, 334, None),
                ],
            ),
            (
                "users have separate buckets",
                only(|c| {
                    c.user_rate_per_sec = 1;
                    c.user_burst = 1;
                }),
                vec![
                    ("a", 1, 0, None),
                    ("a", 1, 0, Some((Rate, 1000))),
                    ("b", 1, 0, None),
                    ("b", 1, 500, Some((Rate, 500))),
                ],
            ),
            (
                "refusals spend nothing",
                only(|c| {
                    c.user_rate_per_sec = 1;
                    c.user_burst = 1;
                }),
                vec![
                    ("a", 1, 0, None),
                    ("a", 1, 100, Some((Rate, 900))),
                    ("a", 1, 200, Some((Rate, 800))),
                    ("a", 1, 999, Some((Rate, 1))),
                    ("a", 1, 1000, None),
                ],
            ),
            (
                "bucket caps at burst after a long idle",
                only(|c| {
                    c.user_rate_per_sec = 10;
                    c.user_burst = 2;
                }),
                vec![
                    ("a", 1, 0, None),
                    ("a", 1, 0, None),
                    ("a", 1, 1_000_000, None),
                    ("a", 1, 1_000_000, None),
                    ("a", 1, 1_000_000, Some((Rate, 100))),
                ],
            ),
            ("rate 0 is unlimited", only(|c| c.user_rate_per_sec = 0), (0..50).map(|_| ("a", 0, 7, None)).collect()),
            (
                "time going backwards mints nothing and the wait counts from the latest time",
                only(|c| {
                    c.user_rate_per_sec = 1;
                    c.user_burst = 1;
                }),
                vec![
                    ("a", 1, 10_000, None),
                    ("a", 1, 5_000, Some((Rate, 6_000))),
                    ("a", 1, 10_500, Some((Rate, 500))),
                    ("a", 1, 11_000, None),
                ],
            ),
        ];
        for (name, cfg, steps) in cases {
            run(name, cfg, &steps);
        }
    }

    #[test]
    fn slow_mode_table() {
        let cases: Vec<(&str, LimitsConfig, Vec<Step>)> = vec![
            (
                "one message per 3 s",
                only(|c| c.slow_mode_ms = 3000),
                vec![
                    ("a", 1, 0, None),
                    ("a", 2, 1, Some((SlowMode, 2999))),
                    ("a", 2, 2000, Some((SlowMode, 1000))),
                    ("a", 2, 3000, None),
                    ("a", 3, 5999, Some((SlowMode, 1))),
                    ("a", 3, 6000, None),
                ],
            ),
            (
                "per user",
                only(|c| c.slow_mode_ms = 1000),
                vec![("a", 1, 0, None), ("b", 1, 0, None), ("a", 1, 10, Some((SlowMode, 990))), ("c", 1, 10, None)],
            ),
            (
                "refused messages do not restart the interval",
                only(|c| c.slow_mode_ms = 1000),
                vec![
                    ("a", 1, 0, None),
                    ("a", 1, 400, Some((SlowMode, 600))),
                    ("a", 1, 800, Some((SlowMode, 200))),
                    ("a", 1, 1000, None),
                ],
            ),
            (
                "clock going backwards waits until the interval really passed",
                only(|c| c.slow_mode_ms = 1000),
                vec![("a", 1, 5000, None), ("a", 1, 4000, Some((SlowMode, 2000))), ("a", 1, 6000, None)],
            ),
            ("off", only(|c| c.slow_mode_ms = 0), vec![("a", 1, 0, None), ("a", 2, 0, None), ("a", 3, 0, None)]),
        ];
        for (name, cfg, steps) in cases {
            run(name, cfg, &steps);
        }
    }

    #[test]
    fn flood_table() {
        let flood = |window, repeats| {
            only(|c| {
                c.flood_window_ms = window;
                c.flood_max_repeats = repeats;
            })
        };
        let cases: Vec<(&str, LimitsConfig, Vec<Step>)> = vec![
            (
                "fourth copy within 30 s refused until the first leaves the window",
                flood(30_000, 3),
                vec![
                    ("a", 7, 0, None),
                    ("a", 7, 10_000, None),
                    ("a", 7, 18_000, None),
                    ("a", 7, 18_000, Some((Flood, 12_000))),
                    ("a", 8, 18_000, None),
                    ("a", 7, 29_999, Some((Flood, 1))),
                    ("a", 7, 30_000, None),
                    ("a", 7, 30_000, Some((Flood, 10_000))),
                ],
            ),
            (
                "other users' copies do not count",
                flood(1000, 1),
                vec![("a", 7, 0, None), ("b", 7, 0, None), ("a", 7, 1, Some((Flood, 999)))],
            ),
            (
                "interleaving other texts does not reset the count",
                flood(1000, 2),
                vec![
                    ("a", 7, 0, None),
                    ("a", 8, 1, None),
                    ("a", 7, 2, None),
                    ("a", 9, 3, None),
                    ("a", 7, 4, Some((Flood, 996))),
                ],
            ),
            ("fingerprint 0 is never a flood", flood(1000, 1), (0..10).map(|_| ("a", 0, 5, None)).collect()),
            ("0 repeats means off", flood(1000, 0), (0..10).map(|_| ("a", 7, 5, None)).collect()),
            ("0 window means off", flood(0, 1), (0..10).map(|_| ("a", 7, 5, None)).collect()),
            (
                "refused copies do not count",
                flood(1000, 1),
                vec![
                    ("a", 7, 0, None),
                    ("a", 7, 500, Some((Flood, 500))),
                    ("a", 7, 999, Some((Flood, 1))),
                    ("a", 7, 1000, None),
                ],
            ),
        ];
        for (name, cfg, steps) in cases {
            run(name, cfg, &steps);
        }
    }

    #[test]
    fn several_rules_report_the_longest_wait() {
        let cfg = LimitsConfig {
            user_rate_per_sec: 1,
            user_burst: 1,
            slow_mode_ms: 3000,
            flood_window_ms: 10_000,
            flood_max_repeats: 1,
            max_tracked_users: 10,
        };
        run(
            "all three",
            cfg,
            &[
                ("a", 7, 0, None),
                ("a", 7, 500, Some((Flood, 9500))),
                ("a", 8, 500, Some((SlowMode, 2500))),
                ("a", 8, 3000, None),
                ("a", 9, 3000, Some((SlowMode, 3000))),
            ],
        );
    }

    #[test]
    fn slow_mode_changes_at_run_time() {
        let mut limits = UserLimits::new(only(|_| {}));
        assert_eq!(limits.slow_mode_ms(), 0);
        assert!(limits.check("a", 1, 0).is_ok());
        limits.set_slow_mode(5000);
        assert_eq!(limits.slow_mode_ms(), 5000);
        assert_eq!(limits.check("a", 2, 1000), Err(Violation { kind: SlowMode, retry_after_ms: 4000 }));
        limits.set_slow_mode(0);
        assert!(limits.check("a", 2, 1000).is_ok());
    }

    #[test]
    fn defaults_are_generous() {
        let cfg = LimitsConfig::default();
        assert_eq!((cfg.user_rate_per_sec, cfg.user_burst, cfg.slow_mode_ms), (5, 10, 0));
        assert_eq!((cfg.flood_window_ms, cfg.flood_max_repeats, cfg.max_tracked_users), (30_000, 3, 100_000));
        let mut limits = UserLimits::new(cfg);
        // A burst of 10 distinct lines passes, the 11th waits 200 ms.
        for i in 0..10 {
            assert!(limits.check("a", fingerprint(&format!("line {i}")), 0).is_ok());
        }
        assert_eq!(limits.check("a", 99, 0), Err(Violation { kind: Rate, retry_after_ms: 200 }));
    }

    #[test]
    fn messages_state_the_wait_in_seconds() {
        let v = |kind, retry_after_ms| Violation { kind, retry_after_ms }.message();
        assert_eq!(v(SlowMode, 3000), "slow mode: wait 3 s before sending again");
        assert_eq!(v(Rate, 200), "sending too fast: wait 1 s");
        assert_eq!(v(Flood, 11_001), "the same message repeated too often: wait 12 s");
        assert_eq!(Violation { kind: Rate, retry_after_ms: 1 }.retry_after_secs(), 1);
    }

    #[test]
    fn least_recently_active_user_is_evicted() {
        let mut limits = UserLimits::new(only(|c| {
            c.slow_mode_ms = 10_000;
            c.max_tracked_users = 2;
        }));
        assert!(limits.check("a", 1, 0).is_ok());
        assert!(limits.check("b", 1, 1).is_ok());
        // "a" is active again (even a refusal counts as activity), so "b" is the oldest.
        assert!(limits.check("a", 1, 2).is_err());
        assert!(limits.check("c", 1, 3).is_ok());
        assert_eq!(limits.tracked_users(), 2);
        // "b" was forgotten: it starts afresh, evicting "a" (now older than "c").
        assert!(limits.check("b", 1, 4).is_ok());
        assert!(limits.check("c", 1, 5).is_err());
        assert!(limits.check("a", 1, 6).is_ok());
        assert_eq!(limits.tracked_users(), 2);
    }

    #[test]
    fn zero_capacity_acts_as_one() {
        let mut limits = UserLimits::new(only(|c| {
            c.slow_mode_ms = 100;
            c.max_tracked_users = 0;
        }));
        assert!(limits.check("a", 1, 0).is_ok());
        assert!(limits.check("a", 1, 1).is_err());
        assert!(limits.check("b", 1, 1).is_ok());
        assert_eq!(limits.tracked_users(), 1);
    }

    #[test]
    fn prune_forgets_only_users_whose_limits_lapsed() {
        let cfg = LimitsConfig { slow_mode_ms: 60_000, ..LimitsConfig::default() };
        let mut limits = UserLimits::new(cfg);
        assert!(limits.check("old", 1, 0).is_ok());
        assert!(limits.check("new", 1, 50_000).is_ok());
        limits.prune(59_999);
        assert_eq!(limits.tracked_users(), 2);
        limits.prune(60_000);
        assert_eq!(limits.tracked_users(), 1);
        assert_eq!(limits.check("new", 2, 60_000), Err(Violation { kind: SlowMode, retry_after_ms: 50_000 }));
        limits.prune(u64::MAX);
        assert_eq!(limits.tracked_users(), 0);
        // The recency order was cleaned too: new users fill the room normally.
        assert!(limits.check("x", 1, 0).is_ok());
        assert_eq!(limits.order.len(), limits.users.len());
    }

    #[test]
    fn fingerprint_normalizes_case_and_whitespace() {
        assert_eq!(fingerprint("Hello  World"), fingerprint("helloworld"));
        assert_eq!(fingerprint(" HELLO\tworld\n"), fingerprint("hello world"));
        assert_eq!(fingerprint("ÄBC"), fingerprint("äbc"));
        assert_ne!(fingerprint("hello"), fingerprint("hullo"));
        assert_eq!(fingerprint(""), 0);
        assert_eq!(fingerprint(" \t\n\u{3000}"), 0);
        assert_ne!(fingerprint("a"), 0);
        // FNV-1a of "a" is a published test vector: the hash is stable across versions.
        assert_eq!(fingerprint("A"), 0xaf63_dc4c_8601_ec8c);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn config() -> impl Strategy<Value = LimitsConfig> {
            (0u32..20, 0u32..5, 0u64..5000, 0u64..5000, 0u32..4, 0usize..4).prop_map(
                |(rate, burst, slow, window, repeats, users)| LimitsConfig {
                    user_rate_per_sec: rate,
                    user_burst: burst,
                    slow_mode_ms: slow,
                    flood_window_ms: window,
                    flood_max_repeats: repeats,
                    max_tracked_users: users,
                },
            )
        }

        /// Sends by up to 3 users with a few texts, times that mostly advance but may
        /// jump back.
        fn sends() -> impl Strategy<Value = Vec<(u8, u64, i64)>> {
            proptest::collection::vec((0u8..3, 0u64..4, -2000i64..3000), 1..60)
        }

        proptest! {
            #[test]
            fn never_panics_and_waiting_always_works(cfg in config(), sends in sends(), start in 0u64..1_000_000) {
                let mut limits = UserLimits::new(cfg);
                let mut now = start;
                for (user, fp, step) in sends {
                    now = now.saturating_add_signed(step);
                    let user = format!("u{user}");
                    if let Err(v) = limits.check(&user, fp, now) {
                        prop_assert!(v.retry_after_ms > 0);
                        // The same message after the reported wait passes...
                        let mut same = limits.clone();
                        prop_assert_eq!(same.check(&user, fp, now + v.retry_after_ms), Ok(()));
                        // ...and so does a different text (rate and slow mode are met too).
                        let mut other = limits.clone();
                        prop_assert_eq!(other.check(&user, fp + 1000, now + v.retry_after_ms), Ok(()));
                        // One millisecond earlier it is still refused by some rule.
                        if v.retry_after_ms > 1 {
                            let mut early = limits.clone();
                            prop_assert!(early.check(&user, fp, now + v.retry_after_ms - 1).is_err());
                        }
                    }
                    prop_assert!(limits.tracked_users() <= cfg.max_tracked_users.max(1));
                    prop_assert_eq!(limits.order.len(), limits.users.len());
                }
                limits.prune(now);
                prop_assert_eq!(limits.order.len(), limits.users.len());
            }

            #[test]
            fn backwards_time_never_mints_tokens(rate in 1u32..20, burst in 1u32..5, times in proptest::collection::vec(0u64..10_000, 1..80)) {
                // With the clock jumping around, a user never gets more messages through
                // than a monotonic clock at the latest time seen would allow.
                let cfg = LimitsConfig {
                    user_rate_per_sec: rate,
                    user_burst: burst,
                    slow_mode_ms: 0,
                    flood_window_ms: 0,
                    flood_max_repeats: 0,
                    max_tracked_users: 10,
                };
                let mut limits = UserLimits::new(cfg);
                let first = times[0];
                let mut latest = first;
                let mut accepted = 0u64;
                for t in times {
                    latest = latest.max(t);
                    if limits.check("a", 0, t).is_ok() {
                        accepted += 1;
                    }
                    let allowed = u64::from(burst) + (latest - first) * u64::from(rate) / 1000;
                    prop_assert!(accepted <= allowed, "{} accepted, at most {} allowed", accepted, allowed);
                }
            }

            #[test]
            fn fingerprint_ignores_case_and_spacing(s in "[a-zA-Z ]{0,40}") {
                let squeezed: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                prop_assert_eq!(fingerprint(&s), fingerprint(&squeezed.to_uppercase()));
            }
        }
    }
}
