//! System events a room pushes to its members. They are not user messages: they are
//! never cut by frequency control, never stored as chat history, and carry a `type`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::live::{ChangeReason, LiveState};
use crate::message::MsgElem;

/// A member as shown in enter/quit events and the member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberBrief {
    /// Account id.
    pub user_id: String,
    /// Display name.
    pub nick: String,
    /// Avatar URL.
    pub avatar: String,
    /// Level.
    pub level: u32,
}

/// Changed profile fields (only the changed ones are present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProfileChange {
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New introduction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introduction: Option<String>,
    /// New notice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
    /// New face URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_url: Option<String>,
    /// Changed custom fields (empty value = deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_defined_data: Option<BTreeMap<String, String>>,
}

/// An event for the members of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RoomEvent {
    /// The exact online count (logged-in users plus anonymous viewers).
    Online {
        /// Online now.
        count: u64,
    },
    /// Members entered. Below the small-room threshold `users` lists each of them;
    /// above it the event is aggregated: `count` is exact, `users` a sample.
    Enter {
        /// How many entered since the last event.
        count: u64,
        /// Who (all of them in small rooms, a sample in big ones).
        users: Vec<MemberBrief>,
    },
    /// Members quit; same shape as `Enter`.
    Quit {
        /// How many quit since the last event.
        count: u64,
        /// Who (all of them in small rooms, a sample in big ones).
        users: Vec<MemberBrief>,
    },
    /// Room profile fields changed.
    Profile(ProfileChange),
    /// Group attributes changed; the full current set.
    #[serde(rename_all = "camelCase")]
    Attrs {
        /// All attributes after the change.
        attrs: BTreeMap<String, String>,
    },
    /// Mute-all switched.
    MuteAll {
        /// Whether only owner/admins may speak now.
        on: bool,
    },
    /// A system notification from an admin to this room (online members only).
    Notification {
        /// The text.
        content: String,
    },
    /// A message broadcast by an admin to every room of the app.
    #[serde(rename_all = "camelCase")]
    Broadcast {
        /// Sender account (an admin or an account it names).
        from: String,
        /// Elements.
        body: Vec<MsgElem>,
        /// Opaque business data.
        cloud_custom_data: String,
        /// Broadcast sequence number (app-wide).
        seq: u64,
        /// Unix seconds.
        time: u64,
    },
    /// A member was muted (or unmuted: `mutedUntil` 0). Sent to the whole room so the
    /// muted client disables its input at once and others may show it.
    #[serde(rename_all = "camelCase")]
    Muted {
        /// Who.
        user_id: String,
        /// Unix seconds the mute ends (0 = not muted; 4294967295 = permanent).
        muted_until: u64,
    },
    /// A member was removed from the room (banned); their connections are out.
    #[serde(rename_all = "camelCase")]
    Kicked {
        /// Who.
        user_id: String,
        /// Why.
        reason: String,
        /// Unix seconds the ban ends (4294967295 = permanent).
        banned_until: u64,
    },
    /// Slow mode changed: members may send one message per `seconds` (0 = off).
    SlowMode {
        /// Seconds between two messages of one member.
        seconds: u64,
    },
    /// A delivered message was recalled: clients remove it; history no longer has it.
    Recall {
        /// The message's seq.
        seq: u64,
        /// Who recalled it.
        operator: String,
    },
    /// The room was destroyed; members are out.
    Destroyed {
        /// Why.
        reason: String,
    },
    /// The live state changed.
    #[serde(rename_all = "camelCase")]
    State {
        /// The new state.
        state: LiveState,
        /// The state before.
        previous: LiveState,
        /// Announced start (Unix seconds; 0 = none).
        scheduled_at: u64,
        /// When it changed (Unix ms).
        at: u64,
        /// What changed it.
        reason: ChangeReason,
    },
    /// Gifts were sent (one event per request with a count, per merged batch of
    /// a combo, and one `end` event closing a combo).
    Gift(GiftEvent),
    /// Likes since the previous like event, and the room's exact total.
    Like {
        /// Likes since the previous event.
        delta: u64,
        /// The room's total.
        total: u64,
    },
    /// A lottery started or was drawn (fields of the lottery, plus `phase`).
    Lottery(serde_json::Value),
    /// Co-hosting signalling (`phase`: requested, accepted, refused, started, ended).
    Cohost(serde_json::Value),
    /// The anchor's stream was published, stopped or recorded (`phase` plus details).
    Stream(serde_json::Value),
}

/// One gift event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GiftEvent {
    /// The combo (or single request) this event belongs to.
    pub combo_id: String,
    /// Sender account.
    pub from: String,
    /// Sender's display name.
    pub nick: String,
    /// Sender's avatar.
    pub avatar: String,
    /// Sender's level.
    pub level: u32,
    /// Receiving anchor.
    pub to: String,
    /// Gift id.
    pub gift_id: String,
    /// Gift name.
    pub name: String,
    /// Price of one.
    pub price: u64,
    /// Icon URL.
    pub icon: String,
    /// Animation URL.
    pub animation: String,
    /// Gifts in this event (0 in the end event).
    pub count: u64,
    /// Running total of the combo.
    pub combo: u64,
    /// This event closes the combo.
    pub end: bool,
}

impl RoomEvent {
    /// True for events that only refresh a number and can be skipped for a client
    /// that fell behind (the next one carries the current value).
    pub fn is_refreshable(&self) -> bool {
        matches!(
            self,
            RoomEvent::Online { .. } | RoomEvent::Enter { .. } | RoomEvent::Quit { .. } | RoomEvent::Like { .. }
        )
    }
}
