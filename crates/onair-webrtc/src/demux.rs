//! Which session a datagram belongs to, before any session looks at it.
//!
//! All sessions share one UDP port. After ICE, a session is found by the remote address
//! (a hash lookup). The first datagram from a new address is a STUN binding request whose
//! `USERNAME` is `<our ufrag>:<their ufrag>` (RFC 8445 §7.2.2): reading our ufrag from it
//! finds the session in one lookup too, instead of asking every session in turn. This
//! parser reads untrusted datagrams from anyone on the internet: bounded, no panics
//! (proptest below, fuzzed in `fuzz/fuzz_targets/stun_username.rs`).

/// STUN magic cookie (RFC 5389 §6).
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// STUN `USERNAME` attribute type.
const USERNAME: u16 = 0x0006;

/// Our ICE ufrag from a STUN message's `USERNAME` (the part before `:`), or `None` when
/// the datagram is not STUN or carries no well-formed username.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    let head = datagram.get(..20)?;
    // STUN: the two top bits are zero and the cookie is in place.
    if head[0] & 0xc0 != 0 || head[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = datagram.get(20..20 + len)?;
    let mut pos = 0;
    while let Some(tl) = body.get(pos..pos + 4) {
        let kind = u16::from_be_bytes([tl[0], tl[1]]);
        let alen = usize::from(u16::from_be_bytes([tl[2], tl[3]]));
        let value = body.get(pos + 4..pos + 4 + alen)?;
        if kind == USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            let (local, _) = s.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        pos += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// The `a=ice-ufrag` of an SDP (our answer): the key the session is found by.
pub fn sdp_ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines().find_map(|l| l.trim_end_matches('\r').strip_prefix("a=ice-ufrag:"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stun(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[7; 12]);
        m.extend(body);
        m
    }

    #[test]
    fn username_table() {
        let ok = stun(&[(0x0024, &[1, 2, 3, 4]), (USERNAME, b"srv1:cli")]);
        assert_eq!(stun_local_ufrag(&ok), Some("srv1"));
        // Padding after an odd-length attribute is skipped.
        let padded = stun(&[(0x8022, b"abc"), (USERNAME, b"x:y")]);
        assert_eq!(stun_local_ufrag(&padded), Some("x"));
        let table: Vec<Vec<u8>> = vec![
            vec![],
            stun(&[]),
            stun(&[(USERNAME, b"nocolon")]),
            stun(&[(USERNAME, b":cli")]),
            stun(&[(USERNAME, &[0xff, b':', b'a'])]),
            {
                let mut rtp = ok.clone();
                rtp[0] = 0x80;
                rtp
            },
            {
                let mut bad = ok.clone();
                bad[4] = 0;
                bad
            },
            ok[..ok.len() - 2].to_vec(),
        ];
        for m in table {
            assert_eq!(stun_local_ufrag(&m), None, "{m:02x?}");
        }
    }

    #[test]
    fn ufrag_from_sdp() {
        assert_eq!(sdp_ice_ufrag("v=0\r\na=ice-ufrag:Ab12\r\na=ice-pwd:x\r\n"), Some("Ab12"));
        assert_eq!(sdp_ice_ufrag("v=0\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = stun_local_ufrag(&data);
            let mut m = data.clone();
            if m.len() >= 8 {
                m[0] &= 0x3f;
                m[4..8].copy_from_slice(&MAGIC);
            }
            let _ = stun_local_ufrag(&m);
        }
    }
}
