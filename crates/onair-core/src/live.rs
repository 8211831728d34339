//! The live state of a room: `upcoming → live ⇄ paused → ended → replay`.
//!
//! Pure rules only; the server stores the state, pushes the `state` event and runs
//! the pause-grace timer. Stream events and people both drive it through
//! [`LiveState::transition`], so an invalid move gets the same clear error whoever
//! asks.

use serde::{Deserialize, Serialize};

use crate::{Code, Millis, Rejection};

/// Where a live room is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveState {
    /// Announced, not started (may carry a scheduled start time).
    Upcoming,
    /// On air.
    Live,
    /// The anchor's stream stopped for a moment; back to `live` when it resumes.
    Paused,
    /// Over.
    Ended,
    /// Over, and a recording can be watched.
    Replay,
}

/// Why the state changed (the `reason` of the `state` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeReason {
    /// Someone called the API.
    Api,
    /// The anchor's stream started, stopped or was recorded.
    Stream,
    /// Paused longer than the grace period.
    Timeout,
}

impl LiveState {
    /// Every state, in life order.
    pub const ALL: [LiveState; 5] =
        [LiveState::Upcoming, LiveState::Live, LiveState::Paused, LiveState::Ended, LiveState::Replay];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveState::Upcoming => "upcoming",
            LiveState::Live => "live",
            LiveState::Paused => "paused",
            LiveState::Ended => "ended",
            LiveState::Replay => "replay",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Result<LiveState, Rejection> {
        LiveState::ALL.into_iter().find(|s| s.as_str() == name).ok_or_else(|| {
            Rejection::new(
                Code::InvalidParam,
                format!("unknown live state '{name}'; expected upcoming, live, paused, ended or replay"),
            )
        })
    }

    /// Whether `self → to` is a legal move. `upcoming → ended` cancels a show that
    /// never started; an ended show never goes back on air (start a new room).
    pub fn can_become(self, to: LiveState) -> bool {
        use LiveState::*;
        matches!(
            (self, to),
            (Upcoming, Live)
                | (Upcoming, Ended)
                | (Live, Paused)
                | (Live, Ended)
                | (Paused, Live)
                | (Paused, Ended)
                | (Ended, Replay)
        )
    }

    /// Checks `self → to`, with an error naming the legal moves.
    pub fn transition(self, to: LiveState) -> Result<LiveState, Rejection> {
        if self.can_become(to) {
            return Ok(to);
        }
        let legal: Vec<&str> = LiveState::ALL.into_iter().filter(|s| self.can_become(*s)).map(|s| s.as_str()).collect();
        let legal = if legal.is_empty() { "none".to_string() } else { legal.join(", ") };
        Err(Rejection::new(
            Code::InvalidTransition,
            format!(
                "a room cannot go from '{}' to '{}' (from '{}' it can go to: {legal})",
                self.as_str(),
                to.as_str(),
                self.as_str()
            ),
        ))
    }
}

/// What a stream event asks of the live state, given the current one. `None` means
/// the event does not move the state (a publish into an ended room, say: the
/// stream is served but the show stays over).
pub fn on_publish(current: LiveState) -> Option<LiveState> {
    matches!(current, LiveState::Upcoming | LiveState::Paused).then_some(LiveState::Live)
}

/// The anchor's stream stopped: a live room pauses.
pub fn on_unpublish(current: LiveState) -> Option<LiveState> {
    (current == LiveState::Live).then_some(LiveState::Paused)
}

/// A recording is ready: an ended room (or one paused past its grace, which the
/// caller ends first) becomes a replay.
pub fn on_recording(current: LiveState) -> Option<LiveState> {
    (current == LiveState::Ended).then_some(LiveState::Replay)
}

/// Whether a room paused since `paused_at` has waited past `grace_ms` at `now`.
pub fn pause_expired(current: LiveState, paused_at: Millis, grace_ms: u64, now: Millis) -> bool {
    current == LiveState::Paused && now.saturating_sub(paused_at) >= grace_ms
}

/// The stream name a room gets unless one is set: the room id when it is a clean
/// URL path segment, else `room-` and a stable hash of the id (generated ids such as
/// `@TGS#…` contain characters that do not belong in an RTMP or HTTP path).
pub fn default_stream_name(room_id: &str) -> String {
    if is_valid_stream_name(room_id) {
        return room_id.to_owned();
    }
    // FNV-1a: stable across versions and platforms, which std's hasher is not.
    let hash = room_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("room-{hash:016x}")
}

/// Stream names: 1..=64 characters of `A-Z a-z 0-9 _ -`.
pub fn is_valid_stream_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use LiveState::*;

    #[test]
    fn the_legal_moves_and_nothing_else() {
        let legal = [
            (Upcoming, Live),
            (Upcoming, Ended),
            (Live, Paused),
            (Live, Ended),
            (Paused, Live),
            (Paused, Ended),
            (Ended, Replay),
        ];
        for from in LiveState::ALL {
            for to in LiveState::ALL {
                assert_eq!(from.can_become(to), legal.contains(&(from, to)), "{from:?} -> {to:?}");
                assert_eq!(from.transition(to).is_ok(), legal.contains(&(from, to)));
            }
        }
    }

    #[test]
    fn errors_name_the_legal_moves() {
        let err = Ended.transition(Live).err().map(|r| r.info).unwrap_or_default();
        assert!(err.contains("'ended' to 'live'") && err.contains("replay"), "{err}");
        let err = Replay.transition(Live).err().map(|r| r.info).unwrap_or_default();
        assert!(err.contains("none"), "{err}");
        assert!(LiveState::parse("onair").is_err());
        assert_eq!(LiveState::parse("paused").ok(), Some(Paused));
    }

    #[test]
    fn stream_names() {
        assert_eq!(default_stream_name("room1"), "room1");
        let generated = default_stream_name("@TGS#aABCD");
        assert!(generated.starts_with("room-") && is_valid_stream_name(&generated));
        assert_eq!(generated, default_stream_name("@TGS#aABCD"));
        assert!(!is_valid_stream_name("a/b") && !is_valid_stream_name(""));
    }

    #[test]
    fn stream_events_drive_the_state() {
        assert_eq!(on_publish(Upcoming), Some(Live));
        assert_eq!(on_publish(Paused), Some(Live));
        assert_eq!(on_publish(Live), None);
        assert_eq!(on_publish(Ended), None);
        assert_eq!(on_unpublish(Live), Some(Paused));
        assert_eq!(on_unpublish(Upcoming), None);
        assert_eq!(on_recording(Ended), Some(Replay));
        assert_eq!(on_recording(Live), None);
        assert!(!pause_expired(Paused, 1_000, 5_000, 5_999));
        assert!(pause_expired(Paused, 1_000, 5_000, 6_000));
        assert!(!pause_expired(Live, 0, 0, 10));
    }
}
