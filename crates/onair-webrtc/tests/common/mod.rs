//! Test peers: a str0m client over a real UDP socket on loopback (the other end of the
//! engine in every test), the H.264 fixture split into access units, and an engine
//! started on port 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use onair_media::nal;
use onair_webrtc::{Limits, WebRtcConfig, WebRtcEngine};
use str0m::change::SdpOffer;

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
        // Two shards whatever the machine: a publisher and its players sit on different
        // ones (ids 1, 2, …), so cross-shard keyframe requests are exercised.
        shards: 2,
        ..WebRtcConfig::default()
    };
    WebRtcEngine::start(cfg).await.unwrap()
}

/// A browser stand-in (the crate's shared test peer; not every test file uses it).
#[allow(unused_imports)]
pub use onair_webrtc::test_util::Peer as Client;

/// An offer str0m would make, for tests that only need the SDP.
pub fn offer_sdp(offer: &SdpOffer) -> String {
    offer.to_sdp_string()
}
