//! The engine's configuration: where its one UDP port (and, with ICE-TCP, its TCP
//! port) listens, what addresses it announces as ICE host candidates, what STUN/TURN servers clients are told about, and
//! the limits that bound what a flood of offers can cost.
//!
//! Plain data with defaults; the server's `[webrtc]` section deserialises into its own
//! type and builds this one (the engine knows no config file format).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A TURN (or STUN) server handed to clients; the engine itself never talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN username, if any.
    pub username: Option<String>,
    /// TURN credential, if any.
    pub credential: Option<String>,
}

/// Bounds on sessions and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sessions of all kinds on this engine.
    pub max_sessions: usize,
    /// Sessions from one client IP (a flood of offers from one host stops here).
    pub max_sessions_per_ip: usize,
    /// WebRTC players of one stream.
    pub max_players_per_stream: usize,
    /// A session whose ICE + DTLS has not completed by then is closed.
    pub connect_timeout: Duration,
    /// A connected session that received nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connected publisher that sent nothing for this long is closed: a browser
    /// sends media and RTCP many times a second, so a few quiet seconds mean it is
    /// gone (a closed laptop, a lost network), and its viewers (and a co-host mix)
    /// should not wait `idle_timeout` for it. ICE-lite sends no consent checks of its
    /// own, so silence is the only sign.
    pub publisher_idle_timeout: Duration,
    /// Frames queued from a publisher to its consumer; when full, frames are dropped
    /// (video until the next keyframe, which is requested) and counted.
    pub ingest_queue_frames: usize,
    /// Frames queued from a shard's players' pumps to the shard; when full a pump
    /// waits (its stream's feed ring overtakes it and it restarts at a keyframe).
    pub play_queue_frames: usize,
    /// Least time between two keyframe requests (PLI) sent to one publisher.
    pub pli_interval: Duration,
    /// ICE-TCP connections open at once (bound to a session or not yet).
    pub max_tcp_connections: usize,
    /// ICE-TCP connections from one client IP (a browser may open one per candidate
    /// pair it checks, so this is above `max_sessions_per_ip`).
    pub max_tcp_connections_per_ip: usize,
    /// Bytes queued to one ICE-TCP connection's writer; when full, whole packets are
    /// dropped (as a full UDP buffer would) and counted.
    pub tcp_queue_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 2000,
            max_sessions_per_ip: 16,
            max_players_per_stream: 1000,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            publisher_idle_timeout: Duration::from_secs(5),
            ingest_queue_frames: 512,
            play_queue_frames: 4096,
            pli_interval: Duration::from_millis(500),
            max_tcp_connections: 2000,
            max_tcp_connections_per_ip: 32,
            tcp_queue_bytes: 512 * 1024,
        }
    }
}

/// Configuration of a [`crate::WebRtcEngine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// The one UDP socket every session is muxed on.
    pub bind: SocketAddr,
    /// Public addresses announced as host candidates (with the bound port). When empty
    /// and `bind` names a specific address, that address is announced.
    pub announce_ips: Vec<IpAddr>,
    /// Host names resolved once at start and announced like `announce_ips`.
    pub announce_hosts: Vec<String>,
    /// STUN/TURN servers for clients (carried, see [`crate::WebRtcEngine::ice_servers`]).
    pub ice_servers: Vec<IceServer>,
    /// Session and queue bounds.
    pub limits: Limits,
    /// Tasks the sessions are spread over (each does its sessions' SRTP and packetising;
    /// all share the one socket). 0: one per core.
    pub shards: usize,
    /// Passive ICE-TCP (RFC 6544) beside UDP, for clients whose networks block UDP:
    /// a TCP listener, and a `tcptype passive` host candidate per announced address in
    /// every answer (at a lower priority than UDP, so it is the fallback).
    pub ice_tcp: bool,
    /// The ICE-TCP listener's port; `None`: the UDP socket's port number.
    pub tcp_port: Option<u16>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8189),
            announce_ips: Vec::new(),
            announce_hosts: Vec::new(),
            ice_servers: Vec::new(),
            limits: Limits::default(),
            shards: 0,
            ice_tcp: false,
            tcp_port: None,
        }
    }
}
