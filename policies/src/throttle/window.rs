//! One key's sliding window: how many requests it admitted in the last `window`.
//!
//! The window is cut into [`SLOTS`] slots; a slot's admissions are counted for as long as
//! any part of the slot lies inside the window, so a request counts for between `window`
//! and `window + window / SLOTS`. That is exact in the direction that matters: no span of
//! `window` length, aligned anywhere, ever admits more than the limit (a fixed, clock-aligned
//! window lets twice the limit through around its boundary). The price is that a saturated
//! key regains its quota up to 1 % of the window late.
//!
//! Memory grows with activity, not with the limit: one 16-byte entry per slot that admitted
//! something, at most `SLOTS + 1`.

use std::collections::VecDeque;

/// Slots per window.
pub const SLOTS: u64 = 100;

/// The shortest slot: a window under 100 ms has fewer, 1 ms slots.
const MIN_SLOT_MS: u64 = 1;

/// The counted admissions of one key.
#[derive(Debug, Default)]
pub struct Window {
    /// (end of the slot in ms, admissions in it), oldest first; never a zero count.
    slots: VecDeque<(u64, u32)>,
    total: u64,
}

/// The slot length for a window.
pub fn slot_ms(window_ms: u64) -> u64 {
    (window_ms / SLOTS).max(MIN_SLOT_MS)
}

impl Window {
    /// Admissions counted at `now_ms` in a window of `window_ms` (expired slots dropped).
    pub fn count(&mut self, now_ms: u64, window_ms: u64) -> u64 {
        // A slot counts while its end lies after `now - window`.
        let horizon = now_ms.saturating_sub(window_ms);
        while let Some(&(end, n)) = self.slots.front() {
            if end > horizon {
                break;
            }
            self.total -= u64::from(n);
            self.slots.pop_front();
        }
        self.total
    }

    /// Counts one admission at `now_ms` (after [`Window::count`] for the same instant).
    pub fn add(&mut self, now_ms: u64, window_ms: u64) {
        let slot = slot_ms(window_ms);
        let end = (now_ms / slot + 1) * slot;
        match self.slots.back_mut() {
            Some((last, n)) if *last >= end => *n = n.saturating_add(1),
            _ => self.slots.push_back((end, 1)),
        }
        self.total += 1;
    }

    /// Takes back one admission counted at `now_ms` (a request another level refused).
    pub fn remove(&mut self, now_ms: u64, window_ms: u64) {
        let slot = slot_ms(window_ms);
        let end = (now_ms / slot + 1) * slot;
        if let Some(i) = self.slots.iter().rposition(|&(e, _)| e >= end).or(self.slots.len().checked_sub(1)) {
            if let Some((_, n)) = self.slots.get_mut(i) {
                *n -= 1;
                self.total -= 1;
                if *n == 0 {
                    self.slots.remove(i);
                }
            }
        }
    }

    /// How long until the count drops below `limit` (0: it is below already): until enough
    /// of the oldest slots have left the window.
    pub fn wait_ms(&self, now_ms: u64, window_ms: u64, limit: u64) -> u64 {
        if self.total < limit {
            return 0;
        }
        let mut left = self.total;
        for &(end, n) in &self.slots {
            left -= u64::from(n);
            if left < limit {
                return (end + window_ms).saturating_sub(now_ms).max(1);
            }
        }
        window_ms
    }

    /// How long until the oldest counted admission leaves the window (0: none counted).
    pub fn reset_ms(&self, now_ms: u64, window_ms: u64) -> u64 {
        self.slots.front().map_or(0, |&(end, _)| (end + window_ms).saturating_sub(now_ms))
    }

    /// Nothing counted (the key can be forgotten).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes this window holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits at most `limit` in `window_ms`, trying at each of `times`; returns the admitted times.
    fn drive(limit: u64, window_ms: u64, times: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut w = Window::default();
        let mut admitted = Vec::new();
        for t in times {
            if w.count(t, window_ms) < limit {
                w.add(t, window_ms);
                admitted.push(t);
            }
        }
        admitted
    }

    #[test]
    fn no_span_of_the_window_ever_admits_more_than_the_limit() {
        // A request every ms for 10 windows, limit 50 per 1000 ms: every sliding span of
        // 1000 ms, wherever it starts, holds at most 50.
        let admitted = drive(50, 1000, 0..10_000);
        for (i, &t) in admitted.iter().enumerate() {
            let in_span = admitted[i..].iter().take_while(|&&u| u < t + 1000).count();
            assert!(in_span <= 50, "{in_span} admitted in [{t}, {})", t + 1000);
        }
        // And the quota is used: 10 windows of 50, less at most 1 % lateness per window.
        assert!(admitted.len() >= 495 && admitted.len() <= 500, "{}", admitted.len());
    }

    #[test]
    fn the_boundary_of_a_clock_window_lets_nothing_extra_through() {
        // 100 at the end of one window, 100 tried at the start of the next: a fixed window
        // would admit all 200 within 2 ms.
        let times = (0..100).map(|_| 999).chain((0..100).map(|_| 1000));
        assert_eq!(drive(100, 1000, times).len(), 100);
    }

    #[test]
    fn a_full_window_rolls_over_after_the_window_plus_at_most_one_slot() {
        let mut w = Window::default();
        for _ in 0..10 {
            w.add(5, 1000);
        }
        assert_eq!(w.count(5, 1000), 10);
        // The slot [0, 10) ends at 10: counted until 1010, gone at 1010.
        assert_eq!(w.wait_ms(5, 1000, 10), 1005);
        assert_eq!(w.count(1009, 1000), 10);
        assert_eq!(w.count(1010, 1000), 0);
        assert!(w.is_empty());
    }

    #[test]
    fn wait_is_until_enough_old_slots_leave() {
        let mut w = Window::default();
        w.add(0, 1000); // slot end 10
        w.add(500, 1000); // slot end 510
        w.add(900, 1000); // slot end 910
        assert_eq!(w.count(950, 1000), 3);
        assert_eq!(w.wait_ms(950, 1000, 3), 60, "the first leaves at 1010");
        assert_eq!(w.wait_ms(950, 1000, 2), 560, "two must leave: at 1510");
        assert_eq!(w.wait_ms(950, 1000, 4), 0);
        assert_eq!(w.reset_ms(950, 1000), 60);
    }

    #[test]
    fn a_taken_back_admission_leaves_no_trace() {
        let mut w = Window::default();
        w.add(100, 1000);
        w.add(300, 1000);
        w.remove(300, 1000);
        assert_eq!(w.count(300, 1000), 1);
        w.remove(300, 1000);
        assert!(w.is_empty());
        w.remove(300, 1000); // nothing left: no underflow
        assert_eq!(w.count(300, 1000), 0);
    }

    #[test]
    fn a_changed_window_applies_to_what_was_counted() {
        let mut w = Window::default();
        for t in 0..10 {
            w.add(t * 100, 60_000);
        }
        // The tier's window shrinks from 1 min to 1 s: what was counted stays counted, in the
        // old (600 ms) slots, and falls out by the new rule.
        assert_eq!(w.count(1_500, 1_000), 10);
        assert_eq!(w.count(1_601, 1_000), 4, "the slot ending at 600 left at 1600");
        assert_eq!(w.count(2_200, 1_000), 0);
    }
}
