//! The rounds a room has delivered but not yet written to every member.
//!
//! A big room's tick is cut into slots ([`crate::tick::Slots`]): it runs a round every
//! slot and writes one group of members per slot. Each member keeps a cursor — the
//! number of the first round it has not been sent — and when its turn comes it gets
//! every round from its cursor to the head in one frame. [`Staged`] keeps those rounds
//! until every member's cursor has passed them. Members that join take the head as
//! their cursor (what came before is in the history they are sent), so a member never
//! gets a round twice and never misses one.
//!
//! Nothing here reads a clock or owns a socket: the hub keeps the cursors with its
//! members and decides whose turn it is.

use std::collections::VecDeque;

/// Rounds numbered from 0 in the order they were staged; the oldest are dropped once
/// no cursor points at them.
#[derive(Debug, Clone)]
pub struct Staged<R> {
    rounds: VecDeque<R>,
    /// Number of `rounds[0]`.
    first: u64,
}

impl<R> Default for Staged<R> {
    fn default() -> Self {
        Staged { rounds: VecDeque::new(), first: 0 }
    }
}

impl<R> Staged<R> {
    /// An empty ring.
    pub fn new() -> Staged<R> {
        Staged::default()
    }

    /// The number the next round gets: the cursor of a member that has everything.
    pub fn head(&self) -> u64 {
        self.first + self.rounds.len() as u64
    }

    /// Whether no round is waiting for anyone.
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    /// Rounds held.
    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    /// Adds a round at the head.
    pub fn push(&mut self, round: R) {
        self.rounds.push_back(round);
    }

    /// The rounds a member with `cursor` has not been sent, oldest first. A cursor
    /// older than what is held (it cannot be: cursors bound [`Staged::trim`]) gets
    /// what is held.
    pub fn since(&self, cursor: u64) -> impl Iterator<Item = &R> {
        let skip = cursor.saturating_sub(self.first).min(self.rounds.len() as u64) as usize;
        self.rounds.range(skip..)
    }

    /// Drops the rounds numbered below `lowest`, the lowest cursor of the members
    /// (the head when there are none).
    pub fn trim(&mut self, lowest: u64) {
        let drop = lowest.saturating_sub(self.first).min(self.rounds.len() as u64);
        self.rounds.drain(..drop as usize);
        self.first += drop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn members_get_each_round_once_from_their_cursor() {
        let mut s = Staged::new();
        assert_eq!(s.head(), 0);
        s.push("a");
        s.push("b");
        let early = 0;
        s.push("c");
        let late = s.head();
        s.push("d");
        assert_eq!(s.since(early).copied().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(s.since(late).copied().collect::<Vec<_>>(), ["d"]);
        assert_eq!(s.since(s.head()).count(), 0);
        s.trim(late);
        assert_eq!((s.len(), s.head()), (1, 4));
        assert_eq!(s.since(late).copied().collect::<Vec<_>>(), ["d"]);
        s.trim(s.head());
        assert!(s.is_empty());
        assert_eq!(s.head(), 4, "numbers go on after a trim");
        s.push("e");
        assert_eq!(s.since(4).copied().collect::<Vec<_>>(), ["e"]);
    }

    #[test]
    fn odd_cursors_are_clamped() {
        let mut s = Staged::new();
        for r in 0..5 {
            s.push(r);
        }
        s.trim(3);
        assert_eq!(s.since(0).copied().collect::<Vec<_>>(), [3, 4], "older than held: what is held");
        assert_eq!(s.since(99).count(), 0);
        s.trim(1);
        assert_eq!(s.len(), 2, "trimming backwards does nothing");
        s.trim(u64::MAX);
        assert!(s.is_empty());
        assert_eq!(s.head(), 5, "trimming past the head stops at it");
    }

    proptest! {
        /// Members written at random turns, joining and leaving at random, receive
        /// exactly the rounds staged while they were members, in order, whatever the
        /// trims in between.
        #[test]
        fn every_member_gets_exactly_its_rounds(ops in proptest::collection::vec((0u8..4, 0usize..6), 1..300)) {
            let mut s: Staged<u64> = Staged::new();
            let mut next = 0u64;
            // Per member slot (None = not a member): its cursor, what it received,
            // what it should have.
            type Member = (u64, Vec<u64>, Vec<u64>);
            let mut members: Vec<Option<Member>> = vec![None; 6];
            for (op, who) in ops {
                match op {
                    0 => {
                        s.push(next);
                        for m in members.iter_mut().flatten() {
                            m.2.push(next);
                        }
                        next += 1;
                    }
                    1 => {
                        if let Some((cursor, got, _)) = members[who].as_mut() {
                            got.extend(s.since(*cursor).copied());
                            *cursor = s.head();
                        }
                    }
                    2 => {
                        if members[who].is_none() {
                            members[who] = Some((s.head(), Vec::new(), Vec::new()));
                        }
                    }
                    _ => {
                        if let Some((cursor, mut got, want)) = members[who].take() {
                            got.extend(s.since(cursor).copied());
                            prop_assert_eq!(got, want);
                        }
                    }
                }
                let lowest = members.iter().flatten().map(|m| m.0).min().unwrap_or(s.head());
                s.trim(lowest);
            }
            for (cursor, mut got, want) in members.into_iter().flatten() {
                got.extend(s.since(cursor).copied());
                prop_assert_eq!(got, want);
            }
        }
    }
}
