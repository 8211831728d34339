//! Moderation of a room: mutes and bans (with their ends, stored), kicks, recall,
//! slow mode and the room's admins. Every face (WebSocket, native API, `/v4`) calls
//! these; each checks its caller's right before.

use onair_core::event::RoomEvent;
use onair_core::{Code, Rejection};

use crate::*;

/// Most admins a room may have (the cloud's AVChatRoom figure).
pub const MAX_ROOM_ADMINS: usize = 5;

/// A ban as the APIs report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    /// Who.
    pub user: String,
    /// End, Unix seconds (4294967295 = permanent).
    pub banned_until: u64,
    /// Why.
    pub reason: String,
}

impl BanEntry {
    /// As the ban lists show it.
    pub fn view(&self) -> onair_proto::views::BanView<'_> {
        onair_proto::views::BanView { user_id: &self.user, banned_until: self.banned_until, reason: &self.reason }
    }
}

/// Checks a list of accounts in a moderation call.
fn check_accounts(users: &[String], max: usize) -> Result<(), Rejection> {
    if users.is_empty() {
        return Err(Rejection::new(Code::InvalidParam, "no accounts given"));
    }
    if users.len() > max {
        return Err(Rejection::new(Code::InvalidParam, format!("{} accounts; at most {max} per call", users.len())));
    }
    if let Some(bad) = users.iter().find(|u| u.is_empty() || u.len() > 32) {
        return Err(Rejection::new(Code::InvalidParam, format!("account '{bad}' must be 1-32 bytes")));
    }
    Ok(())
}

/// The mark that may be set on members who are not online (the cloud's rule).
const OFFLINE_MARK: u64 = 500;

impl Hub {
    /// Sets (or, with `add` false, deletes) member marks; returns the accounts
    /// changed. Marks are ≥ 1000 (or 500, the only one allowed on offline members),
    /// at most 10 distinct per room and 1000 members per mark.
    pub fn set_marks(&self, id: &str, entries: &[(String, Vec<u64>)], add: bool) -> Result<Vec<String>, Rejection> {
        let room = self.get(id)?;
        let users: Vec<String> = entries.iter().map(|(u, _)| u.clone()).collect();
        check_accounts(&users, 500)?;
        if let Some(bad) = entries.iter().flat_map(|(_, m)| m).find(|m| **m < 1000 && **m != OFFLINE_MARK) {
            return Err(Rejection::new(
                Code::InvalidParam,
                format!("mark {bad} is invalid: marks are ≥ 1000 (or 500)"),
            ));
        }
        let mut marks = room.marks.lock();
        let mut next = marks.clone();
        let mut changed = Vec::new();
        for (user, list) in entries {
            if add && !room.has_user(user) && !list.contains(&OFFLINE_MARK) {
                continue; // marks are for online members
            }
            let set = next.entry(user.clone()).or_default();
            for m in list {
                if add {
                    set.insert(*m);
                } else {
                    set.remove(m);
                }
            }
            if set.is_empty() {
                next.remove(user);
            }
            changed.push(user.clone());
        }
        let mut per_mark: HashMap<u64, usize> = HashMap::new();
        for m in next.values().flatten() {
            *per_mark.entry(*m).or_default() += 1;
        }
        if per_mark.len() > 10 {
            return Err(Rejection::new(Code::InvalidParam, "at most 10 distinct marks per room"));
        }
        if let Some((m, _)) = per_mark.iter().find(|(_, n)| **n > 1000) {
            return Err(Rejection::new(Code::InvalidParam, format!("mark {m} is on more than 1000 members")));
        }
        *marks = next;
        Ok(changed)
    }

    /// Members carrying a mark.
    pub fn marked(&self, id: &str, mark: u64) -> Result<BTreeSet<String>, Rejection> {
        let room = self.get(id)?;
        let marks = room.marks.lock();
        Ok(marks.iter().filter(|(_, set)| set.contains(&mark)).map(|(u, _)| u.clone()).collect())
    }

    /// Mutes users for `secs` (0 = unmute, ≥ 4294967295 = permanent); everyone in the
    /// room gets a `muted` event at once. Returns each user's end (Unix s, 0 = none).
    pub async fn mute(&self, id: &str, users: &[String], secs: u64) -> Result<Vec<(String, u64)>, Rejection> {
        let room = self.get(id)?;
        check_accounts(users, 500)?;
        let now = now_ms();
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let until = room.moderation.lock().mute(user, secs, now);
            self.store.set_mute(id, user, until).await.map_err(internal)?;
            let until = if until == 0 { 0 } else { end_secs(until) };
            room.push_event(RoomEvent::Muted { user_id: user.clone(), muted_until: until });
            out.push((user.clone(), until));
        }
        self.changed(id, crate::cluster::Part::Moderation);
        Ok(out)
    }

    /// Current mutes of a room: (user, end in Unix s).
    pub fn muted(&self, id: &str) -> Result<Vec<(String, u64)>, Rejection> {
        let room = self.get(id)?;
        let list = room.moderation.lock().mutes(now_ms());
        Ok(list.into_iter().map(|(u, until)| (u, end_secs(until))).collect())
    }

    /// Bans users for `secs` (≥ 4294967295 = permanent): their connections get a
    /// `kicked` event and are out of the room now; rejoining is refused until the end.
    /// Each member taken out is reported as `Group.CallbackAfterMemberExit` with
    /// `ExitType` `Kicked`, naming `operator`.
    pub async fn ban(
        &self,
        id: &str,
        users: &[String],
        secs: u64,
        reason: &str,
        operator: &str,
        origin: &Origin,
    ) -> Result<(), Rejection> {
        let room = self.get(id)?;
        check_accounts(users, 1000)?;
        if secs == 0 {
            return Err(Rejection::new(
                Code::InvalidParam,
                "Duration must be at least 1 second (use unban to lift a ban)",
            ));
        }
        if reason.len() > 1000 {
            return Err(Rejection::new(Code::InvalidParam, "Description is limited to 1000 bytes"));
        }
        let now = now_ms();
        let _delivery = room.delivery.lock().await;
        for user in users {
            let until = room.moderation.lock().ban(user, secs, reason, now);
            let ban = onair_core::moderation::Ban { until, reason: reason.to_owned() };
            self.store.set_ban(id, user, Some(&ban)).await.map_err(internal)?;
            if room.remove_user(user, reason, end_secs(until)) {
                self.member_changed(id, user, MemberChange::Kicked { operator: operator.to_owned() }, origin);
            }
        }
        self.changed(id, crate::cluster::Part::Moderation);
        Ok(())
    }

    /// Removes users from the room now (a `kicked` event, then out) without keeping
    /// them out: they may join again. Members taken out are reported as
    /// `Group.CallbackAfterMemberExit` with `ExitType` `Kicked`.
    pub async fn kick(
        &self,
        id: &str,
        users: &[String],
        reason: &str,
        operator: &str,
        origin: &Origin,
    ) -> Result<(), Rejection> {
        let room = self.get(id)?;
        check_accounts(users, 1000)?;
        let _delivery = room.delivery.lock().await;
        for user in users {
            if room.remove_user(user, reason, 0) {
                self.member_changed(id, user, MemberChange::Kicked { operator: operator.to_owned() }, origin);
            }
        }
        Ok(())
    }

    /// Recalls a delivered message: storage marks it, history drops it, members get a
    /// `recall` event. A message that is neither stored nor held (unknown, or recalled
    /// already) is 10030 and nothing is pushed: members must not be told to hide a
    /// message that was never recalled.
    pub async fn recall(&self, id: &str, seq: u64, operator: &str) -> Result<(), Rejection> {
        let room = self.get(id)?;
        let stored = self.store.recall_message(id, seq).await.map_err(internal)?;
        if !stored && !room.chat.lock().holds(seq) {
            return Err(Rejection::new(
                Code::MsgNotFound,
                format!("no message with seq {seq} to recall in room '{id}' (unknown or recalled already)"),
            ));
        }
        if room.sequencing() {
            room.chat.lock().recall(seq, operator);
        } else {
            // The room's sequencer (another node) recalls it and tells everyone.
            room.chat.lock().forget(seq);
            room.push_event(RoomEvent::Recall { seq, operator: operator.to_owned() });
        }
        room.wake.notify_one();
        Ok(())
    }

    /// Slow mode: each member may send one message per `secs` (0 = off).
    pub fn set_slow_mode(&self, id: &str, secs: u64) -> Result<(), Rejection> {
        if secs > 86_400 {
            return Err(Rejection::new(Code::InvalidParam, "slow mode is at most 86400 seconds"));
        }
        let room = self.get(id)?;
        room.limits.lock().set_slow_mode(secs * 1000);
        room.push_event(RoomEvent::SlowMode { seconds: secs });
        Ok(())
    }

    /// The room's admins.
    pub fn room_admins(&self, id: &str) -> Result<Vec<String>, Rejection> {
        Ok(self.get(id)?.admins.lock().iter().cloned().collect())
    }

    /// Adds (or removes) room admins; at most `MAX_ROOM_ADMINS`.
    pub async fn set_room_admins(&self, id: &str, users: &[String], add: bool) -> Result<Vec<String>, Rejection> {
        let room = self.get(id)?;
        check_accounts(users, MAX_ROOM_ADMINS.max(users.len().min(100)))?;
        let _w = room.profile_write.lock().await;
        let mut next = room.admins.lock().clone();
        for user in users {
            if add {
                next.insert(user.clone());
            } else {
                next.remove(user);
            }
        }
        if next.len() > MAX_ROOM_ADMINS {
            return Err(Rejection::new(Code::InvalidParam, format!("a room has at most {MAX_ROOM_ADMINS} admins")));
        }
        let list: Vec<String> = next.iter().cloned().collect();
        self.store.set_room_admins(id, &list).await.map_err(internal)?;
        *room.admins.lock() = next;
        self.changed(id, crate::cluster::Part::Admins);
        Ok(list)
    }

    /// Lifts bans.
    pub async fn unban(&self, id: &str, users: &[String]) -> Result<(), Rejection> {
        let room = self.get(id)?;
        check_accounts(users, 1000)?;
        for user in users {
            room.moderation.lock().unban(user);
            self.store.set_ban(id, user, None).await.map_err(internal)?;
        }
        self.changed(id, crate::cluster::Part::Moderation);
        Ok(())
    }

    /// A page of a room's bans (user order) and the next offset (0 = done).
    pub fn bans(&self, id: &str, offset: usize, limit: usize) -> Result<(Vec<BanEntry>, usize), Rejection> {
        let room = self.get(id)?;
        let (page, next) = room.moderation.lock().bans(offset, limit.clamp(1, 100), now_ms());
        Ok((
            page.into_iter()
                .map(|(user, b)| BanEntry { user, banned_until: end_secs(b.until), reason: b.reason })
                .collect(),
            next,
        ))
    }
}
