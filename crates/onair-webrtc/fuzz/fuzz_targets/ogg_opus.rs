//! Fuzzes the Ogg reader and the Opus TOC parser: both read what an ffmpeg child writes
//! (and the TOC parser reads publishers' Opus packets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_webrtc::ogg::{OggReader, opus_packet_samples};

fuzz_target!(|data: &[u8]| {
    let _ = opus_packet_samples(data);
    let mut r = OggReader::new();
    for chunk in data.chunks(97) {
        r.push(chunk);
        while let Ok(Some(p)) = r.next_packet() {
            let _ = opus_packet_samples(&p.data);
        }
    }
});
