//! RTMP timestamps past their wrap.
//!
//! RTMP and FLV carry 32-bit millisecond timestamps (the chunk header's 24-bit field
//! plus the extended-timestamp field above 2^24 ms ≈ 4.66 h, handled by the chunk
//! layer). They wrap after 2^32 ms ≈ 49.7 days. Muxers need a monotonic 64-bit
//! timeline, so each track's timestamps are unwrapped here: the difference to the
//! previous value is read as a signed 32-bit step, which also tolerates the small
//! backward steps encoders produce between interleaved frames.

/// Unwraps one track's 32-bit timestamps into a 64-bit timeline.
#[derive(Debug, Clone, Default)]
pub struct TimestampExtender {
    last: Option<(u32, u64)>,
}

impl TimestampExtender {
    /// A fresh track.
    pub fn new() -> TimestampExtender {
        TimestampExtender::default()
    }

    /// The 64-bit timestamp of `ts`.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => u64::from(ts),
            Some((prev, prev_ext)) => {
                let step = i64::from(ts.wrapping_sub(prev) as i32);
                // A backward step below zero is clamped: a timeline never goes negative.
                prev_ext.checked_add_signed(step).unwrap_or(0)
            }
        };
        self.last = Some((ts, ext));
        ext
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn crosses_the_32_bit_wrap() {
        let mut x = TimestampExtender::new();
        assert_eq!(x.extend(u32::MAX - 10), u64::from(u32::MAX) - 10);
        assert_eq!(x.extend(5), (1u64 << 32) + 5);
        assert_eq!(x.extend(3), (1u64 << 32) + 3, "small step back");
        assert_eq!(x.extend(40), (1u64 << 32) + 40);
    }

    #[test]
    fn long_session_past_the_24_bit_field() {
        // 5 hours of 33 ms frames: past 0xFFFFFF ms (4.66 h) nothing special happens.
        let mut x = TimestampExtender::new();
        let mut last = 0;
        for i in 0..(5 * 3600 * 30u64) {
            let t = i * 33;
            last = x.extend(t as u32);
            assert_eq!(last, t);
        }
        assert!(last > 0xFF_FFFF);
    }

    proptest! {
        #[test]
        fn recovers_any_monotonic_timeline(start in any::<u64>().prop_map(|s| s % (1u64 << 40)), steps in proptest::collection::vec(0u64..100_000, 1..200)) {
            let mut x = TimestampExtender::new();
            let mut t = start;
            prop_assert_eq!(x.extend(t as u32), t % (1u64 << 32));
            let base = t - t % (1u64 << 32);
            for s in steps {
                t += s;
                prop_assert_eq!(x.extend(t as u32) + base, t);
            }
        }
    }
}
