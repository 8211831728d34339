//! Error paths of `verify_usersig`: every code, the order in which checks run, hostile
//! inputs (garbage, truncation, zip bombs), and property tests for round-tripping and
//! for never panicking.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use hmac::{Hmac, Mac};
use onair_auth::*;
use proptest::prelude::*;
use sha2::Sha256;
use std::io::Write as _;

const APP: u64 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const NOW: u64 = 1_700_000_000;

/// Wraps arbitrary bytes in the UserSig container (zlib at `level`, then `* - _` Base64).
fn container(json: &[u8], level: u32) -> String {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(json).expect("in-memory write");
    let z = enc.finish().expect("in-memory finish");
    STANDARD.encode(z).replace('+', "*").replace('/', "-").replace('=', "_")
}

fn hmac_b64(key: &str, content: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key");
    mac.update(content.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn good() -> String {
    gen_usersig(APP, KEY, "alice", 86400, NOW)
}

#[test]
fn error_table() {
    let good = good();
    let forged = gen_usersig(APP, "not-the-key", "alice", 86400, NOW);
    let other_app = gen_usersig(APP + 1, KEY, "alice", 86400, NOW);
    // Fields altered after signing: HMAC no longer matches.
    let tampered = container(
        format!(
            r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.expire":999999,"TLS.time":{NOW},"TLS.sig":"{}"}}"#,
            hmac_b64(KEY, &format!("TLS.identifier:alice\nTLS.sdkappid:{APP}\nTLS.time:{NOW}\nTLS.expire:86400\n"))
        )
        .as_bytes(),
        6,
    );
    let short_sig = container(
        format!(
            r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.expire":86400,"TLS.time":{NOW},"TLS.sig":"AAAA"}}"#
        )
        .as_bytes(),
        6,
    );
    let zip_bomb = {
        let mut json = b"{\"TLS.identifier\":\"".to_vec();
        json.extend(std::iter::repeat_n(b'a', 8 * 1024 * 1024));
        json.extend(b"\"}");
        container(&json, 9)
    };
    assert!(zip_bomb.len() < 16 * 1024, "bomb must pass the input cap to test inflate");

    let malformed = |s: &str| UserSigError::Malformed(s.to_owned());
    let table: Vec<(&str, String, &str, u64, UserSigError)> = vec![
        ("empty", String::new(), "alice", NOW, UserSigError::Empty),
        ("blank", "  \n".into(), "alice", NOW, UserSigError::Empty),
        ("forged", forged, "alice", NOW, UserSigError::BadSignature),
        ("tampered", tampered, "alice", NOW, UserSigError::BadSignature),
        ("short sig", short_sig, "alice", NOW, UserSigError::BadSignature),
        ("wrong app", other_app, "alice", NOW, UserSigError::AppMismatch),
        ("wrong id", good.clone(), "bob", NOW, UserSigError::IdentifierMismatch),
        ("id case", good.clone(), "Alice", NOW, UserSigError::IdentifierMismatch),
        (
            "expired",
            good.clone(),
            "alice",
            NOW + 86401,
            UserSigError::Expired { expired_at: NOW + 86400 },
        ),
        ("garbage", "!!!not base64!!!".into(), "alice", NOW, malformed("invalid base64")),
        ("inner padding", format!("{}_x", &good[..8]), "alice", NOW, malformed("invalid base64")),
        ("not zlib", "aGVsbG8gd29ybGQ".into(), "alice", NOW, malformed("invalid zlib data")),
        ("truncated", good[..good.len() / 2].into(), "alice", NOW, malformed("truncated zlib data")),
        ("zip bomb", zip_bomb, "alice", NOW, malformed("inflated document too large")),
        ("too long", "A".repeat(20_000), "alice", NOW, malformed("too long")),
        ("not json", container(b"hello", 6), "alice", NOW, malformed("invalid JSON")),
        ("json array", container(b"[1,2]", 6), "alice", NOW, malformed("JSON is not an object")),
        ("empty object", container(b"{}", 6), "alice", NOW, malformed("TLS.sdkappid is missing")),
        (
            "negative time",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":-1,"TLS.expire":1,"TLS.sig":"x"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.time is not an unsigned integer"),
        ),
        (
            "float expire",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":1,"TLS.expire":1.5,"TLS.sig":"x"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.expire is not an unsigned integer"),
        ),
        (
            "huge string time",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":"99999999999999999999999","TLS.expire":1,"TLS.sig":"x"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.time is out of range"),
        ),
        (
            "identifier object",
            container(format!(r#"{{"TLS.identifier":{{}},"TLS.sdkappid":{APP},"TLS.time":1,"TLS.expire":1,"TLS.sig":"x"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.identifier is not a string"),
        ),
        (
            "sig missing",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":{NOW},"TLS.expire":1}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.sig is missing"),
        ),
        (
            "sig not base64",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":{NOW},"TLS.expire":1,"TLS.sig":"%%%"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.sig is not base64"),
        ),
        (
            "userbuf not base64",
            container(format!(r#"{{"TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.time":{NOW},"TLS.expire":1,"TLS.userbuf":"%%","TLS.sig":"AAAA"}}"#).as_bytes(), 6),
            "alice",
            NOW,
            malformed("TLS.userbuf is not base64"),
        ),
    ];
    for (name, sig, id, now, want) in table {
        let got = verify_usersig(APP, KEY, id, &sig, now);
        assert_eq!(got.as_ref().map(|_| ()), Err(&want), "case {name}");
        let code = want.code();
        let expected_code = match name {
            "empty" | "blank" => 70002,
            "wrong app" => 70014,
            "wrong id" | "id case" => 70013,
            "expired" => 70001,
            _ => 70003,
        };
        assert_eq!(code, expected_code, "case {name}");
    }
}

#[test]
fn check_order_matches_tencent() {
    // App before identifier before expiry before signature.
    let s = gen_usersig(APP + 1, "other-key", "alice", 10, NOW);
    assert_eq!(verify_usersig(APP, KEY, "bob", &s, NOW + 100), Err(UserSigError::AppMismatch));
    let s = gen_usersig(APP, "other-key", "alice", 10, NOW);
    assert_eq!(verify_usersig(APP, KEY, "bob", &s, NOW + 100), Err(UserSigError::IdentifierMismatch));
    assert_eq!(verify_usersig(APP, KEY, "alice", &s, NOW + 100), Err(UserSigError::Expired { expired_at: NOW + 10 }));
    assert_eq!(verify_usersig(APP, KEY, "alice", &s, NOW), Err(UserSigError::BadSignature));
}

#[test]
fn every_truncation_is_rejected() {
    let good = good();
    // Dropping only padding is "missing padding", which is accepted; anything shorter
    // loses data and must be rejected.
    let data_len = good.trim_end_matches('_').len();
    for cut in 0..data_len {
        let prefix = &good[..cut];
        let err = verify_usersig(APP, KEY, "alice", prefix, NOW).expect_err("truncated");
        let want = if cut == 0 { 70002 } else { 70003 };
        assert_eq!(err.code(), want, "cut {cut}: {err}");
    }
}

#[test]
fn lenient_encodings_are_accepted() {
    let good = good();
    // Missing padding.
    let unpadded = good.trim_end_matches('_');
    assert!(verify_usersig(APP, KEY, "alice", unpadded, NOW).is_ok());
    // Standard alphabet (someone "fixed" the substitutions) and surrounding whitespace.
    let std = good.replace('*', "+").replace('-', "/").replace('_', "=");
    assert!(verify_usersig(APP, KEY, "alice", &format!(" {std}\n"), NOW).is_ok());
}

#[test]
fn any_zlib_level_and_python_style_json_are_accepted() {
    let content = format!("TLS.identifier:alice\nTLS.sdkappid:{APP}\nTLS.time:{NOW}\nTLS.expire:86400\n");
    let sig = hmac_b64(KEY, &content);
    // python json.dumps: spaces after separators, arbitrary key order.
    let json = format!(
        r#"{{"TLS.sig": "{sig}", "TLS.ver": "2.0", "TLS.identifier": "alice", "TLS.sdkappid": {APP}, "TLS.expire": 86400, "TLS.time": {NOW}}}"#
    );
    for level in 0..=9 {
        let s = container(json.as_bytes(), level);
        let v = verify_usersig(APP, KEY, "alice", &s, NOW).expect("valid at any level");
        assert_eq!((v.sdkappid, v.time, v.expire), (APP, NOW, 86400));
    }
}

#[test]
fn numeric_strings_are_accepted_and_signed_as_written() {
    let content =
        format!("TLS.identifier:alice\nTLS.sdkappid:{APP}\nTLS.time:{NOW}\nTLS.expire:86400\nTLS.userbuf:YWJj\n");
    let sig = hmac_b64(KEY, &content);
    let json = format!(
        r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":"{APP}","TLS.expire":"86400","TLS.time":"{NOW}","TLS.userbuf":"YWJj","TLS.sig":"{sig}"}}"#
    );
    let v = verify_usersig(APP, KEY, "alice", &container(json.as_bytes(), 6), NOW).expect("valid");
    assert_eq!(v.userbuf.as_deref(), Some(&b"abc"[..]));
    assert_eq!(v.expires_at(), NOW + 86400);

    // A numeric identifier written as a JSON number signs the same digits.
    let content = format!("TLS.identifier:12345\nTLS.sdkappid:{APP}\nTLS.time:{NOW}\nTLS.expire:60\n");
    let sig = hmac_b64(KEY, &content);
    let json = format!(
        r#"{{"TLS.identifier":12345,"TLS.sdkappid":{APP},"TLS.expire":60,"TLS.time":{NOW},"TLS.sig":"{sig}"}}"#
    );
    let v = verify_usersig(APP, KEY, "12345", &container(json.as_bytes(), 6), NOW).expect("valid");
    assert_eq!(v.identifier, "12345");
}

#[test]
fn userbuf_round_trip_including_empty() {
    for buf in [&b""[..], b"abc", &[0u8, 255, 1, 2, 3][..]] {
        let s = gen_usersig_with_userbuf(APP, KEY, "alice", 60, NOW, buf);
        let v = verify_usersig(APP, KEY, "alice", &s, NOW).expect("valid");
        assert_eq!(v.userbuf.as_deref(), Some(buf));
    }
    let v = verify_usersig(APP, KEY, "alice", &good(), NOW).expect("valid");
    assert_eq!(v.userbuf, None);
}

#[test]
fn default_expire_is_180_days() {
    assert_eq!(DEFAULT_USERSIG_EXPIRE_SECS, 15_552_000);
    let s = gen_usersig(APP, KEY, "alice", DEFAULT_USERSIG_EXPIRE_SECS, NOW);
    let v = verify_usersig(APP, KEY, "alice", &s, NOW).expect("valid");
    assert_eq!(v.expires_at(), NOW + 15_552_000);
}

#[test]
fn expiry_saturates_instead_of_overflowing() {
    let s = gen_usersig(APP, KEY, "alice", u64::MAX, u64::MAX - 5);
    let v = verify_usersig(APP, KEY, "alice", &s, u64::MAX).expect("never expires");
    assert_eq!(v.expires_at(), u64::MAX);
}

proptest! {
    #[test]
    fn gen_then_verify_round_trips(
        sdkappid in any::<u64>(),
        key in ".{0,80}",
        identifier in ".{0,40}",
        expire in 0u64..(1 << 40),
        time in 0u64..(1 << 40),
        elapsed_frac in 0.0f64..=1.0,
        userbuf in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let s = match &userbuf {
            Some(b) => gen_usersig_with_userbuf(sdkappid, &key, &identifier, expire, time, b),
            None => gen_usersig(sdkappid, &key, &identifier, expire, time),
        };
        prop_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || b"*-_".contains(&c)));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let now = time + ((expire as f64) * elapsed_frac) as u64;
        let now = now.min(time + expire);
        let v = verify_usersig(sdkappid, &key, &identifier, &s, now);
        prop_assert_eq!(
            v,
            Ok(VerifiedUserSig { identifier: identifier.clone(), sdkappid, time, expire, userbuf: userbuf.clone() })
        );
        prop_assert_eq!(
            verify_usersig(sdkappid, &key, &identifier, &s, time + expire + 1),
            Err(UserSigError::Expired { expired_at: time + expire })
        );
        let wrong_key = format!("{key}x");
        prop_assert_eq!(
            verify_usersig(sdkappid, &wrong_key, &identifier, &s, time),
            Err(UserSigError::BadSignature)
        );
    }

    #[test]
    fn verify_never_panics_on_arbitrary_strings(s in ".{0,600}") {
        let _ = verify_usersig(APP, KEY, "alice", &s, NOW);
    }

    #[test]
    fn verify_never_panics_on_container_alphabet(s in "[A-Za-z0-9*_=+/-]{0,600}") {
        let r = verify_usersig(APP, KEY, "alice", &s, NOW);
        prop_assert!(r.is_err());
    }

    #[test]
    fn verify_never_panics_on_mutated_usersigs(pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9*_-]") {
        let good = good();
        let i = pos.index(good.len());
        let mut mutated = good.clone();
        mutated.replace_range(i..=i, &c);
        let r = verify_usersig(APP, KEY, "alice", &mutated, NOW);
        if mutated != good {
            // A changed character may decode to an equivalent stream (e.g. padding bits)
            // but must never yield a different accepted identity.
            if let Ok(v) = r {
                prop_assert_eq!(v.identifier, "alice");
                prop_assert_eq!((v.sdkappid, v.time, v.expire), (APP, NOW, 86400));
            }
        }
    }

    #[test]
    fn verify_never_panics_on_arbitrary_json(json in ".{0,300}") {
        let s = container(json.as_bytes(), 6);
        let _ = verify_usersig(APP, KEY, "alice", &s, NOW);
    }

    #[test]
    fn tx_secret_never_panics(secret in ".{0,40}", time in ".{0,24}", now in any::<u64>()) {
        let _ = verify_tx_secret("k", "s", &secret, &time, now);
    }
}
