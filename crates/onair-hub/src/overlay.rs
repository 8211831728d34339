//! Chat in the picture: a room whose switch is on has its recent chat and gift
//! highlights burned into a video output of its stream (`{stream}_chat`, made by the
//! media service). This side decides what is drawn: only messages that were
//! delivered (so every send check, the sensitive-word lists included, already ran and
//! masked text is drawn masked), bounded by `onair_media::overlay::ChatBoard`
//! (messages per second, line length, lines shown, how long a line stays); the media
//! service only receives text through `ChatOverlaySink`, knowing no rooms.
//!
//! The switch lives in memory on the node that runs the room (it is not stored: after
//! a restart a room's chat output is off until switched on again).

use std::sync::Arc;

use onair_core::message::{ChatMessage, MsgElem};
use onair_core::{Code, Millis, Rejection};
use onair_media::overlay::{ChatBoard, ChatBoardConfig, ChatOverlaySink};
use serde_json::{Value, json};

use crate::{Hub, Room};

/// The sink and the bounds, set once at start when the media service runs.
pub(crate) struct ChatOverlay {
    sink: Arc<dyn ChatOverlaySink>,
    cfg: ChatBoardConfig,
}

/// What one delivered message draws: (who, text, highlight). Gift messages (the
/// server's `gift` custom element) become a highlight; text elements are joined;
/// anything else (images, custom payloads, the end of a combo) draws nothing.
pub(crate) fn line_of(m: &ChatMessage) -> Option<(String, String, bool)> {
    let who = if m.sender.nick.trim().is_empty() { m.sender.user_id.clone() } else { m.sender.nick.clone() };
    for e in &m.body {
        if let MsgElem::Custom(c) = e
            && c.desc.as_deref() == Some("gift")
        {
            let v: Value = serde_json::from_str(&c.data).unwrap_or_default();
            let count = v["count"].as_u64().unwrap_or(0);
            let name = v["name"].as_str().unwrap_or("a gift");
            return (count > 0).then(|| (who.clone(), format!("sent {name} x{count}"), true));
        }
    }
    let text: Vec<&str> = m
        .body
        .iter()
        .filter_map(|e| match e {
            MsgElem::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    let text = text.join(" ");
    (!text.trim().is_empty()).then_some((who, text, false))
}

impl Hub {
    /// Connects the chat outputs (the media service's side), once at start.
    pub fn set_chat_overlay(&self, sink: Arc<dyn ChatOverlaySink>, cfg: ChatBoardConfig) {
        let _ = self.chat_overlay.set(ChatOverlay { sink, cfg });
    }

    /// A room's chat output: whether it is on, the stream it burns into, the lines
    /// on screen now.
    pub fn chat_overlay_view(&self, room_id: &str) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        let stream = room.profile.lock().stream.clone();
        let board = room.overlay.lock();
        Ok(json!({
            "enabled": board.is_some(),
            "available": self.chat_overlay.get().is_some(),
            "stream": stream,
            "output": if stream.is_empty() { Value::Null } else { json!(format!("{stream}_chat")) },
            "lines": board.as_ref().map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default(),
            "skipped": board.as_ref().map_or(0, |b| b.skipped),
        }))
    }

    /// Switches a room's chat output on or off.
    pub async fn set_chat_overlay_enabled(&self, room_id: &str, on: bool) -> Result<Value, Rejection> {
        let Some(o) = self.chat_overlay.get() else {
            return Err(Rejection::new(Code::Conflict, "chat outputs need the media service with ffmpeg"));
        };
        let room = self.get(room_id)?;
        let stream = room.profile.lock().stream.clone();
        if on && stream.is_empty() {
            return Err(Rejection::new(
                Code::InvalidParam,
                "the room has no stream: set one first (PUT /api/v1/rooms/{id}/stream)",
            ));
        }
        {
            let mut board = room.overlay.lock();
            match (on, board.is_some()) {
                (true, false) => *board = Some(ChatBoard::new(o.cfg, onair_shell::now_ms())),
                (false, true) => *board = None,
                _ => {}
            }
        }
        if !stream.is_empty() {
            if on {
                o.sink.set_text(&stream, "");
            }
            o.sink.set_enabled(&stream, on);
        }
        self.chat_overlay_view(room_id)
    }

    /// The room's stream changed from `old`: its chat output follows.
    pub(crate) fn chat_overlay_moved(&self, room: &Room, old: &str, new: &str) {
        let Some(o) = self.chat_overlay.get() else { return };
        if room.overlay.lock().is_none() || old == new {
            return;
        }
        if !old.is_empty() {
            o.sink.set_enabled(old, false);
        }
        o.sink.set_text(new, "");
        o.sink.set_enabled(new, true);
    }

    /// The room closed: its chat output goes.
    pub(crate) fn chat_overlay_closed(&self, room: &Room) {
        let Some(o) = self.chat_overlay.get() else { return };
        if room.overlay.lock().take().is_some() {
            let stream = room.profile.lock().stream.clone();
            if !stream.is_empty() {
                o.sink.set_enabled(&stream, false);
            }
        }
    }

    /// Offers a round's delivered messages to the room's board (when on) and hands
    /// the text over if it changed.
    pub(crate) fn chat_overlay_feed(&self, room: &Room, delivered: &[Arc<ChatMessage>], now: Millis) {
        let Some(o) = self.chat_overlay.get() else { return };
        let text = {
            let mut guard = room.overlay.lock();
            let Some(board) = guard.as_mut() else { return };
            let mut drawn = false;
            for m in delivered {
                if let Some((who, text, highlight)) = line_of(m) {
                    drawn |= board.offer(now, &who, &text, highlight);
                }
            }
            let expired = board.expire(now);
            if !drawn && !expired {
                return;
            }
            board.render()
        };
        let stream = room.profile.lock().stream.clone();
        if !stream.is_empty() {
            o.sink.set_text(&stream, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_core::message::{CustomElem, Priority, SenderProfile, TextElem};

    fn msg(nick: &str, body: Vec<MsgElem>) -> ChatMessage {
        ChatMessage {
            seq: 1,
            time_ms: 0,
            sender: SenderProfile { user_id: "u1".into(), nick: nick.into(), avatar: String::new(), level: 0 },
            priority: Priority::Normal,
            random: 0,
            body,
            cloud_custom_data: String::new(),
        }
    }

    #[test]
    fn lines_of_text_gifts_and_others() {
        let text = |t: &str| MsgElem::Text(TextElem { text: t.into() });
        assert_eq!(
            line_of(&msg("Ann", vec![text("hi"), text("there")])),
            Some(("Ann".into(), "hi there".into(), false))
        );
        assert_eq!(line_of(&msg("", vec![text("x")])).map(|l| l.0), Some("u1".into()), "no nick: the account");
        let gift = |count: u64| {
            MsgElem::Custom(CustomElem {
                data: json!({"type": "gift", "name": "Rocket", "count": count}).to_string(),
                desc: Some("gift".into()),
                ext: None,
                sound: None,
            })
        };
        assert_eq!(line_of(&msg("Bob", vec![gift(3)])), Some(("Bob".into(), "sent Rocket x3".into(), true)));
        assert_eq!(line_of(&msg("Bob", vec![gift(0)])), None, "a combo's end draws nothing");
        let custom = MsgElem::Custom(CustomElem { data: "{}".into(), desc: None, ext: None, sound: None });
        assert_eq!(line_of(&msg("Bob", vec![custom])), None);
    }
}
