//! Who may not speak (mutes) and who may not be in a room (bans), with expiry.
//!
//! Durations are the cloud's: seconds as u32, 0 = lift it, `u32::MAX` = permanent.
//! Expiry is driven by the server (the room asks [`Moderation::next_expiry`] and calls
//! [`Moderation::expire`] then), so a muted client learns the mute ended without
//! doing anything.

use std::collections::BTreeMap;

use crate::Millis;

/// `MuteTime` / `Duration` meaning "forever".
pub const PERMANENT_SECS: u64 = u32::MAX as u64;

/// The end of a restriction of `secs` seconds starting `now` (`u64::MAX` = never).
pub fn until(now: Millis, secs: u64) -> Millis {
    if secs >= PERMANENT_SECS { u64::MAX } else { now.saturating_add(secs.saturating_mul(1000)) }
}

/// A ban entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// When it ends (Unix ms; `u64::MAX` = never).
    pub until: Millis,
    /// Why (shown to the user).
    pub reason: String,
}

/// One room's mutes and bans.
#[derive(Debug, Default)]
pub struct Moderation {
    mutes: BTreeMap<String, Millis>,
    bans: BTreeMap<String, Ban>,
}

/// Something that ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// The mute of this user ended.
    Mute(String),
    /// The ban of this user ended.
    Ban(String),
}

impl Moderation {
    /// Restores state from storage (entries already past are dropped).
    pub fn restore(mutes: Vec<(String, Millis)>, bans: Vec<(String, Ban)>, now: Millis) -> Self {
        Moderation {
            mutes: mutes.into_iter().filter(|(_, u)| *u > now).collect(),
            bans: bans.into_iter().filter(|(_, b)| b.until > now).collect(),
        }
    }

    /// Mutes (or, with 0 s, unmutes) a user; returns the new end (0 = not muted).
    pub fn mute(&mut self, user: &str, secs: u64, now: Millis) -> Millis {
        if secs == 0 {
            self.mutes.remove(user);
            return 0;
        }
        let end = until(now, secs);
        self.mutes.insert(user.to_owned(), end);
        end
    }

    /// When the user's mute ends, if muted now.
    pub fn muted_until(&self, user: &str, now: Millis) -> Option<Millis> {
        self.mutes.get(user).copied().filter(|u| *u > now)
    }

    /// Every current mute.
    pub fn mutes(&self, now: Millis) -> Vec<(String, Millis)> {
        self.mutes.iter().filter(|(_, u)| **u > now).map(|(k, u)| (k.clone(), *u)).collect()
    }

    /// Bans a user for `secs` (0 = unban); returns the new end (0 = not banned).
    pub fn ban(&mut self, user: &str, secs: u64, reason: &str, now: Millis) -> Millis {
        if secs == 0 {
            self.bans.remove(user);
            return 0;
        }
        let end = until(now, secs);
        self.bans.insert(user.to_owned(), Ban { until: end, reason: reason.to_owned() });
        end
    }

    /// Lifts a ban; whether there was one.
    pub fn unban(&mut self, user: &str) -> bool {
        self.bans.remove(user).is_some()
    }

    /// The user's ban, if banned now.
    pub fn banned(&self, user: &str, now: Millis) -> Option<&Ban> {
        self.bans.get(user).filter(|b| b.until > now)
    }

    /// Current bans in user order, `limit` from `offset`; and the next offset (0 = done).
    pub fn bans(&self, offset: usize, limit: usize, now: Millis) -> (Vec<(String, Ban)>, usize) {
        let live: Vec<_> = self.bans.iter().filter(|(_, b)| b.until > now).collect();
        let page: Vec<_> = live.iter().skip(offset).take(limit).map(|(k, b)| ((*k).clone(), (*b).clone())).collect();
        let next = if offset + page.len() < live.len() { offset + page.len() } else { 0 };
        (page, next)
    }

    /// The earliest end of any restriction.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.mutes.values().chain(self.bans.values().map(|b| &b.until)).copied().filter(|u| *u != u64::MAX).min()
    }

    /// Removes what ended by `now` and reports it.
    pub fn expire(&mut self, now: Millis) -> Vec<Expired> {
        let mut out = Vec::new();
        self.mutes.retain(|user, end| {
            let live = *end > now;
            if !live {
                out.push(Expired::Mute(user.clone()));
            }
            live
        });
        self.bans.retain(|user, ban| {
            let live = ban.until > now;
            if !live {
                out.push(Expired::Ban(user.clone()));
            }
            live
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutes_expire_on_the_servers_clock() {
        let mut m = Moderation::default();
        assert_eq!(m.mute("a", 10, 1_000), 11_000);
        m.mute("b", PERMANENT_SECS, 1_000);
        assert_eq!(m.muted_until("a", 5_000), Some(11_000));
        assert_eq!(m.muted_until("b", u64::MAX - 1), Some(u64::MAX));
        assert_eq!(m.next_expiry(), Some(11_000));
        assert!(m.expire(10_999).is_empty());
        assert_eq!(m.expire(11_000), vec![Expired::Mute("a".into())]);
        assert_eq!(m.muted_until("a", 11_000), None);
        assert_eq!(m.next_expiry(), None, "permanent never expires");
        assert_eq!(m.mute("b", 0, 12_000), 0);
        assert!(m.mutes(12_000).is_empty());
    }

    #[test]
    fn bans_page_and_expire_and_restore() {
        let mut m = Moderation::default();
        for i in 0..250 {
            m.ban(&format!("u{i:03}"), 60, "spam", 0);
        }
        let (page, next) = m.bans(0, 100, 1);
        assert_eq!((page.len(), next), (100, 100));
        let (page, next) = m.bans(200, 100, 1);
        assert_eq!((page.len(), next), (50, 0));
        assert_eq!(m.banned("u001", 59_999).map(|b| b.reason.as_str()), Some("spam"));
        assert!(m.unban("u001"));
        assert!(m.banned("u001", 1).is_none());
        assert_eq!(m.expire(60_000).len(), 249);
        let restored = Moderation::restore(
            vec![("a".into(), 5), ("b".into(), 50)],
            vec![("c".into(), Ban { until: 50, reason: String::new() })],
            10,
        );
        assert_eq!(restored.mutes(10), vec![("b".to_string(), 50)]);
        assert!(restored.banned("c", 10).is_some());
    }

    #[test]
    fn huge_durations_saturate_instead_of_overflowing() {
        assert_eq!(until(u64::MAX - 5, 10), u64::MAX);
        assert_eq!(until(0, PERMANENT_SECS + 7), u64::MAX);
    }
}
