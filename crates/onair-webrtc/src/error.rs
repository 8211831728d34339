//! Errors of the engine's API, each with the HTTP status a WHIP/WHEP endpoint answers.

use crate::sdp::OfferError;

/// Why `publish`/`play` refused an offer or the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The offer is malformed or offers no usable codec (400 / 406).
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// str0m refused the offer after our checks passed (400).
    #[error("offer rejected: {0}")]
    Rejected(String),
    /// The stream already has a WebRTC publisher (409).
    #[error("stream {0} is already published")]
    AlreadyPublished(String),
    /// A session bound was reached (503): all sessions, per IP, or players per stream.
    #[error("too many sessions: {0}")]
    TooManySessions(&'static str),
    /// The engine has stopped (503).
    #[error("the WebRTC engine is not running")]
    Stopped,
    /// Binding the UDP socket or resolving announce hosts failed (startup only).
    #[error("WebRTC socket: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration cannot work (startup only).
    #[error("WebRTC config: {0}")]
    Config(String),
}

impl EngineError {
    /// The HTTP status for a WHIP/WHEP answer.
    pub fn http_status(&self) -> u16 {
        match self {
            EngineError::Offer(e) => e.http_status(),
            EngineError::Rejected(_) => 400,
            EngineError::AlreadyPublished(_) => 409,
            EngineError::TooManySessions(_) | EngineError::Stopped => 503,
            EngineError::Io(_) | EngineError::Config(_) => 500,
        }
    }
}
