//! Cross-checks against Tencent's official Python library, PyPI `tls-sig-api-v2`
//! (module `TLSSigAPIv2`, class `TLSSigAPIv2(sdkappid, key)`, methods
//! `gen_sig(identifier, expire)` and `gen_sig_with_userbuf(identifier, expire, userbuf)`).
//!
//! Fixed vectors only pin what somebody once computed; this test proves that UserSigs
//! minted by the code app backends actually run are accepted by OnAir, and that UserSigs
//! OnAir mints carry the HMAC the official code would compute.
//!
//! The package must be installed (`pip install tls-sig-api-v2`; CI does). A missing
//! package is a failure, not a skip, so the cross-check can never silently stop running.
//! Set `PYTHON` to choose the interpreter (default `python3`).

use onair_auth::*;
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::{Command, Stdio};

const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const APP: u64 = 1_400_000_000;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs `script` with `input` as JSON on stdin and parses its stdout as JSON.
fn run_python(script: &str, input: &Value) -> Value {
    let probe = Command::new(python()).args(["-c", "import TLSSigAPIv2"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the official package is not importable; run `pip install tls-sig-api-v2` \
             (python said: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run `{}` ({e}); install python3 and `pip install tls-sig-api-v2`", python()),
    }

    let mut child = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child.stdin.take().expect("stdin is piped").write_all(input.to_string().as_bytes()).expect("write to python");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

fn identifiers() -> Vec<&'static str> {
    vec![
        "alice",
        "0",
        "administrator",
        "用户甲",
        "ユーザー😀",
        "with space",
        r#"quote"and\backslash"#,
        "a_very_long_identifier_of_thirty2",
    ]
}

/// Python mints with a frozen clock (the library reads `time.time()` internally).
const MINT_SCRIPT: &str = r#"
import json, sys, types
import TLSSigAPIv2 as m
out = []
for c in json.load(sys.stdin):
    m.time = types.SimpleNamespace(time=lambda t=c["time"]: float(t))
    api = m.TLSSigAPIv2(c["sdkappid"], c["key"])
    if c.get("userbuf") is None:
        sig = api.gen_sig(c["identifier"], c["expire"])
    else:
        sig = api.gen_sig_with_userbuf(c["identifier"], c["expire"], bytes.fromhex(c["userbuf"]))
    out.append(sig)
print(json.dumps(out))
"#;

#[test]
fn python_minted_usersigs_verify() {
    let time = 1_700_000_000u64;
    let mut cases = Vec::new();
    for id in identifiers() {
        for expire in [0u64, 1, 60, 86_400, DEFAULT_USERSIG_EXPIRE_SECS] {
            cases.push(json!({"sdkappid": APP, "key": KEY, "identifier": id, "expire": expire, "time": time}));
        }
    }
    for userbuf in ["", "616263", "00ff10203040"] {
        cases.push(json!({"sdkappid": APP, "key": KEY, "identifier": "alice", "expire": 3600, "time": time, "userbuf": userbuf}));
    }
    // A non-hex, non-ASCII key and another app.
    cases.push(
        json!({"sdkappid": 20_000_001u64, "key": "clé-secrète", "identifier": "bob", "expire": 600, "time": time}),
    );

    let sigs = run_python(MINT_SCRIPT, &Value::Array(cases.clone()));
    let sigs = sigs.as_array().expect("list of sigs");
    assert_eq!(sigs.len(), cases.len());

    for (case, sig) in cases.iter().zip(sigs) {
        let sig = sig.as_str().expect("sig string");
        let app = case["sdkappid"].as_u64().expect("app");
        let key = case["key"].as_str().expect("key");
        let id = case["identifier"].as_str().expect("id");
        let expire = case["expire"].as_u64().expect("expire");
        let userbuf = case.get("userbuf").map(|h| hex::decode(h.as_str().expect("hex")).expect("hex"));

        let v = verify_usersig(app, key, id, sig, time + expire.min(1))
            .unwrap_or_else(|e| panic!("python sig for {case} rejected: {e}"));
        assert_eq!(v, VerifiedUserSig { identifier: id.to_owned(), sdkappid: app, time, expire, userbuf }, "{case}");
        assert!(verify_usersig(app, key, id, sig, time + expire).is_ok(), "{case}");
        assert_eq!(
            verify_usersig(app, key, id, sig, time + expire + 1),
            Err(UserSigError::Expired { expired_at: time + expire }),
            "{case}"
        );
        assert_eq!(verify_usersig(app, "wrong", id, sig, time), Err(UserSigError::BadSignature), "{case}");
        assert_eq!(verify_usersig(app + 1, key, id, sig, time), Err(UserSigError::AppMismatch), "{case}");
        assert_eq!(
            verify_usersig(app, key, &format!("{id}x"), sig, time),
            Err(UserSigError::IdentifierMismatch),
            "{case}"
        );
    }
}

#[test]
fn python_minted_with_real_clock_verifies_now() {
    let script = r#"
import json, sys, TLSSigAPIv2
c = json.load(sys.stdin)
print(json.dumps(TLSSigAPIv2.TLSSigAPIv2(c["sdkappid"], c["key"]).gen_sig(c["identifier"])))
"#;
    let before = now();
    let sig = run_python(script, &json!({"sdkappid": APP, "key": KEY, "identifier": "realtime"}));
    let after = now();
    let sig = sig.as_str().expect("sig");
    let v = verify_usersig(APP, KEY, "realtime", sig, after).expect("valid now");
    assert!((before..=after).contains(&v.time));
    // The library's default lifetime is ours.
    assert_eq!(v.expire, DEFAULT_USERSIG_EXPIRE_SECS);
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Python decodes our UserSig with the package's own `base64_decode_url`, inflates and
/// parses it, and recomputes the HMAC with the package's private `__hmacsha256`.
const CHECK_SCRIPT: &str = r#"
import base64, json, sys, zlib
import TLSSigAPIv2 as m
out = []
for c in json.load(sys.stdin):
    raw = zlib.decompress(m.base64_decode_url(c["usersig"].encode()))
    doc = json.loads(raw)
    api = m.TLSSigAPIv2(doc["TLS.sdkappid"], c["key"])
    hm = getattr(api, "_TLSSigAPIv2__hmacsha256", None)
    if hm is None:
        raise SystemExit("TLSSigAPIv2 no longer has the private __hmacsha256 method")
    expected = hm(doc["TLS.identifier"], doc["TLS.time"], doc["TLS.expire"], doc.get("TLS.userbuf")).decode()
    ub = doc.get("TLS.userbuf")
    out.append({
        "ver": doc["TLS.ver"],
        "identifier": doc["TLS.identifier"],
        "sdkappid": doc["TLS.sdkappid"],
        "time": doc["TLS.time"],
        "expire": doc["TLS.expire"],
        "userbuf": None if ub is None else base64.b64decode(ub).hex(),
        "sig": doc["TLS.sig"],
        "expected_sig": expected,
        "keys": sorted(doc.keys()),
    })
print(json.dumps(out))
"#;

#[test]
fn our_usersigs_check_out_in_python() {
    let mut cases = Vec::new();
    let mut want = Vec::new();
    for (i, id) in identifiers().into_iter().enumerate() {
        for (j, expire) in [1u64, 86_400, DEFAULT_USERSIG_EXPIRE_SECS].into_iter().enumerate() {
            let time = 1_600_000_000 + (i * 10 + j) as u64;
            let userbuf: Option<Vec<u8>> = match j {
                0 => None,
                1 => Some(b"abc".to_vec()),
                _ => Some(vec![0, 1, 254, 255]),
            };
            let (app, key) = if i % 2 == 0 { (APP, KEY) } else { (20_000_001, "clé-secrète") };
            let usersig = match &userbuf {
                None => gen_usersig(app, key, id, expire, time),
                Some(b) => gen_usersig_with_userbuf(app, key, id, expire, time, b),
            };
            cases.push(json!({"usersig": usersig, "key": key}));
            want.push((id, app, time, expire, userbuf.map(hex::encode)));
        }
    }

    let got = run_python(CHECK_SCRIPT, &Value::Array(cases));
    let got = got.as_array().expect("list");
    assert_eq!(got.len(), want.len());
    for (g, (id, app, time, expire, userbuf)) in got.iter().zip(want) {
        assert_eq!(g["ver"], "2.0", "{g}");
        assert_eq!(g["identifier"], id, "{g}");
        assert_eq!(g["sdkappid"].as_u64(), Some(app), "{g}");
        assert_eq!(g["time"].as_u64(), Some(time), "{g}");
        assert_eq!(g["expire"].as_u64(), Some(expire), "{g}");
        assert_eq!(g["userbuf"].as_str().map(str::to_owned), userbuf, "{g}");
        assert_eq!(g["sig"], g["expected_sig"], "HMAC differs from python's: {g}");
    }
}
