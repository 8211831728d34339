//! The GOP cache: everything since the last video keyframe, so a new viewer starts
//! decoding at once instead of waiting up to a whole GOP for the next keyframe.
//!
//! Generic over the cached item (the server caches its pre-muxed, refcounted
//! packets). Capped in frames and bytes: a publisher that never sends a keyframe
//! (or sends enormous GOPs) cannot grow it without bound; when a cap is hit the cache
//! empties and waits for the next keyframe (SRS's `gop_cache_max_frames` does the same).

use std::collections::VecDeque;

/// Caps of a [`GopCache`].
#[derive(Debug, Clone, Copy)]
pub struct GopLimits {
    /// Most items kept.
    pub max_frames: usize,
    /// Most payload bytes kept.
    pub max_bytes: usize,
}

impl Default for GopLimits {
    fn default() -> Self {
        // SRS's default frame cap; 16 MiB is ~25 s at 5 Mbit/s.
        GopLimits { max_frames: 2500, max_bytes: 16 * 1024 * 1024 }
    }
}

/// Frames since the last keyframe.
#[derive(Debug)]
pub struct GopCache<T> {
    items: VecDeque<T>,
    bytes: usize,
    started: bool,
    limits: GopLimits,
}

impl<T: Clone> GopCache<T> {
    /// An empty cache.
    pub fn new(limits: GopLimits) -> GopCache<T> {
        GopCache { items: VecDeque::new(), bytes: 0, started: false, limits }
    }

    /// Adds a frame. `start` marks a point a decoder can start from (a video keyframe,
    /// or any frame of an audio-only stream): the cache restarts there. Frames before
    /// the first start point are not kept (a viewer could not decode them).
    pub fn push(&mut self, item: T, bytes: usize, start: bool) {
        if start {
            self.items.clear();
            self.bytes = 0;
            self.started = true;
        }
        if !self.started {
            return;
        }
        if self.items.len() + 1 > self.limits.max_frames || self.bytes + bytes > self.limits.max_bytes {
            self.clear();
            return;
        }
        self.items.push_back(item);
        self.bytes += bytes;
    }

    /// Forgets everything until the next start point.
    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
        self.started = false;
    }

    /// The cached items, oldest (the keyframe) first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// A copy of the cached items (cheap when `T` is refcounted).
    pub fn snapshot(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    /// Items cached.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Payload bytes cached.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn keeps_from_the_last_keyframe() {
        let mut g = GopCache::new(GopLimits::default());
        g.push("a0", 1, false); // before any keyframe: useless to a viewer
        assert!(g.is_empty());
        g.push("k1", 10, true);
        g.push("p1", 2, false);
        g.push("k2", 10, true);
        g.push("p2", 2, false);
        assert_eq!(g.snapshot(), vec!["k2", "p2"]);
        assert_eq!(g.bytes(), 12);
    }

    #[test]
    fn caps_empty_the_cache_until_the_next_keyframe() {
        let mut g = GopCache::new(GopLimits { max_frames: 3, max_bytes: 100 });
        g.push(1, 1, true);
        g.push(2, 1, false);
        g.push(3, 1, false);
        g.push(4, 1, false);
        assert!(g.is_empty());
        g.push(5, 1, false);
        assert!(g.is_empty(), "waits for a keyframe after overflowing");
        g.push(6, 60, true);
        g.push(7, 60, false);
        assert!(g.is_empty(), "byte cap");
    }

    proptest! {
        #[test]
        fn always_starts_at_a_keyframe_and_stays_bounded(frames in proptest::collection::vec((any::<bool>(), 0usize..50), 0..500)) {
            let limits = GopLimits { max_frames: 40, max_bytes: 500 };
            let mut g = GopCache::new(limits);
            for (i, (key, size)) in frames.iter().enumerate() {
                g.push((i, *key), *size, *key);
                prop_assert!(g.len() <= limits.max_frames && g.bytes() <= limits.max_bytes);
                if let Some(first) = g.iter().next() { prop_assert!(first.1); }
            }
        }
    }
}
