//! Tencent CSS (live streaming) signatures: push/play hotlink protection and the stream
//! event callback signature (docs/cloud-compat.md, "Push signatures (txSecret)" and "Stream callbacks").
//!
//! Both are plain MD5 over concatenated strings. MD5 is weak, but the format is fixed by
//! the existing push tools, players and app backends that OnAir must stay compatible with.

use md5::{Digest, Md5};

use crate::ct::constant_time_eq;

/// Longest `txTime` accepted: 16 hex digits already cover all of `u64`.
const MAX_TX_TIME_LEN: usize = 20;

/// Why a `txSecret`/`txTime` pair was rejected. Every variant maps to HTTP 403 on the
/// wire; the distinction exists for logs and metrics.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TxSecretError {
    /// `txSecret` or `txTime` is missing (empty).
    #[error("txSecret or txTime is missing")]
    Missing,
    /// `txTime` is neither a hex nor a decimal Unix timestamp.
    #[error("txTime is not a valid hex or decimal timestamp")]
    InvalidTime,
    /// `txSecret` does not match `MD5(key + stream + txTime)`.
    #[error("txSecret does not match")]
    BadSecret,
    /// The URL was correctly signed but its validity ended at `expired_at`.
    #[error("txTime expired at {expired_at}")]
    Expired {
        /// Expiry as Unix seconds, as decoded from `txTime`.
        expired_at: u64,
    },
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// CSS push/play anti-leech secret: lowercase hex `MD5(key + stream + tx_time)`.
///
/// `tx_time` must be the literal string placed in (or taken from) the URL: `5C271099`
/// and `5c271099` are the same instant but give different secrets.
pub fn tx_secret(key: &str, stream: &str, tx_time: &str) -> String {
    md5_hex(&[key.as_bytes(), stream.as_bytes(), tx_time.as_bytes()])
}

/// Parses a `txTime` value.
///
/// Tencent documents `txTime` as hex (either case) but also accepts decimal. The two are
/// ambiguous for all-digit strings, so we use lengths: real hex timestamps have at most 8
/// digits until 2106, real decimal ones have 10 digits from 2001 until 2286. An all-digit
/// string of 9 or more characters is therefore read as decimal, anything else as hex.
fn parse_tx_time(tx_time: &str) -> Option<u64> {
    if tx_time.is_empty() || tx_time.len() > MAX_TX_TIME_LEN {
        return None;
    }
    if tx_time.len() >= 9 && tx_time.bytes().all(|b| b.is_ascii_digit()) {
        return tx_time.parse().ok();
    }
    if !tx_time.bytes().all(|b| b.is_ascii_hexdigit()) {
        // from_str_radix would accept a leading '+', which is not a valid txTime.
        return None;
    }
    u64::from_str_radix(tx_time, 16).ok()
}

/// Verifies a CSS push/play URL's `txSecret` and `txTime` query values.
///
/// The secret is checked (in constant time, hex case-insensitively) before the expiry, so
/// a forged URL is always reported as [`TxSecretError::BadSecret`]. A URL is valid up to
/// and including second `txTime`; it is expired once `now_secs > txTime`. Playback's
/// extra "validity period" is the caller's business: add it to `now_secs`'s tolerance by
/// passing `now_secs - validity`.
pub fn verify_tx_secret(
    key: &str,
    stream: &str,
    tx_secret: &str,
    tx_time: &str,
    now_secs: u64,
) -> Result<(), TxSecretError> {
    if tx_secret.is_empty() || tx_time.is_empty() {
        return Err(TxSecretError::Missing);
    }
    let expires_at = parse_tx_time(tx_time).ok_or(TxSecretError::InvalidTime)?;
    let expected = self::tx_secret(key, stream, tx_time);
    let given = tx_secret.to_ascii_lowercase();
    if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(TxSecretError::BadSecret);
    }
    if now_secs > expires_at {
        return Err(TxSecretError::Expired { expired_at: expires_at });
    }
    Ok(())
}

/// CSS stream event callback signature: lowercase hex `MD5(key + t)`, with `t` (the
/// signature's expiry, Unix seconds) rendered in decimal.
pub fn stream_callback_sign(key: &str, t: u64) -> String {
    md5_hex(&[key.as_bytes(), t.to_string().as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_time_parsing() {
        assert_eq!(parse_tx_time("5C271099"), Some(1_546_064_025));
        assert_eq!(parse_tx_time("5c271099"), Some(1_546_064_025));
        assert_eq!(parse_tx_time("1546064025"), Some(1_546_064_025));
        assert_eq!(parse_tx_time("10"), Some(16));
        assert_eq!(parse_tx_time(""), None);
        assert_eq!(parse_tx_time("+5C27"), None);
        assert_eq!(parse_tx_time("-1"), None);
        assert_eq!(parse_tx_time("xyz"), None);
        assert_eq!(parse_tx_time("FFFFFFFFFFFFFFFFF"), None);
        assert_eq!(parse_tx_time(&"1".repeat(30)), None);
    }
}
