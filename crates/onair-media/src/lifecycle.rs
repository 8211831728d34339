//! What a stream goes through, as the media service reports it to whoever observes it
//! (the room layer drives rooms' live state from it).
//!
//! These types live in the pure media crate so that the media service can report
//! without knowing who listens: the hub observes media, never the reverse.

use serde_json::Value;

/// What happened to a stream.
#[derive(Debug, Clone)]
pub enum StreamLifecycle {
    /// A publisher started; `info` describes codecs, resolution… (the `stream`
    /// event's payload: free-form, since external media servers report their own).
    Published {
        /// Stream details for the `stream` event.
        info: Value,
    },
    /// The publisher stopped.
    Unpublished,
    /// A recording of the stream can be watched at `url`.
    RecordingReady {
        /// Playback URL (HLS VOD).
        url: String,
    },
}

/// Told about every stream's lifecycle. Called from media tasks: an implementation
/// must return quickly and never block (queue the event and apply it elsewhere).
pub trait StreamObserver: Send + Sync + 'static {
    /// One event of `stream`.
    fn on_stream(&self, stream: &str, event: StreamLifecycle);
}

/// What the room layer asks of the media service's mixer for one program stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixPlan {
    /// The guests' streams, in their places after the anchor (at most
    /// [`crate::mix::MAX_GUESTS`] are used).
    pub guests: Vec<String>,
    /// How they share the picture.
    pub layout: crate::mix::Layout,
}

/// The media service's mixer as the room layer drives it: which streams to compose
/// into a program stream. It knows streams, not rooms. Must return quickly.
pub trait MixControl: Send + Sync + 'static {
    /// Mixes `plan` into `program` (replacing an earlier plan), or with `None` gives
    /// `program`'s viewers the anchor's own feed again.
    fn set_mix(&self, program: &str, plan: Option<MixPlan>);
}
