//! H.264 avcC/SPS and AAC AudioSpecificConfig parsers on arbitrary bytes: no panic, no
//! unbounded allocation; a config that parses must also build an init segment.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_media::codec::{StreamConfig, parse_asc, parse_avcc, parse_sps};
use onair_media::frame::CodecConfig;

fuzz_target!(|data: &[u8]| {
    let _ = parse_sps(data);
    let _ = parse_asc(data);
    if parse_avcc(data).is_ok() {
        let mut s = StreamConfig::default();
        let _ = s.apply(&CodecConfig::Avc { record: Bytes::copy_from_slice(data) });
        let _ = onair_media::fmp4::init_segment(&s);
    }
});
