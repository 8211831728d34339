//! tmp
pub mod convert;
pub mod sdp;
