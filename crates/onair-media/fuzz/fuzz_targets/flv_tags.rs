//! FLV stream demuxing and H.264/AAC tag body parsing.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use onair_media::flv::{self, FlvDemuxer};
use onair_media::frame::TrackKind;

fuzz_target!(|data: &[u8]| {
    let mut d = FlvDemuxer::new();
    let mut body = flv::file_header(true, true).to_vec();
    body.extend_from_slice(data);
    for piece in body.chunks(97) {
        d.push(piece);
        loop {
            match d.next_tag() {
                Ok(Some(tag)) => {
                    let kind = if tag.tag_type == flv::TAG_VIDEO { TrackKind::Video } else { TrackKind::Audio };
                    let _ = flv::parse_media(kind, &tag.body, u64::from(tag.timestamp));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let raw = Bytes::copy_from_slice(data);
    let _ = flv::parse_video(&raw);
    let _ = flv::parse_audio(&raw);
});
