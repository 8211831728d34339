//! List entries shared by the WebSocket protocol and the native API: a ban, a mute
//! and a recently joined member look the same wherever a client reads them.

use onair_core::presence::RecentMember;
use serde::Serialize;

/// A ban as the ban lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BanView<'a> {
    /// Who.
    pub user_id: &'a str,
    /// End, Unix seconds (4294967295 = permanent).
    pub banned_until: u64,
    /// Why.
    pub reason: &'a str,
}

/// A mute as the mute lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteView<'a> {
    /// Who.
    pub user_id: &'a str,
    /// End, Unix seconds (4294967295 = permanent).
    pub muted_until: u64,
}

impl<'a> MuteView<'a> {
    /// From a room's `(user, end)` mute entry.
    pub fn of((user, until): &'a (String, u64)) -> Self {
        MuteView { user_id: user, muted_until: *until }
    }
}

/// A recently joined member as the member lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView<'a> {
    /// Account.
    pub user_id: &'a str,
    /// Display name.
    pub nick: &'a str,
    /// Avatar URL.
    pub avatar: &'a str,
    /// Level.
    pub level: u32,
    /// When they joined, Unix seconds.
    pub join_time: u64,
}

impl<'a> MemberView<'a> {
    /// From the presence core's entry.
    pub fn of(m: &'a RecentMember) -> Self {
        MemberView {
            user_id: &m.brief.user_id,
            nick: &m.brief.nick,
            avatar: &m.brief.avatar,
            level: m.brief.level,
            join_time: m.joined_at / 1000,
        }
    }
}
