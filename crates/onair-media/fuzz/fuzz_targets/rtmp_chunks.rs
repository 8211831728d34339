//! The RTMP chunk stream and command decoding of a connection past its handshake:
//! arbitrary bytes, fed in arbitrary pieces, must give events or an error, never a
//! panic, and every request is accepted so the publish/play paths run too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_media::rtmp::{RtmpEvent, ServerConn};

fuzz_target!(|data: &[u8]| {
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
