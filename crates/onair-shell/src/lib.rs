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
