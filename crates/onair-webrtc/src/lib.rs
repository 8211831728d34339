//! WebRTC media engine for OnAir: WHIP publishers and WHEP players on one muxed UDP port,
//! built on `str0m` (sans-IO WebRTC), bridged to the FLV-tag world of the stream registry.
//!
//! # Shape
//!
//! Pure parts (no tokio, no sockets, tested with tables, proptest and fuzz targets):
//! - [`sdp`]: offer validation and the codec policy (H.264 packetization-mode 1 in
//!   baseline/main/high, Opus) with errors that map to HTTP 400 / 406.
//! - [`convert`]: H.264 access units (Annex-B, SPS/PPS in band) ⇄ FLV video tag bodies
//!   (avcC sequence header + AVCC pictures), and RTP time → the session's ms timeline.
//!   Generic NAL helpers live in `onair_media::nal`.
//! - [`ogg`]: Ogg Opus pages and Opus TOC durations (the audio bridge's pipe format).
//! - [`demux`]: a datagram's session from the STUN `USERNAME`.
//! - [`packetize`]: a stream's frames as RTP payloads (H.264 single NAL / FU-A, Opus),
//!   made once and shared by all of its viewers.
//! - [`framing`]: RFC 4571 length-prefixed packets on an ICE-TCP byte stream.
//!
//! The shell: [`WebRtcEngine`] (one UDP socket, a receive task, N shard tasks that
//! drive the `Rtc`s — SRTP for many viewers takes more than one core — and one pump
//! task per player; with `WebRtcConfig::ice_tcp`, a TCP listener whose connections feed
//! the same shards: see the `tcp` module), [`feed::Feed`] (one reader per played
//! stream, packetising each frame once; players' `Rtc`s run in str0m's RTP mode and are
//! written the shared payloads), and [`bridge::AudioBridge`] (one `ffmpeg` child per stream and
//! direction). str0m negotiates NACK + RTX, PLI/FIR, REMB and transport-wide CC
//! feedback; publishers (browsers) adapt their bitrate to the TWCC feedback str0m sends.
//!
//! # Wiring into the media service (onair-media-server)
//!
//! - **Start**: `WebRtcEngine::start(WebRtcConfig { bind, announce_ips, announce_hosts,
//!   ice_servers, limits, shards, ice_tcp, tcp_port })` once at startup from `[webrtc]`; keep the handle in the
//!   media state; `shutdown()` on exit.
//! - **`POST /whip/{stream}`** (`Content-Type: application/sdp`): check the push
//!   credentials (as for RTMP) → 401; `StreamRegistry::publish` the name (→ 409 when
//!   taken; holding the `Publisher` is what makes the name busy for RTMP too) → then
//!   `engine.publish(sdp, stream, client_ip)`; on `Err(e)` answer `e.http_status()` with
//!   `e.to_string()`. On success answer `201` with the SDP, `Location:
//!   /whip/{stream}/{id}` (`SessionId` prints as hex and parses back), `Link:
//!   <url>; rel="ice-server"` for each [`IceServer`], and spawn one task that reads
//!   `Published::frames`:
//!   - `IngestFrame::Video { timestamp, body }` → `publisher.ingest(TrackKind::Video,
//!     timestamp, body)` (the sequence header comes first and again when SPS/PPS change);
//!   - `IngestFrame::Opus { timestamp, data }` → `AudioBridge::send` of a
//!     [`bridge::BridgeKind::OpusToAac`] bridge started for the stream; a second task moves
//!     `bridge.recv()` packets into `publisher.ingest(TrackKind::Audio, ts, body)` (the
//!     AAC sequence header first). Also keep the Opus packets in a small per-stream
//!     broadcast so WHEP players of a WHIP stream get Opus without a transcode.
//!   - the stream ends (`None`) when the session closes: drop the `Publisher`
//!     (unpublish hooks fire as for RTMP) and the bridge.
//! - **`DELETE /whip/{stream}/{id}`**, **`DELETE /whep/{stream}/{id}`** →
//!   `engine.close(id)`. `OPTIONS` and CORS are the HTTP layer's.
//! - **`POST /whep/{stream}`**: `MediaService::want(stream)` (edges pull), then
//!   `registry.subscribe(stream, Protocol::WebRtc)` (a new counted protocol) and turn the
//!   `Subscription` into a [`FrameSource`]: `Packet`s with `Media::Config(Avc)` or video
//!   frames → `PlayFrame::FlvVideo { timestamp: packet.dts, body: packet.body }`,
//!   `Recv::Skipped` → `PlayFrame::Gap`, end of stream → end of the source. Audio: for a
//!   WHIP-published stream the Opus broadcast above; for an RTMP stream, one shared
//!   [`bridge::BridgeKind::AacToOpus`] bridge per stream (started with its first WHEP
//!   viewer, fed the AAC `Packet::body`s with `dts`) whose output is broadcast to the
//!   stream's WHEP viewers as `PlayFrame::Opus`. Merge video and audio into one source
//!   (e.g. `futures_util::stream::select`) and start the stream's one shared
//!   [`Feed`] on it (`Feed::spawn`; reuse it while `is_live()`: it stops by itself a
//!   few seconds after its last viewer). Then `engine.play(sdp, stream, ip, feed)`;
//!   answer as for WHIP. The registry subscription of the feed is uncounted; count
//!   each viewer instead.
//! - **Keyframes**: a WHEP viewer starts at the feed's last keyframe, and re-starts
//!   there when it falls behind the feed's ring or sends PLI/FIR (at most every 2 s).
//!   For a WHIP source the engine also sends the publisher a PLI (rate-limited by
//!   `Limits::pli_interval`); `Playing::keyframe_wanted` is bumped each time and closes
//!   when the session ends. `engine.request_keyframe(stream)` asks a WHIP
//!   publisher from anywhere (e.g. a snapshot, or SRS's `pli_for_rtmp` periodic PLI so
//!   HLS segments stay short for browser publishers with long GOPs).
//! - **Stats**: `engine.sessions()` / `engine.stats(id)` give per-session state, RTT,
//!   loss, bytes, bitrates, NACKs/PLIs both ways, frames and drops; group by
//!   `SessionStats::stream` for `/api/v1/streams/{name}` and low-cardinality gauges in
//!   `/metrics` (sessions by role/state, summed NACK/PLI counters).
//!
//! # Timing
//!
//! Each track's first packet's arrival anchors it on the session's ms timeline and its
//! RTP clock advances it ([`convert::TrackClock`]): inter-track sync is as good as the
//! arrival skew of the first packets (browsers start both together); RTCP sender reports
//! are not used yet. WebRTC H.264 from browsers has no B-frames, so FLV composition
//! offsets are 0; a publisher that sends B-frames over WebRTC would get decode order =
//! arrival order with pts = dts (a known limitation). Playback sends video at pts
//! (`dts + cts`) on a 90 kHz clock and Opus at its ms timestamp on 48 kHz.
//!
//! # Bounds
//!
//! Sessions: total, per client IP, players per stream; one publisher per stream
//! ([`Limits`]). ICE + DTLS must complete within `connect_timeout`, and a session that
//! receives nothing for `idle_timeout` is closed (both 30 s by default); str0m's own ICE
//! consent checks end dead sessions sooner. Queues: see the `engine` and `bridge`
//! module headers (each says what happens when full); ICE-TCP connections (total, per
//! IP, first-frame and write timeouts, byte-bounded writers): the `tcp` module header.
pub mod bridge;
pub mod config;
pub mod convert;
pub mod demux;
pub mod engine;
pub mod error;
pub mod feed;
pub mod framing;
pub mod ogg;
pub mod packetize;
pub mod sdp;
pub mod sendbatch;
mod session;
pub mod stats;
mod tcp;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use config::{IceServer, Limits, WebRtcConfig};
pub use engine::{
    FrameSource, IngestFrame, IngestStream, PlayFrame, Playing, Published, SessionId, TrackKind, WebRtcEngine,
};
pub use error::EngineError;
pub use feed::Feed;
pub use sendbatch::UdpStats;
pub use stats::{SessionState, SessionStats, Transport};
pub use tcp::TcpStats;
