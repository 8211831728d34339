//! A browser stand-in for other crates' tests (feature `test-util`): a str0m peer with a
//! full (not lite) ICE agent on its own UDP socket on loopback, offering one H.264
//! (constrained baseline and high, packetization-mode 1, RTX) and one Opus section.
//! The other end of the engine in this crate's tests and of the `onair` binary's WHEP in
//! `onair-server`'s. Test code: it panics (with a message) when the peer itself breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

/// A str0m peer on a loopback UDP socket.
pub struct Peer {
    /// The peer's str0m instance (for writers in publishing tests).
    pub rtc: Rtc,
    /// Its socket on 127.0.0.1.
    pub socket: UdpSocket,
    /// The video section.
    pub video: Mid,
    /// The audio section.
    pub audio: Mid,
    pending: Option<SdpPendingOffer>,
}

impl Peer {
    /// A peer with one video and one audio section in `dir`, and its SDP offer.
    pub async fn new(dir: Direction) -> (Peer, String) {
        let mut cfg = Rtc::builder().clear_codecs().enable_opus(true, false);
        cfg.codec_config().add_h264(102.into(), Some(103.into()), true, 0x42e01f);
        cfg.codec_config().add_h264(104.into(), Some(105.into()), true, 0x640c1f);
        let mut rtc = cfg.build(Instant::now());
        let socket =
            UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await.expect("bind a UDP socket");
        rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, dir, None, None, None);
        let audio = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let sdp = offer.to_sdp_string();
        (Peer { rtc, socket, video, audio, pending: Some(pending) }, sdp)
    }

    /// Applies the server's SDP answer.
    pub fn accept(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).expect("a well-formed answer");
        let pending = self.pending.take().expect("accept once");
        self.rtc.sdp_api().accept_answer(pending, answer).expect("an acceptable answer");
    }

    /// Runs the peer until `deadline` or until `on_event` returns true.
    pub async fn run(&mut self, deadline: Instant, on_event: &mut (dyn FnMut(&mut Rtc, Event) -> bool + Send)) {
        let mut buf = vec![0u8; 2048];
        let local = self.socket.local_addr().unwrap();
        loop {
            let timeout = match self.rtc.poll_output().expect("str0m output") {
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                    continue;
                }
                Output::Event(e) => {
                    if on_event(&mut self.rtc, e) {
                        return;
                    }
                    continue;
                }
                Output::Timeout(t) => t,
            };
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let wait = timeout.min(deadline).saturating_duration_since(now);
            match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
                Ok(Ok((n, source))) => {
                    let Ok(contents) = DatagramRecv::try_from(&buf[..n]) else { continue };
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    );
                    self.rtc.handle_input(input).expect("str0m input");
                }
                _ => self.rtc.handle_input(Input::Timeout(Instant::now())).expect("str0m timeout"),
            }
        }
    }

    /// Runs the peer until `deadline`, handing every event to `on_event`.
    pub async fn run_until(&mut self, deadline: Instant, on_event: &mut (dyn FnMut(&mut Rtc, Event) + Send)) {
        self.run(deadline, &mut |rtc, e| {
            on_event(rtc, e);
            false
        })
        .await;
    }

    /// Runs until connected (panics after 5 s).
    pub async fn connect(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut connected = false;
        self.run(deadline, &mut |_, e| {
            connected |= matches!(e, Event::Connected);
            connected
        })
        .await;
        assert!(connected, "the peer did not connect within 5 s");
    }
}
