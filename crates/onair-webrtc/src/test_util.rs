//! A browser stand-in for other crates' tests (feature `test-util`): a str0m peer with a
//! full (not lite) ICE agent on its own UDP socket on loopback, offering one H.264
//! (constrained baseline and high, packetization-mode 1, RTX) and one Opus section.
//! The other end of the engine in this crate's tests and of the `onair` binary's WHEP in
//! `onair-server`'s. [`Peer::new_tcp_only`] makes one that offers no UDP candidate and
//! reaches the server over ICE-TCP instead (an active TCP candidate, RFC 4571 framing),
//! as a client behind a UDP-blocking network does. Test code: it panics (with a
//! message) when the peer itself breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::framing::{Deframer, MAX_FRAME, encode_into};

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
    tcp: Option<TcpLink>,
}

/// The ICE-TCP connection of a TCP-only peer.
struct TcpLink {
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    deframer: Deframer,
    /// The server closed it: the peer only waits for its deadline.
    ended: bool,
}

/// The `tcptype passive` host candidates of an SDP (the server's ICE-TCP addresses).
pub fn tcp_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| Candidate::from_sdp_string(l).ok())
        .filter(|c| c.proto() == Protocol::Tcp && c.tcptype() == Some(TcpType::Passive))
        .map(|c| c.addr())
        .collect()
}

impl Peer {
    /// A peer with one video and one audio section in `dir`, and its SDP offer.
    pub async fn new(dir: Direction) -> (Peer, String) {
        Peer::build(dir, true).await
    }

    /// A peer whose offer has no candidate at all: after [`Peer::accept`], call
    /// [`Peer::connect_tcp`] to reach the server's ICE-TCP candidate.
    pub async fn new_tcp_only(dir: Direction) -> (Peer, String) {
        Peer::build(dir, false).await
    }

    async fn build(dir: Direction, udp: bool) -> (Peer, String) {
        let mut cfg = Rtc::builder().clear_codecs().enable_opus(true, false);
        cfg.codec_config().add_h264(102.into(), Some(103.into()), true, 0x42e01f);
        cfg.codec_config().add_h264(104.into(), Some(105.into()), true, 0x640c1f);
        let mut rtc = cfg.build(Instant::now());
        let socket =
            UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await.expect("bind a UDP socket");
        if udp {
            rtc.add_local_candidate(Candidate::host(socket.local_addr().unwrap(), "udp").unwrap());
        }
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, dir, None, None, None);
        let audio = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let sdp = offer.to_sdp_string();
        (Peer { rtc, socket, video, audio, pending: Some(pending), tcp: None }, sdp)
    }

    /// Connects to the first ICE-TCP candidate of the server's `answer` and adds the
    /// connection as this peer's (active) TCP candidate; returns the server address.
    pub async fn connect_tcp(&mut self, answer: &str) -> SocketAddr {
        let remote = *tcp_candidates(answer).first().expect("a tcptype passive candidate in the answer");
        let stream = TcpStream::connect(remote).await.expect("connect to the ICE-TCP candidate");
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        let cand = Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build().unwrap();
        self.rtc.add_local_candidate(cand);
        self.tcp = Some(TcpLink { stream, local, remote, deframer: Deframer::new(MAX_FRAME), ended: false });
        remote
    }

    /// Sends one packet str0m transmits, on UDP or framed on the TCP link.
    async fn transmit(&mut self, proto: Protocol, contents: &[u8], destination: SocketAddr) {
        match &mut self.tcp {
            Some(link) if proto == Protocol::Tcp => {
                let mut framed = Vec::with_capacity(contents.len() + 2);
                encode_into(&mut framed, contents).unwrap();
                if link.stream.write_all(&framed).await.is_err() {
                    link.ended = true;
                }
            }
            _ => {
                let _ = self.socket.send_to(contents, destination).await;
            }
        }
    }

    /// The next packet within `wait`: (protocol, source, destination, bytes).
    async fn receive(&mut self, wait: Duration, buf: &mut [u8]) -> Option<(Protocol, SocketAddr, SocketAddr, Vec<u8>)> {
        let Some(link) = &mut self.tcp else {
            let local = self.socket.local_addr().unwrap();
            let (n, source) = tokio::time::timeout(wait, self.socket.recv_from(buf)).await.ok()?.ok()?;
            return Some((Protocol::Udp, source, local, buf[..n].to_vec()));
        };
        let read = async {
            loop {
                if let Some(f) = link.deframer.next_frame().expect("well-framed packets from the server") {
                    return Some(f);
                }
                if link.ended {
                    std::future::pending::<()>().await;
                }
                match link.stream.read(buf).await {
                    Ok(0) | Err(_) => link.ended = true,
                    Ok(n) => link.deframer.push(&buf[..n]),
                }
            }
        };
        let frame = tokio::time::timeout(wait, read).await.ok()??;
        Some((Protocol::Tcp, link.remote, link.local, frame))
    }

    /// Applies the server's SDP answer.
    pub fn accept(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).expect("a well-formed answer");
        let pending = self.pending.take().expect("accept once");
        self.rtc.sdp_api().accept_answer(pending, answer).expect("an acceptable answer");
    }

    /// Runs the peer until `deadline` or until `on_event` returns true.
    pub async fn run(&mut self, deadline: Instant, on_event: &mut (dyn FnMut(&mut Rtc, Event) -> bool + Send)) {
        let mut buf = vec![0u8; 8192];
        loop {
            let timeout = match self.rtc.poll_output().expect("str0m output") {
                Output::Transmit(t) => {
                    self.transmit(t.proto, &t.contents, t.destination).await;
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
            match self.receive(wait, &mut buf).await {
                Some((proto, source, destination, data)) => {
                    let Ok(contents) = DatagramRecv::try_from(data.as_slice()) else { continue };
                    let input = Input::Receive(Instant::now(), Receive { proto, source, destination, contents });
                    self.rtc.handle_input(input).expect("str0m input");
                }
                None => self.rtc.handle_input(Input::Timeout(Instant::now())).expect("str0m timeout"),
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
