//! Fuzzes the STUN USERNAME reader that demultiplexes the shared UDP port: it sees every
//! datagram anyone sends to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_webrtc::demux::stun_local_ufrag;

fuzz_target!(|data: &[u8]| {
    let _ = stun_local_ufrag(data);
});
