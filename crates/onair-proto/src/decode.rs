//! Client frame decoding.

use onair_core::message::{MsgElem, Priority};
use onair_core::{Code, Rejection};
use serde::Deserialize;
use serde_json::Value;

use crate::MAX_FRAME_BYTES;

/// A decoded client request: its echo `id` and what it asks.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's `id`, echoed verbatim in the reply (`null` when absent).
    pub id: Value,
    /// The operation.
    pub kind: RequestKind,
}

/// `login`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// The app the client belongs to.
    pub sdkappid: u64,
    /// Account id (≤ 32 bytes).
    pub user_id: String,
    /// TLSSigAPIv2 UserSig.
    pub user_sig: String,
    /// `Web`, `Android`, `iOS`, `Windows`, `Mac`, `iPad`… (default `Web`).
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Optional display name to store with the login.
    #[serde(default)]
    pub nick: Option<String>,
    /// Optional avatar URL to store with the login.
    #[serde(default)]
    pub avatar: Option<String>,
}

fn default_platform() -> String {
    "Web".into()
}

/// `join`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// Room to enter.
    pub room_id: String,
    /// Resume: deliver exactly the messages after this seq (reconnects).
    #[serde(default)]
    pub last_seq: Option<u64>,
}

/// `send`, already validated for shape (not yet for room rules).
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// Target room.
    pub room_id: String,
    /// Priority (default Normal).
    pub priority: Priority,
    /// Client random for duplicate suppression; `None` when omitted. An omission is
    /// not 0: every later message without one would be a duplicate of the first and
    /// silently not delivered, so the face gives such a message a random of its own.
    pub random: Option<u32>,
    /// Elements.
    pub body: Vec<MsgElem>,
    /// Opaque business data.
    pub cloud_custom_data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSend {
    room_id: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    random: Option<u32>,
    body: Vec<MsgElem>,
    #[serde(default)]
    cloud_custom_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomOnly {
    room_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembersRaw {
    room_id: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct ProfileRaw {
    #[serde(default)]
    nick: Option<String>,
    #[serde(default)]
    avatar: Option<String>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// Authenticate the connection.
    Login(LoginRequest),
    /// Drop the login (the connection stays, anonymous).
    Logout,
    /// Enter a room (anonymous viewers may, read-only).
    Join(JoinRequest),
    /// Leave a room.
    Leave {
        /// Room to leave.
        room_id: String,
    },
    /// Send a message to a room.
    Send(SendRequest),
    /// Keep-alive; answered with an ack carrying the server time.
    Ping,
    /// Recent online members of a room (an OnAir addition).
    Members {
        /// Room.
        room_id: String,
        /// How many (capped by the server's member list size).
        limit: Option<usize>,
    },
    /// Moderation by the owner, a room admin or an app admin (an OnAir addition).
    Moderate(Moderation),
    /// Likes for a room (an OnAir addition): `count` taps the client batched.
    Like {
        /// Room.
        room_id: String,
        /// Taps in this batch (1..=1000).
        count: u64,
    },
    /// Update the logged-in user's nick/avatar (an OnAir addition).
    SetProfile {
        /// New nick.
        nick: Option<String>,
        /// New avatar URL.
        avatar: Option<String>,
    },
}

/// A moderation request from the WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub struct Moderation {
    /// Room acted on.
    pub room_id: String,
    /// What to do.
    pub action: ModerationAction,
}

/// What a moderator asks.
#[derive(Debug, Clone, PartialEq)]
pub enum ModerationAction {
    /// `mute`: users may not send for `seconds` (0 = unmute).
    Mute {
        /// Accounts.
        user_ids: Vec<String>,
        /// Duration; 0 lifts it; ≥ 4294967295 = permanent.
        seconds: u64,
    },
    /// `ban`: out now and kept out for `seconds`.
    Ban {
        /// Accounts.
        user_ids: Vec<String>,
        /// Duration (≥ 1).
        seconds: u64,
        /// Shown to the banned user.
        reason: String,
    },
    /// `unban`.
    Unban {
        /// Accounts.
        user_ids: Vec<String>,
    },
    /// `kick`: out now, may come back.
    Kick {
        /// Accounts.
        user_ids: Vec<String>,
        /// Shown to the kicked user.
        reason: String,
    },
    /// `recall`: withdraw a delivered message.
    Recall {
        /// Its seq.
        seq: u64,
    },
    /// `slowMode`: each member may send one message per `seconds` (0 = off).
    SlowMode {
        /// Seconds between two messages of one member.
        seconds: u64,
    },
    /// `bans`: a page of the room's bans.
    Bans {
        /// First entry.
        offset: usize,
        /// Page size (≤ 100).
        limit: usize,
    },
    /// `mutes`: the room's current mutes.
    Mutes,
    /// `words`: replace the room's sensitive-word list (empty = remove it).
    Words {
        /// `reject`, `mask` or `drop`.
        action: String,
        /// The words.
        words: Vec<String>,
    },
    /// `muteAll`: only the owner and admins may speak.
    MuteAll {
        /// On or off.
        on: bool,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LikeRaw {
    room_id: String,
    #[serde(default)]
    count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModerationRaw {
    room_id: String,
    #[serde(default)]
    user_ids: Vec<String>,
    #[serde(default)]
    seconds: Option<u64>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    on: Option<bool>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    words: Vec<String>,
}

fn moderation(id: &Value, op: &str, value: Value) -> Result<RequestKind, DecodeError> {
    let raw: ModerationRaw = payload(id, op, value)?;
    let need = |what: &str| fail(id, Code::InvalidParam, format!("'{op}' needs '{what}'"));
    let action = match op {
        "mute" => {
            ModerationAction::Mute { user_ids: raw.user_ids, seconds: raw.seconds.ok_or_else(|| need("seconds"))? }
        }
        "ban" => ModerationAction::Ban {
            user_ids: raw.user_ids,
            seconds: raw.seconds.ok_or_else(|| need("seconds"))?,
            reason: raw.reason,
        },
        "unban" => ModerationAction::Unban { user_ids: raw.user_ids },
        "kick" => ModerationAction::Kick { user_ids: raw.user_ids, reason: raw.reason },
        "recall" => ModerationAction::Recall { seq: raw.seq.ok_or_else(|| need("seq"))? },
        "slowMode" => ModerationAction::SlowMode { seconds: raw.seconds.ok_or_else(|| need("seconds"))? },
        "bans" => ModerationAction::Bans { offset: raw.offset.unwrap_or(0), limit: raw.limit.unwrap_or(100) },
        "mutes" => ModerationAction::Mutes,
        "words" => ModerationAction::Words { action: raw.action.ok_or_else(|| need("action"))?, words: raw.words },
        _ => ModerationAction::MuteAll { on: raw.on.ok_or_else(|| need("on"))? },
    };
    Ok(RequestKind::Moderate(Moderation { room_id: raw.room_id, action }))
}

/// Why a frame could not be decoded: the reply code and text, and the `id` if known.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The request id when it could be read, else `null`.
    pub id: Value,
    /// What to answer.
    pub rejection: Rejection,
}

fn fail(id: &Value, code: Code, info: impl Into<String>) -> DecodeError {
    DecodeError { id: id.clone(), rejection: Rejection::new(code, info) }
}

fn payload<T: for<'de> Deserialize<'de>>(id: &Value, op: &str, v: Value) -> Result<T, DecodeError> {
    serde_json::from_value(v).map_err(|e| fail(id, Code::InvalidParam, format!("invalid '{op}' request: {e}")))
}

/// Decodes one client text frame.
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(fail(
            &Value::Null,
            Code::PacketTooLong,
            format!("frame is {} bytes; the limit is {MAX_FRAME_BYTES} bytes", frame.len()),
        ));
    }
    let value: Value = serde_json::from_slice(frame)
        .map_err(|e| fail(&Value::Null, Code::JsonParse, format!("frame is not valid JSON: {e}")))?;
    let Value::Object(ref obj) = value else {
        return Err(fail(&Value::Null, Code::JsonParse, "frame must be a JSON object"));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => return Err(fail(&id, Code::InvalidParam, "'op' must be a string")),
        None => return Err(fail(&id, Code::InvalidParam, "missing 'op'")),
    };
    let kind = match op.as_str() {
        "login" => RequestKind::Login(payload(&id, &op, value)?),
        "logout" => RequestKind::Logout,
        "join" => RequestKind::Join(payload(&id, &op, value)?),
        "leave" => RequestKind::Leave { room_id: payload::<RoomOnly>(&id, &op, value)?.room_id },
        "ping" => RequestKind::Ping,
        "members" => {
            let m: MembersRaw = payload(&id, &op, value)?;
            RequestKind::Members { room_id: m.room_id, limit: m.limit }
        }
        "mute" | "ban" | "unban" | "kick" | "recall" | "muteAll" | "slowMode" | "bans" | "mutes" | "words" => {
            moderation(&id, &op, value)?
        }
        "like" => {
            let raw: LikeRaw = payload(&id, &op, value)?;
            let count = raw.count.unwrap_or(1);
            if !(1..=1000).contains(&count) {
                return Err(fail(&id, Code::InvalidParam, "'like' count must be 1..=1000"));
            }
            RequestKind::Like { room_id: raw.room_id, count }
        }
        "setProfile" => {
            let p: ProfileRaw = payload(&id, &op, value)?;
            RequestKind::SetProfile { nick: p.nick, avatar: p.avatar }
        }
        "send" => {
            let raw: RawSend = payload(&id, &op, value)?;
            let priority = match raw.priority.as_deref() {
                None => Priority::Normal,
                Some(p) => Priority::parse(p).ok_or_else(|| {
                    fail(&id, Code::InvalidParam, format!("unknown priority '{p}' (High, Normal, Low or Lowest)"))
                })?,
            };
            RequestKind::Send(SendRequest {
                room_id: raw.room_id,
                priority,
                random: raw.random,
                body: raw.body,
                cloud_custom_data: raw.cloud_custom_data.unwrap_or_default(),
            })
        }
        other => {
            let mut shown: String = other.chars().take(32).collect();
            if shown.len() < other.len() {
                shown.push('…');
            }
            return Err(fail(&id, Code::UnknownCommand, format!("unknown op '{shown}'")));
        }
    };
    Ok(Request { id, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(frame: &str) -> (Value, u32) {
        let e = decode_request(frame.as_bytes()).expect_err("should fail");
        (e.id, e.rejection.code.number())
    }

    #[test]
    fn the_spec_lines_decode() {
        let r = decode_request(
            br#"{"op":"login","id":1,"sdkappid":1400000000,"userId":"alice","userSig":"x","platform":"Web"}"#,
        )
        .expect("ok");
        assert_eq!(r.id, Value::from(1));
        assert!(matches!(r.kind, RequestKind::Login(ref l) if l.user_id == "alice" && l.platform == "Web"));
        let r = decode_request(br#"{"op":"join","id":2,"roomId":"room1"}"#).expect("ok");
        assert_eq!(r.kind, RequestKind::Join(JoinRequest { room_id: "room1".into(), last_seq: None }));
        let r = decode_request(br#"{"op":"send","id":3,"roomId":"room1","priority":"Normal","random":42,"body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}],"cloudCustomData":""}"#).expect("ok");
        assert!(
            matches!(r.kind, RequestKind::Send(ref s) if s.random == Some(42) && s.body.len() == 1 && s.priority == Priority::Normal)
        );
        // An omitted random is "none", not 0 (issue 15: 0 made every later message a duplicate).
        let r = decode_request(
            br#"{"op":"send","id":3,"roomId":"room1","body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}"#,
        )
        .expect("ok");
        assert!(matches!(r.kind, RequestKind::Send(ref s) if s.random.is_none()));
        assert_eq!(
            decode_request(br#"{"op":"leave","id":4,"roomId":"room1"}"#).expect("ok").kind,
            RequestKind::Leave { room_id: "room1".into() }
        );
        assert_eq!(decode_request(br#"{"op":"ping","id":5}"#).expect("ok").kind, RequestKind::Ping);
        let r = decode_request(br#"{"op":"ping","id":"abc"}"#).expect("ok");
        assert_eq!(r.id, Value::from("abc"), "ids are echoed whatever their type");
    }

    #[test]
    fn moderation_ops_decode_and_say_what_is_missing() {
        let r = decode_request(br#"{"op":"mute","id":1,"roomId":"r","userIds":["a"],"seconds":60}"#).expect("ok");
        assert_eq!(
            r.kind,
            RequestKind::Moderate(Moderation {
                room_id: "r".into(),
                action: ModerationAction::Mute { user_ids: vec!["a".into()], seconds: 60 }
            })
        );
        let r = decode_request(br#"{"op":"recall","id":2,"roomId":"r","seq":7}"#).expect("ok");
        assert!(matches!(
            r.kind,
            RequestKind::Moderate(Moderation { action: ModerationAction::Recall { seq: 7 }, .. })
        ));
        assert_eq!(code(r#"{"op":"ban","id":3,"roomId":"r","userIds":["a"]}"#), (Value::from(3), 10004));
        assert_eq!(code(r#"{"op":"muteAll","id":4,"roomId":"r"}"#), (Value::from(4), 10004));
        assert_eq!(code(r#"{"op":"mute","id":5,"roomId":"r","userIds":["a"],"seconds":-1}"#), (Value::from(5), 10004));
    }

    #[test]
    fn bad_frames_get_codes_and_keep_the_id_when_readable() {
        assert_eq!(code("{nope"), (Value::Null, 90001));
        assert_eq!(code("[1,2]"), (Value::Null, 90001));
        assert_eq!(code(r#"{"id":7}"#), (Value::from(7), 10004));
        assert_eq!(code(r#"{"op":"dance","id":8}"#), (Value::from(8), 10003));
        assert_eq!(code(r#"{"op":"join","id":9}"#), (Value::from(9), 10004));
        assert_eq!(
            code(r#"{"op":"send","id":10,"roomId":"r","priority":"Urgent","body":[]}"#),
            (Value::from(10), 10004)
        );
        assert_eq!(
            code(r#"{"op":"send","id":11,"roomId":"r","body":[{"MsgType":"TIMBogus","MsgContent":{}}]}"#),
            (Value::from(11), 10004)
        );
        assert_eq!(code(r#"{"op":"send","id":12,"roomId":"r","random":-1,"body":[]}"#), (Value::from(12), 10004));
        let big = format!(r#"{{"op":"ping","id":1,"pad":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(code(&big), (Value::Null, 93000));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_request(&bytes);
        }

        #[test]
        fn never_panics_on_json_like_text(s in r#"\{"op":"(send|join|login|leave|ping)","id":[0-9]{1,3}(,"[a-zA-Z]{1,10}":("[^"]{0,10}"|[0-9]{1,12}|\[\]|null|\{\}))*\}"#) {
            let _ = decode_request(s.as_bytes());
        }
    }
}
