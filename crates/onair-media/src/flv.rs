//! FLV: tag headers, the file header, tag bodies for H.264 / AAC, and a streaming
//! demuxer.
//!
//! Hand-written on purpose: an FLV tag is an 11-byte header, the body and a 4-byte
//! trailer, and this code runs once per frame on the hot path (every frame a
//! publisher sends is parsed here, and every frame is written here once for all
//! HTTP-FLV viewers). A general-purpose crate would add allocations and copies for
//! nothing. RTMP audio/video message payloads *are* FLV tag bodies, so the same
//! parser serves RTMP ingest.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{CodecConfig, MediaFrame, TrackKind};

/// FLV tag type of an audio tag (also the RTMP message type id).
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of a video tag (also the RTMP message type id).
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of a script-data tag (`onMetaData`; RTMP AMF0 data message).
pub const TAG_SCRIPT: u8 = 18;

/// FLV video codec id of H.264/AVC.
pub const CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
pub const SOUND_AAC: u8 = 10;

/// Largest tag body the demuxer accepts (the field is 24 bits, 16 MiB; real video
/// frames at live bitrates are far smaller). Bounds what one bad peer can make us buffer.
pub const MAX_TAG_BODY: usize = 8 * 1024 * 1024;

/// Why a tag could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body is shorter than its fixed header.
    #[error("{0} tag body too short")]
    Truncated(&'static str),
    /// A video codec other than H.264 (FLV codec id).
    #[error("video codec id {0} is not supported (H.264 only)")]
    UnsupportedVideoCodec(u8),
    /// An H.264 profile browsers do not decode (see
    /// [`crate::codec::browser_unplayable_profile`]).
    #[error("H.264 {0} is not played by most browsers: encode 8-bit 4:2:0 (e.g. x264 with -pix_fmt yuv420p)")]
    UnplayableVideoProfile(&'static str),
    /// An audio format other than AAC (FLV sound format).
    #[error("audio format {0} is not supported (AAC only)")]
    UnsupportedAudioCodec(u8),
    /// Not an FLV file header.
    #[error("not an FLV stream (bad signature)")]
    BadSignature,
    /// A tag claims a body larger than [`MAX_TAG_BODY`].
    #[error("tag body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A tag type other than audio, video or script.
    #[error("unknown tag type {0}")]
    UnknownTagType(u8),
}

/// The 13 bytes that open an FLV stream: the 9-byte header and `PreviousTagSize0`.
pub fn file_header(audio: bool, video: bool) -> [u8; 13] {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// One complete FLV tag (header, body, `PreviousTagSize`) as a single buffer, ready to
/// be shared by every viewer. `timestamp` is in milliseconds; FLV carries 32 bits of
/// it (24 + an extension byte), so it wraps like RTMP after ~49.7 days.
pub fn write_tag(tag_type: u8, timestamp: u64, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(11 + body.len() + 4);
    put_tag_header(&mut out, tag_type, timestamp, body.len());
    out.put_slice(body);
    out.put_u32((11 + body.len()) as u32);
    out.freeze()
}

fn put_tag_header(out: &mut BytesMut, tag_type: u8, timestamp: u64, len: usize) {
    let ts = timestamp as u32;
    out.put_u8(tag_type);
    put_u24(out, len as u32);
    put_u24(out, ts & 0x00FF_FFFF);
    out.put_u8((ts >> 24) as u8);
    put_u24(out, 0); // stream id, always 0
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

fn u24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// A parsed video tag body (H.264 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoBody {
    /// `AVCDecoderConfigurationRecord`.
    SequenceHeader(Bytes),
    /// One coded picture.
    Frame {
        /// Keyframe (IDR) per the FLV frame type.
        keyframe: bool,
        /// Composition time offset in ms (signed 24-bit).
        cts: i32,
        /// AVCC NAL units.
        data: Bytes,
    },
    /// End of sequence marker (nothing to forward).
    EndOfSequence,
}

/// Parses an FLV video tag body / RTMP video message payload.
pub fn parse_video(body: &Bytes) -> Result<VideoBody, FlvError> {
    let Some(&first) = body.first() else { return Err(FlvError::Truncated("video")) };
    let codec = first & 0x0F;
    if first & 0x80 != 0 {
        // Enhanced RTMP (HEVC/AV1/VP9 with a FourCC): not supported yet.
        return Err(FlvError::UnsupportedVideoCodec(codec | 0x80));
    }
    if codec != CODEC_AVC {
        return Err(FlvError::UnsupportedVideoCodec(codec));
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated("video"));
    }
    let frame_type = first >> 4;
    // The composition offset is a signed 24-bit value: shift it into the top of an i32
    // and back to sign-extend.
    let cts = ((u24(&body[2..5]) << 8) as i32) >> 8;
    match body[1] {
        0 => Ok(VideoBody::SequenceHeader(body.slice(5..))),
        1 => Ok(VideoBody::Frame { keyframe: frame_type == 1, cts, data: body.slice(5..) }),
        _ => Ok(VideoBody::EndOfSequence),
    }
}

/// A parsed audio tag body (AAC only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioBody {
    /// `AudioSpecificConfig`.
    SequenceHeader(Bytes),
    /// One raw AAC frame.
    Frame(Bytes),
}

/// Parses an FLV audio tag body / RTMP audio message payload.
pub fn parse_audio(body: &Bytes) -> Result<AudioBody, FlvError> {
    let Some(&first) = body.first() else { return Err(FlvError::Truncated("audio")) };
    let format = first >> 4;
    if format != SOUND_AAC {
        return Err(FlvError::UnsupportedAudioCodec(format));
    }
    if body.len() < 2 {
        return Err(FlvError::Truncated("audio"));
    }
    Ok(if body[1] == 0 { AudioBody::SequenceHeader(body.slice(2..)) } else { AudioBody::Frame(body.slice(2..)) })
}

/// What a tag body means for the muxers.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// New codec configuration.
    Config(CodecConfig),
    /// A frame.
    Frame(MediaFrame),
    /// Nothing to forward (end-of-sequence).
    Nothing,
}

/// Parses an audio or video tag body into the shared types, with `dts` already
/// extended to 64 bits by the caller.
pub fn parse_media(kind: TrackKind, body: &Bytes, dts: u64) -> Result<Parsed, FlvError> {
    Ok(match kind {
        TrackKind::Video => match parse_video(body)? {
            VideoBody::SequenceHeader(record) => {
                if let Some(profile) = crate::codec::browser_unplayable_profile(&record) {
                    return Err(FlvError::UnplayableVideoProfile(profile));
                }
                Parsed::Config(CodecConfig::Avc { record })
            }
            VideoBody::Frame { keyframe, cts, data } => Parsed::Frame(MediaFrame { kind, dts, cts, keyframe, data }),
            VideoBody::EndOfSequence => Parsed::Nothing,
        },
        TrackKind::Audio => match parse_audio(body)? {
            AudioBody::SequenceHeader(config) => Parsed::Config(CodecConfig::Aac { config }),
            AudioBody::Frame(data) => Parsed::Frame(MediaFrame { kind, dts, cts: 0, keyframe: true, data }),
        },
    })
}

/// One tag read by [`FlvDemuxer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script.
    pub tag_type: u8,
    /// Timestamp in ms (32 bits as FLV carries it).
    pub timestamp: u32,
    /// The tag body.
    pub body: Bytes,
}

/// A sans-IO FLV stream reader: push bytes as they arrive, pull whole tags.
///
/// Checks the file header (`FLV`, header length 9), then yields tags with their
/// 32-bit timestamp (24 bits + the extension byte). A tag header announcing more than
/// [`MAX_TAG_BODY`] is an error as soon as its 11 header bytes are in, before any of the
/// body is buffered, so memory stays bounded by [`MAX_TAG_BODY`] plus what the caller
/// pushes between two calls of [`FlvDemuxer::next_tag`] (push one read, then drain the
/// tags). After an error the stream is unusable (the position in it is lost).
#[derive(Debug, Default)]
pub struct FlvDemuxer {
    buf: BytesMut,
    header_done: bool,
}

impl FlvDemuxer {
    /// A reader expecting the FLV file header first.
    pub fn new() -> FlvDemuxer {
        FlvDemuxer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_done {
            if self.buf.len() < 13 {
                if self.buf.len() >= 3 && &self.buf[..3] != b"FLV" {
                    return Err(FlvError::BadSignature);
                }
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError::BadSignature);
            }
            let header_len = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            // The header length field is 9 in every FLV version; anything else is
            // refused rather than trusted (it would let a peer make us skip or buffer
            // arbitrary data).
            let skip = if header_len == 9 { 13 } else { return Err(FlvError::BadSignature) };
            let _ = self.buf.split_to(skip);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let tag_type = self.buf[0] & 0x1F;
        let size = u24(&self.buf[1..4]) as usize;
        if !matches!(tag_type, TAG_AUDIO | TAG_VIDEO | TAG_SCRIPT) {
            return Err(FlvError::UnknownTagType(tag_type));
        }
        if size > MAX_TAG_BODY {
            return Err(FlvError::TooLarge(size));
        }
        if self.buf.len() < 11 + size + 4 {
            return Ok(None);
        }
        let timestamp = u24(&self.buf[4..7]) | (u32::from(self.buf[7]) << 24);
        let mut tag = self.buf.split_to(11 + size + 4).freeze();
        let body = tag.split_off(11).slice(..size);
        Ok(Some(FlvTag { tag_type, timestamp, body }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn header_flags() {
        assert_eq!(file_header(true, true)[4], 5);
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(file_header(true, false)[4], 4);
    }

    #[test]
    fn write_then_read_back() {
        let mut bytes = file_header(true, true).to_vec();
        let video = Bytes::from_static(&[0x17, 1, 0xFF, 0xFF, 0xF6, 0, 0, 0, 1, 0x65]);
        bytes.extend_from_slice(&write_tag(TAG_VIDEO, 0x1_2345_6789, &video));
        let audio = Bytes::from_static(&[0xAF, 1, 0x21, 0x10]);
        bytes.extend_from_slice(&write_tag(TAG_AUDIO, 40, &audio));
        let mut d = FlvDemuxer::new();
        d.push(&bytes[..20]);
        assert_eq!(d.next_tag().unwrap(), None);
        d.push(&bytes[20..]);
        let t = d.next_tag().unwrap().unwrap();
        assert_eq!((t.tag_type, t.timestamp), (TAG_VIDEO, 0x2345_6789));
        assert_eq!(t.body, video);
        match parse_video(&t.body).unwrap() {
            VideoBody::Frame { keyframe, cts, data } => {
                assert!(keyframe);
                assert_eq!(cts, -10);
                assert_eq!(&data[..], &[0, 0, 0, 1, 0x65]);
            }
            other => panic!("{other:?}"),
        }
        let t = d.next_tag().unwrap().unwrap();
        assert_eq!(parse_audio(&t.body).unwrap(), AudioBody::Frame(Bytes::from_static(&[0x21, 0x10])));
        assert_eq!(d.next_tag().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn other_codecs_are_refused() {
        assert_eq!(parse_video(&Bytes::from_static(&[0x12, 0, 0, 0, 0])), Err(FlvError::UnsupportedVideoCodec(2)));
        assert_eq!(parse_video(&Bytes::from_static(&[0x9C, 0, 0, 0, 0])), Err(FlvError::UnsupportedVideoCodec(0x8C)));
        assert_eq!(parse_audio(&Bytes::from_static(&[0x2F, 1])), Err(FlvError::UnsupportedAudioCodec(2)));
        assert_eq!(parse_video(&Bytes::from_static(&[0x17, 1])), Err(FlvError::Truncated("video")));
        assert_eq!(parse_audio(&Bytes::new()), Err(FlvError::Truncated("audio")));
    }

    #[test]
    fn bad_streams_are_errors() {
        let mut d = FlvDemuxer::new();
        d.push(b"HTTP/1.1 404");
        assert_eq!(d.next_tag(), Err(FlvError::BadSignature));
        let mut d = FlvDemuxer::new();
        d.push(&file_header(true, true));
        d.push(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_tag(), Err(FlvError::TooLarge(0xFF_FFFF)));
    }

    #[test]
    fn byte_by_byte_with_extended_timestamps() {
        let mut bytes = file_header(false, true).to_vec();
        // 0x01_00_00_00 needs the extension byte; 0xFF_FF_FF does not.
        for ts in [0u64, 0xFF_FFFF, 0x100_0000, 0xFFFF_FFFF] {
            bytes.extend_from_slice(&write_tag(TAG_VIDEO, ts, &[0x27, 1, 0, 0, 0, 7]));
        }
        bytes.extend_from_slice(&write_tag(TAG_SCRIPT, 0, &[2, 0, 0]));
        let mut d = FlvDemuxer::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(t) = d.next_tag().unwrap() {
                got.push((t.tag_type, t.timestamp, t.body.len()));
            }
        }
        assert_eq!(
            got,
            vec![
                (TAG_VIDEO, 0, 6),
                (TAG_VIDEO, 0xFF_FFFF, 6),
                (TAG_VIDEO, 0x100_0000, 6),
                (TAG_VIDEO, 0xFFFF_FFFF, 6),
                (TAG_SCRIPT, 0, 3)
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn the_size_cap_is_checked_before_buffering_the_body() {
        let mut at_cap = file_header(true, true).to_vec();
        let len = MAX_TAG_BODY as u32;
        at_cap.extend_from_slice(&[TAG_VIDEO, (len >> 16) as u8, (len >> 8) as u8, len as u8, 0, 0, 0, 0, 0, 0, 0]);
        let mut d = FlvDemuxer::new();
        d.push(&at_cap);
        assert_eq!(d.next_tag(), Ok(None), "a tag at the cap is waited for");
        let len = len + 1;
        let mut over = file_header(true, true).to_vec();
        over.extend_from_slice(&[TAG_AUDIO, (len >> 16) as u8, (len >> 8) as u8, len as u8, 0, 0, 0, 0, 0, 0, 0]);
        let mut d = FlvDemuxer::new();
        d.push(&over);
        let err = d.next_tag().unwrap_err();
        assert_eq!(err, FlvError::TooLarge(MAX_TAG_BODY + 1));
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert_eq!(d.buffered(), 11, "nothing of the body was asked for");
    }

    #[test]
    fn header_and_tag_type_checks() {
        let mut d = FlvDemuxer::new();
        d.push(b"FL");
        assert_eq!(d.next_tag(), Ok(None), "too short to judge");
        d.push(b"X");
        assert_eq!(d.next_tag(), Err(FlvError::BadSignature));
        let mut bad_len = file_header(true, true);
        bad_len[8] = 200;
        let mut d = FlvDemuxer::new();
        d.push(&bad_len);
        assert_eq!(d.next_tag(), Err(FlvError::BadSignature), "header length other than 9");
        let mut d = FlvDemuxer::new();
        d.push(&file_header(true, true));
        d.push(&[7, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_tag(), Err(FlvError::UnknownTagType(7)));
    }

    proptest! {
        #[test]
        fn any_split_reads_the_same_tags(
            tags in proptest::collection::vec((prop::sample::select(vec![8u8, 9, 18]), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            split in 0usize..4000,
        ) {
            let mut bytes = file_header(true, true).to_vec();
            for (t, ts, body) in &tags {
                bytes.extend_from_slice(&write_tag(*t, u64::from(*ts), body));
            }
            let split = split.min(bytes.len());
            let mut d = FlvDemuxer::new();
            d.push(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(t) = d.next_tag().unwrap() { got.push(t); }
            d.push(&bytes[split..]);
            while let Some(t) = d.next_tag().unwrap() { got.push(t); }
            prop_assert_eq!(got.len(), tags.len());
            for (g, (t, ts, body)) in got.iter().zip(&tags) {
                prop_assert_eq!(g.tag_type, *t);
                prop_assert_eq!(g.timestamp, *ts);
                prop_assert_eq!(&g.body[..], &body[..]);
            }
        }

        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(body);
            let _ = parse_video(&b);
            let _ = parse_audio(&b);
            let mut d = FlvDemuxer::new();
            d.push(&b);
            while let Ok(Some(_)) = d.next_tag() {}
        }
    }
}
