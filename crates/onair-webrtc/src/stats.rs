//! Per-session statistics: what `/api/v1/streams/{name}` and `/metrics` show about WebRTC
//! sessions. Filled by the engine task from str0m's periodic stats events (every second)
//! and read by anyone through a short lock.

use std::net::IpAddr;
use std::time::Duration;

use crate::sdp::Role;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Answer sent; ICE/DTLS not done yet.
    Connecting,
    /// ICE and DTLS done: media flows.
    Connected,
    /// Closed (by the client, the API, a timeout or an error).
    Closed,
}

/// The transport a session's media flows on (its selected ICE candidate pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The UDP port.
    Udp,
    /// An ICE-TCP connection.
    Tcp,
}

impl Transport {
    /// `"udp"` or `"tcp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// A session's numbers. Counters are totals since the session started.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStats {
    /// Publisher (WHIP) or player (WHEP).
    pub role: Role,
    /// The stream published or played.
    pub stream: String,
    /// The client's IP (from the HTTP request).
    pub client_ip: IpAddr,
    /// Life cycle state.
    pub state: SessionState,
    /// UDP or ICE-TCP, once ICE has selected a pair (updated with the stats, every
    /// second).
    pub transport: Option<Transport>,
    /// Round-trip time from RTCP, when known.
    pub rtt: Option<Duration>,
    /// Fraction of packets lost on the way in (publisher) or out (player), 0..1.
    pub loss: Option<f32>,
    /// UDP payload bytes received.
    pub bytes_rx: u64,
    /// UDP payload bytes sent.
    pub bytes_tx: u64,
    /// Receive bitrate over the last stats interval, bit/s.
    pub bitrate_rx: u64,
    /// Send bitrate over the last stats interval, bit/s.
    pub bitrate_tx: u64,
    /// Sender-side bandwidth estimate (players), bit/s.
    pub bwe_tx: Option<u64>,
    /// NACKs we sent (publisher: asking the client to resend).
    pub nacks_sent: u64,
    /// NACKs we received (player: the client asked us to resend).
    pub nacks_received: u64,
    /// PLIs/FIRs we sent (keyframe requests to a publisher).
    pub plis_sent: u64,
    /// PLIs/FIRs we received (keyframe requests from a player).
    pub plis_received: u64,
    /// Frames handed on (publisher: to the consumer; player: to str0m).
    pub frames: u64,
    /// Frames dropped by a full queue or while waiting for a keyframe.
    pub frames_dropped: u64,
    /// How long ICE + DTLS took, once connected.
    pub connect_time: Option<Duration>,
}

impl SessionStats {
    pub(crate) fn new(role: Role, stream: String, client_ip: IpAddr) -> SessionStats {
        SessionStats {
            role,
            stream,
            client_ip,
            state: SessionState::Connecting,
            transport: None,
            rtt: None,
            loss: None,
            bytes_rx: 0,
            bytes_tx: 0,
            bitrate_rx: 0,
            bitrate_tx: 0,
            bwe_tx: None,
            nacks_sent: 0,
            nacks_received: 0,
            plis_sent: 0,
            plis_received: 0,
            frames: 0,
            frames_dropped: 0,
            connect_time: None,
        }
    }
}
