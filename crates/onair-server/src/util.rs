//! Small shell helpers: the wall clock and OS randomness, the only two inputs the
//! core never reads itself.

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
