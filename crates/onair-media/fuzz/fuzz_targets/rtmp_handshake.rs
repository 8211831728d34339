//! The RTMP handshake from the first byte a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_media::rtmp::ServerConn;

fuzz_target!(|data: &[u8]| {
    let mut conn = ServerConn::new();
    let mut out = Vec::new();
    for piece in data.chunks(1537) {
        if conn.feed(piece, &mut out).is_err() {
            return;
        }
    }
});
