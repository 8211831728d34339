//! SDP offer validation and the codec policy: what a WHIP/WHEP offer must look like
//! before a session is built for it.
//!
//! str0m parses SDP itself, but its errors are terse and it quietly rejects media with no
//! common codec. A client needs to know *why* (the issue asks for `400` with the reason
//! for malformed offers and `406` naming what was offered when no codec fits), so offers
//! are read here first by a small line parser over untrusted text: bounded in size and
//! sections, no panics (proptest below, fuzzed in `fuzz/fuzz_targets/sdp_offer.rs`).
//!
//! The policy: video is H.264 with `packetization-mode=1` in the baseline (incl.
//! constrained baseline), main or high profile — what browsers send and what FLV, HLS and
//! every RTMP player decode without a transcode; audio is Opus 48 kHz stereo (the only
//! codec every WebRTC stack has; bridged to AAC for FLV/HLS outside this crate).

use std::collections::HashMap;

/// Largest offer accepted, in bytes. Browser offers are 3–8 KiB; this bounds the work a
/// hostile client can cause before being refused.
pub const MAX_OFFER_BYTES: usize = 32 * 1024;
/// Most media sections accepted (a WHIP offer has two; bundling more is abuse here).
pub const MAX_MEDIA_SECTIONS: usize = 8;

/// H.264 `profile_idc` values the policy accepts: baseline, main, high.
pub const H264_PROFILES: [u8; 3] = [66, 77, 100];

/// Which way media flows, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// WHIP: the client sends, the server receives.
    Publish,
    /// WHEP: the server sends, the client receives.
    Play,
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The offer is not well-formed SDP or lacks something WebRTC requires.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// No media section carries a codec the policy accepts; `offered` names what was
    /// offered (`H264/90000 profile 244 packetization-mode=0`, `VP8/90000`, …).
    #[error("no supported codec in the offer (want H.264 packetization-mode=1 baseline/main/high, or Opus); offered: {}", offered.join(", "))]
    NoCommonCodec {
        /// Every codec of every audio/video section, in offer order.
        offered: Vec<String>,
    },
    /// The media directions do not fit the role (a WHIP offer that only receives).
    #[error("offer directions do not fit {0:?}: {1}")]
    Direction(Role, String),
}

impl OfferError {
    /// The HTTP status a WHIP/WHEP endpoint answers with: 400 for a malformed offer or
    /// directions that make no sense, 406 when no codec is acceptable.
    pub fn http_status(&self) -> u16 {
        match self {
            OfferError::Malformed(_) | OfferError::Direction(..) => 400,
            OfferError::NoCommonCodec { .. } => 406,
        }
    }
}

/// A codec of an offer's media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    /// RTP payload type.
    pub pt: u8,
    /// Encoding name as written (`H264`, `opus`, `VP8`, …).
    pub name: String,
    /// RTP clock rate.
    pub clock: u32,
    /// Channel count (audio), when given.
    pub channels: Option<u8>,
    /// `a=fmtp` parameters, keys lower-cased.
    pub fmtp: HashMap<String, String>,
}

impl OfferedCodec {
    /// Whether the policy accepts this codec for `kind`.
    pub fn acceptable(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Video => {
                self.name.eq_ignore_ascii_case("H264")
                    && self.clock == 90_000
                    && self.fmtp.get("packetization-mode").map(String::as_str) == Some("1")
                    && self.h264_profile().is_some_and(|p| H264_PROFILES.contains(&p))
            }
            MediaKind::Audio => self.name.eq_ignore_ascii_case("opus") && self.clock == 48_000,
        }
    }

    /// H.264 `profile_idc` from `profile-level-id` (RFC 6184 default `42000a`: baseline).
    pub fn h264_profile(&self) -> Option<u8> {
        match self.fmtp.get("profile-level-id") {
            None => Some(66),
            // Byte slicing is safe only once the value is known to be ASCII (found by
            // fuzzing: a six-byte value with a multi-byte character in its first two).
            Some(v) if v.len() == 6 && v.is_ascii() => u8::from_str_radix(&v[..2], 16).ok(),
            Some(_) => None,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{}/{}", self.name, self.clock);
        if self.name.eq_ignore_ascii_case("H264") {
            match self.h264_profile() {
                Some(p) => s.push_str(&format!(" profile {p}")),
                None => s.push_str(" bad profile-level-id"),
            }
            let mode = self.fmtp.get("packetization-mode").map_or("0", String::as_str);
            s.push_str(&format!(" packetization-mode={mode}"));
        }
        s
    }
}

/// Audio or video (data channels and other sections are ignored by the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
}

/// Direction attribute of a media section, as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (also the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// One audio or video section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// Audio or video.
    pub kind: MediaKind,
    /// The section's `a=mid`.
    pub mid: Option<String>,
    /// The client's direction.
    pub direction: Direction,
    /// Codecs in preference order.
    pub codecs: Vec<OfferedCodec>,
}

impl OfferedMedia {
    /// The first codec the policy accepts.
    pub fn chosen(&self) -> Option<&OfferedCodec> {
        self.codecs.iter().find(|c| c.acceptable(self.kind))
    }
}

/// What a valid offer holds, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    /// Audio and video sections in order.
    pub media: Vec<OfferedMedia>,
}

impl OfferSummary {
    /// Whether a video section with an acceptable codec is present.
    pub fn has_video(&self) -> bool {
        self.media.iter().any(|m| m.kind == MediaKind::Video && m.chosen().is_some())
    }

    /// Whether an audio section with an acceptable codec is present.
    pub fn has_audio(&self) -> bool {
        self.media.iter().any(|m| m.kind == MediaKind::Audio && m.chosen().is_some())
    }
}

fn malformed(s: impl Into<String>) -> OfferError {
    OfferError::Malformed(s.into())
}

/// Validates an SDP offer for `role` against the codec policy.
///
/// Checks: size bound, `v=0` first, every line `x=…`, at least one audio/video section,
/// ICE credentials and a DTLS fingerprint (session or media level), a secure RTP profile,
/// codecs (every audio/video section must carry one acceptable codec, otherwise
/// [`OfferError::NoCommonCodec`]), and that directions fit the role.
pub fn validate_offer(sdp: &str, role: Role) -> Result<OfferSummary, OfferError> {
    if sdp.len() > MAX_OFFER_BYTES {
        return Err(malformed(format!("offer of {} bytes exceeds {MAX_OFFER_BYTES}", sdp.len())));
    }
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err(malformed("first line is not v=0"));
    }
    let mut session_ice = (false, false, false); // ufrag, pwd, fingerprint
    let mut sections: Vec<(OfferedMedia, bool, (bool, bool, bool))> = Vec::new();
    let mut in_media = false;
    for line in lines {
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
            return Err(malformed(format!("line is not type=value: {:?}", truncate(line))));
        }
        let value = &line[2..];
        match bytes[0] {
            b'm' => {
                if sections.len() >= MAX_MEDIA_SECTIONS {
                    return Err(malformed(format!("more than {MAX_MEDIA_SECTIONS} media sections")));
                }
                let mut parts = value.split(' ');
                let kind = parts.next().unwrap_or_default();
                let _port = parts.next().ok_or_else(|| malformed("m= line without port"))?;
                let proto = parts.next().ok_or_else(|| malformed("m= line without protocol"))?;
                let kind = match kind {
                    "audio" => Some(MediaKind::Audio),
                    "video" => Some(MediaKind::Video),
                    _ => None,
                };
                in_media = true;
                if let Some(kind) = kind {
                    if !proto.contains("SAVPF") {
                        return Err(malformed(format!("media protocol {proto:?} is not secure RTP (SAVPF)")));
                    }
                    let mut codecs = Vec::new();
                    for fmt in parts.filter(|p| !p.is_empty()) {
                        let pt = fmt.parse::<u8>().map_err(|_| malformed(format!("bad payload type {fmt:?}")))?;
                        if pt > 127 {
                            return Err(malformed(format!("payload type {pt} out of range")));
                        }
                        codecs.push(OfferedCodec {
                            pt,
                            name: String::new(),
                            clock: 0,
                            channels: None,
                            fmtp: HashMap::new(),
                        });
                    }
                    let media = OfferedMedia { kind, mid: None, direction: Direction::SendRecv, codecs };
                    sections.push((media, true, (false, false, false)));
                } else {
                    // A data channel or unknown section: not ours to check, but attributes
                    // below it must not land on the previous section.
                    let media = OfferedMedia {
                        kind: MediaKind::Audio,
                        mid: None,
                        direction: Direction::Inactive,
                        codecs: Vec::new(),
                    };
                    sections.push((media, false, (false, false, false)));
                }
            }
            b'a' => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let ice = match sections.last_mut() {
                    Some((_, _, ice)) if in_media => ice,
                    _ => &mut session_ice,
                };
                match name {
                    "ice-ufrag" => ice.0 = !arg.is_empty(),
                    "ice-pwd" => ice.1 = !arg.is_empty(),
                    "fingerprint" => ice.2 = arg.contains(' '),
                    _ => {}
                }
                let Some((media, true, _)) = sections.last_mut().filter(|_| in_media) else { continue };
                match name {
                    "mid" => media.mid = Some(arg.to_string()),
                    "sendrecv" => media.direction = Direction::SendRecv,
                    "sendonly" => media.direction = Direction::SendOnly,
                    "recvonly" => media.direction = Direction::RecvOnly,
                    "inactive" => media.direction = Direction::Inactive,
                    "rtpmap" => apply_rtpmap(media, arg)?,
                    "fmtp" => apply_fmtp(media, arg),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let av: Vec<_> = sections.into_iter().filter(|(_, is_av, _)| *is_av).collect();
    if av.is_empty() {
        return Err(malformed("no audio or video section"));
    }
    for (m, _, ice) in &av {
        let what = m.mid.as_deref().unwrap_or("?");
        if !(ice.0 || session_ice.0) || !(ice.1 || session_ice.1) {
            return Err(malformed(format!("media {what}: no ICE credentials (a=ice-ufrag/a=ice-pwd)")));
        }
        if !(ice.2 || session_ice.2) {
            return Err(malformed(format!("media {what}: no DTLS fingerprint")));
        }
        if m.mid.is_none() {
            return Err(malformed("media section without a=mid (BUNDLE needs it)"));
        }
    }
    let media: Vec<OfferedMedia> = av.into_iter().map(|(m, _, _)| m).collect();
    let offered: Vec<String> = media.iter().flat_map(|m| m.codecs.iter().map(OfferedCodec::describe)).collect();
    if media.iter().any(|m| m.direction != Direction::Inactive && m.chosen().is_none()) {
        return Err(OfferError::NoCommonCodec { offered });
    }
    let active: Vec<&OfferedMedia> = media.iter().filter(|m| m.direction != Direction::Inactive).collect();
    if active.is_empty() {
        return Err(OfferError::Direction(role, "every media section is inactive".into()));
    }
    for m in &active {
        let ok = match role {
            Role::Publish => matches!(m.direction, Direction::SendOnly | Direction::SendRecv),
            Role::Play => matches!(m.direction, Direction::RecvOnly | Direction::SendRecv),
        };
        if !ok {
            return Err(OfferError::Direction(
                role,
                format!("media {} is {:?}", m.mid.as_deref().unwrap_or("?"), m.direction),
            ));
        }
    }
    Ok(OfferSummary { media })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `a=rtpmap:<pt> <name>/<clock>[/<channels>]`: fills in the codec of a listed payload type.
fn apply_rtpmap(media: &mut OfferedMedia, arg: &str) -> Result<(), OfferError> {
    let (pt, enc) = arg.split_once(' ').ok_or_else(|| malformed(format!("bad rtpmap {:?}", truncate(arg))))?;
    let pt: u8 = pt.parse().map_err(|_| malformed(format!("bad rtpmap payload type {:?}", truncate(pt))))?;
    let mut parts = enc.trim().split('/');
    let name = parts.next().unwrap_or_default();
    let clock = parts
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| malformed(format!("rtpmap {pt}: bad clock rate")))?;
    let channels = parts.next().and_then(|c| c.parse::<u8>().ok());
    if let Some(c) = media.codecs.iter_mut().find(|c| c.pt == pt) {
        c.name = name.chars().take(32).collect();
        c.clock = clock;
        c.channels = channels;
    }
    Ok(())
}

/// `a=fmtp:<pt> k=v;k=v`: unknown payload types and odd parameters are ignored (the
/// policy only reads `packetization-mode` and `profile-level-id`).
fn apply_fmtp(media: &mut OfferedMedia, arg: &str) {
    let Some((pt, params)) = arg.split_once(' ') else { return };
    let Ok(pt) = pt.parse::<u8>() else { return };
    let Some(c) = media.codecs.iter_mut().find(|c| c.pt == pt) else { return };
    for kv in params.split(';').take(32) {
        if let Some((k, v)) = kv.split_once('=') {
            c.fmtp.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A trimmed Chromium WHIP offer: audio (Opus) and video (VP8, H.264 in several
    /// profiles and modes), both sendonly.
    pub(crate) const CHROME_WHIP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n\
a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 112\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n\
a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:112 H264/90000\r\na=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n";

    #[test]
    fn chrome_offer_is_accepted() {
        let s = validate_offer(CHROME_WHIP, Role::Publish).unwrap();
        assert!(s.has_audio() && s.has_video());
        let video = &s.media[1];
        assert_eq!(video.chosen().unwrap().pt, 102);
        assert_eq!(s.media[0].chosen().unwrap().name, "opus");
        // The same offer cannot be played: it only sends.
        assert!(matches!(validate_offer(CHROME_WHIP, Role::Play), Err(OfferError::Direction(Role::Play, _))));
        let recv = CHROME_WHIP.replace("a=sendonly", "a=recvonly");
        assert!(validate_offer(&recv, Role::Play).is_ok());
    }

    #[test]
    fn bad_offers_table() {
        let vp8_only = CHROME_WHIP
            .replace("m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 112", "m=video 9 UDP/TLS/RTP/SAVPF 96 106")
            .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
        let high444 = CHROME_WHIP
            .replace("m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 112", "m=video 9 UDP/TLS/RTP/SAVPF 112")
            .replace("profile-level-id=64001f", "profile-level-id=f4001f");
        type Row = (String, Result<(), (u16, &'static str)>);
        let table: Vec<Row> = vec![
            ("".into(), Err((400, "first line is not v=0"))),
            ("hello".into(), Err((400, "first line is not v=0"))),
            ("v=0\r\nbogus\r\n".into(), Err((400, "line is not type=value"))),
            ("v=0\r\ns=-\r\n".into(), Err((400, "no audio or video section"))),
            (CHROME_WHIP.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), Err((400, "not secure RTP"))),
            (CHROME_WHIP.replace("a=ice-pwd", "a=x-pwd"), Err((400, "no ICE credentials"))),
            (CHROME_WHIP.replace("a=fingerprint", "a=x"), Err((400, "no DTLS fingerprint"))),
            (CHROME_WHIP.replace("a=mid:1\r\n", ""), Err((400, "without a=mid"))),
            (CHROME_WHIP.replace(" 96 102", " 96 999"), Err((400, "bad payload type"))),
            (CHROME_WHIP.replace("opus/48000/2", "opus"), Err((400, "bad clock rate"))),
            (vp8_only, Err((406, "offered: PCMU/8000, VP8/90000, H264/90000 profile 66 packetization-mode=0"))),
            (high444, Err((406, "H264/90000 profile 244 packetization-mode=1"))),
            // Fuzzer find: a non-ASCII profile-level-id of six bytes.
            (
                CHROME_WHIP
                    .replace(" 96 102 106 112", " 102")
                    .replace("profile-level-id=42001f", "profile-level-id=4\u{3da}01f"),
                Err((406, "H264/90000 bad profile-level-id")),
            ),
            ("x".repeat(MAX_OFFER_BYTES + 1), Err((400, "exceeds"))),
            (CHROME_WHIP.replace("a=sendonly", "a=inactive"), Err((400, "inactive"))),
            (CHROME_WHIP.replace("\r\n", "\n"), Ok(())),
        ];
        for (input, want) in table {
            let got = validate_offer(&input, Role::Publish);
            match (&got, want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err((status, text))) => {
                    assert_eq!(e.http_status(), status, "{e}");
                    assert!(e.to_string().contains(text), "{e:?} should mention {text:?}");
                }
                _ => panic!("input {:?}: got {got:?}, want {want:?}", truncate(&input)),
            }
        }
    }

    #[test]
    fn default_h264_profile_is_baseline() {
        let c = OfferedCodec {
            pt: 97,
            name: "H264".into(),
            clock: 90_000,
            channels: None,
            fmtp: [("packetization-mode".to_string(), "1".to_string())].into_iter().collect(),
        };
        assert!(c.acceptable(MediaKind::Video));
        assert_eq!(c.h264_profile(), Some(66));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = validate_offer(&s, Role::Publish);
            let _ = validate_offer(&format!("v=0\r\n{s}"), Role::Play);
        }

        #[test]
        fn mutated_offer_never_panics(idx in 0usize..1200, ch in proptest::prelude::any::<char>()) {
            let mut s: Vec<char> = CHROME_WHIP.chars().collect();
            let i = idx % s.len();
            s[i] = ch;
            let s: String = s.into_iter().collect();
            let _ = validate_offer(&s, Role::Publish);
        }
    }
}
