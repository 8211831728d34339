//! Who is in a room: the exact online count, the most recently joined members, and
//! when to tell everyone about changes.
//!
//! Counting is exact; *telling* is rationed. The count is pushed when it changed
//! meaningfully (by at least 1 % or 1), no more often than every `min_push_ms`, and
//! at least every `max_push_ms` while it keeps changing: a room of 20,000 viewers
//! with people coming and going every millisecond gets one small event every two
//! seconds, not a storm. Enter/quit events list each member while the room is small
//! and are aggregated into counts (with a small sample) above the threshold.

use std::collections::{BTreeMap, HashMap};

use crate::Millis;
use crate::event::{MemberBrief, RoomEvent};

/// Tuning of presence reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceConfig {
    /// Below this many online, enter/quit events name each member.
    pub small_room_threshold: u64,
    /// Members kept for the "recent members" list (the cloud's 30, up to 1000).
    pub member_list_size: usize,
    /// Never push the count more often than this.
    pub min_push_ms: u64,
    /// Push at least this often while the count differs from the last push.
    pub max_push_ms: u64,
    /// Size of the sample of users in aggregated enter/quit events.
    pub aggregate_sample: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            small_room_threshold: 500,
            member_list_size: 30,
            min_push_ms: 2_000,
            max_push_ms: 30_000,
            aggregate_sample: 5,
        }
    }
}

struct Member {
    brief: MemberBrief,
    joined_order: u64,
    joined_at: Millis,
    connections: u32,
}

/// Presence of one room.
pub struct Presence {
    cfg: PresenceConfig,
    members: HashMap<String, Member>,
    by_join: BTreeMap<u64, String>,
    anonymous: u64,
    join_counter: u64,
    last_pushed: u64,
    last_push_at: Option<Millis>,
    entered: Vec<MemberBrief>,
    entered_count: u64,
    quit: Vec<MemberBrief>,
    quit_count: u64,
}

/// A member in the recent-members list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentMember {
    /// Who.
    pub brief: MemberBrief,
    /// When they joined (Unix ms).
    pub joined_at: Millis,
}

impl Presence {
    /// An empty room.
    pub fn new(cfg: PresenceConfig) -> Self {
        Presence {
            cfg,
            members: HashMap::new(),
            by_join: BTreeMap::new(),
            anonymous: 0,
            join_counter: 0,
            last_pushed: 0,
            last_push_at: None,
            entered: Vec::new(),
            entered_count: 0,
            quit: Vec::new(),
            quit_count: 0,
        }
    }

    /// Exact number online: distinct logged-in users plus anonymous connections.
    pub fn online(&self) -> u64 {
        self.members.len() as u64 + self.anonymous
    }

    /// Whether this user has at least one connection in the room.
    pub fn contains(&self, user_id: &str) -> bool {
        self.members.contains_key(user_id)
    }

    /// A connection joined; `None` for an anonymous viewer.
    pub fn join(&mut self, member: Option<MemberBrief>, now: Millis) {
        let Some(brief) = member else {
            self.anonymous += 1;
            return;
        };
        if let Some(m) = self.members.get_mut(&brief.user_id) {
            m.connections += 1;
            return;
        }
        self.join_counter += 1;
        self.by_join.insert(self.join_counter, brief.user_id.clone());
        self.note(true, &brief);
        self.members.insert(
            brief.user_id.clone(),
            Member { brief, joined_order: self.join_counter, joined_at: now, connections: 1 },
        );
    }

    /// A connection left; `None` for an anonymous viewer.
    pub fn leave(&mut self, user_id: Option<&str>) {
        let Some(user_id) = user_id else {
            self.anonymous = self.anonymous.saturating_sub(1);
            return;
        };
        let Some(m) = self.members.get_mut(user_id) else { return };
        m.connections = m.connections.saturating_sub(1);
        if m.connections > 0 {
            return;
        }
        if let Some(m) = self.members.remove(user_id) {
            self.by_join.remove(&m.joined_order);
            self.note(false, &m.brief);
        }
    }

    /// The most recently joined online members, newest first, at most `limit`
    /// (and never more than the configured list size).
    pub fn recent_members(&self, limit: usize) -> Vec<RecentMember> {
        self.by_join
            .values()
            .rev()
            .take(limit.min(self.cfg.member_list_size))
            .filter_map(|id| self.members.get(id))
            .map(|m| RecentMember { brief: m.brief.clone(), joined_at: m.joined_at })
            .collect()
    }

    /// Events due now: enter/quit (every tick in small rooms, with the count push in
    /// big ones) and the online count when the rationing rules allow.
    pub fn tick(&mut self, now: Millis) -> Vec<RoomEvent> {
        let mut out = Vec::new();
        let online = self.online();
        let small = online < self.cfg.small_room_threshold && self.last_pushed < self.cfg.small_room_threshold;
        let since = self.last_push_at.map_or(u64::MAX, |at| now.saturating_sub(at));
        let changed = online != self.last_pushed;
        let meaningful = online.abs_diff(self.last_pushed) >= (self.last_pushed / 100).max(1);
        let push_count = changed && since >= self.cfg.min_push_ms && (meaningful || since >= self.cfg.max_push_ms);
        if small || push_count {
            self.drain_membership(&mut out);
        }
        if push_count {
            self.last_pushed = online;
            self.last_push_at = Some(now);
            out.push(RoomEvent::Online { count: online });
        }
        out
    }

    /// Whether `tick` may have something to say later (so the shell keeps ticking).
    pub fn has_pending(&self) -> bool {
        self.online() != self.last_pushed || self.entered_count > 0 || self.quit_count > 0
    }

    fn note(&mut self, entered: bool, brief: &MemberBrief) {
        let (list, count) =
            if entered { (&mut self.entered, &mut self.entered_count) } else { (&mut self.quit, &mut self.quit_count) };
        *count += 1;
        // Keep every name while small; a fixed sample once the room is big.
        let cap = if self.members.len() as u64 + self.anonymous < self.cfg.small_room_threshold {
            usize::MAX
        } else {
            self.cfg.aggregate_sample
        };
        if list.len() < cap {
            list.push(brief.clone());
        }
    }

    fn drain_membership(&mut self, out: &mut Vec<RoomEvent>) {
        if self.entered_count > 0 {
            out.push(RoomEvent::Enter { count: self.entered_count, users: std::mem::take(&mut self.entered) });
            self.entered_count = 0;
        }
        if self.quit_count > 0 {
            out.push(RoomEvent::Quit { count: self.quit_count, users: std::mem::take(&mut self.quit) });
            self.quit_count = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(i: u64) -> Option<MemberBrief> {
        Some(MemberBrief { user_id: format!("u{i}"), nick: String::new(), avatar: String::new(), level: 0 })
    }

    fn online_events(ev: &[RoomEvent]) -> Vec<u64> {
        ev.iter().filter_map(|e| if let RoomEvent::Online { count } = e { Some(*count) } else { None }).collect()
    }

    #[test]
    fn counts_are_exact_with_anonymous_and_multi_connection_users() {
        let mut p = Presence::new(PresenceConfig::default());
        p.join(user(1), 0);
        p.join(user(1), 0);
        p.join(None, 0);
        p.join(user(2), 0);
        assert_eq!(p.online(), 3);
        p.leave(Some("u1"));
        assert_eq!(p.online(), 3, "u1 still has a connection");
        p.leave(Some("u1"));
        p.leave(None);
        p.leave(None);
        p.leave(Some("nobody"));
        assert_eq!(p.online(), 1);
    }

    #[test]
    fn small_rooms_name_each_member_every_tick() {
        let mut p = Presence::new(PresenceConfig::default());
        p.join(user(1), 0);
        p.join(user(2), 0);
        let ev = p.tick(100);
        assert!(matches!(&ev[0], RoomEvent::Enter { count: 2, users } if users.len() == 2));
        assert_eq!(online_events(&ev), vec![2]);
        p.leave(Some("u1"));
        let ev = p.tick(200);
        assert!(matches!(&ev[0], RoomEvent::Quit { count: 1, users } if users[0].user_id == "u1"));
        assert!(online_events(&ev).is_empty(), "count push is rationed to every 2 s");
        let ev = p.tick(2_100);
        assert_eq!(online_events(&ev), vec![1]);
        assert!(p.tick(10_000).is_empty(), "nothing changed, nothing said");
    }

    #[test]
    fn big_rooms_aggregate_and_ration() {
        let mut p = Presence::new(PresenceConfig::default());
        for i in 0..1000 {
            p.join(user(i), 0);
        }
        let ev = p.tick(0);
        assert_eq!(online_events(&ev), vec![1000]);
        // Churn of 5 users (0.5 %) is not meaningful: wait until 30 s pass.
        for i in 1000..1005 {
            p.join(user(i), 1);
        }
        let mut pushes = vec![];
        for t in (50..40_000).step_by(50) {
            let ev = p.tick(t);
            if !ev.is_empty() {
                pushes.push((t, ev));
            }
        }
        assert_eq!(pushes.len(), 1, "one push in 40 s");
        let (t, ev) = &pushes[0];
        assert!(*t >= 30_000);
        assert!(matches!(&ev[0], RoomEvent::Enter { count: 5, users } if users.len() == 5));
        assert_eq!(online_events(ev), vec![1005]);
        // A 10 % surge is pushed within the 2 s floor.
        for i in 2000..2100 {
            p.join(user(i), 40_000);
        }
        let first = (40_000..50_000).step_by(50).find(|t| !online_events(&p.tick(*t)).is_empty());
        assert!(first.is_some_and(|t| t <= 40_000 + 2_000), "{first:?}");
    }

    #[test]
    fn recent_members_are_newest_first_and_bounded() {
        let mut p = Presence::new(PresenceConfig { member_list_size: 3, ..Default::default() });
        for i in 0..10 {
            p.join(user(i), i);
        }
        p.leave(Some("u9"));
        let ids: Vec<_> = p.recent_members(100).into_iter().map(|m| m.brief.user_id).collect();
        assert_eq!(ids, vec!["u8", "u7", "u6"]);
    }
}
