//! Server frame encoding.
//!
//! Frames are built as `String`s with serde_json from borrowed views, so a room push
//! is serialized exactly once per tick no matter how many members receive it.

use std::collections::BTreeMap;

use onair_core::Rejection;
use onair_core::event::RoomEvent;
use onair_core::message::{ChatMessage, MsgElem};
use serde::Serialize;
use serde_json::Value;

/// A delivered message as clients see it (the `MSG` of docs/protocol.md).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMsg<'a> {
    seq: u64,
    time: u64,
    from: &'a str,
    nick: &'a str,
    avatar: &'a str,
    level: u32,
    priority: &'static str,
    random: u32,
    body: &'a [MsgElem],
    cloud_custom_data: &'a str,
}

/// The wire view of a message.
pub fn wire_msg(m: &ChatMessage) -> WireMsg<'_> {
    WireMsg {
        seq: m.seq,
        time: m.time_secs(),
        from: &m.sender.user_id,
        nick: &m.sender.nick,
        avatar: &m.sender.avatar,
        level: m.sender.level,
        priority: m.priority.as_str(),
        random: m.random,
        body: &m.body,
        cloud_custom_data: &m.cloud_custom_data,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Push<'a> {
    op: &'static str,
    room_id: &'a str,
    msgs: Vec<WireMsg<'a>>,
    events: &'a [RoomEvent],
}

/// `{"op":"push","roomId":…,"msgs":[…],"events":[…]}`: one tick of a room.
pub fn encode_push<M: AsRef<ChatMessage>>(room_id: &str, msgs: &[M], events: &[RoomEvent]) -> String {
    let frame = Push { op: "push", room_id, msgs: msgs.iter().map(|m| wire_msg(m.as_ref())).collect(), events };
    to_json(&frame)
}

/// A room as a joining client sees it.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    /// Room id.
    pub room_id: String,
    /// Name.
    pub name: String,
    /// Introduction.
    pub introduction: String,
    /// Notice.
    pub notification: String,
    /// Cover URL.
    pub face_url: String,
    /// Anchor account.
    pub owner: String,
    /// Custom fields.
    pub app_defined_data: BTreeMap<String, String>,
    /// Group attributes.
    pub attrs: BTreeMap<String, String>,
    /// Mute-all switch.
    pub mute_all: bool,
    /// Live state.
    pub state: String,
    /// Online now (exact).
    pub online: u64,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Profile version.
    pub info_seq: u64,
    /// Seq the next message will get.
    pub next_seq: u64,
    /// Slow mode: seconds between two messages of one member (0 = off).
    pub slow_mode: u64,
    /// Announced start time, Unix seconds (0 = none).
    pub scheduled_at: u64,
    /// When the live state last changed, Unix seconds.
    pub state_changed_at: u64,
    /// The anchor's stream name (`rtmp://HOST/live/<stream>`, `/live/<stream>.flv`…).
    pub stream: String,
    /// Where the replay plays once the state is `replay` (empty before).
    pub replay_url: String,
    /// Exact like total.
    pub likes: u64,
    /// Popularity score (online now plus recent activity with decay).
    pub popularity: f64,
}

/// The joining user's own standing in the room.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct YouView {
    /// Unix seconds until which the user is muted (0 = not muted).
    pub muted_until: u64,
    /// `Owner`, `Admin`, `Member` or `Anonymous`.
    pub role: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResumeView {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_available: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAck<'a> {
    op: &'static str,
    id: &'a Value,
    code: u32,
    room: &'a RoomView,
    history: Vec<WireMsg<'a>>,
    you: &'a YouView,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<ResumeView>,
}

/// The reply to `join`: room, history (or the resumed gap) and the caller's standing.
/// `resume` is `Some(Ok)` when a resume was served gap-free, `Some(Err(oldest))`
/// when it was not recoverable.
pub fn encode_join_ack<M: AsRef<ChatMessage>>(
    id: &Value,
    room: &RoomView,
    history: &[M],
    you: &YouView,
    resume: Option<Result<(), u64>>,
) -> String {
    let resume = resume.map(|r| match r {
        Ok(()) => ResumeView { ok: true, oldest_available: None, reason: None },
        Err(oldest) => ResumeView { ok: false, oldest_available: Some(oldest), reason: Some("not recoverable") },
    });
    to_json(&JoinAck {
        op: "ack",
        id,
        code: 0,
        room,
        history: history.iter().map(|m| wire_msg(m.as_ref())).collect(),
        you,
        resume,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SendAck<'a> {
    op: &'static str,
    id: &'a Value,
    code: u32,
    seq: u64,
    time: u64,
    drop_reason: &'a str,
}

/// The reply to `send`: seq/time when delivered, or seq 0 and a drop reason.
pub fn encode_send_ack(id: &Value, seq: u64, time_secs: u64, drop_reason: &str) -> String {
    to_json(&SendAck { op: "ack", id, code: 0, seq, time: time_secs, drop_reason })
}

/// `{"op":"ack","id":…,"code":0}`.
pub fn ack_ok(id: &Value) -> String {
    ack_ok_with(id, serde_json::Map::new())
}

/// A success ack with extra fields.
pub fn ack_ok_with(id: &Value, extra: serde_json::Map<String, Value>) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), Value::from("ack"));
    obj.insert("id".into(), id.clone());
    obj.insert("code".into(), Value::from(0));
    obj.extend(extra);
    to_json(&obj)
}

/// `{"op":"ack","id":…,"code":N,"message":"…"}`.
pub fn ack_error(id: &Value, rejection: &Rejection) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), Value::from("ack"));
    obj.insert("id".into(), id.clone());
    obj.insert("code".into(), Value::from(rejection.code.number()));
    obj.insert("message".into(), Value::from(rejection.info.clone()));
    to_json(&obj)
}

/// `{"op":"kicked","reason":…,"message":…}`: the connection is being closed by the
/// server (another login on the same platform, or an admin).
pub fn kicked_frame(reason: &str, message: &str) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), Value::from("kicked"));
    obj.insert("reason".into(), Value::from(reason));
    obj.insert("message".into(), Value::from(message));
    to_json(&obj)
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs into a String cannot fail (no maps with
    // non-string keys, no custom Serialize impls that error).
    serde_json::to_string(v)
        .unwrap_or_else(|_| String::from(r#"{"op":"ack","id":null,"code":10002,"message":"encoding failed"}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_core::message::{Priority, SenderProfile, TextElem};
    use std::sync::Arc;

    #[test]
    fn push_frame_has_the_spec_shape() {
        let m = Arc::new(ChatMessage {
            seq: 17,
            time_ms: 1_764_000_000_123,
            sender: SenderProfile { user_id: "alice".into(), nick: "Al".into(), avatar: "http://a".into(), level: 3 },
            priority: Priority::Normal,
            random: 42,
            body: vec![MsgElem::Text(TextElem { text: "hi".into() })],
            cloud_custom_data: String::new(),
        });
        let frame = encode_push("room1", &[m], &[RoomEvent::Online { count: 3 }]);
        assert_eq!(
            frame,
            r#"{"op":"push","roomId":"room1","msgs":[{"seq":17,"time":1764000000,"from":"alice","nick":"Al","avatar":"http://a","level":3,"priority":"Normal","random":42,"body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}],"cloudCustomData":""}],"events":[{"type":"online","count":3}]}"#
        );
    }

    #[test]
    fn acks_echo_ids() {
        assert_eq!(
            encode_send_ack(&Value::from(3), 17, 1_764_000_000, ""),
            r#"{"op":"ack","id":3,"code":0,"seq":17,"time":1764000000,"dropReason":""}"#
        );
        let r = Rejection::new(onair_core::Code::RoomNotFound, "no room 'x'");
        assert_eq!(ack_error(&Value::from("a"), &r), r#"{"op":"ack","id":"a","code":10010,"message":"no room 'x'"}"#);
    }
}
