//! Who is logged in where: one connection per (user, platform). A second login on
//! the same platform kicks the first, with a reason the old client can show.

use std::collections::HashMap;
use std::sync::Arc;

use onair_core::message::SenderProfile;
use parking_lot::Mutex;

use crate::outbox::Frame;

use crate::outbox::{FrameClass, Outbox};

/// A logged-in connection as the registry knows it.
#[derive(Clone)]
pub struct Session {
    /// The connection.
    pub conn_id: u64,
    /// Its outbox (to kick it).
    pub outbox: Arc<Outbox>,
    /// The profile stamped on its messages (shared with the connection task).
    pub profile: Arc<Mutex<SenderProfile>>,
}

/// The registry.
#[derive(Default)]
pub struct Sessions {
    by_user: Mutex<HashMap<String, Vec<(String, Session)>>>,
}

impl Sessions {
    /// Registers a login and returns the session it replaces, if any.
    pub fn login(&self, user_id: &str, platform: &str, session: Session) -> Option<Session> {
        let mut map = self.by_user.lock();
        let list = map.entry(user_id.to_owned()).or_default();
        let old = list.iter().position(|(p, _)| p == platform).map(|i| list.swap_remove(i).1);
        list.push((platform.to_owned(), session));
        old
    }

    /// Removes a login if it is still this connection's.
    pub fn logout(&self, user_id: &str, platform: &str, conn_id: u64) {
        let mut map = self.by_user.lock();
        if let Some(list) = map.get_mut(user_id) {
            list.retain(|(p, s)| !(p == platform && s.conn_id == conn_id));
            if list.is_empty() {
                map.remove(user_id);
            }
        }
    }

    /// Updates the stamped profile of every session of a user.
    pub fn update_profile(&self, user_id: &str, profile: &SenderProfile) {
        if let Some(list) = self.by_user.lock().get(user_id) {
            for (_, s) in list {
                *s.profile.lock() = profile.clone();
            }
        }
    }

    /// Platforms a user is logged in on.
    pub fn platforms(&self, user_id: &str) -> Vec<String> {
        self.by_user.lock().get(user_id).map(|l| l.iter().map(|(p, _)| p.clone()).collect()).unwrap_or_default()
    }

    /// Kicks every session of a user (an admin's `kick`): each gets a `kicked` frame
    /// with `reason`, then close 4001. Returns how many sessions were kicked.
    pub fn kick_user(&self, user_id: &str, reason: &str, message: &str) -> usize {
        let sessions: Vec<Session> =
            self.by_user.lock().get(user_id).map(|l| l.iter().map(|(_, s)| s.clone()).collect()).unwrap_or_default();
        let frame = Frame::from(onair_proto::kicked_frame(reason, message));
        for s in &sessions {
            s.outbox.push(FrameClass::Essential, frame.clone());
            s.outbox.close(4001, "kicked by an admin");
        }
        sessions.len()
    }
}
