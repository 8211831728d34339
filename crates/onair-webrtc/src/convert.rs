//! Conversions between what str0m gives and takes (H.264 access units as Annex-B with
//! parameter sets in band, RTP clock times) and what the stream registry speaks (FLV tag
//! bodies — RTMP audio/video message payloads — with millisecond timestamps).
//!
//! Pure and stateful only where the formats force it: ingest remembers SPS/PPS so a
//! sequence header goes out when they first appear or change; playback remembers the
//! avcC so SPS/PPS can be put in front of every keyframe (a WebRTC decoder that joined
//! or lost packets needs them in band). No sockets, no clock: arrival times are inputs.

use bytes::{BufMut, Bytes, BytesMut};
use onair_media::codec::{self, CodecError};
use onair_media::flv::{self, FlvError, VideoBody};
use onair_media::nal::{self, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS, NalError};

/// Why a frame could not be converted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The FLV tag body is not usable H.264.
    #[error(transparent)]
    Flv(#[from] FlvError),
    /// The codec configuration is broken.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The NAL unit framing is broken.
    #[error(transparent)]
    Nal(#[from] NalError),
}

/// FLV video tag body of an AVC sequence header (keyframe, AVC, packet type 0, cts 0).
pub fn flv_sequence_header(record: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + record.len());
    b.put_slice(&[0x17, 0, 0, 0, 0]);
    b.put_slice(record);
    b.freeze()
}

/// FLV video tag body of one coded picture: frame type, AVC NALU packet, signed 24-bit
/// composition offset, then the AVCC sample.
pub fn flv_video_frame(keyframe: bool, cts: i32, avcc: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + avcc.len());
    b.put_u8(if keyframe { 0x17 } else { 0x27 });
    b.put_u8(1);
    let cts = cts.clamp(-(1 << 23), (1 << 23) - 1) as u32;
    b.put_slice(&[(cts >> 16) as u8, (cts >> 8) as u8, cts as u8]);
    b.put_slice(avcc);
    b.freeze()
}

/// What one H.264 access unit from a WebRTC publisher became.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutput {
    /// FLV video tag bodies for `Publisher::ingest(TrackKind::Video, ts, body)`, in order:
    /// a sequence header when SPS/PPS appeared or changed, then the picture.
    pub bodies: Vec<Bytes>,
    /// The access unit was dropped because no keyframe (with SPS/PPS) has been seen
    /// since the start or since the parameter sets changed: ask the publisher for one.
    pub want_keyframe: bool,
}

/// Ingest side: H.264 access units (Annex-B, as str0m's depacketiser emits them) → FLV
/// video tag bodies.
///
/// SPS and PPS are taken out of the picture and carried in a sequence header (sent
/// again whenever either changes); access unit delimiters are dropped (FLV has none).
/// Pictures before the first keyframe after a (new) sequence header are dropped: no
/// decoder downstream could use them.
#[derive(Debug, Default)]
pub struct H264Ingest {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    config_sent: bool,
    keyframe_seen: bool,
}

impl H264Ingest {
    /// A converter with no parameter sets yet.
    pub fn new() -> H264Ingest {
        H264Ingest::default()
    }

    /// Packets were lost before the next access unit: pictures are held back (and a
    /// keyframe wanted) until the next keyframe, since P-frames would decode as garbage.
    pub fn lost(&mut self) {
        self.keyframe_seen = false;
    }

    /// Converts one access unit. `keyframe_hint` is the depacketiser's opinion (str0m's
    /// `CodecExtra::H264::is_keyframe`); an IDR slice makes it a keyframe in any case.
    pub fn push(&mut self, annexb: &[u8], keyframe_hint: bool) -> IngestOutput {
        let nals = nal::split_annexb(annexb);
        let mut out = IngestOutput::default();
        let mut changed = false;
        for n in &nals {
            let slot = match nal::nal_type(n) {
                Some(NAL_SPS) => &mut self.sps,
                Some(NAL_PPS) => &mut self.pps,
                _ => continue,
            };
            if slot.as_deref() != Some(*n) {
                *slot = Some(n.to_vec());
                changed = true;
            }
        }
        if (changed || !self.config_sent)
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
        {
            match nal::avcc_record(sps, pps) {
                Ok(record) => {
                    out.bodies.push(flv_sequence_header(&record));
                    self.config_sent = true;
                    self.keyframe_seen = false;
                }
                // A parameter set we cannot describe: forget it and wait for better.
                Err(_) => {
                    self.sps = None;
                    self.pps = None;
                    self.config_sent = false;
                }
            }
        }
        let picture: Vec<&[u8]> =
            nals.iter().copied().filter(|n| !matches!(nal::nal_type(n), Some(NAL_SPS | NAL_PPS | NAL_AUD))).collect();
        if picture.is_empty() {
            return out;
        }
        let keyframe = keyframe_hint || picture.iter().any(|n| nal::nal_type(n) == Some(NAL_IDR));
        if !self.config_sent || (!keyframe && !self.keyframe_seen) {
            out.want_keyframe = true;
            return out;
        }
        self.keyframe_seen |= keyframe;
        // WebRTC carries no decode order apart from arrival, and browsers send no
        // B-frames: presentation time is the decode time, so the offset is 0.
        out.bodies.push(flv_video_frame(keyframe, 0, &nal::nals_to_avcc(picture)));
        out
    }
}

/// One H.264 picture ready for str0m's `Writer::write` (Annex-B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexBFrame {
    /// An IDR picture (SPS/PPS are in front of it).
    pub keyframe: bool,
    /// Composition offset (pts − dts) in ms from the FLV tag.
    pub cts: i32,
    /// The access unit with 4-byte start codes.
    pub data: Vec<u8>,
}

/// Playback side: FLV video tag bodies (sequence headers and AVCC pictures, as the
/// registry holds them) → Annex-B access units for a WebRTC viewer.
///
/// Keeps the latest avcC; puts its SPS/PPS in front of every keyframe that does not
/// carry them already; holds back pictures until the first keyframe (a viewer must
/// start on one — [`FlvPlayback::waiting_for_keyframe`] tells the caller to get one).
#[derive(Debug)]
pub struct FlvPlayback {
    config: Option<codec::AvcConfig>,
    started: bool,
}

impl Default for FlvPlayback {
    fn default() -> Self {
        FlvPlayback::new()
    }
}

impl FlvPlayback {
    /// A converter waiting for a sequence header and a keyframe.
    pub fn new() -> FlvPlayback {
        FlvPlayback { config: None, started: false }
    }

    /// Whether pictures are being held back until a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        !self.started
    }

    /// Starts over at the next keyframe (after a gap in the source: a lagged viewer).
    pub fn resync(&mut self) {
        self.started = false;
    }

    /// Converts one FLV video tag body. `Ok(None)`: nothing to send (a sequence header,
    /// end of sequence, or a picture held back before the first keyframe).
    pub fn push(&mut self, body: &Bytes) -> Result<Option<AnnexBFrame>, ConvertError> {
        match flv::parse_video(body)? {
            VideoBody::SequenceHeader(record) => {
                self.config = Some(codec::parse_avcc(&record)?);
                Ok(None)
            }
            VideoBody::EndOfSequence => Ok(None),
            VideoBody::Frame { keyframe, cts, data } => {
                let Some(config) = &self.config else { return Ok(None) };
                let nals = nal::split_avcc(&data, config.length_size)?;
                let idr = nals.iter().any(|n| nal::nal_type(n) == Some(NAL_IDR));
                let keyframe = keyframe || idr;
                if !keyframe && !self.started {
                    return Ok(None);
                }
                self.started = true;
                let has_params = nals.iter().any(|n| nal::nal_type(n) == Some(NAL_SPS));
                let mut all: Vec<&[u8]> = Vec::with_capacity(nals.len() + 2);
                if keyframe && !has_params {
                    all.extend(config.sps.iter().map(Vec::as_slice));
                    all.extend(config.pps.iter().map(Vec::as_slice));
                }
                all.extend(nals.iter().copied().filter(|n| nal::nal_type(n) != Some(NAL_AUD)));
                Ok(Some(AnnexBFrame { keyframe, cts, data: nal::nals_to_annexb(all) }))
            }
        }
    }
}

/// Maps one track's RTP media time onto the session's millisecond timeline.
///
/// Audio and video RTP clocks start at unrelated random values and only RTCP sender
/// reports relate them to wall time. Browsers send both tracks from the start, so the
/// first packet's *arrival* (ms since the session began) anchors each track and RTP
/// deltas advance it: inter-track sync is as good as the first packets' arrival skew
/// (a few ms on a healthy path), and timing within a track is exact.
#[derive(Debug, Clone, Default)]
pub struct TrackClock {
    first: Option<(u64, u64)>,
}

impl TrackClock {
    /// A clock anchored by the first call.
    pub fn new() -> TrackClock {
        TrackClock::default()
    }

    /// Milliseconds on the session timeline of RTP time `rtp` (ticks at `rate` Hz,
    /// extended to 64 bits by str0m), given that this packet arrived `arrival_ms` after
    /// the session started. Times before the anchor (reordering) clamp to it.
    pub fn to_ms(&mut self, rtp: u64, rate: u32, arrival_ms: u64) -> u64 {
        let (rtp0, ms0) = *self.first.get_or_insert((rtp, arrival_ms));
        let rate = u64::from(rate.max(1));
        ms0.saturating_add(rtp.saturating_sub(rtp0).saturating_mul(1000) / rate)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use onair_media::flv::parse_video;

    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0, 0, 3, 0, 0x10, 0, 0, 3, 3, 0xc0, 0xf1, 0x42,
        0xa4, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
    const P: &[u8] = &[0x41, 0x9a, 0x21, 0x6c];

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nal::nals_to_annexb(nals.iter().copied())
    }

    #[test]
    fn ingest_sequence() {
        let mut c = H264Ingest::new();
        // A P-frame before anything: dropped, keyframe wanted.
        let o = c.push(&annexb(&[P]), false);
        assert!(o.bodies.is_empty() && o.want_keyframe);
        // A keyframe with its parameter sets: header + picture without SPS/PPS/AUD.
        let o = c.push(&annexb(&[&[0x09, 0xf0], SPS, PPS, IDR]), false);
        assert_eq!(o.bodies.len(), 2);
        assert!(!o.want_keyframe);
        match parse_video(&o.bodies[0]).unwrap() {
            VideoBody::SequenceHeader(rec) => {
                let cfg = codec::parse_avcc(&rec).unwrap();
                assert_eq!((cfg.sps[0].as_slice(), cfg.pps[0].as_slice()), (SPS, PPS));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_video(&o.bodies[1]).unwrap(),
            VideoBody::Frame { keyframe: true, cts: 0, data: Bytes::from(nal::nals_to_avcc([IDR])) }
        );
        // A P-frame: just the picture.
        let o = c.push(&annexb(&[P]), false);
        assert_eq!(o.bodies, vec![flv_video_frame(false, 0, &nal::nals_to_avcc([P]))]);
        // The same parameter sets again: no new header.
        let o = c.push(&annexb(&[SPS, PPS, IDR]), false);
        assert_eq!(o.bodies.len(), 1);
        // A new PPS: a new header, and P-frames wait for the next keyframe.
        let o = c.push(&annexb(&[SPS, &[0x68, 0xce, 0x3c, 0x81]]), false);
        assert_eq!(o.bodies.len(), 1);
        let o = c.push(&annexb(&[P]), false);
        assert!(o.bodies.is_empty() && o.want_keyframe);
        // The depacketiser's keyframe hint counts.
        let o = c.push(&annexb(&[P]), true);
        assert_eq!(o.bodies, vec![flv_video_frame(true, 0, &nal::nals_to_avcc([P]))]);
        // After a loss, P-frames wait for a keyframe again.
        c.lost();
        assert!(c.push(&annexb(&[P]), false).want_keyframe);
        assert_eq!(c.push(&annexb(&[IDR]), false).bodies.len(), 1);
    }

    #[test]
    fn playback_sequence() {
        let mut p = FlvPlayback::new();
        let record = nal::avcc_record(SPS, PPS).unwrap();
        // A frame before the header: nothing.
        assert_eq!(p.push(&flv_video_frame(true, 0, &nal::nals_to_avcc([IDR]))).unwrap(), None);
        assert_eq!(p.push(&flv_sequence_header(&record)).unwrap(), None);
        // A P-frame before the first keyframe: held back.
        assert_eq!(p.push(&flv_video_frame(false, 0, &nal::nals_to_avcc([P]))).unwrap(), None);
        assert!(p.waiting_for_keyframe());
        // The keyframe gets SPS/PPS in front.
        let f = p.push(&flv_video_frame(true, 40, &nal::nals_to_avcc([IDR]))).unwrap().unwrap();
        assert_eq!(f, AnnexBFrame { keyframe: true, cts: 40, data: annexb(&[SPS, PPS, IDR]) });
        let f = p.push(&flv_video_frame(false, -5, &nal::nals_to_avcc([P]))).unwrap().unwrap();
        assert_eq!(f, AnnexBFrame { keyframe: false, cts: -5, data: annexb(&[P]) });
        // A keyframe that carries its own parameter sets is not given them twice.
        let f = p.push(&flv_video_frame(true, 0, &nal::nals_to_avcc([SPS, PPS, IDR]))).unwrap().unwrap();
        assert_eq!(f.data, annexb(&[SPS, PPS, IDR]));
        p.resync();
        assert_eq!(p.push(&flv_video_frame(false, 0, &nal::nals_to_avcc([P]))).unwrap(), None);
    }

    #[test]
    fn playback_errors() {
        let mut p = FlvPlayback::new();
        assert!(matches!(p.push(&Bytes::from_static(&[0x12, 0, 0, 0, 0])), Err(ConvertError::Flv(_))));
        assert!(matches!(p.push(&Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])), Err(ConvertError::Codec(_))));
        p.push(&flv_sequence_header(&nal::avcc_record(SPS, PPS).unwrap())).unwrap();
        let bad = flv_video_frame(true, 0, &[0, 0, 0, 9, 0x65]);
        assert!(matches!(p.push(&bad), Err(ConvertError::Nal(_))));
    }

    #[test]
    fn ingest_then_playback_restores_the_access_unit() {
        let mut i = H264Ingest::new();
        let mut p = FlvPlayback::new();
        let units: Vec<Vec<u8>> = vec![annexb(&[SPS, PPS, IDR]), annexb(&[P]), annexb(&[P, P]), annexb(&[IDR])];
        let mut back = Vec::new();
        for u in &units {
            for body in i.push(u, false).bodies {
                if let Some(f) = p.push(&body).unwrap() {
                    back.push(f.data);
                }
            }
        }
        let want = vec![annexb(&[SPS, PPS, IDR]), annexb(&[P]), annexb(&[P, P]), annexb(&[SPS, PPS, IDR])];
        assert_eq!(back, want);
    }

    #[test]
    fn cts_is_signed_24_bit() {
        for (cts, want) in [(0, 0), (40, 40), (-40, -40), (1 << 24, (1 << 23) - 1), (-(1 << 24), -(1 << 23))] {
            match parse_video(&flv_video_frame(false, cts, &[])).unwrap() {
                VideoBody::Frame { cts: got, .. } => assert_eq!(got, want, "{cts}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn track_clock_table() {
        let mut v = TrackClock::new();
        let mut a = TrackClock::new();
        assert_eq!(v.to_ms(1_000_000, 90_000, 20), 20);
        assert_eq!(v.to_ms(1_000_000 + 3000, 90_000, 60), 53); // 33.3 ms later by RTP
        assert_eq!(v.to_ms(999_000, 90_000, 70), 20); // reordered: clamps
        assert_eq!(a.to_ms(5, 48_000, 25), 25);
        assert_eq!(a.to_ms(5 + 960, 48_000, 90), 45); // 20 ms
        // Absurd inputs saturate instead of overflowing.
        assert_eq!(a.to_ms(u64::MAX, 0, 0), u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn converters_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), hint: bool) {
            let mut i = H264Ingest::new();
            let _ = i.push(&data, hint);
            let mut p = FlvPlayback::new();
            let body = Bytes::from(data);
            let _ = p.push(&body);
            let _ = p.push(&flv_sequence_header(&nal::avcc_record(SPS, PPS).unwrap()));
            let _ = p.push(&body);
        }
    }
}
