//! The one in-memory representation of a media frame, shared by every muxer.
//!
//! It is what an FLV/RTMP audio or video tag carries once its small header is parsed:
//! H.264 in AVCC form (length-prefixed NAL units) and raw AAC access units. Codec
//! configuration travels separately as [`CodecConfig`] because every output format
//! needs it out of band (FLV sequence headers, the fMP4 init segment).

use bytes::Bytes;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One coded frame as received from the publisher.
#[derive(Debug, Clone)]
pub struct MediaFrame {
    pub kind: TrackKind,
    /// Decode timestamp in milliseconds, already extended past the 32-bit RTMP wrap
    /// (monotonic for the life of a publish session, starting near 0).
    pub dts: u64,
    /// Composition offset (pts − dts) in milliseconds; 0 for audio and for streams
    /// without B-frames.
    pub cts: i32,
    /// True for a video frame a decoder can start from (IDR); always true for audio.
    pub keyframe: bool,
    /// Video: AVCC NAL units (4-byte big-endian lengths). Audio: one raw AAC frame.
    pub data: Bytes,
}

/// Out-of-band codec configuration, as carried by FLV sequence headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264 `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15), verbatim.
    Avc { record: Bytes },
    /// AAC `AudioSpecificConfig` (ISO/IEC 14496-3), verbatim.
    Aac { config: Bytes },
}
