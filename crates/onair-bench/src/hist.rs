//! A small log-linear histogram of microsecond values that workers can ship
//! to the parent as JSON and that merges by adding buckets.
//!
//! Values below 64 are exact; above, each power of two is split into 32
//! buckets, so a reported percentile is within about 3 % of the truth.

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;
const BUCKETS: usize = (LINEAR + 58 * SUB) as usize;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    /// Sparse `[bucket, count]` pairs when serialized.
    #[serde(with = "sparse")]
    counts: Vec<u64>,
    pub n: u64,
    pub max: u64,
    pub sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], n: 0, max: 0, sum: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let mantissa = (v >> shift) - SUB;
    (LINEAR + u64::from(shift - 1) * SUB + mantissa) as usize
}

/// The middle of a bucket's value range.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let mantissa = (i - LINEAR) % SUB + SUB;
    let mid = (u128::from(mantissa) << shift) + (1u128 << shift) / 2;
    u64::try_from(mid).unwrap_or(u64::MAX)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        let i = index(v).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.max = self.max.max(v);
        self.sum = self.sum.saturating_add(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// The value at quantile `q` (0..=1), or 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.sum as f64 / self.n as f64 }
    }
}

mod sparse {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(counts: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, u64)> =
            counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| (i, *c)).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let pairs: Vec<(usize, u64)> = Vec::deserialize(d)?;
        let mut counts = vec![0; super::BUCKETS];
        for (i, c) in pairs {
            if let Some(slot) = counts.get_mut(i) {
                *slot += c;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..1_000_000u64).step_by(7).chain([u64::from(u32::MAX), 1 << 50]) {
            let i = index(v);
            assert!(i >= last, "index went down at {v}");
            last = i;
            let mid = value(i) as f64;
            assert!((mid - v as f64).abs() <= (v as f64 * 0.032).max(0.5), "v={v} mid={mid}");
        }
        assert!(index(1 << 50) < BUCKETS);
    }

    #[test]
    fn quantiles_and_merge_survive_json() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in 1..=1000u64 {
            if v % 2 == 0 { a.record(v * 1000) } else { b.record(v * 1000) }
        }
        let a: Histogram = serde_json::from_str(&serde_json::to_string(&a).unwrap_or_default()).unwrap_or_default();
        let mut m = Histogram::default();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.n, 1000);
        assert_eq!(m.max, 1_000_000);
        for (q, want) in [(0.5, 500_000.0), (0.99, 990_000.0), (1.0, 1_000_000.0)] {
            let got = m.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.035, "q={q} got={got}");
        }
    }
}
