//! Fuzzes the H.264 NAL framing helpers (Annex-B / AVCC splitting, avcC building): they
//! read bytes a WebRTC or RTMP publisher controls.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_media::nal;

fuzz_target!(|data: &[u8]| {
    let _ = nal::split_annexb(data);
    if let Some((&size, rest)) = data.split_first() {
        let _ = nal::split_avcc(rest, size % 5);
        let units = nal::split_annexb(rest);
        if let [sps, pps, ..] = units.as_slice() {
            let _ = nal::avcc_record(sps, pps);
        }
    }
});
