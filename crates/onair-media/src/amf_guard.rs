//! A shadow reader of the client's RTMP chunk stream that refuses AMF messages able to
//! crash the process before `rml_rtmp` decodes them.
//!
//! `rml_amf0` decodes nested objects recursively: a command of ~20,000 nested objects
//! (80 KB, well under RTMP's 16 MiB message limit) overflows even an 8 MiB stack, and a
//! stack overflow aborts the whole server — `catch_unwind` cannot catch it. So every
//! byte goes through this guard first: it follows chunk headers exactly like the peer's
//! deserializer (chunk size changes included), skips audio/video payloads without
//! copying, reassembles AMF messages (types 15, 17, 18, 20) up to [`MAX_AMF_MESSAGE`]
//! bytes and walks them iteratively, refusing nesting deeper than [`MAX_AMF_DEPTH`].

use std::collections::HashMap;

/// Largest AMF command/data message accepted (real ones are well under 4 KiB).
pub const MAX_AMF_MESSAGE: usize = 64 * 1024;
/// Deepest AMF0 nesting accepted (real messages use 2–3 levels).
pub const MAX_AMF_DEPTH: usize = 32;

#[derive(Clone, Copy, Default)]
struct Csid {
    len: u32,
    type_id: u8,
    ext: bool,
    left: u32,
}

/// See the module docs.
pub struct AmfGuard {
    chunk_size: u32,
    csids: HashMap<u32, Csid>,
    hdr: [u8; 18],
    hdr_len: usize,
    /// (csid, bytes left in this chunk) while inside a payload.
    payload: Option<(u32, u32)>,
    /// AMF payloads being reassembled, per chunk stream.
    amf: HashMap<u32, Vec<u8>>,
}

impl Default for AmfGuard {
    fn default() -> Self {
        AmfGuard::new()
    }
}

fn is_amf(type_id: u8) -> bool {
    matches!(type_id, 15 | 17 | 18 | 20) || type_id == 1
}

impl AmfGuard {
    /// A guard at the start of the chunk stream (chunk size 128).
    pub fn new() -> AmfGuard {
        AmfGuard {
            chunk_size: 128,
            csids: HashMap::new(),
            hdr: [0; 18],
            hdr_len: 0,
            payload: None,
            amf: HashMap::new(),
        }
    }

    fn basic_len(&self) -> usize {
        match self.hdr[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        }
    }

    fn csid(&self, basic: usize) -> u32 {
        match basic {
            2 => 64 + u32::from(self.hdr[1]),
            3 => 64 + u32::from(self.hdr[1]) + 256 * u32::from(self.hdr[2]),
            _ => u32::from(self.hdr[0] & 0x3F),
        }
    }

    /// Total header length once enough of it is buffered to tell.
    fn header_need(&self) -> Option<usize> {
        if self.hdr_len == 0 {
            return None;
        }
        let fmt = usize::from(self.hdr[0] >> 6);
        let basic = self.basic_len();
        if self.hdr_len < basic {
            return None;
        }
        let msg = [11, 7, 3, 0][fmt];
        let ext = if fmt == 3 {
            self.csids.get(&self.csid(basic)).is_some_and(|c| c.ext)
        } else {
            if self.hdr_len < basic + 3 {
                return None;
            }
            self.hdr[basic..basic + 3] == [0xFF, 0xFF, 0xFF]
        };
        Some(basic + msg + if ext { 4 } else { 0 })
    }

    fn start_chunk(&mut self) -> Result<(u32, u32), String> {
        let fmt = self.hdr[0] >> 6;
        let basic = self.basic_len();
        let id = self.csid(basic);
        let mut c = self.csids.get(&id).copied().unwrap_or_default();
        let h = &self.hdr[basic..];
        if fmt <= 2 {
            c.ext = h[0..3] == [0xFF, 0xFF, 0xFF];
        }
        if fmt <= 1 {
            c.len = (u32::from(h[3]) << 16) | (u32::from(h[4]) << 8) | u32::from(h[5]);
            c.type_id = h[6];
            if c.left != 0 {
                // A new header in the middle of a message: the peer's deserializer
                // starts over too; so do we.
                self.amf.remove(&id);
            }
        }
        if c.left == 0 || fmt <= 1 {
            c.left = c.len;
            if is_amf(c.type_id) {
                if c.len as usize > MAX_AMF_MESSAGE {
                    return Err(format!("AMF message of {} bytes exceeds {MAX_AMF_MESSAGE}", c.len));
                }
                self.amf.insert(id, Vec::with_capacity(c.len as usize));
            }
        }
        let in_chunk = c.left.min(self.chunk_size);
        self.csids.insert(id, c);
        Ok((id, in_chunk))
    }

    fn finish_message(&mut self, id: u32) -> Result<(), String> {
        let Some(body) = self.amf.remove(&id) else { return Ok(()) };
        let type_id = self.csids.get(&id).map(|c| c.type_id).unwrap_or(0);
        if type_id == 1 {
            if body.len() >= 4 {
                let size = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7FFF_FFFF;
                self.chunk_size = size.max(1);
            }
            return Ok(());
        }
        // AMF3 commands/data carry one leading format byte before AMF0 values.
        let values = if matches!(type_id, 15 | 17) && !body.is_empty() { &body[1..] } else { &body[..] };
        let top_level = walk_amf0(values, MAX_AMF_DEPTH)?;
        // `rml_rtmp` takes a command's name, transaction id and command object with
        // `drain(..3)`, which panics on fewer values: refuse those here, so a
        // malformed packet is one log line and not a panic per connection.
        if matches!(type_id, 17 | 20) && top_level < 3 {
            return Err(format!("AMF command with {top_level} values (at least 3: name, transaction id, object)"));
        }
        Ok(())
    }

    /// Follows `data` (the bytes after the handshake, in order). An error means the
    /// connection must be dropped without feeding these bytes to `rml_rtmp`.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if let Some((id, left_in_chunk)) = self.payload {
                let k = (left_in_chunk as usize).min(data.len());
                if let Some(buf) = self.amf.get_mut(&id) {
                    buf.extend_from_slice(&data[..k]);
                }
                data = &data[k..];
                let c = self.csids.entry(id).or_default();
                c.left -= k as u32;
                let message_done = c.left == 0;
                self.payload = if k as u32 == left_in_chunk { None } else { Some((id, left_in_chunk - k as u32)) };
                if message_done {
                    self.payload = None;
                    self.finish_message(id)?;
                }
                continue;
            }
            let need = self.header_need().unwrap_or(self.hdr_len + 1);
            let k = (need - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + k].copy_from_slice(&data[..k]);
            self.hdr_len += k;
            data = &data[k..];
            if self.header_need() == Some(self.hdr_len) {
                let (id, in_chunk) = self.start_chunk()?;
                self.hdr_len = 0;
                if in_chunk == 0 {
                    self.finish_message(id)?;
                } else {
                    self.payload = Some((id, in_chunk));
                }
            }
        }
        Ok(())
    }
}

enum Level {
    Object,
    Array(u32),
}

/// Walks AMF0 values without recursion; refuses nesting deeper than `max`.
/// Malformed or truncated input is *not* an error here (the real decoder reports it).
pub fn check_amf0_depth(b: &[u8], max: usize) -> Result<(), String> {
    walk_amf0(b, max).map(|_| ())
}

/// [`check_amf0_depth`], answering how many top-level values begin in `b`.
fn walk_amf0(b: &[u8], max: usize) -> Result<usize, String> {
    let mut top_level = 0usize;
    let mut stack: Vec<Level> = Vec::new();
    let mut pos = 0usize;
    let u16_at = |p: usize| -> Option<usize> { Some(usize::from(u16::from_be_bytes([*b.get(p)?, *b.get(p + 1)?]))) };
    let u32_at = |p: usize| -> Option<u32> {
        Some(u32::from_be_bytes([*b.get(p)?, *b.get(p + 1)?, *b.get(p + 2)?, *b.get(p + 3)?]))
    };
    loop {
        match stack.last_mut() {
            Some(Level::Object) => {
                let Some(klen) = u16_at(pos) else { return Ok(top_level) };
                if klen == 0 && b.get(pos + 2) == Some(&0x09) {
                    stack.pop();
                    pos += 3;
                    continue;
                }
                pos += 2 + klen;
            }
            Some(Level::Array(n)) => {
                if *n == 0 {
                    stack.pop();
                    continue;
                }
                *n -= 1;
            }
            None => top_level += 1,
        }
        let Some(&marker) = b.get(pos) else { return Ok(top_level) };
        pos += 1;
        match marker {
            0x00 => pos += 8,
            0x01 => pos += 1,
            0x02 => pos += 2 + u16_at(pos).unwrap_or(0),
            0x03 => stack.push(Level::Object),
            0x08 => {
                pos += 4;
                stack.push(Level::Object);
            }
            0x0A => {
                let Some(n) = u32_at(pos) else { return Ok(top_level) };
                pos += 4;
                stack.push(Level::Array(n));
            }
            0x05 | 0x06 | 0x0D => {}
            0x07 => pos += 2,
            0x0B => pos += 10,
            0x0C | 0x0F => pos += 4 + u32_at(pos).unwrap_or(0) as usize,
            0x10 => {
                pos += 2 + u16_at(pos).unwrap_or(0);
                stack.push(Level::Object);
            }
            // AMF3 switch and unknown markers: the real decoder deals with them.
            _ => return Ok(top_level),
        }
        if stack.len() > max {
            return Err(format!("AMF0 nesting deeper than {max}"));
        }
        if pos >= b.len() && stack.is_empty() {
            return Ok(top_level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(csid: u8, type_id: u8, body: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = vec![csid, 0, 0, 0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        out.extend_from_slice(&[0, 0, 0, 0]);
        for (i, part) in body.chunks(chunk).enumerate() {
            if i > 0 {
                out.push(0xC0 | csid);
            }
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        let deep = b"\x03\x00\x01a".repeat(40);
        assert!(check_amf0_depth(&deep, MAX_AMF_DEPTH).is_err());
        let mut g = AmfGuard::new();
        assert!(g.feed(&message(3, 20, &deep, 128)).is_err());
        let huge = vec![5u8; MAX_AMF_MESSAGE + 1];
        assert!(AmfGuard::new().feed(&message(3, 20, &huge, 128)).is_err());
    }

    #[test]
    fn real_commands_and_media_pass() {
        let mut props = std::collections::HashMap::new();
        props.insert("app".to_string(), rml_amf0::Amf0Value::Utf8String("live".into()));
        let inner: std::collections::HashMap<String, rml_amf0::Amf0Value> =
            [("x".to_string(), rml_amf0::Amf0Value::Number(1.0))].into_iter().collect();
        props.insert("nested".to_string(), rml_amf0::Amf0Value::Object(inner));
        let body = rml_amf0::serialize(&vec![
            rml_amf0::Amf0Value::Utf8String("connect".into()),
            rml_amf0::Amf0Value::Number(1.0),
            rml_amf0::Amf0Value::Object(props),
            rml_amf0::Amf0Value::StrictArray(vec![rml_amf0::Amf0Value::Null, rml_amf0::Amf0Value::Boolean(true)]),
        ])
        .unwrap_or_default();
        assert_eq!(check_amf0_depth(&body, 2), Ok(()));
        let mut g = AmfGuard::new();
        let mut bytes = message(3, 20, &body, 128);
        // Set chunk size 4096, then a 10 KB video message in 4096-byte chunks.
        bytes.extend_from_slice(&message(2, 1, &4096u32.to_be_bytes(), 128));
        bytes.extend_from_slice(&message(4, 9, &vec![0x17; 10_000], 4096));
        bytes.extend_from_slice(&message(3, 20, &body, 4096));
        for piece in bytes.chunks(7) {
            assert_eq!(g.feed(piece), Ok(()));
        }
        assert_eq!(g.chunk_size, 4096);
        assert!(g.payload.is_none() && g.hdr_len == 0, "ends on a message boundary");
    }

    #[test]
    fn a_command_with_fewer_than_three_values_is_refused() {
        // "connect" and a transaction id, no command object: `rml_rtmp` would panic.
        let mut body = vec![2u8, 0, 7];
        body.extend_from_slice(b"connect");
        body.extend_from_slice(&[0, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        let r = AmfGuard::new().feed(&message(3, 20, &body, 128));
        assert!(matches!(&r, Err(m) if m.contains("2 values")), "{r:?}");
        body.push(5); // null command object
        assert_eq!(AmfGuard::new().feed(&message(3, 20, &body, 128)), Ok(()));
    }
}
