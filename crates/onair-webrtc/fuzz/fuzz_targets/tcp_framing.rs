//! Fuzzes the RFC 4571 deframer of the ICE-TCP port: it sees every byte anyone sends
//! to it, in pieces of any size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_webrtc::framing::{Deframer, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut d = Deframer::new(MAX_FRAME);
    // The first byte picks the read size, so reads that split frames anywhere are tried.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for piece in data.chunks(step) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => assert!(!f.is_empty() && f.len() <= MAX_FRAME),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(d.buffered() <= 2 + MAX_FRAME + piece.len());
    }
});
