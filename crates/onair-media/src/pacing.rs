//! The one pacing and slow-viewer policy of every live output (RTMP play, HTTP-FLV,
//! live fMP4): how often a viewer's socket is written, and when a viewer that cannot
//! keep up is cut.
//!
//! * **Merged writes** (SRS's `mw_latency`): a viewer is written at most once per
//!   `merge_ms`, with everything that arrived meanwhile in one vectored write, up to
//!   [`ViewerPacing::MAX_BATCH`] packets: fewer wakeups and syscalls per viewer for up
//!   to `merge_ms` of added latency.
//! * **Behind twice within the grace → cut**: a viewer that falls behind the stream's
//!   ring skips to the next keyframe (the player sees a jump; the server holds
//!   nothing). Falling behind again within `grace_ms` means its path cannot carry the
//!   stream, and it is disconnected rather than skipped forever. A socket that accepts
//!   nothing for `grace_ms` is cut too (the shell's write timeout).
//!
//! Times are milliseconds of a monotonic clock the shell reads.

/// What to do after a viewer fell behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Skip to the live edge and carry on.
    Skip,
    /// The second time within the grace: disconnect the viewer.
    Cut,
}

/// One viewer's pacing state.
#[derive(Debug, Clone)]
pub struct ViewerPacing {
    grace_ms: u64,
    merge_ms: u64,
    last_skip: Option<u64>,
    last_batch: Option<u64>,
}

impl ViewerPacing {
    /// Most packets merged into one write.
    pub const MAX_BATCH: usize = 256;

    /// A viewer with the stream's `grace_ms` (at least 100) and `merge_ms` (0 =
    /// write every packet at once).
    pub fn new(grace_ms: u64, merge_ms: u64) -> ViewerPacing {
        ViewerPacing { grace_ms: grace_ms.max(100), merge_ms, last_skip: None, last_batch: None }
    }

    /// How long a write may take before the viewer is cut, ms.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// The viewer fell behind the ring at `now`.
    pub fn fell_behind(&mut self, now: u64) -> Behind {
        if self.last_skip.is_some_and(|t| now.saturating_sub(t) < self.grace_ms) {
            return Behind::Cut;
        }
        self.last_skip = Some(now);
        Behind::Skip
    }

    /// How long to let packets gather before the next batch, ms (0 = write now).
    pub fn wait_before_batch(&self, now: u64) -> u64 {
        self.last_batch.map_or(0, |t| (t + self.merge_ms).saturating_sub(now))
    }

    /// A batch was gathered at `now`.
    pub fn batch_taken(&mut self, now: u64) {
        self.last_batch = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_twice_within_the_grace_is_cut() {
        let mut p = ViewerPacing::new(10_000, 100);
        assert_eq!(p.fell_behind(1_000), Behind::Skip);
        assert_eq!(p.fell_behind(10_999), Behind::Cut);
        let mut p = ViewerPacing::new(10_000, 100);
        assert_eq!(p.fell_behind(1_000), Behind::Skip);
        assert_eq!(p.fell_behind(11_000), Behind::Skip, "outside the grace it is a new first time");
        assert_eq!(p.fell_behind(12_000), Behind::Cut);
    }

    #[test]
    fn the_grace_has_a_floor() {
        let mut p = ViewerPacing::new(0, 0);
        assert_eq!(p.grace_ms(), 100);
        assert_eq!(p.fell_behind(0), Behind::Skip);
        assert_eq!(p.fell_behind(99), Behind::Cut);
    }

    #[test]
    fn batches_are_spaced_by_the_merge_window() {
        let mut p = ViewerPacing::new(10_000, 100);
        assert_eq!(p.wait_before_batch(5), 0, "the first batch goes at once");
        p.batch_taken(5);
        assert_eq!(p.wait_before_batch(30), 75);
        assert_eq!(p.wait_before_batch(105), 0);
        assert_eq!(p.wait_before_batch(500), 0);
        let mut p = ViewerPacing::new(10_000, 0);
        p.batch_taken(5);
        assert_eq!(p.wait_before_batch(5), 0, "merge 0 writes every packet at once");
    }
}
