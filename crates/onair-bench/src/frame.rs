//! Just enough WebSocket framing for cheap viewers (RFC 6455, client side).
//!
//! The load tool must cost less CPU than the server it measures, so most
//! viewers never decode JSON: [`Scanner`] walks server frame headers over raw
//! bytes as they come off the socket, counts how often a pattern (`"seq":`)
//! occurs in text payloads, even across read and frame boundaries, and hands
//! back only what needs an answer (Ping, Close, tiny text messages such as
//! Engine.IO's `2`). It is sans-IO: fed bytes, it keeps about 200 bytes of
//! state per connection. [`parse_frame`] and [`client_frame`] serve the
//! connect phase, where whole frames are buffered.

use memchr::memmem::Finder;

/// Opcodes we care about.
pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;

/// Text messages at most this long are handed back whole (for `2` pings).
pub const SMALL_TEXT: usize = 16;

/// What the caller must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server pinged; answer with a Pong carrying this payload.
    Ping(Vec<u8>),
    /// The server closed the connection (status code, 0 if none).
    Close(u16, String),
    /// A complete text message of at most [`SMALL_TEXT`] bytes.
    SmallText(Vec<u8>),
    /// The stream is not valid server-to-client WebSocket framing.
    Protocol(&'static str),
}

/// Counters a group of scanners adds to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Pattern occurrences in text messages (= chat messages).
    pub msgs: u64,
    /// Complete data messages (= WebSocket text/binary messages).
    pub frames: u64,
    /// Payload bytes of data frames.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Broken,
}

/// Streaming server-frame scanner; see the module docs.
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    hdr: [u8; 14],
    hdr_len: u8,
    opcode: u8,
    fin: bool,
    remaining: u64,
    /// Opcode of the data message in progress (text or binary).
    msg_opcode: u8,
    msg_len: u64,
    ctrl: Vec<u8>,
    prefix: [u8; SMALL_TEXT],
    carry: [u8; 8],
    carry_len: u8,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Self {
            state: State::Header,
            hdr: [0; 14],
            hdr_len: 0,
            opcode: 0,
            fin: false,
            remaining: 0,
            msg_opcode: 0,
            msg_len: 0,
            ctrl: Vec::new(),
            prefix: [0; SMALL_TEXT],
            carry: [0; 8],
            carry_len: 0,
        }
    }

    /// Feeds bytes read from the socket. `finder` holds the pattern (at most
    /// 9 bytes long); events that need an answer are pushed to `events`.
    pub fn feed(&mut self, data: &[u8], finder: &Finder<'_>, counts: &mut Counts, events: &mut Vec<Event>) {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Broken => return,
                State::Header => {
                    let need = self.header_len_needed();
                    let have = self.hdr_len as usize;
                    if have < need {
                        let take = (need - have).min(data.len() - i);
                        self.hdr[have..have + take].copy_from_slice(&data[i..i + take]);
                        self.hdr_len += take as u8;
                        i += take;
                    }
                    // The needed length may grow once the second byte is known.
                    if (self.hdr_len as usize) == self.header_len_needed() && self.hdr_len >= 2 {
                        self.start_frame(counts, events);
                    }
                }
                State::Payload => {
                    let take = (self.remaining.min((data.len() - i) as u64)) as usize;
                    let chunk = &data[i..i + take];
                    if self.opcode >= 0x8 {
                        if self.ctrl.len() + chunk.len() <= 125 {
                            self.ctrl.extend_from_slice(chunk);
                        }
                    } else {
                        self.data_chunk(chunk, finder, counts);
                    }
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.finish_frame(counts, events);
                    }
                }
            }
        }
    }

    fn header_len_needed(&self) -> usize {
        if self.hdr_len < 2 {
            return 2;
        }
        let b1 = self.hdr[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn start_frame(&mut self, counts: &mut Counts, events: &mut Vec<Event>) {
        let b0 = self.hdr[0];
        let b1 = self.hdr[1];
        self.fin = b0 & 0x80 != 0;
        self.opcode = b0 & 0x0f;
        if b1 & 0x80 != 0 {
            self.state = State::Broken;
            events.push(Event::Protocol("masked server frame"));
            return;
        }
        self.remaining = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.hdr[2..10]);
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        match self.opcode {
            OP_CONT => {
                if self.msg_opcode == 0 {
                    self.state = State::Broken;
                    events.push(Event::Protocol("continuation without a message"));
                    return;
                }
            }
            0x1 | 0x2 => {
                self.msg_opcode = self.opcode;
                self.msg_len = 0;
                self.carry_len = 0;
            }
            0x8..=0xa => {
                if self.remaining > 125 || !self.fin {
                    self.state = State::Broken;
                    events.push(Event::Protocol("bad control frame"));
                    return;
                }
                self.ctrl.clear();
            }
            _ => {
                self.state = State::Broken;
                events.push(Event::Protocol("unknown opcode"));
                return;
            }
        }
        self.state = State::Payload;
        if self.remaining == 0 {
            self.finish_frame(counts, events);
        }
    }

    fn data_chunk(&mut self, chunk: &[u8], finder: &Finder<'_>, counts: &mut Counts) {
        counts.bytes += chunk.len() as u64;
        let start = self.msg_len as usize;
        if start < SMALL_TEXT {
            let n = (SMALL_TEXT - start).min(chunk.len());
            self.prefix[start..start + n].copy_from_slice(&chunk[..n]);
        }
        self.msg_len += chunk.len() as u64;
        if self.msg_opcode != OP_TEXT {
            return;
        }
        let m = finder.needle().len();
        debug_assert!((1..=9).contains(&m));
        // Matches that straddle the previous chunk: they must start in the
        // carried tail (< m bytes), so they all lie in carry ++ chunk[..m-1].
        let carry_len = self.carry_len as usize;
        if carry_len > 0 {
            let mut joint = [0u8; 16];
            let head = (m - 1).min(chunk.len());
            joint[..carry_len].copy_from_slice(&self.carry[..carry_len]);
            joint[carry_len..carry_len + head].copy_from_slice(&chunk[..head]);
            counts.msgs += finder.find_iter(&joint[..carry_len + head]).count() as u64;
        }
        counts.msgs += finder.find_iter(chunk).count() as u64;
        // New carry: the last m-1 bytes of carry ++ chunk.
        let keep = m - 1;
        if chunk.len() >= keep {
            self.carry[..keep].copy_from_slice(&chunk[chunk.len() - keep..]);
            self.carry_len = keep as u8;
        } else {
            let mut joint = [0u8; 16];
            joint[..carry_len].copy_from_slice(&self.carry[..carry_len]);
            joint[carry_len..carry_len + chunk.len()].copy_from_slice(chunk);
            let total = carry_len + chunk.len();
            let n = total.min(keep);
            self.carry[..n].copy_from_slice(&joint[total - n..total]);
            self.carry_len = n as u8;
        }
    }

    fn finish_frame(&mut self, counts: &mut Counts, events: &mut Vec<Event>) {
        match self.opcode {
            OP_PING => events.push(Event::Ping(std::mem::take(&mut self.ctrl))),
            OP_CLOSE => {
                let (code, reason) = if self.ctrl.len() >= 2 {
                    (
                        u16::from_be_bytes([self.ctrl[0], self.ctrl[1]]),
                        String::from_utf8_lossy(&self.ctrl[2..]).into_owned(),
                    )
                } else {
                    (0, String::new())
                };
                events.push(Event::Close(code, reason));
            }
            0xa => {}
            _ => {
                if self.fin {
                    counts.frames += 1;
                    if self.msg_opcode == OP_TEXT && self.msg_len as usize <= SMALL_TEXT {
                        events.push(Event::SmallText(self.prefix[..self.msg_len as usize].to_vec()));
                    }
                    self.msg_opcode = 0;
                    self.carry_len = 0;
                }
            }
        }
        self.state = State::Header;
        self.hdr_len = 0;
    }
}

/// One whole frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: std::ops::Range<usize>,
    /// Bytes the frame occupies in the buffer (header + payload).
    pub len: usize,
}

/// Parses the server frame at the start of `buf`, if it is complete.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, &'static str> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        return Err("masked server frame");
    }
    let (len, hdr) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).map_err(|_| "frame too long")?;
    if len > 64 << 20 {
        return Err("frame too long");
    }
    if buf.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some(Frame { fin: buf[0] & 0x80 != 0, opcode: buf[0] & 0x0f, payload: hdr..hdr + len, len: hdr + len }))
}

/// Encodes a masked client frame. Any mask is valid for the server; the key
/// only has to vary, so callers pass a counter.
pub fn client_frame(opcode: u8, payload: &[u8], mask_seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key = mask_seed.wrapping_mul(0x9E37_79B9).to_be_bytes();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let n = payload.len();
        if n < 126 {
            out.push(n as u8);
        } else if n < 65536 {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn push(n: usize) -> Vec<u8> {
        let msgs: Vec<String> =
            (0..n).map(|i| format!(r#"{{"seq":{i},"time":1,"body":[{{"Text":"{}"}}]}}"#, "x".repeat(i * 37))).collect();
        format!(r#"{{"op":"push","roomId":"r","msgs":[{}],"events":[]}}"#, msgs.join(",")).into_bytes()
    }

    fn stream() -> (Vec<u8>, Counts, Vec<Event>) {
        let mut s = Vec::new();
        s.extend(server_frame(true, OP_TEXT, &push(3)));
        s.extend(server_frame(true, OP_PING, b"hi"));
        s.extend(server_frame(true, OP_TEXT, &push(200))); // 64-bit length
        s.extend(server_frame(true, OP_TEXT, b"2"));
        // A fragmented message with a control frame in the middle, split inside the pattern.
        let p = push(5);
        let cut = memchr::memmem::find_iter(&p, b"\"seq\":").nth(2).unwrap_or(0) + 3;
        s.extend(server_frame(false, OP_TEXT, &p[..cut]));
        s.extend(server_frame(true, OP_PING, b""));
        s.extend(server_frame(true, OP_CONT, &p[cut..]));
        s.extend(server_frame(true, 0x2, &vec![b'"'; 70_000]));
        s.extend(server_frame(true, OP_TEXT, b""));
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        s.extend(server_frame(true, OP_CLOSE, &close));
        let payload_bytes = (push(3).len() + push(200).len() + 1 + p.len() + 70_000) as u64;
        let counts = Counts { msgs: 3 + 200 + 5, frames: 6, bytes: payload_bytes };
        let events = vec![
            Event::Ping(b"hi".to_vec()),
            Event::SmallText(b"2".to_vec()),
            Event::Ping(vec![]),
            Event::SmallText(vec![]),
            Event::Close(1001, "bye".into()),
        ];
        (s, counts, events)
    }

    #[test]
    fn counts_are_independent_of_how_reads_split_the_stream() {
        let finder = Finder::new(b"\"seq\":");
        let (s, want_counts, want_events) = stream();
        for chunk in [1usize, 2, 3, 5, 6, 7, 13, 100, 4096, s.len()] {
            let mut sc = Scanner::new();
            let mut counts = Counts::default();
            let mut events = Vec::new();
            for piece in s.chunks(chunk) {
                sc.feed(piece, &finder, &mut counts, &mut events);
            }
            assert_eq!(counts, want_counts, "chunk size {chunk}");
            assert_eq!(events, want_events, "chunk size {chunk}");
        }
    }

    #[test]
    fn masked_server_frames_are_rejected() {
        let finder = Finder::new(b"\"seq\":");
        let mut sc = Scanner::new();
        let mut counts = Counts::default();
        let mut events = Vec::new();
        sc.feed(&[0x81, 0x81, 1, 2, 3, 4, b'x'], &finder, &mut counts, &mut events);
        assert_eq!(events, vec![Event::Protocol("masked server frame")]);
    }

    #[test]
    fn parse_frame_waits_for_whole_frames() {
        let f = server_frame(true, OP_TEXT, &[b'a'; 300]);
        for n in 0..f.len() {
            assert_eq!(parse_frame(&f[..n]), Ok(None));
        }
        let got = parse_frame(&f).ok().flatten();
        assert_eq!(got, Some(Frame { fin: true, opcode: OP_TEXT, payload: 4..304, len: 304 }));
    }

    #[test]
    fn client_frames_are_masked() {
        let f = client_frame(OP_TEXT, b"40", 7);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x82);
        let key = &f[2..6];
        let un: Vec<u8> = f[6..].iter().enumerate().map(|(i, b)| b ^ key[i & 3]).collect();
        assert_eq!(un, b"40");
    }
}
