//! Fuzzes SDP offer validation: WHIP/WHEP offers come from anyone who can POST.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_webrtc::sdp::{Role, validate_offer};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = validate_offer(s, Role::Publish);
        let _ = validate_offer(s, Role::Play);
    }
});
