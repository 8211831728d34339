//! Sans-IO media for OnAir: what arrives from a publisher becomes [`frame::MediaFrame`]s,
//! and every output format (FLV tags, RTMP chunks, fMP4 fragments, LL-HLS parts) is
//! muxed once per frame from them and shared by all viewers as refcounted
//! [`bytes::Bytes`].
//!
//! No sockets, no tokio, no clock: the server crate feeds bytes and timestamps in and
//! writes what comes out.

pub mod amf_guard;
pub mod codec;
pub mod flv;
pub mod fmp4;
pub mod frame;
pub mod gop;
pub mod hls;
pub mod lifecycle;
pub mod mix;
pub mod monitor;
pub mod nal;
pub mod overlay;
pub mod pacing;
pub mod relay;
pub mod rtmp;
pub mod stats;
pub mod timestamp;
