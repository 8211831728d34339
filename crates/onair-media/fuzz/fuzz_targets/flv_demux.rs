//! The FLV demuxer as an edge uses it on an origin's HTTP-FLV body: arbitrary bytes in
//! arbitrary read sizes. Checks that it never panics, never holds more than one capped
//! tag plus one read, and that every tag it yields is written back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onair_media::flv::{self, FlvDemuxer, MAX_TAG_BODY};
use onair_media::rtmp;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, the rest is the stream (after a valid header
    // half of the time, so the tag parser is reached as often as the header check).
    let Some((&first, rest)) = data.split_first() else { return };
    let read = usize::from(first % 64) + 1;
    let mut stream = if first & 0x80 != 0 { flv::file_header(true, true).to_vec() } else { Vec::new() };
    stream.extend_from_slice(rest);
    let mut d = FlvDemuxer::new();
    for piece in stream.chunks(read) {
        d.push(piece);
        loop {
            match d.next_tag() {
                Ok(Some(tag)) => {
                    assert!(tag.body.len() <= MAX_TAG_BODY);
                    let again = flv::write_tag(tag.tag_type, u64::from(tag.timestamp), &tag.body);
                    assert_eq!(again.len(), 11 + tag.body.len() + 4);
                    assert_eq!(&again[11..11 + tag.body.len()], &tag.body[..]);
                    if tag.tag_type == flv::TAG_SCRIPT {
                        let _ = rtmp::parse_metadata_body(&tag.body);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(d.buffered() <= 11 + MAX_TAG_BODY + 4 + read, "buffer grew past one tag and one read");
    }
});
