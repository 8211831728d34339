//! Chat (IM) webhook signature. When a callback token is configured, Tencent appends
//! `Sign` and `RequestTime` to the callback URL; app backends verify them, so OnAir must
//! compute them exactly the same way (docs/cloud-compat.md, "Webhook signature").

use sha2::{Digest, Sha256};

/// Chat webhook signature: lowercase hex `SHA-256(token + request_time)`, where
/// `request_time` is rendered as a decimal Unix timestamp in seconds.
///
/// Receivers are expected to reject requests whose `RequestTime` is more than 60 s away
/// from their clock; that policy belongs to the caller.
pub fn callback_sign(token: &str, request_time: u64) -> String {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(request_time.to_string().as_bytes());
    hex::encode(h.finalize())
}
