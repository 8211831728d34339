//! What the async shells share: the wall clock and OS randomness (the only two
//! inputs the pure cores never read themselves), the one outbound HTTP client
//! ([`http`]) and webhook delivery with a bounded queue and retries ([`webhook`]).

pub mod http;
pub mod webhook;

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A seed from the OS (falls back to the clock if the OS refuses).
pub fn seed() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => now_ms() ^ 0x5DEE_CE66_D1CE_4E5B,
    }
}

/// `n` random bytes as lowercase hex (secret keys).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        let mut rng = onair_core::random::SplitMix64::new(seed());
        for b in &mut buf {
            *b = onair_core::random::RandomSource::next_u64(&mut rng) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds of a monotonic clock (since the first call in this process): for
/// intervals the cores measure, immune to wall-clock steps.
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// Query keys whose values are credentials (matched as substrings, any case).
const SECRET_QUERY_KEYS: [&str; 7] = ["token", "auth", "key", "secret", "sig", "password", "pass"];

/// `url` fit for logs, errors and the admin console: the userinfo (`user:password@`)
/// and the values of secret-looking query keys (`token`, `auth`, `key`, `secret`,
/// `sig`, `password`) become `***`. Anything that is not a URL is returned as is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v))
                    if !v.is_empty() && SECRET_QUERY_KEYS.iter().any(|s| k.to_ascii_lowercase().contains(s)) =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn userinfo_and_secret_query_values_are_hidden() {
        assert_eq!(redact_url("redis://:hunter2@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redact_url("rediss://user:pw@r.example"), "rediss://***@r.example");
        assert_eq!(
            redact_url("https://u:p@hook.example/cb?auth=abc&room=1&api_key=k&Token=t"),
            "https://***@hook.example/cb?auth=***&room=1&api_key=***&Token=***"
        );
        assert_eq!(
            redact_url("postgres://onair:pw@pg/onair?sslmode=require&password=x"),
            "postgres://***@pg/onair?sslmode=require&password=***"
        );
        assert_eq!(redact_url("http://plain.example/x"), "http://plain.example/x");
        assert_eq!(redact_url(""), "");
        assert_eq!(crate::http::without_query("https://u:p@h.example/x?token=1"), "https://***@h.example/x");
    }
}
