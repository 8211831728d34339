//! Fuzz target for the WebSocket frame decoder: any bytes must yield a request or a
//! coded error, never a panic, and an error must carry a cloud code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = onair_proto::decode_request(data) {
        assert!(e.rejection.code.number() >= 10_000);
    }
});
