//! The RTMP chunk stream and command decoding of a connection past its handshake:
//! arbitrary bytes, fed in arbitrary pieces, must give events or an error, and every
//! request is accepted so the publish/play paths run too.
//!
//! `rml_rtmp` panics on some malformed commands (found by this target within
//! seconds, e.g. a short AMF0 command: `amf0_command.rs:35`); `ServerConn` catches
//! those and fails the one connection, which is the behaviour under test. So a panic
//! *inside rml_rtmp* is allowed to unwind to that guard here (libFuzzer's hook would
//! abort on it). Set `ONAIR_FUZZ_STRICT=1` to abort on every panic instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_media::rtmp::{RtmpEvent, ServerConn};

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("ONAIR_FUZZ_STRICT").is_some() {
            return;
        }
        let strict = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_rml = std::backtrace::Backtrace::force_capture().to_string().contains("rml_");
            if !in_rml {
                strict(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    init();
    let mut out = Vec::new();
    let Ok(mut conn) = ServerConn::after_handshake(&mut out) else { return };
    // The first byte picks the piece size, so split chunk headers get exercised.
    let Some((&step, rest)) = data.split_first() else { return };
    for piece in rest.chunks(usize::from(step).max(1)) {
        out.clear();
        match conn.feed(piece, &mut out) {
            Ok(events) => {
                for e in events {
                    if let RtmpEvent::ConnectRequested { request_id, .. }
                    | RtmpEvent::PublishRequested { request_id, .. }
                    | RtmpEvent::PlayRequested { request_id, .. } = e
                    {
                        let _ = conn.accept(request_id, &mut out);
                    }
                }
            }
            Err(_) => return,
        }
    }
});
