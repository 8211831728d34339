//! One WebRTC session as the engine task drives it: a str0m `Rtc` plus what the engine
//! needs around it (role, stream, converters, queues, timers, stats).
//!
//! No sockets here: the engine task hands in datagrams and time, and collects the
//! datagrams to send and the [`Action`]s that concern other sessions (a player wanting
//! a keyframe from its stream's publisher). Every call into str0m runs under
//! `catch_unwind`: str0m fails fast on broken internal invariants, and one bad session
//! must not take the port (and every other session) down with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Transmit};
use str0m::rtp::RtpWrite;
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, watch};

use crate::convert::{H264Ingest, TrackClock};
use crate::engine::{IngestFrame, TrackKind};
use crate::packetize::RtpFrame;
use crate::sdp::Role;
use crate::stats::{SessionState, SessionStats, Transport};

/// Something a session's events ask of the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// A player of this stream needs a keyframe: ask the stream's publisher.
    WantKeyframe(String),
    /// Close this session, for the reason given.
    Close(&'static str),
}

/// The payload type a player's track sends `codec` on: the first of the viewer's
/// accepted payload types that is `codec` (H.264 in packetization mode 1).
fn send_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let params = rtc.codec_config().params();
    media.remote_pts().iter().copied().find(|pt| {
        params.iter().any(|p| {
            let spec = p.spec();
            p.pt() == *pt && spec.codec == codec && (codec != Codec::H264 || spec.format.packetization_mode == Some(1))
        })
    })
}

/// Video packets a player keeps for resends (NACK → RTX), and for how long.
const RTX_CACHE_PACKETS: usize = 400;
const RTX_CACHE_AGE: Duration = Duration::from_secs(2);

/// A random start for a track's RTP sequence numbers (RFC 3550 §5.1), from the
/// standard library's per-process random hash keys.
fn random_seq() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8) & 0x7fff
}

/// Per-mid RTCP counters (str0m reports totals per mid; a session sums them).
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    nacks: u64,
    plis: u64,
}

pub(crate) struct Session {
    pub(crate) rtc: Rtc,
    pub(crate) role: Role,
    pub(crate) stream: String,
    pub(crate) created: Instant,
    pub(crate) connected_at: Option<Instant>,
    pub(crate) last_rx: Instant,
    pub(crate) next_timeout: Instant,
    /// The timeout this session has on the engine's timer heap, if any.
    pub(crate) scheduled: Option<Instant>,
    /// Our ICE ufrag (from the answer): how a first STUN request finds the session.
    pub(crate) ufrag: String,
    /// Remote addresses demultiplexed to this session (removed with it).
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) stats: Arc<Mutex<SessionStats>>,
    pub(crate) state_tx: watch::Sender<SessionState>,
    pli_interval: Duration,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    video_pt: Option<Pt>,
    audio_pt: Option<Pt>,
    /// Publisher: where frames go, and the conversion state.
    ingest_tx: Option<mpsc::Sender<IngestFrame>>,
    h264: H264Ingest,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    last_pli: Option<Instant>,
    /// Player: bumped whenever the viewer needs a keyframe.
    keyframe_tx: Option<Arc<watch::Sender<u64>>>,
    video_started: bool,
    /// Player: the next RTP sequence number of each track.
    video_seq: u64,
    audio_seq: u64,
    ingress: HashMap<Mid, Counters>,
    egress: HashMap<Mid, Counters>,
    last_peer: Option<(Instant, u64, u64)>,
}

/// What a session needs at creation.
pub(crate) struct SessionParts {
    pub(crate) ufrag: String,
    pub(crate) rtc: Rtc,
    pub(crate) role: Role,
    pub(crate) stream: String,
    pub(crate) now: Instant,
    pub(crate) stats: Arc<Mutex<SessionStats>>,
    pub(crate) state_tx: watch::Sender<SessionState>,
    pub(crate) ingest_tx: Option<mpsc::Sender<IngestFrame>>,
    pub(crate) keyframe_tx: Option<Arc<watch::Sender<u64>>>,
    pub(crate) pli_interval: Duration,
}

impl Session {
    pub(crate) fn new(p: SessionParts) -> Session {
        Session {
            rtc: p.rtc,
            role: p.role,
            stream: p.stream,
            created: p.now,
            connected_at: None,
            last_rx: p.now,
            next_timeout: p.now,
            scheduled: None,
            ufrag: p.ufrag,
            addrs: Vec::new(),
            stats: p.stats,
            state_tx: p.state_tx,
            pli_interval: p.pli_interval,
            video_mid: None,
            audio_mid: None,
            video_pt: None,
            audio_pt: None,
            ingest_tx: p.ingest_tx,
            h264: H264Ingest::new(),
            video_clock: TrackClock::new(),
            audio_clock: TrackClock::new(),
            last_pli: None,
            keyframe_tx: p.keyframe_tx,
            video_started: false,
            video_seq: random_seq(),
            audio_seq: random_seq(),
            ingress: HashMap::new(),
            egress: HashMap::new(),
            last_peer: None,
        }
    }

    /// Feeds one input to str0m. `Err` means the session is broken (error or panic).
    pub(crate) fn handle_input(&mut self, input: Input) -> Result<(), String> {
        if matches!(input, Input::Receive(..)) {
            self.last_rx = Instant::now();
        }
        match catch_unwind(AssertUnwindSafe(|| self.rtc.handle_input(input))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("str0m panicked".into()),
        }
    }

    /// Polls str0m until it only has a timeout left: datagrams go to `send`, events are
    /// handled here (their cross-session consequences land in `actions`).
    pub(crate) fn drive(&mut self, send: &mut dyn FnMut(Transmit), actions: &mut Vec<Action>) {
        loop {
            let out = match catch_unwind(AssertUnwindSafe(|| self.rtc.poll_output())) {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => {
                    tracing::debug!(stream = %self.stream, error = %e, "webrtc session failed");
                    actions.push(Action::Close("protocol error"));
                    return;
                }
                Err(_) => {
                    tracing::error!(stream = %self.stream, "str0m panicked; session dropped");
                    actions.push(Action::Close("str0m panicked"));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => send(t),
                Output::Event(e) => self.on_event(e, actions),
            }
        }
    }

    fn on_event(&mut self, event: Event, actions: &mut Vec<Action>) {
        let now = Instant::now();
        match event {
            Event::Connected => {
                self.connected_at = Some(now);
                {
                    let mut s = self.stats.lock();
                    s.state = SessionState::Connected;
                    s.connect_time = Some(now.saturating_duration_since(self.created));
                }
                self.state_tx.send_replace(SessionState::Connected);
                if self.role == Role::Play {
                    self.bump_keyframe();
                    actions.push(Action::WantKeyframe(self.stream.clone()));
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                actions.push(Action::Close("ICE disconnected"));
            }
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video_mid = Some(m.mid),
                MediaKind::Audio => self.audio_mid = Some(m.mid),
            },
            Event::MediaData(d) => self.on_media(d, now, actions),
            Event::KeyframeRequest(_) if self.role == Role::Play => {
                self.bump_keyframe();
                actions.push(Action::WantKeyframe(self.stream.clone()));
            }
            Event::PeerStats(p) => {
                let mut s = self.stats.lock();
                if let Some((t0, rx0, tx0)) = self.last_peer {
                    let ms = p.timestamp.saturating_duration_since(t0).as_millis().max(1) as u64;
                    s.bitrate_rx = p.bytes_rx.saturating_sub(rx0) * 8 * 1000 / ms;
                    s.bitrate_tx = p.bytes_tx.saturating_sub(tx0) * 8 * 1000 / ms;
                }
                self.last_peer = Some((p.timestamp, p.bytes_rx, p.bytes_tx));
                s.bytes_rx = p.bytes_rx;
                s.bytes_tx = p.bytes_tx;
                s.rtt = p.rtt.or(s.rtt);
                s.loss = match self.role {
                    Role::Publish => p.ingress_loss_fraction,
                    Role::Play => p.egress_loss_fraction,
                }
                .or(s.loss);
                s.bwe_tx = p.bwe_tx.map(|b| b.as_u64());
                if let Some(pair) = &p.selected_candidate_pair {
                    s.transport = Some(match pair.protocol {
                        Protocol::Udp => Transport::Udp,
                        // TCP framing is the only other transport the engine speaks.
                        _ => Transport::Tcp,
                    });
                }
            }
            Event::MediaIngressStats(m) => {
                // Ingress: what we received; its NACK/PLI counts are the ones we sent.
                self.ingress.insert(m.mid, Counters { nacks: m.nacks, plis: m.plis + m.firs });
                let mut s = self.stats.lock();
                s.nacks_sent = self.ingress.values().map(|c| c.nacks).sum();
                s.plis_sent = self.ingress.values().map(|c| c.plis).sum();
                s.rtt = m.rtt.or(s.rtt);
            }
            Event::MediaEgressStats(m) => {
                self.egress.insert(m.mid, Counters { nacks: m.nacks, plis: m.plis + m.firs });
                let mut s = self.stats.lock();
                s.nacks_received = self.egress.values().map(|c| c.nacks).sum();
                s.plis_received = self.egress.values().map(|c| c.plis).sum();
                s.rtt = m.rtt.or(s.rtt);
            }
            _ => {}
        }
    }

    fn bump_keyframe(&self) {
        if let Some(tx) = &self.keyframe_tx {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Publisher: one depacketised frame from the client.
    fn on_media(&mut self, d: MediaData, now: Instant, actions: &mut Vec<Action>) {
        let Some(tx) = &self.ingest_tx else { return };
        let arrival_ms = d.network_time.saturating_duration_since(self.created).as_millis() as u64;
        let codec = d.params.spec().codec;
        let mut frames = Vec::with_capacity(2);
        let mut want_keyframe = false;
        match codec {
            Codec::H264 => {
                let ts = self.video_clock.to_ms(d.time.numer(), d.time.denom(), arrival_ms) as u32;
                if !d.contiguous {
                    self.h264.lost();
                }
                let hint = matches!(d.codec_extra, str0m::format::CodecExtra::H264(e) if e.is_keyframe);
                let out = self.h264.push(&d.data, hint);
                want_keyframe = out.want_keyframe;
                frames.extend(out.bodies.into_iter().map(|body| IngestFrame::Video { timestamp: ts, body }));
            }
            Codec::Opus => {
                let ts = self.audio_clock.to_ms(d.time.numer(), d.time.denom(), arrival_ms) as u32;
                frames.push(IngestFrame::Opus { timestamp: ts, data: Bytes::copy_from_slice(&d.data) });
            }
            _ => return,
        }
        for f in frames {
            let video = matches!(f, IngestFrame::Video { .. });
            match tx.try_send(f) {
                Ok(()) => self.stats.lock().frames += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The consumer is behind: drop, and for video restart at a keyframe
                    // so what does get through stays decodable.
                    self.stats.lock().frames_dropped += 1;
                    if video {
                        self.h264.lost();
                        want_keyframe = true;
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    actions.push(Action::Close("publisher's consumer went away"));
                    return;
                }
            }
        }
        if want_keyframe {
            self.request_keyframe(now);
        }
    }

    /// Publisher: asks the client for a keyframe (PLI), at most once per `pli_interval`.
    pub(crate) fn request_keyframe(&mut self, now: Instant) {
        if self.role != Role::Publish || self.connected_at.is_none() {
            return;
        }
        if self.last_pli.is_some_and(|t| now.saturating_duration_since(t) < self.pli_interval) {
            return;
        }
        let Some(mid) = self.video_mid else { return };
        if let Some(mut w) = self.rtc.writer(mid)
            && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
        {
            self.last_pli = Some(now);
        }
    }

    /// Player: writes one shared frame as RTP packets on the track's send stream, with
    /// this viewer's own sequence numbers. Video before the first keyframe (and after a
    /// `resync`, until the next one) is dropped: a decoder cannot start there.
    pub(crate) fn write_rtp(&mut self, frame: &RtpFrame, resync: bool) {
        if self.connected_at.is_none() {
            return;
        }
        let video = frame.kind == TrackKind::Video;
        if resync && video {
            self.video_started = false;
        }
        if video && !self.video_started {
            if !frame.keyframe {
                self.stats.lock().frames_dropped += 1;
                return;
            }
            self.video_started = true;
        }
        let (mid, codec) = match frame.kind {
            TrackKind::Video => (self.video_mid, Codec::H264),
            TrackKind::Audio => (self.audio_mid, Codec::Opus),
        };
        let Some(mid) = mid else { return };
        let cached = if video { &mut self.video_pt } else { &mut self.audio_pt };
        let pt = match *cached {
            Some(pt) => pt,
            None => {
                let Some(pt) = send_pt(&self.rtc, mid, codec) else { return };
                *cached = Some(pt);
                if video {
                    // str0m keeps 2,000 packets for resends by default: ~250 B of header
                    // state each, ~0.5 MiB per viewer. NACKs arrive within a round trip;
                    // a second of packets at a few Mbit/s is plenty.
                    let cache = catch_unwind(AssertUnwindSafe(|| {
                        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                            tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(0.15));
                        }
                    }));
                    if cache.is_err() {
                        return;
                    }
                }
                pt
            }
        };
        let seq = if video { &mut self.video_seq } else { &mut self.audio_seq };
        let now = Instant::now();
        let last = frame.payloads.len().saturating_sub(1);
        let res = catch_unwind(AssertUnwindSafe(|| {
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else { return false };
            for (i, payload) in frame.payloads.iter().enumerate() {
                // Video packets are kept for NACKs (RTX); a lost Opus packet is better
                // concealed than resent late.
                let w = RtpWrite::new(pt, (*seq).into(), frame.time, now, payload.clone())
                    .marker(video && i == last)
                    .nackable(video);
                tx.write_rtp(w);
                *seq += 1;
            }
            true
        }));
        let mut s = self.stats.lock();
        match res {
            Ok(true) => s.frames += 1,
            _ => s.frames_dropped += 1,
        }
    }

    /// Marks the session closed for everyone watching its state.
    pub(crate) fn mark_closed(&mut self) {
        self.rtc.disconnect();
        self.stats.lock().state = SessionState::Closed;
        self.state_tx.send_replace(SessionState::Closed);
    }
}
