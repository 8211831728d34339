//! A stream's frames as RTP payloads, made once for all of its WebRTC viewers.
//!
//! Every viewer of a stream gets the same H.264 and Opus payloads; only the RTP header
//! (SSRC, sequence number, payload type, extensions) and the SRTP encryption differ per
//! viewer. Packetising per viewer (str0m's frame API) cost a copy of the access unit
//! into Annex-B, a packetiser pass and a copy of every payload per viewer, and kept a
//! private copy of every packet in each viewer's resend buffer (~1 MiB per viewer at
//! 1 Mbit/s). Here a frame is converted and packetised once into shared `Arc<[u8]>`
//! payloads, which str0m's RTP-level API (`StreamTx::write_rtp`) takes as they are, so a
//! viewer's resend buffer holds references to the shared payloads.
//!
//! The H.264 packetiser is written here rather than taken from str0m because str0m keeps
//! its packetisers private. It is RFC 6184 packetization mode 1 reduced to what a
//! decoder needs: a NAL unit that fits is sent as a single-NAL-unit packet, a bigger one
//! as FU-A fragments. Pure: no I/O, no clock.

use std::sync::Arc;

use bytes::Bytes;
use onair_media::nal;

use crate::convert::FlvPlayback;
use crate::engine::{PlayFrame, TrackKind};

/// Largest RTP payload: str0m's 1150-byte datagram target less the RTP header, its
/// extensions (mid, abs-send-time, transport-cc) and the SRTP tag.
pub const MAX_PAYLOAD: usize = 1100;

/// FU-A indicator type (RFC 6184 §5.8).
const FU_A: u8 = 28;

/// One frame as RTP payloads, shared by every viewer of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpFrame {
    /// Video or audio.
    pub kind: TrackKind,
    /// RTP timestamp: 90 kHz for video (from the presentation time), 48 kHz for Opus.
    pub time: u32,
    /// An IDR access unit with its SPS/PPS in front: a viewer may start here.
    pub keyframe: bool,
    /// The payloads in order; the last one of a video frame gets the marker bit.
    pub payloads: Vec<Arc<[u8]>>,
    /// Position in the stream's feed (1, 2, …): a viewer never sends a frame twice by
    /// accident, and a re-start from a keyframe is a deliberate step back.
    pub seq: u64,
}

impl RtpFrame {
    /// Payload bytes in all.
    pub fn bytes(&self) -> usize {
        self.payloads.iter().map(|p| p.len()).sum()
    }
}

/// Appends the RTP payloads of one access unit's NAL units (RFC 6184 mode 1) to `out`:
/// a NAL unit of at most `max` bytes whole, a larger one as FU-A fragments of at most
/// `max` bytes each. Empty NAL units are skipped.
pub fn packetize_h264(nals: &[&[u8]], max: usize, out: &mut Vec<Arc<[u8]>>) {
    // Two bytes of FU indicator and header, at least one byte of the NAL per fragment.
    let max = max.max(3);
    for n in nals {
        let Some((&header, body)) = n.split_first() else { continue };
        if n.len() <= max {
            out.push(Arc::from(*n));
            continue;
        }
        let indicator = (header & 0xe0) | FU_A;
        let kind = header & 0x1f;
        let chunk = max - 2;
        let count = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu_header = kind;
            if i == 0 {
                fu_header |= 0x80;
            }
            if i + 1 == count {
                fu_header |= 0x40;
            }
            let mut p = Vec::with_capacity(part.len() + 2);
            p.push(indicator);
            p.push(fu_header);
            p.extend_from_slice(part);
            out.push(Arc::from(p));
        }
    }
}

/// Turns a stream's [`PlayFrame`]s into [`RtpFrame`]s: FLV video through the FLV →
/// Annex-B conversion (SPS/PPS put in front of every keyframe, nothing before the first
/// keyframe or after a gap until the next one), Opus as one payload per packet.
#[derive(Debug, Default)]
pub struct FramePacketizer {
    video: FlvPlayback,
    seq: u64,
}

impl FramePacketizer {
    /// A packetiser waiting for a sequence header and a keyframe.
    pub fn new() -> FramePacketizer {
        FramePacketizer::default()
    }

    /// The next frame's payloads, if it yields any. `Err` for a video tag that cannot
    /// be converted (the frame is dropped; the stream goes on).
    pub fn push(&mut self, frame: PlayFrame) -> Result<Option<RtpFrame>, crate::convert::ConvertError> {
        let made = match frame {
            PlayFrame::Gap => {
                self.video.resync();
                None
            }
            PlayFrame::Opus { timestamp, data } => Some(self.opus(timestamp, data)),
            PlayFrame::FlvVideo { timestamp, body } => match self.video.push(&body)? {
                None => None,
                Some(f) => {
                    let pts = timestamp.saturating_add_signed(i64::from(f.cts));
                    let nals = nal::split_annexb(&f.data);
                    let mut payloads = Vec::with_capacity(f.data.len() / MAX_PAYLOAD + nals.len());
                    packetize_h264(&nals, MAX_PAYLOAD, &mut payloads);
                    (!payloads.is_empty()).then(|| RtpFrame {
                        kind: TrackKind::Video,
                        // RTP time wraps at 2^32 by design (RFC 3550 §5.1).
                        time: pts.wrapping_mul(90) as u32,
                        keyframe: f.keyframe,
                        payloads,
                        seq: 0,
                    })
                }
            },
        };
        Ok(made.map(|mut f| {
            self.seq += 1;
            f.seq = self.seq;
            f
        }))
    }

    fn opus(&self, timestamp: u64, data: Bytes) -> RtpFrame {
        RtpFrame {
            kind: TrackKind::Audio,
            time: timestamp.wrapping_mul(48) as u32,
            keyframe: true,
            payloads: vec![Arc::from(&data[..])],
            seq: 0,
        }
    }

    /// Whether video is held back until a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.video.waiting_for_keyframe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Reassembles mode-1 payloads (single NAL units and FU-A) into NAL units.
    fn depacketize(payloads: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for p in payloads {
            if p[0] & 0x1f == FU_A {
                let (ind, hdr) = (p[0], p[1]);
                if hdr & 0x80 != 0 {
                    fu = Some(vec![(ind & 0xe0) | (hdr & 0x1f)]);
                }
                fu.as_mut().unwrap().extend_from_slice(&p[2..]);
                if hdr & 0x40 != 0 {
                    out.push(fu.take().unwrap());
                }
            } else {
                out.push(p.to_vec());
            }
        }
        out
    }

    #[test]
    fn small_nals_go_whole_and_big_ones_in_fu_a_fragments() {
        let sps = [0x67u8, 0x42, 0x00, 0x1f];
        let idr: Vec<u8> = std::iter::once(0x65).chain((0..2500u32).map(|i| i as u8)).collect();
        let mut out = Vec::new();
        packetize_h264(&[&sps, &idr], 1000, &mut out);
        assert_eq!(&*out[0], &sps);
        // 2499 body bytes in fragments of 998.
        assert_eq!(out.len(), 1 + 3);
        assert_eq!(out[1][..2], [0x60 | FU_A, 0x80 | 5]);
        assert_eq!(out[2][1], 5);
        assert_eq!(out[3][1], 0x40 | 5);
        assert!(out.iter().all(|p| p.len() <= 1000));
        assert_eq!(depacketize(&out), vec![sps.to_vec(), idr]);
    }

    #[test]
    fn empty_nals_are_skipped_and_a_tiny_limit_still_makes_progress() {
        let mut out = Vec::new();
        packetize_h264(&[&[], &[0x41, 1, 2, 3, 4]], 0, &mut out);
        assert!(out.iter().all(|p| p.len() <= 3));
        assert_eq!(depacketize(&out), vec![vec![0x41, 1, 2, 3, 4]]);
    }

    proptest! {
        #[test]
        fn packetizing_round_trips_and_respects_the_limit(
            nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..4000), 1..6),
            max in 3usize..1500,
        ) {
            // A NAL header's forbidden bit is 0 and its type is never FU-A itself.
            let nals: Vec<Vec<u8>> = nals.into_iter().map(|mut n| { n[0] = (n[0] & 0x60) | 1; n }).collect();
            let refs: Vec<&[u8]> = nals.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            packetize_h264(&refs, max, &mut out);
            prop_assert!(out.iter().all(|p| p.len() <= max));
            prop_assert_eq!(depacketize(&out), nals);
        }
    }

    #[test]
    fn opus_is_one_payload_on_a_48_khz_clock_and_frames_are_numbered() {
        let mut p = FramePacketizer::new();
        let a = p.push(PlayFrame::Opus { timestamp: 1000, data: Bytes::from_static(&[0xfc, 1, 2]) }).unwrap().unwrap();
        assert_eq!((a.kind, a.time, a.seq, a.payloads.len()), (TrackKind::Audio, 48_000, 1, 1));
        // Video before a sequence header yields nothing and takes no number.
        assert!(
            p.push(PlayFrame::FlvVideo { timestamp: 0, body: Bytes::from_static(&[0x17, 1, 0, 0, 0]) })
                .ok()
                .flatten()
                .is_none()
        );
        let b = p.push(PlayFrame::Opus { timestamp: 1020, data: Bytes::from_static(&[0xfc]) }).unwrap().unwrap();
        assert_eq!(b.seq, 2);
        assert!(p.waiting_for_keyframe());
    }
}
