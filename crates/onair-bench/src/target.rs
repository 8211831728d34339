//! The three servers the tool can load, and their wire text.
//!
//! OnAir speaks the JSON protocol of docs/protocol.md at `/ws`. The `ws` peer
//! (`bench/ws/server.js`, a plain broadcast loop) speaks the part of it the tool
//! uses (`login`, `join`, `send`, one-message `push`es), so it gets the same
//! texts as OnAir and sends frames of the same shape. The Socket.IO
//! peer (`bench/socketio/server.js`) is reached with Engine.IO v4 over a raw
//! WebSocket; its `chat` event carries the same fields as an OnAir `send`,
//! and it broadcasts OnAir-shaped MSGs, so frames have about the same size
//! and both are counted by their `"seq":` keys.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::net::urlencode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Onair,
    Socketio,
    /// The plain `ws` broadcast-loop peer: OnAir's wire, no room to create.
    Ws,
}

/// What every viewer counts: one occurrence per chat message.
pub const MSG_PATTERN: &[u8] = b"\"seq\":";

impl Target {
    /// The name `--target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::Onair => "onair",
            Target::Socketio => "socketio",
            Target::Ws => "ws",
        }
    }

    /// Path and query to open the WebSocket with.
    pub fn ws_path(self, url_path: &str, room: &str, user: &str) -> String {
        match self {
            Target::Onair | Target::Ws => url_path.to_string(),
            Target::Socketio => {
                let mut p = format!("/socket.io/?EIO=4&transport=websocket&room={}", urlencode(room));
                if !user.is_empty() {
                    p.push_str("&user=");
                    p.push_str(&urlencode(user));
                }
                p
            }
        }
    }
}

/// The chat payload both servers get: OnAir `send` fields, send time in
/// `cloudCustomData` as unix microseconds.
fn chat_fields(room: &str, random: u32, sent_us: u64) -> serde_json::Value {
    json!({
        "roomId": room,
        "priority": "Normal",
        "random": random,
        "body": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "bench"}}],
        "cloudCustomData": sent_us.to_string(),
    })
}

pub fn onair_join(id: u64, room: &str) -> String {
    json!({"op": "join", "id": id, "roomId": room}).to_string()
}

pub fn onair_login(id: u64, sdkappid: u64, user: &str, sig: &str) -> String {
    json!({"op": "login", "id": id, "sdkappid": sdkappid, "userId": user, "userSig": sig, "platform": "Web"})
        .to_string()
}

pub fn onair_send(id: u64, room: &str, random: u32, sent_us: u64) -> String {
    let mut v = chat_fields(room, random, sent_us);
    v["op"] = json!("send");
    v["id"] = json!(id);
    v.to_string()
}

/// Engine.IO message packet (`4`) carrying a Socket.IO EVENT (`2`) with an
/// ack id: `42<id>["chat",{...}]`.
pub fn sio_chat(id: u64, room: &str, random: u32, sent_us: u64) -> String {
    format!("42{id}{}", json!(["chat", chat_fields(room, random, sent_us)]))
}

/// A reply of either server, reduced to what senders look at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(default)]
    pub op: String,
    pub id: Option<u64>,
    pub code: Option<i64>,
    #[serde(default)]
    pub drop_reason: String,
    #[serde(default)]
    pub message: String,
}

/// Parses an OnAir text frame as an ack, if it is one.
pub fn onair_ack(text: &str) -> Option<Ack> {
    if !text.contains("\"ack\"") {
        return None;
    }
    serde_json::from_str::<Ack>(text).ok().filter(|a| a.op == "ack")
}

/// Parses a Socket.IO ack `43<id>[{...}]`.
pub fn sio_ack(text: &str) -> Option<Ack> {
    let rest = text.strip_prefix("43")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id: u64 = rest[..digits].parse().ok()?;
    let (mut ack,): (Ack,) = serde_json::from_str(&rest[digits..]).ok()?;
    ack.id = Some(id);
    ack.op = "ack".into();
    Some(ack)
}

/// The parts of a MSG a sampled viewer needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MsgLite {
    pub seq: u64,
    #[serde(default)]
    pub cloud_custom_data: String,
}

#[derive(Debug, Deserialize)]
struct PushLite {
    op: String,
    #[serde(default)]
    msgs: Vec<MsgLite>,
}

/// Chat messages in a text frame a viewer received: `None` if the frame is
/// not a push/chat event (acks, Engine.IO control packets).
pub fn parse_msgs(target: Target, text: &str) -> Option<Result<Vec<MsgLite>, serde_json::Error>> {
    match target {
        Target::Onair | Target::Ws => match serde_json::from_str::<PushLite>(text) {
            Ok(p) if p.op == "push" => Some(Ok(p.msgs)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        },
        Target::Socketio => {
            let rest = text.strip_prefix("42")?;
            Some(serde_json::from_str::<(String, MsgLite)>(rest).map(|(_, m)| vec![m]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_target_takes() {
        for t in Target::value_variants() {
            assert_eq!(t.to_possible_value().map(|v| v.get_name().to_string()).as_deref(), Some(t.name()));
        }
    }

    #[test]
    fn wire_texts() {
        let s = onair_send(3, "r1", 42, 1_764_000_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(v["op"], "send");
        assert_eq!(v["id"], 3);
        assert_eq!(v["cloudCustomData"], "1764000000000000");
        assert!(sio_chat(7, "r", 1, 2).starts_with("427[\"chat\",{"));
        let a = sio_ack(r#"437[{"code":0,"seq":9,"time":1}]"#);
        assert_eq!(a.as_ref().and_then(|a| a.id), Some(7));
        assert_eq!(a.as_ref().and_then(|a| a.code), Some(0));
        let a = onair_ack(r#"{"op":"ack","id":4,"code":0,"seq":17,"time":1,"dropReason":"freq"}"#);
        assert_eq!(a.map(|a| a.drop_reason), Some("freq".to_string()));
    }

    #[test]
    fn sampled_viewers_parse_every_shape() {
        let push = r#"{"op":"push","roomId":"r","msgs":[{"seq":1,"time":1,"cloudCustomData":"5"},{"seq":2,"cloudCustomData":"x"}],"events":[]}"#;
        let m = parse_msgs(Target::Onair, push).and_then(Result::ok).unwrap_or_default();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].cloud_custom_data, "5");
        assert!(parse_msgs(Target::Onair, r#"{"op":"ack","id":1,"code":0}"#).is_none());
        // The ws peer pushes OnAir's frame shape, one message per frame.
        let one =
            r#"{"op":"push","roomId":"r","msgs":[{"seq":3,"time":1,"from":"a","cloudCustomData":"7"}],"events":[]}"#;
        let m = parse_msgs(Target::Ws, one).and_then(Result::ok).unwrap_or_default();
        assert_eq!(m.first().map(|m| (m.seq, m.cloud_custom_data.as_str())), Some((3, "7")));
        assert_eq!(Target::Ws.ws_path("/ws", "r", "u"), "/ws");
        let ev = r#"42["chat",{"seq":8,"time":1,"from":"a","cloudCustomData":"9"}]"#;
        let m = parse_msgs(Target::Socketio, ev).and_then(Result::ok).unwrap_or_default();
        assert_eq!(m.first().map(|m| m.seq), Some(8));
        assert!(parse_msgs(Target::Socketio, "2").is_none());
    }
}
