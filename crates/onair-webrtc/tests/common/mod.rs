//! Test peers: a str0m client over a real UDP socket on loopback (the other end of the
//! engine in every test), the H.264 fixture split into access units, and an engine
//! started on port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use onair_media::nal;
use onair_webrtc::{Limits, WebRtcConfig, WebRtcEngine};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `ffmpeg -f lavfi -i testsrc=size=160x120:rate=25 -frames:v 50 -pix_fmt yuv420p -c:v libx264
/// -profile:v baseline -x264-params keyint=10:min-keyint=10:scenecut=0 -bsf:v h264_mp4toannexb -f h264`
pub const FIXTURE: &[u8] = include_bytes!("../data/testsrc-160x120-baseline.h264");

/// The fixture as access units (each: its NAL units, SPS/PPS/SEI included), in order.
pub fn access_units() -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut cur: Vec<Vec<u8>> = Vec::new();
    for n in nal::split_annexb(FIXTURE) {
        cur.push(n.to_vec());
        if matches!(nal::nal_type(n), Some(1 | 5)) {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// The NAL units of a picture as the registry keeps them: no SPS/PPS/AUD.
pub fn picture(au: &[Vec<u8>]) -> Vec<Vec<u8>> {
    au.iter().filter(|n| !matches!(nal::nal_type(n), Some(7..=9))).cloned().collect()
}

pub async fn engine(limits: Limits) -> WebRtcEngine {
    let cfg = WebRtcConfig {
        bind: SocketAddr::new(LOCALHOST, 0),
        announce_ips: vec![LOCALHOST],
        limits,
        ..WebRtcConfig::default()
    };
    WebRtcEngine::start(cfg).await.unwrap()
}

/// A browser stand-in: a full (not lite) ICE agent on its own UDP socket.
pub struct Client {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub video: Mid,
    pub audio: Mid,
    pending: Option<SdpPendingOffer>,
}

impl Client {
    /// A client with one video (H.264) and one audio (Opus) section in `dir`.
    pub async fn new(dir: Direction) -> (Client, String) {
        let mut cfg = Rtc::builder().clear_codecs().enable_opus(true, false);
        cfg.codec_config().add_h264(102.into(), Some(103.into()), true, 0x42e01f);
        let mut rtc = cfg.build(Instant::now());
        let socket = UdpSocket::bind(SocketAddr::new(LOCALHOST, 0)).await.unwrap();
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, dir, None, None, None);
        let audio = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let sdp = offer.to_sdp_string();
        (Client { rtc, socket, video, audio, pending: Some(pending) }, sdp)
    }

    pub fn accept(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        let pending = self.pending.take().unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    /// Runs the client until `deadline`, handing every event to `on_event`.
    pub async fn run_until(&mut self, deadline: Instant, on_event: &mut (dyn FnMut(&mut Rtc, Event) + Send)) {
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = match self.rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    self.socket.send_to(&t.contents, t.destination).await.unwrap();
                    continue;
                }
                Output::Event(e) => {
                    on_event(&mut self.rtc, e);
                    continue;
                }
                Output::Timeout(t) => t,
            };
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = timeout.min(deadline).saturating_duration_since(now);
            let local = self.socket.local_addr().unwrap();
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => {
                    let Ok(contents) = DatagramRecv::try_from(&buf[..n]) else { continue };
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    );
                    self.rtc.handle_input(input).unwrap();
                }
                _ => self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
            }
        }
    }

    /// Runs until connected (or panics after 5 s).
    pub async fn connect(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut connected = false;
        while !connected {
            assert!(Instant::now() < deadline, "client did not connect");
            let step = Instant::now() + Duration::from_millis(20);
            self.run_until(step, &mut |_, e| connected |= matches!(e, Event::Connected)).await;
        }
    }
}

/// An offer str0m would make, for tests that only need the SDP.
pub fn offer_sdp(offer: &SdpOffer) -> String {
    offer.to_sdp_string()
}
