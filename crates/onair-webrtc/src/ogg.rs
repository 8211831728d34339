//! Ogg pages for Opus (RFC 3533, RFC 7845): the pipe format between the engine and the
//! `ffmpeg` children of the audio bridge ([`crate::bridge`]).
//!
//! Ogg is the one container where ffmpeg reads and writes raw Opus packets with their
//! timing (the granule position: 48 kHz samples) over a pipe, and it is simple enough to
//! write by hand: a 27-byte header, a lacing table, a CRC. The reader takes bytes from a
//! child process, so it is bounded (one page is at most 65,307 bytes; a packet spanning
//! pages is capped) and never panics (proptest below, fuzzed in
//! `fuzz/fuzz_targets/ogg_opus.rs`). Also here: the Opus TOC byte → samples per packet.

/// Largest packet the reader reassembles across pages; Opus packets are < 1,500 bytes
/// on the wire and at most ~60 KB in theory.
pub const MAX_PACKET: usize = 128 * 1024;
/// Largest payload one page can hold with one packet (255 lacing values of 255, minus one).
pub const MAX_PAGE_PACKET: usize = 255 * 255 - 1;

/// The CRC-32 of Ogg (polynomial 0x04c11db7, not reflected, initial value 0).
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            }
            *slot = r;
        }
        t
    });
    data.iter().fold(0u32, |crc, &b| (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize])
}

/// Writes an Ogg Opus stream, one packet per page (so every packet reaches the reader at
/// once: latency over container efficiency).
#[derive(Debug)]
pub struct OggWriter {
    serial: u32,
    seq: u32,
}

impl OggWriter {
    /// A writer for a logical stream with `serial`.
    pub fn new(serial: u32) -> OggWriter {
        OggWriter { serial, seq: 0 }
    }

    /// The two header pages: `OpusHead` (stereo, 48 kHz, no pre-skip: packets are taken
    /// as they are) and `OpusTags`.
    pub fn headers(&mut self, channels: u8) -> Vec<u8> {
        let mut head = b"OpusHead".to_vec();
        head.push(1);
        head.push(channels);
        head.extend_from_slice(&0u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&5u32.to_le_bytes());
        tags.extend_from_slice(b"onair");
        tags.extend_from_slice(&0u32.to_le_bytes());
        let mut out = self.page(&head, 0, 0x02).unwrap_or_default();
        out.extend(self.page(&tags, 0, 0).unwrap_or_default());
        out
    }

    /// One page holding `packet` whose last sample is `granule` (48 kHz); `None` when the
    /// packet is too large for one page.
    pub fn page(&mut self, packet: &[u8], granule: u64, flags: u8) -> Option<Vec<u8>> {
        if packet.len() > MAX_PAGE_PACKET {
            return None;
        }
        let full = packet.len() / 255;
        let mut out = Vec::with_capacity(27 + full + 1 + packet.len());
        out.extend_from_slice(b"OggS");
        out.push(0);
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push((full + 1) as u8);
        out.extend(std::iter::repeat_n(255u8, full));
        out.push((packet.len() % 255) as u8);
        out.extend_from_slice(packet);
        let crc = crc32(&out);
        out[22..26].copy_from_slice(&crc.to_le_bytes());
        self.seq = self.seq.wrapping_add(1);
        Some(out)
    }
}

/// A packet read from an Ogg stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPacket {
    /// The packet.
    pub data: Vec<u8>,
    /// The granule position of the page the packet ended on, when it is the last packet
    /// completed there (otherwise `None`: Ogg times only a page's last packet).
    pub granule: Option<u64>,
}

/// Why the Ogg stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    /// No `OggS` where a page must start.
    #[error("lost Ogg page sync")]
    Sync,
    /// A page's CRC does not match.
    #[error("Ogg page CRC mismatch")]
    Crc,
    /// A packet spanning pages grew past [`MAX_PACKET`].
    #[error("Ogg packet larger than {MAX_PACKET} bytes")]
    TooLarge,
}

/// Sans-IO Ogg reader: push bytes as they come, pull packets. Memory stays bounded by
/// one page plus one packet under reassembly plus what is pushed between pulls.
#[derive(Debug, Default)]
pub struct OggReader {
    buf: Vec<u8>,
    partial: Vec<u8>,
    ready: std::collections::VecDeque<OggPacket>,
}

impl OggReader {
    /// An empty reader.
    pub fn new() -> OggReader {
        OggReader::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<OggPacket>, OggError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            if !self.read_page()? {
                return Ok(None);
            }
        }
    }

    fn read_page(&mut self) -> Result<bool, OggError> {
        let Some(head) = self.buf.get(..27) else { return Ok(false) };
        if &head[..4] != b"OggS" || head[4] != 0 {
            return Err(OggError::Sync);
        }
        let flags = head[5];
        let granule = u64::from_le_bytes([head[6], head[7], head[8], head[9], head[10], head[11], head[12], head[13]]);
        let crc = u32::from_le_bytes([head[22], head[23], head[24], head[25]]);
        let nseg = usize::from(head[26]);
        let Some(lacing) = self.buf.get(27..27 + nseg) else { return Ok(false) };
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let total = 27 + nseg + body_len;
        if self.buf.len() < total {
            return Ok(false);
        }
        let page: Vec<u8> = self.buf.drain(..total).collect();
        let mut check = page.clone();
        check[22..26].fill(0);
        if crc32(&check) != crc {
            return Err(OggError::Crc);
        }
        if flags & 0x01 == 0 {
            // Not a continuation: anything half-assembled belonged to a lost page.
            self.partial.clear();
        }
        let lacing = &page[27..27 + nseg];
        let mut pos = 27 + nseg;
        let mut completed: Vec<Vec<u8>> = Vec::new();
        for &l in lacing {
            let l = usize::from(l);
            self.partial.extend_from_slice(&page[pos..pos + l]);
            pos += l;
            if self.partial.len() > MAX_PACKET {
                self.partial.clear();
                return Err(OggError::TooLarge);
            }
            if l < 255 {
                completed.push(std::mem::take(&mut self.partial));
            }
        }
        let n = completed.len();
        for (i, data) in completed.into_iter().enumerate() {
            // The granule position -1 means "no packet ends here".
            let g = (i + 1 == n && granule != u64::MAX).then_some(granule);
            self.ready.push_back(OggPacket { data, granule: g });
        }
        Ok(true)
    }
}

/// Samples (at 48 kHz) one Opus packet decodes to, from its TOC byte (RFC 6716 §3.1);
/// `None` for an empty or malformed packet.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = per_frame * frames;
    // RFC 6716: a packet holds at most 120 ms.
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_a_known_page() {
        // The CRC of "OggS" and zeros, cross-checked with ffmpeg's ogg muxer output layout:
        // CRC-32/MPEG-2 style without final xor; the empty input is 0.
        assert_eq!(crc32(&[]), 0);
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn writer_reader_round_trip() {
        let mut w = OggWriter::new(7);
        let mut bytes = w.headers(2);
        let packets: Vec<Vec<u8>> = vec![vec![0xfc, 1, 2], vec![0x78; 255], vec![0x78; 600], vec![]];
        for (i, p) in packets.iter().enumerate() {
            bytes.extend(w.page(p, 960 * (i as u64 + 1), 0).unwrap());
        }
        let mut r = OggReader::new();
        // Byte by byte: the reader must cope with any split.
        let mut got = Vec::new();
        for b in &bytes {
            r.push(std::slice::from_ref(b));
            while let Some(p) = r.next_packet().unwrap() {
                got.push(p);
            }
        }
        assert_eq!(&got[0].data[..8], b"OpusHead");
        assert_eq!(&got[1].data[..8], b"OpusTags");
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(got[i + 2], OggPacket { data: p.clone(), granule: Some(960 * (i as u64 + 1)) });
        }
        assert!(w.page(&vec![0; MAX_PAGE_PACKET + 1], 0, 0).is_none());
    }

    #[test]
    fn reader_errors() {
        let mut r = OggReader::new();
        r.push(b"NotOggS at all, long enough for a page header");
        assert_eq!(r.next_packet(), Err(OggError::Sync));
        let mut w = OggWriter::new(1);
        let mut page = w.page(&[1, 2, 3], 5, 0).unwrap();
        page[28] ^= 0xff;
        let mut r = OggReader::new();
        r.push(&page);
        assert_eq!(r.next_packet(), Err(OggError::Crc));
    }

    #[test]
    fn opus_toc_table() {
        let table: &[(&[u8], Option<u32>)] = &[
            (&[], None),
            (&[0xfc], Some(960)),        // CELT FB 20 ms, one frame (browsers' default)
            (&[0xf0], Some(480)),        // CELT FB 10 ms
            (&[0xfd, 0], Some(1920)),    // two 20 ms frames
            (&[0xff, 0x03], Some(2880)), // code 3, three 20 ms frames
            (&[0xff, 0x07], None),       // seven 20 ms frames = 140 ms > 120 ms
            (&[0xff], None),             // code 3 without its count byte
            (&[0x18], Some(2880)),       // SILK NB 60 ms
            (&[0x60], Some(480)),        // hybrid SWB 10 ms
            (&[0x80], Some(120)),        // CELT NB 2.5 ms
        ];
        for (p, want) in table {
            assert_eq!(opus_packet_samples(p), *want, "{p:02x?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8)) {
            let mut r = OggReader::new();
            for c in &chunks {
                r.push(b"OggS\0");
                r.push(c);
                while let Ok(Some(_)) = r.next_packet() {}
            }
        }

        #[test]
        fn round_trip_any_packets(ps in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1000), 0..6)) {
            let mut w = OggWriter::new(3);
            let mut r = OggReader::new();
            for (i, p) in ps.iter().enumerate() {
                r.push(&w.page(p, i as u64, 0).unwrap());
            }
            for (i, p) in ps.iter().enumerate() {
                let got = r.next_packet().unwrap().unwrap();
                proptest::prop_assert_eq!(&got.data, p);
                proptest::prop_assert_eq!(got.granule, Some(i as u64));
            }
        }
    }
}
