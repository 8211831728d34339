//! TLSSigAPIv2 UserSig: the credential every Tencent Cloud Chat client logs in with and
//! every REST admin call carries (docs/cloud-compat.md, "UserSig").
//!
//! Format: `base64*(zlib(json))`, where `base64*` is standard Base64 with `+ / =` replaced
//! by `* - _`, and the JSON holds `TLS.identifier`, `TLS.sdkappid`, `TLS.time`,
//! `TLS.expire`, optional `TLS.userbuf` and `TLS.sig` = Base64(HMAC-SHA256(key, lines)).
//! Minting must match the official `tls-sig-api-v2-*` libraries so app backends can keep
//! using them against OnAir, and verification must accept whatever those libraries emit:
//! any zlib level, padded or unpadded Base64, spaces in the JSON (python `json.dumps`),
//! and numbers that some ports write as strings.
//!
//! The input is attacker-controlled and reaches us before authentication, so decoding is
//! bounded (input length and inflated size are capped) and never panics.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default UserSig lifetime of the official libraries: 180 days.
pub const DEFAULT_USERSIG_EXPIRE_SECS: u64 = 180 * 86400;

/// Longest UserSig string we try to decode. Real ones are 150–400 characters; the cap
/// only stops us from Base64-decoding megabytes that could never be valid.
const MAX_USERSIG_LEN: usize = 16 * 1024;

/// Cap on the inflated JSON. A zip bomb is cut off here instead of allocating without
/// bound; genuine documents are a few hundred bytes.
const MAX_INFLATED_LEN: usize = 16 * 1024;

/// Standard alphabet, padding optional: some encoders strip the trailing `_`.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A UserSig that passed [`verify_usersig`], with the fields it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUserSig {
    /// `TLS.identifier`: the user (or admin) the UserSig was issued to.
    pub identifier: String,
    /// `TLS.sdkappid`.
    pub sdkappid: u64,
    /// `TLS.time`: issue time, Unix seconds.
    pub time: u64,
    /// `TLS.expire`: lifetime in seconds, counted from `time`.
    pub expire: u64,
    /// `TLS.userbuf` decoded from Base64 (e.g. a TRTC PrivateMapKey), if present.
    pub userbuf: Option<Vec<u8>>,
}

impl VerifiedUserSig {
    /// Last second (Unix) at which the UserSig is still valid: `time + expire`.
    pub fn expires_at(&self) -> u64 {
        self.time.saturating_add(self.expire)
    }
}

/// Why a UserSig was rejected; [`UserSigError::code`] gives the Tencent error code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UserSigError {
    /// No UserSig was supplied (70002).
    #[error("UserSig is empty")]
    Empty,
    /// The UserSig could not be decoded; the text says which layer failed (70003).
    #[error("UserSig is malformed: {0}")]
    Malformed(String),
    /// The HMAC does not match: wrong key or tampered fields (70003).
    #[error("UserSig signature check failed")]
    BadSignature,
    /// The UserSig was valid until `expired_at` (Unix seconds) (70001).
    #[error("UserSig expired at {expired_at}")]
    Expired {
        /// `TLS.time + TLS.expire`.
        expired_at: u64,
    },
    /// The UserSig was issued to a different identifier (70013).
    #[error("UserSig identifier does not match the requested identifier")]
    IdentifierMismatch,
    /// The UserSig was issued for a different SDKAppID (70014).
    #[error("UserSig SDKAppID does not match this application")]
    AppMismatch,
}

impl UserSigError {
    /// The Tencent Cloud Chat error code a client sees for this failure.
    pub fn code(&self) -> u32 {
        match self {
            UserSigError::Empty => 70002,
            UserSigError::Malformed(_) | UserSigError::BadSignature => 70003,
            UserSigError::Expired { .. } => 70001,
            UserSigError::IdentifierMismatch => 70013,
            UserSigError::AppMismatch => 70014,
        }
    }
}

fn malformed(what: &str) -> UserSigError {
    UserSigError::Malformed(what.to_owned())
}

/// The JSON document, in the field order the official libraries use. A struct (not a
/// map) keeps that order stable and makes the serialisation infallible in practice.
#[derive(Serialize)]
struct SigDoc<'a> {
    #[serde(rename = "TLS.ver")]
    ver: &'static str,
    #[serde(rename = "TLS.identifier")]
    identifier: &'a str,
    #[serde(rename = "TLS.sdkappid")]
    sdkappid: u64,
    #[serde(rename = "TLS.expire")]
    expire: u64,
    #[serde(rename = "TLS.time")]
    time: u64,
    #[serde(rename = "TLS.userbuf", skip_serializing_if = "Option::is_none")]
    userbuf: Option<&'a str>,
    #[serde(rename = "TLS.sig")]
    sig: &'a str,
}

/// The text that is HMAC'ed. Numbers are passed as text so verification can sign exactly
/// what was decoded (a port that wrote `"TLS.time":"0170"` signed `0170`, not `170`).
fn content_to_sign(identifier: &str, sdkappid: &str, time: &str, expire: &str, userbuf_b64: Option<&str>) -> String {
    let mut s = format!("TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n");
    if let Some(ub) = userbuf_b64 {
        s.push_str("TLS.userbuf:");
        s.push_str(ub);
        s.push('\n');
    }
    s
}

fn hmac_for(key: &str) -> HmacSha256 {
    // HMAC is defined for keys of every length (long keys are hashed first), so this
    // constructor cannot fail; the Result only exists because the trait is generic.
    #[allow(clippy::expect_used)]
    <HmacSha256 as Mac>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length")
}

/// Mints a TLSSigAPIv2 UserSig, byte-compatible with `tencentyun/tls-sig-api-v2-*`.
///
/// The JSON document and `TLS.sig` are identical to the official libraries' output. The
/// outer string can still differ from Python's, because flate2's Rust deflater picks
/// different (equally valid) compressed bytes than C zlib; every official verifier
/// inflates, so this does not matter on the wire.
///
/// `now_secs` becomes `TLS.time`; the UserSig is valid until `now_secs + expire_secs`.
pub fn gen_usersig(sdkappid: u64, key: &str, identifier: &str, expire_secs: u64, now_secs: u64) -> String {
    gen_inner(sdkappid, key, identifier, expire_secs, now_secs, None)
}

/// Like [`gen_usersig`] but also embeds `userbuf` (as `TLS.userbuf`, standard Base64),
/// which is covered by the signature. An empty `userbuf` is still embedded, as the
/// official libraries do.
pub fn gen_usersig_with_userbuf(
    sdkappid: u64,
    key: &str,
    identifier: &str,
    expire_secs: u64,
    now_secs: u64,
    userbuf: &[u8],
) -> String {
    gen_inner(sdkappid, key, identifier, expire_secs, now_secs, Some(userbuf))
}

fn gen_inner(sdkappid: u64, key: &str, identifier: &str, expire: u64, time: u64, userbuf: Option<&[u8]>) -> String {
    let userbuf_b64 = userbuf.map(|b| STANDARD.encode(b));
    let content = content_to_sign(
        identifier,
        &sdkappid.to_string(),
        &time.to_string(),
        &expire.to_string(),
        userbuf_b64.as_deref(),
    );
    let mut mac = hmac_for(key);
    mac.update(content.as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    let doc = SigDoc { ver: "2.0", identifier, sdkappid, expire, time, userbuf: userbuf_b64.as_deref(), sig: &sig };
    // Serialising a struct of strings and integers into a Vec cannot fail.
    let json = serde_json::to_vec(&doc).unwrap_or_default();
    let compressed = zlib_compress(&json);
    STANDARD
        .encode(compressed)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

fn zlib_compress(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), true);
    // zlib's worst-case expansion is tiny; the loop below grows the buffer if ever needed.
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 64);
    loop {
        let consumed = usize::try_from(c.total_in()).unwrap_or(data.len());
        let rest = data.get(consumed..).unwrap_or(&[]);
        match c.compress_vec(rest, &mut out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) | Err(_) => break,
            Ok(_) => out.reserve(out.capacity().max(64)),
        }
    }
    out
}

/// Inflates a zlib stream, refusing to produce more than [`MAX_INFLATED_LEN`] bytes and
/// rejecting streams that end early (a truncated UserSig must not half-decode).
fn zlib_inflate_bounded(data: &[u8]) -> Result<Vec<u8>, UserSigError> {
    let mut d = Decompress::new(true);
    // One extra byte of room tells "exactly at the cap" apart from "over the cap".
    let mut out = Vec::with_capacity(MAX_INFLATED_LEN + 1);
    loop {
        let consumed = usize::try_from(d.total_in()).map_err(|_| malformed("zlib"))?;
        let rest = data.get(consumed..).unwrap_or(&[]);
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status =
            d.decompress_vec(rest, &mut out, FlushDecompress::Finish).map_err(|_| malformed("invalid zlib data"))?;
        if out.len() > MAX_INFLATED_LEN {
            return Err(malformed("inflated document too large"));
        }
        if status == Status::StreamEnd {
            return Ok(out);
        }
        if d.total_in() == in_before && d.total_out() == out_before {
            return Err(malformed("truncated zlib data"));
        }
    }
}

/// Reads an unsigned integer field that may be a JSON number or a numeric string.
/// Returns the value and its text as it appeared, for re-signing.
fn uint_field(doc: &serde_json::Map<String, Value>, name: &str) -> Result<(u64, String), UserSigError> {
    match doc.get(name) {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok((v, v.to_string())),
            None => Err(UserSigError::Malformed(format!("{name} is not an unsigned integer"))),
        },
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<u64>()
            .map(|v| (v, s.clone()))
            .map_err(|_| UserSigError::Malformed(format!("{name} is out of range"))),
        Some(_) => Err(UserSigError::Malformed(format!("{name} is not an unsigned integer"))),
        None => Err(UserSigError::Malformed(format!("{name} is missing"))),
    }
}

/// Verifies a UserSig for `identifier` in app `sdkappid` at time `now_secs`.
///
/// Checks run in the order of the official Go/PHP verifiers (docs/cloud-compat.md, "UserSig"), so the
/// client sees the same code as from Tencent: decode (70002/70003), SDKAppID (70014),
/// identifier (70013), expiry `now > time + expire` (70001), then the HMAC recomputed
/// over the fields exactly as decoded, compared in constant time (70003).
pub fn verify_usersig(
    sdkappid: u64,
    key: &str,
    identifier: &str,
    usersig: &str,
    now_secs: u64,
) -> Result<VerifiedUserSig, UserSigError> {
    let usersig = usersig.trim_matches(|c: char| c.is_ascii_whitespace());
    if usersig.is_empty() {
        return Err(UserSigError::Empty);
    }
    if usersig.len() > MAX_USERSIG_LEN {
        return Err(malformed("too long"));
    }
    // Padding is optional (and `_` is the URL-safe spelling of `=`); any padding left in
    // the middle of the string is rejected by the decoder below.
    let std_b64: String = usersig
        .trim_end_matches(['_', '='])
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            c => c,
        })
        .collect();
    let compressed = LENIENT_STANDARD.decode(std_b64.as_bytes()).map_err(|_| malformed("invalid base64"))?;
    let json = zlib_inflate_bounded(&compressed)?;
    let doc: Value = serde_json::from_slice(&json).map_err(|_| malformed("invalid JSON"))?;
    let Value::Object(doc) = doc else {
        return Err(malformed("JSON is not an object"));
    };

    let (sig_app, sig_app_text) = uint_field(&doc, "TLS.sdkappid")?;
    let sig_identifier = match doc.get("TLS.identifier") {
        Some(Value::String(s)) => s.clone(),
        // Some ports serialise numeric identifiers as numbers; they sign the same digits.
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(malformed("TLS.identifier is not a string")),
        None => return Err(malformed("TLS.identifier is missing")),
    };
    let (time, time_text) = uint_field(&doc, "TLS.time")?;
    let (expire, expire_text) = uint_field(&doc, "TLS.expire")?;
    let userbuf_b64 = match doc.get("TLS.userbuf") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(malformed("TLS.userbuf is not a string")),
    };
    let sig_b64 = match doc.get("TLS.sig") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(malformed("TLS.sig is not a string")),
        None => return Err(malformed("TLS.sig is missing")),
    };

    if sig_app != sdkappid {
        return Err(UserSigError::AppMismatch);
    }
    if sig_identifier != identifier {
        return Err(UserSigError::IdentifierMismatch);
    }
    let expired_at = time.saturating_add(expire);
    if now_secs > expired_at {
        return Err(UserSigError::Expired { expired_at });
    }

    let sig = LENIENT_STANDARD.decode(sig_b64.trim_end_matches('=')).map_err(|_| malformed("TLS.sig is not base64"))?;
    let userbuf = match userbuf_b64 {
        Some(ub) => Some(
            LENIENT_STANDARD.decode(ub.trim_end_matches('=')).map_err(|_| malformed("TLS.userbuf is not base64"))?,
        ),
        None => None,
    };
    let content = content_to_sign(&sig_identifier, &sig_app_text, &time_text, &expire_text, userbuf_b64);
    let mut mac = hmac_for(key);
    mac.update(content.as_bytes());
    mac.verify_slice(&sig).map_err(|_| UserSigError::BadSignature)?;

    Ok(VerifiedUserSig { identifier: sig_identifier, sdkappid: sig_app, time, expire, userbuf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        assert_eq!(UserSigError::Empty.code(), 70002);
        assert_eq!(UserSigError::Malformed(String::new()).code(), 70003);
        assert_eq!(UserSigError::BadSignature.code(), 70003);
        assert_eq!(UserSigError::Expired { expired_at: 1 }.code(), 70001);
        assert_eq!(UserSigError::IdentifierMismatch.code(), 70013);
        assert_eq!(UserSigError::AppMismatch.code(), 70014);
        assert_eq!(UserSigError::Expired { expired_at: 1_700_000_000 }.to_string(), "UserSig expired at 1700000000");
    }

    #[test]
    fn inflate_roundtrip_and_truncation() {
        let data = b"hello hello hello hello";
        let z = zlib_compress(data);
        assert_eq!(zlib_inflate_bounded(&z).as_deref(), Ok(&data[..]));
        for cut in 0..z.len() {
            assert!(zlib_inflate_bounded(z.get(..cut).unwrap_or_default()).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn inflate_cap() {
        let exact = vec![b'a'; MAX_INFLATED_LEN];
        assert_eq!(zlib_inflate_bounded(&zlib_compress(&exact)).map(|v| v.len()), Ok(MAX_INFLATED_LEN));
        let over = vec![b'a'; MAX_INFLATED_LEN + 1];
        assert!(zlib_inflate_bounded(&zlib_compress(&over)).is_err());
    }
}
