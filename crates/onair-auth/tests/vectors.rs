//! Fixed test vectors of the cloud's documentation (docs/cloud-compat.md: "Webhook signature", "UserSig", "Push signatures (txSecret)", "Stream callbacks"). These pin the wire
//! formats; if one fails, OnAir stopped being compatible with Tencent's clients.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use onair_auth::*;
use std::io::Read as _;

const APP: u64 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const T0: u64 = 1_569_910_200;
const EXPIRE_180D: u64 = 15_552_000;

const S6_USERSIG: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwjDB4pTsxIKCzBQlK0MTAyiAyKRWFGQWpQLFTU1NjeCiJZm5YDEzS0tDAyOYaHFmOtBM54KsUqeUwGLLqPK8UndHryCL-Lx8-1RPy7Ty1AijMk9f30hLk0x-r3CvSFulWgAPYy*9";
const S6_USERSIG_USERBUF: &str = "eJw9zEELwiAcBfDv4jmGs1lu0GkRUd0chMeWbv2zDdEZg*i7J5a92-s9eC-UnHj2VBZViGQYLWIHqcYJOoic0El9MQYkqvIC--Jd1GzAquCUUvLXCYZoq7LMMUnqnbKt78KvOB-u6Rr6AG299PTq3YP3bOvWR0HZcOO6sbMf7c5TLLXUtdgXwDbo-QEmHTZF";
const ADMIN_USERSIG: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwokpuZl5mcUlRYkl*UVQBcUp2YkFBZkpSlaGJgZQAJFJrSjILEpVsrIwM4EJlWTmAgUMzVEVFmemAw2v9HFM1S43Dw9NDS0tTAqzzNAPiTC3KDUyzA9xz9TOtIwqMCw1DijIizQzsFWqBQC8iDOS";

/// Undoes the container so tests can look at the JSON (test-only helper).
fn inflate_usersig(usersig: &str) -> serde_json::Value {
    let std: String = usersig
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let z = STANDARD.decode(std).expect("vector is valid base64");
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(&z[..]).read_to_end(&mut json).expect("vector is valid zlib");
    serde_json::from_slice(&json).expect("vector is valid JSON")
}

#[test]
fn s6_usersig_without_userbuf_verifies() {
    let v = verify_usersig(APP, KEY, "0", S6_USERSIG, T0 + 1).expect("valid");
    assert_eq!(
        v,
        VerifiedUserSig { identifier: "0".into(), sdkappid: APP, time: T0, expire: EXPIRE_180D, userbuf: None }
    );
    assert_eq!(v.expires_at(), T0 + EXPIRE_180D);
    // Still valid in its last second, expired one second later.
    assert!(verify_usersig(APP, KEY, "0", S6_USERSIG, T0 + EXPIRE_180D).is_ok());
    assert_eq!(
        verify_usersig(APP, KEY, "0", S6_USERSIG, T0 + EXPIRE_180D + 1),
        Err(UserSigError::Expired { expired_at: T0 + EXPIRE_180D })
    );
    let json = inflate_usersig(S6_USERSIG);
    assert_eq!(json["TLS.sig"], "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=");
}

#[test]
fn s6_usersig_with_userbuf_verifies() {
    let v = verify_usersig(APP, KEY, "0", S6_USERSIG_USERBUF, T0 + 1).expect("valid");
    assert_eq!(v.userbuf.as_deref(), Some(&b"abc"[..]));
    assert_eq!((v.time, v.expire, v.sdkappid), (T0, EXPIRE_180D, APP));
    assert_eq!(
        verify_usersig(APP, KEY, "0", S6_USERSIG_USERBUF, T0 + EXPIRE_180D + 1),
        Err(UserSigError::Expired { expired_at: T0 + EXPIRE_180D })
    );
    let json = inflate_usersig(S6_USERSIG_USERBUF);
    assert_eq!(json["TLS.userbuf"], "YWJj");
    assert_eq!(json["TLS.sig"], "bC3u5cuslSg8Ds7KY58mhSkTrxunrFu50dkdkCYH4i8=");
}

#[test]
fn s6_sig_fields_match_our_minting() {
    let ours = inflate_usersig(&gen_usersig(APP, KEY, "0", EXPIRE_180D, T0));
    assert_eq!(ours["TLS.sig"], "CpjuBdQs9ZwnuGAJR8onoOeI9fweX2vIMMY94iOJWJY=");
    assert_eq!(ours, inflate_usersig(S6_USERSIG));

    let ours = inflate_usersig(&gen_usersig_with_userbuf(APP, KEY, "0", EXPIRE_180D, T0, b"abc"));
    assert_eq!(ours["TLS.sig"], "bC3u5cuslSg8Ds7KY58mhSkTrxunrFu50dkdkCYH4i8=");
    assert_eq!(ours, inflate_usersig(S6_USERSIG_USERBUF));
}

#[test]
fn self_computed_administrator_vector() {
    let ours = gen_usersig(APP, KEY, "administrator", 86400, 1_700_000_000);
    let json = inflate_usersig(&ours);
    assert_eq!(json["TLS.sig"], "yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60=");
    assert_eq!(json, inflate_usersig(ADMIN_USERSIG));
    let v = verify_usersig(APP, KEY, "administrator", ADMIN_USERSIG, 1_700_000_000).expect("valid");
    assert_eq!(v.expires_at(), 1_700_086_400);
    assert_eq!(
        verify_usersig(APP, KEY, "administrator", ADMIN_USERSIG, 1_700_086_401),
        Err(UserSigError::Expired { expired_at: 1_700_086_400 })
    );
}

#[test]
fn our_json_is_compact_and_in_official_order() {
    let ours = gen_usersig(APP, KEY, "administrator", 86400, 1_700_000_000);
    let std: String = ours
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect();
    let z = STANDARD.decode(std).expect("base64");
    let mut json = String::new();
    flate2::read::ZlibDecoder::new(&z[..]).read_to_string(&mut json).expect("zlib");
    assert_eq!(
        json,
        r#"{"TLS.ver":"2.0","TLS.identifier":"administrator","TLS.sdkappid":1400000000,"TLS.expire":86400,"TLS.time":1700000000,"TLS.sig":"yLAe+w7WUeUuqbV9h/TX78u21oTGi+i9Zp1u3PpnY60="}"#
    );
}

#[test]
fn chat_webhook_sign_vector() {
    assert_eq!(
        callback_sign("xxxxyyyy", 1_669_872_112),
        "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    );
}

#[test]
fn css_push_vector() {
    let key = "e12c46f2612d5106e2034781ab261ca3";
    assert_eq!(tx_secret(key, "test", "5C271099"), "f85a2ab363fe4deaffef9754d79da6fe");
    let secret = "f85a2ab363fe4deaffef9754d79da6fe";
    assert_eq!(verify_tx_secret(key, "test", secret, "5C271099", 1_546_064_025), Ok(()));
    assert_eq!(
        verify_tx_secret(key, "test", secret, "5C271099", 1_546_064_026),
        Err(TxSecretError::Expired { expired_at: 1_546_064_025 })
    );
    // Uppercase secrets are the same digest.
    assert_eq!(verify_tx_secret(key, "test", &secret.to_uppercase(), "5C271099", 1_546_000_000), Ok(()));
    // The literal txTime is hashed: lowercase hex is the same instant, a different secret.
    assert_eq!(verify_tx_secret(key, "test", secret, "5c271099", 1_546_000_000), Err(TxSecretError::BadSecret));
    let lower = tx_secret(key, "test", "5c271099");
    assert_eq!(verify_tx_secret(key, "test", &lower, "5c271099", 1_546_000_000), Ok(()));
    // Decimal txTime.
    let dec = tx_secret(key, "test", "1546064025");
    assert_eq!(verify_tx_secret(key, "test", &dec, "1546064025", 1_546_064_025), Ok(()));
    assert_eq!(
        verify_tx_secret(key, "test", &dec, "1546064025", 1_546_064_026),
        Err(TxSecretError::Expired { expired_at: 1_546_064_025 })
    );
}

#[test]
fn css_play_vector() {
    let key = "ngoeiq03";
    assert_eq!(tx_secret(key, "test01", "5C01D608"), "ce797dc6238156d548ef945e6ad1ea20");
    assert_eq!(verify_tx_secret(key, "test01", "ce797dc6238156d548ef945e6ad1ea20", "5C01D608", 1_543_624_200), Ok(()));
}

#[test]
fn css_tx_secret_errors() {
    let key = "ngoeiq03";
    let good = "ce797dc6238156d548ef945e6ad1ea20";
    let now = 1_543_000_000;
    let table: &[(&str, &str, &str, TxSecretError)] = &[
        ("test01", "", "5C01D608", TxSecretError::Missing),
        ("test01", good, "", TxSecretError::Missing),
        ("test01", good, "zzzz", TxSecretError::InvalidTime),
        ("test01", good, "+5C01D608", TxSecretError::InvalidTime),
        ("test01", good, "5C01D608 ", TxSecretError::InvalidTime),
        ("test02", good, "5C01D608", TxSecretError::BadSecret),
        ("test01", good, "5C01D609", TxSecretError::BadSecret),
        ("test01", "ce797dc6", "5C01D608", TxSecretError::BadSecret),
        ("test01", "ce797dc6238156d548ef945e6ad1ea2g", "5C01D608", TxSecretError::BadSecret),
    ];
    for (stream, secret, time, want) in table {
        assert_eq!(verify_tx_secret(key, stream, secret, time, now).as_ref(), Err(want), "{stream} {secret} {time}");
    }
    // A forged URL is reported as forged even when it is also expired.
    assert_eq!(verify_tx_secret(key, "test02", good, "5C01D608", u64::MAX), Err(TxSecretError::BadSecret));
}

#[test]
fn css_stream_callback_sign_vector() {
    assert_eq!(stream_callback_sign("mycallbackkey", 1_545_030_873), "37fc751536de18d37f781e3ff8a5d3f2");
}
