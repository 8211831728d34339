//! Fuzzes the H.264 converters: access units from a WebRTC publisher (Annex-B) and FLV
//! video tag bodies from the registry (any RTMP publisher's bytes).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_webrtc::convert::{FlvPlayback, H264Ingest};

fuzz_target!(|data: &[u8]| {
    let mut ingest = H264Ingest::new();
    let mut play = FlvPlayback::new();
    // Split the input into a few units so state carries between calls.
    for chunk in data.split(|&b| b == 0xa5) {
        let out = ingest.push(chunk, chunk.first().is_some_and(|b| b & 1 == 1));
        for body in out.bodies {
            let _ = play.push(&body);
        }
        let _ = play.push(&Bytes::copy_from_slice(chunk));
    }
});
