//! Co-hosting signalling: a viewer asks, the anchor accepts or refuses, either side
//! ends it. Pure bookkeeping with clear errors; the server signs the guest's push
//! address and pushes the `cohost` events. An accepted guest is "on air" while their
//! stream is published; the guests on air (longest accepted first, at most
//! [`MIX_SLOTS`]) are the ones composed into the room's picture.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Code, Millis, Rejection};

/// Most pending requests one room keeps (the oldest are refused beyond it).
pub const MAX_PENDING: usize = 50;
/// Most guests on air at once.
pub const MAX_ACTIVE: usize = 8;
/// Guests composed with the anchor into the room's picture (the rest are heard and
/// seen by the anchor only, until a place frees up).
pub const MIX_SLOTS: usize = 3;

/// One room's co-host requests and guests.
#[derive(Debug, Default)]
pub struct Cohosts {
    pending: BTreeMap<String, Millis>,
    active: BTreeMap<String, Millis>,
    /// Accepted guests whose stream is published.
    on_air: BTreeSet<String>,
}

impl Cohosts {
    /// A viewer asks to co-host.
    pub fn request(&mut self, user: &str, now: Millis) -> Result<(), Rejection> {
        if self.active.contains_key(user) {
            return Err(Rejection::new(Code::Conflict, "you are already co-hosting this room"));
        }
        if self.pending.contains_key(user) {
            return Err(Rejection::new(Code::Conflict, "your co-host request is already pending"));
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(Rejection::new(Code::Conflict, "too many pending co-host requests; try again later"));
        }
        self.pending.insert(user.to_owned(), now);
        Ok(())
    }

    /// The anchor accepts a pending request.
    pub fn accept(&mut self, user: &str, now: Millis) -> Result<(), Rejection> {
        if !self.pending.contains_key(user) {
            return Err(Rejection::new(Code::NotFound, format!("no pending co-host request from '{user}'")));
        }
        if self.active.len() >= MAX_ACTIVE {
            return Err(Rejection::new(Code::Conflict, format!("at most {MAX_ACTIVE} co-hosts at once")));
        }
        self.pending.remove(user);
        self.active.insert(user.to_owned(), now);
        Ok(())
    }

    /// The anchor refuses a pending request.
    pub fn refuse(&mut self, user: &str) -> Result<(), Rejection> {
        self.pending
            .remove(user)
            .map(|_| ())
            .ok_or_else(|| Rejection::new(Code::NotFound, format!("no pending co-host request from '{user}'")))
    }

    /// Either side ends a co-host session (or withdraws a pending request).
    /// Returns true when the guest was on air.
    pub fn end(&mut self, user: &str) -> Result<bool, Rejection> {
        if self.active.remove(user).is_some() {
            self.on_air.remove(user);
            return Ok(true);
        }
        if self.pending.remove(user).is_some() {
            return Ok(false);
        }
        Err(Rejection::new(Code::NotFound, format!("'{user}' is not co-hosting and has no pending request")))
    }

    /// Pending requests, oldest first.
    pub fn pending(&self) -> Vec<(String, Millis)> {
        let mut list: Vec<(String, Millis)> = self.pending.iter().map(|(u, t)| (u.clone(), *t)).collect();
        list.sort_by_key(|(u, t)| (*t, u.clone()));
        list
    }

    /// Guests on air, with when they started.
    pub fn active(&self) -> Vec<(String, Millis)> {
        self.active.iter().map(|(u, t)| (u.clone(), *t)).collect()
    }

    /// Whether `user` is an accepted guest.
    pub fn is_active(&self, user: &str) -> bool {
        self.active.contains_key(user)
    }

    /// An accepted guest's stream started (`true`) or stopped. Returns whether the
    /// guests on air changed (a stream of someone not accepted changes nothing).
    pub fn set_on_air(&mut self, user: &str, on: bool) -> bool {
        if !self.active.contains_key(user) {
            return false;
        }
        if on { self.on_air.insert(user.to_owned()) } else { self.on_air.remove(user) }
    }

    /// The guests in the room's picture: on air, longest accepted first, at most
    /// [`MIX_SLOTS`].
    pub fn in_picture(&self) -> Vec<String> {
        let mut list: Vec<(Millis, &String)> =
            self.active.iter().filter(|(u, _)| self.on_air.contains(*u)).map(|(u, t)| (*t, u)).collect();
        list.sort();
        list.into_iter().take(MIX_SLOTS).map(|(_, u)| u.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accept_end() {
        let mut c = Cohosts::default();
        c.request("g", 1).map_err(|e| e.info).ok();
        assert_eq!(c.request("g", 2).map_err(|e| e.code), Err(Code::Conflict));
        assert_eq!(c.pending(), vec![("g".to_string(), 1)]);
        assert!(c.accept("g", 3).is_ok());
        assert!(c.is_active("g") && c.pending().is_empty());
        assert_eq!(c.request("g", 4).map_err(|e| e.code), Err(Code::Conflict));
        assert_eq!(c.end("g").ok(), Some(true));
        assert_eq!(c.end("g").map_err(|e| e.code), Err(Code::NotFound));
    }

    #[test]
    fn refuse_and_withdraw() {
        let mut c = Cohosts::default();
        assert_eq!(c.accept("x", 0).map_err(|e| e.code), Err(Code::NotFound));
        assert!(c.request("x", 0).is_ok());
        assert!(c.refuse("x").is_ok());
        assert!(c.refuse("x").is_err());
        assert!(c.request("y", 0).is_ok());
        assert_eq!(c.end("y").ok(), Some(false));
    }

    #[test]
    fn on_air_guests_fill_the_picture_in_accept_order() {
        let mut c = Cohosts::default();
        for (i, u) in ["d", "c", "b", "a", "x"].iter().enumerate() {
            assert!(c.request(u, 0).is_ok());
            if *u != "x" {
                assert!(c.accept(u, 10 + i as u64).is_ok());
            }
        }
        assert!(!c.set_on_air("x", true), "not accepted: no place");
        assert!(c.in_picture().is_empty(), "accepted but not publishing yet");
        for u in ["a", "b", "c", "d"] {
            assert!(c.set_on_air(u, true));
        }
        assert!(!c.set_on_air("a", true), "no change");
        assert_eq!(c.in_picture(), ["d", "c", "b"], "three places, longest accepted first");
        assert!(c.set_on_air("c", false));
        assert_eq!(c.in_picture(), ["d", "b", "a"]);
        assert_eq!(c.end("d").ok(), Some(true));
        assert_eq!(c.in_picture(), ["b", "a"]);
        assert!(!c.set_on_air("d", true), "ended guests stay off");
    }

    #[test]
    fn bounded() {
        let mut c = Cohosts::default();
        for i in 0..MAX_PENDING {
            assert!(c.request(&format!("u{i}"), i as u64).is_ok());
        }
        assert!(c.request("late", 0).is_err());
        for i in 0..MAX_ACTIVE {
            assert!(c.accept(&format!("u{i}"), 0).is_ok());
        }
        assert!(c.accept("u49", 0).is_err());
    }
}
