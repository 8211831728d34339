//! tmp
pub mod bridge;
pub mod config;
pub mod convert;
pub mod demux;
pub mod engine;
pub mod error;
pub mod ogg;
pub mod sdp;
mod session;
pub mod stats;

pub use config::{IceServer, Limits, WebRtcConfig};
pub use engine::{
    FrameSource, IngestFrame, IngestStream, PlayFrame, Playing, Published, SessionId, TrackKind, WebRtcEngine,
};
pub use error::EngineError;
pub use stats::{SessionState, SessionStats};
