//! What a room's sequencer knows about members connected to *other* nodes of a
//! cluster: who is where, and which nodes went silent.
//!
//! Every node keeps its own connections in its own room core. The node that holds a
//! room's sequencer lease also counts everyone else's: the other nodes report joins
//! and leaves as they happen, a full list when the sequencer changes or asks, and a
//! heartbeat with their count every second. A node silent for longer than the
//! time-to-live is taken as dead and its members leave (that is the "fresh within 5 s"
//! of cluster-wide counts). This module is the bookkeeping; the shell turns the
//! joins and leaves it returns into the core's presence calls.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::event::MemberBrief;

/// One node's members of one room, as it reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMembers {
    /// Anonymous connections.
    pub anonymous: u64,
    /// Logged-in connections (a user with two connections appears twice).
    pub users: Vec<MemberBrief>,
}

impl NodeMembers {
    /// Connections in total.
    pub fn connections(&self) -> u64 {
        self.anonymous + self.users.len() as u64
    }
}

/// A presence change for the core: `Some(brief)` / `Some(user)` for accounts,
/// `None` for an anonymous connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A connection joined.
    Join(Option<MemberBrief>),
    /// A connection left.
    Leave(Option<String>),
}

#[derive(Debug, Default)]
struct NodeEntry {
    last_heard: Millis,
    anonymous: u64,
    /// Connections per account, with the brief to report them by.
    users: BTreeMap<String, (u64, MemberBrief)>,
}

impl NodeEntry {
    fn connections(&self) -> u64 {
        self.anonymous + self.users.values().map(|(n, _)| n).sum::<u64>()
    }
}

/// The sequencer's view of the other nodes' members of one room.
#[derive(Debug, Default)]
pub struct RemoteMembers {
    nodes: HashMap<String, NodeEntry>,
}

impl RemoteMembers {
    /// Nobody elsewhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections held by other nodes.
    pub fn connections(&self) -> u64 {
        self.nodes.values().map(NodeEntry::connections).sum()
    }

    /// Nodes currently counted.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// A connection joined on `node`.
    pub fn join(&mut self, node: &str, member: Option<MemberBrief>, now: Millis) -> MemberChange {
        let entry = self.nodes.entry(node.to_owned()).or_default();
        entry.last_heard = now;
        match &member {
            None => entry.anonymous += 1,
            Some(b) => entry.users.entry(b.user_id.clone()).or_insert_with(|| (0, b.clone())).0 += 1,
        }
        MemberChange::Join(member)
    }

    /// A connection left on `node`; `None` when this view did not hold it (nothing
    /// to tell the core).
    pub fn leave(&mut self, node: &str, user: Option<String>, now: Millis) -> Option<MemberChange> {
        let entry = self.nodes.get_mut(node)?;
        entry.last_heard = now;
        match &user {
            None if entry.anonymous > 0 => entry.anonymous -= 1,
            None => return None,
            Some(u) => {
                let (n, _) = entry.users.get_mut(u)?;
                *n -= 1;
                if *n == 0 {
                    entry.users.remove(u);
                }
            }
        }
        Some(MemberChange::Leave(user))
    }

    /// A heartbeat: `node` is alive and holds `anonymous` anonymous connections and
    /// `logged_in` logged-in ones. Anonymous viewers are counted from heartbeats only
    /// (a join storm of viewers costs the bus nothing per viewer); the returned changes
    /// bring the count in line. The flag is false when the logged-in count differs
    /// from this view (a report was lost): the shell asks the node for its full list.
    pub fn heard(&mut self, node: &str, anonymous: u64, logged_in: u64, now: Millis) -> (Vec<MemberChange>, bool) {
        let entry = self.nodes.entry(node.to_owned()).or_default();
        entry.last_heard = now;
        let mut changes: Vec<MemberChange> = (anonymous..entry.anonymous).map(|_| MemberChange::Leave(None)).collect();
        changes.extend((entry.anonymous..anonymous).map(|_| MemberChange::Join(None)));
        entry.anonymous = anonymous;
        let users: u64 = entry.users.values().map(|(n, _)| n).sum();
        (changes, users == logged_in)
    }

    /// `node`'s full list replaces what this view held for it; returns the
    /// difference as changes (so an unchanged member is not reported again).
    pub fn replace(&mut self, node: &str, members: NodeMembers, now: Millis) -> Vec<MemberChange> {
        let entry = self.nodes.entry(node.to_owned()).or_default();
        entry.last_heard = now;
        let mut changes = Vec::new();
        let mut fresh: BTreeMap<String, (u64, MemberBrief)> = BTreeMap::new();
        for b in members.users {
            fresh.entry(b.user_id.clone()).or_insert_with(|| (0, b)).0 += 1;
        }
        for (user, (old, _)) in &entry.users {
            let new = fresh.get(user).map_or(0, |(n, _)| *n);
            changes.extend((new..*old).map(|_| MemberChange::Leave(Some(user.clone()))));
        }
        for (user, (new, brief)) in &fresh {
            let old = entry.users.get(user).map_or(0, |(n, _)| *n);
            changes.extend((old..*new).map(|_| MemberChange::Join(Some(brief.clone()))));
        }
        changes.extend((members.anonymous..entry.anonymous).map(|_| MemberChange::Leave(None)));
        changes.extend((entry.anonymous..members.anonymous).map(|_| MemberChange::Join(None)));
        entry.anonymous = members.anonymous;
        entry.users = fresh;
        changes
    }

    /// Nodes not heard from for `ttl_ms` are gone: every member they held leaves.
    pub fn expire(&mut self, now: Millis, ttl_ms: u64) -> Vec<MemberChange> {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.last_heard) > ttl_ms)
            .map(|(n, _)| n.clone())
            .collect();
        dead.iter().flat_map(|n| self.forget(n)).collect()
    }

    /// Everyone elsewhere leaves (this node stopped being the sequencer).
    pub fn clear(&mut self) -> Vec<MemberChange> {
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        nodes.iter().flat_map(|n| self.forget(n)).collect()
    }

    fn forget(&mut self, node: &str) -> Vec<MemberChange> {
        let Some(entry) = self.nodes.remove(node) else { return Vec::new() };
        let mut out: Vec<MemberChange> = (0..entry.anonymous).map(|_| MemberChange::Leave(None)).collect();
        for (user, (n, _)) in entry.users {
            out.extend((0..n).map(|_| MemberChange::Leave(Some(user.clone()))));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(u: &str) -> MemberBrief {
        MemberBrief { user_id: u.into(), nick: String::new(), avatar: String::new(), level: 0 }
    }

    fn joins(c: &[MemberChange]) -> usize {
        c.iter().filter(|c| matches!(c, MemberChange::Join(_))).count()
    }

    #[test]
    fn joins_and_leaves_are_counted_per_node() {
        let mut r = RemoteMembers::new();
        r.join("n1", Some(b("a")), 0);
        r.join("n1", Some(b("a")), 0);
        r.join("n1", None, 0);
        r.join("n2", Some(b("c")), 0);
        assert_eq!(r.connections(), 4);
        assert_eq!(r.leave("n1", Some("a".into()), 1), Some(MemberChange::Leave(Some("a".into()))));
        assert_eq!(r.leave("n1", Some("zz".into()), 1), None, "unknown users are not reported");
        assert_eq!(r.leave("n2", None, 1), None);
        assert_eq!(r.connections(), 3);
        assert_eq!(r.heard("n1", 1, 1, 2), (vec![], true));
        assert!(!r.heard("n2", 0, 5, 2).1, "a mismatch asks for the full list");
        let (changes, ok) = r.heard("n1", 3, 1, 3);
        assert!(ok);
        assert_eq!(changes, vec![MemberChange::Join(None), MemberChange::Join(None)], "anonymous come by heartbeat");
        assert_eq!(r.heard("n1", 0, 1, 4).0.len(), 3);
        assert_eq!(r.connections(), 2, "a on n1, c on n2");
    }

    #[test]
    fn a_full_list_reports_only_the_difference() {
        let mut r = RemoteMembers::new();
        r.join("n1", Some(b("a")), 0);
        r.join("n1", Some(b("b")), 0);
        r.join("n1", None, 0);
        let changes = r.replace("n1", NodeMembers { anonymous: 3, users: vec![b("b"), b("c"), b("c")] }, 5);
        assert_eq!(joins(&changes), 4, "two anonymous and c twice: {changes:?}");
        assert!(changes.contains(&MemberChange::Leave(Some("a".into()))));
        assert_eq!(changes.len(), 5);
        assert_eq!(r.connections(), 6);
        assert!(r.replace("n1", NodeMembers { anonymous: 3, users: vec![b("c"), b("b"), b("c")] }, 6).is_empty());
    }

    #[test]
    fn silent_nodes_expire_and_clear_empties_everything() {
        let mut r = RemoteMembers::new();
        r.join("dead", Some(b("a")), 0);
        r.join("dead", None, 0);
        r.join("alive", None, 0);
        r.heard("alive", 1, 0, 4_000);
        let left = r.expire(5_500, 5_000);
        assert_eq!(left.len(), 2);
        assert_eq!(r.nodes(), 1);
        assert_eq!(r.clear(), vec![MemberChange::Leave(None)]);
        assert_eq!(r.connections(), 0);
    }
}
