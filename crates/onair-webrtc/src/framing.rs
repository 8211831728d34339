//! RFC 4571 framing for ICE-TCP (RFC 6544): on a TCP connection every STUN, DTLS, RTP
//! and RTCP packet is preceded by its length as a 2-byte big-endian number.
//!
//! [`Deframer`] cuts a byte stream read in arbitrary pieces back into packets. It reads
//! what anyone on the internet sends to the TCP port: no panics, and its buffer never
//! holds more than one incomplete frame plus the last read (proptest below, fuzzed in
//! `fuzz/fuzz_targets/tcp_framing.rs`).

/// The largest packet accepted on an ICE-TCP connection. WebRTC stacks keep every
/// packet under the path MTU even on TCP (they packetise for UDP and switch transports
/// freely), so anything larger is not WebRTC and the connection is closed.
pub const MAX_FRAME: usize = 4096;

/// Why a byte stream is not RFC 4571 framed WebRTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length prefix over the limit.
    #[error("a frame of {0} bytes is over the {1}-byte limit")]
    TooLong(usize, usize),
}

/// Cuts a TCP byte stream into frames: [`Deframer::push`] what was read, then take
/// [`Deframer::next_frame`] until it says `Ok(None)` before pushing more.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Where the unread bytes start in `buf`.
    start: usize,
    max: usize,
}

impl Deframer {
    /// A deframer that refuses frames over `max` bytes.
    pub fn new(max: usize) -> Deframer {
        Deframer { buf: Vec::new(), start: 0, max }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            // Frames taken since the last push leave a hole at the front: close it, so
            // the buffer stays one incomplete frame plus one read long.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed. Zero-length
    /// frames carry nothing and are skipped. After an error the stream is unusable (the
    /// frame boundaries are lost): close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            let avail = self.buf.get(self.start..).unwrap_or_default();
            let Some(&[hi, lo]) = avail.get(..2) else { return Ok(None) };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len > self.max {
                return Err(FrameError::TooLong(len, self.max));
            }
            let Some(frame) = avail.get(2..2 + len) else { return Ok(None) };
            let frame = frame.to_vec();
            self.start += 2 + len;
            if !frame.is_empty() {
                return Ok(Some(frame));
            }
        }
    }

    /// Bytes held (an incomplete frame, or frames not taken yet).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Appends `packet` with its RFC 4571 length prefix to `out`.
pub fn encode_into(out: &mut Vec<u8>, packet: &[u8]) -> Result<(), FrameError> {
    let len = u16::try_from(packet.len()).map_err(|_| FrameError::TooLong(packet.len(), usize::from(u16::MAX)))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frames(d: &mut Deframer) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn table() {
        let mut d = Deframer::new(8);
        // Nothing, one byte of a length, then the rest in pieces.
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[3, b'a']);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[b'b', b'c', 0, 0, 0, 1, b'z']);
        // The zero-length frame between them is skipped.
        assert_eq!(frames(&mut d), Ok(vec![b"abc".to_vec(), b"z".to_vec()]));
        assert_eq!(d.buffered(), 0);
        // Exactly the limit is fine; one over is refused before its body arrives.
        d.push(&[0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(frames(&mut d), Ok(vec![vec![1, 2, 3, 4, 5, 6, 7, 8]]));
        d.push(&[0, 9]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(9, 8)));
        // The largest length a prefix can say.
        let mut d = Deframer::new(MAX_FRAME);
        d.push(&[0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(65535, MAX_FRAME)));
    }

    #[test]
    fn encode() {
        let mut out = Vec::new();
        encode_into(&mut out, b"hi").unwrap();
        encode_into(&mut out, b"").unwrap();
        assert_eq!(out, [0, 2, b'h', b'i', 0, 0]);
        assert_eq!(encode_into(&mut out, &vec![0; 65536]), Err(FrameError::TooLong(65536, 65535)));
    }

    proptest! {
        /// Frames encoded and read back in pieces of any size come out as they went in
        /// (zero-length ones skipped), and the buffer never holds more than an
        /// incomplete frame plus the last piece.
        #[test]
        fn round_trip_in_any_pieces(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(1usize..400, 1..50),
        ) {
            let mut wire = Vec::new();
            for p in &packets {
                encode_into(&mut wire, p).unwrap();
            }
            let mut d = Deframer::new(300);
            let mut got = Vec::new();
            let mut rest = wire.as_slice();
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                i += 1;
                let (piece, tail) = rest.split_at(n);
                d.push(piece);
                prop_assert!(d.buffered() <= 2 + 300 + n);
                got.extend(frames(&mut d).unwrap());
                rest = tail;
            }
            let want: Vec<Vec<u8>> = packets.into_iter().filter(|p| !p.is_empty()).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(d.buffered(), 0);
        }

        /// Arbitrary bytes never panic, and an error is the only way out of a bad length.
        #[test]
        fn garbage_never_panics(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..20),
        ) {
            let mut d = Deframer::new(64);
            for p in pieces {
                d.push(&p);
                match frames(&mut d) {
                    Ok(fs) => {
                        for f in fs {
                            prop_assert!(!f.is_empty() && f.len() <= 64);
                        }
                        prop_assert!(d.buffered() <= 2 + 64 + p.len());
                    }
                    Err(FrameError::TooLong(n, 64)) => {
                        prop_assert!(n > 64);
                        return Ok(());
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
            }
        }
    }
}
