//! One side of one order book: its price levels in price priority.

use crate::engine::prefaulted;

/// Books this shallow are searched by counting instead of bisecting.
const LINEAR_SEARCH_LEVELS_MAX: usize = 64;

/// The price levels of one side of one book, sorted by ascending key with the best price last
/// (see `side_key`), so the best level is read in O(1) and a level that empties at the top is
/// removed without moving the others.
///
/// Keys and level indices sit in parallel vectors: a search touches only the dense 8-byte keys.
/// Most books are shallow, and for them a scan from the touch beats a binary search, whose every
/// step waits on the load before it; deep books fall back to bisection.
#[derive(Debug)]
pub(crate) struct SideLevels {
    keys: Vec<u64>,
    levels: Vec<u32>,
}

impl SideLevels {
    /// Both vectors are allocated and written once, here; the side never grows past this.
    pub(crate) fn with_capacity(capacity: usize) -> SideLevels {
        SideLevels { keys: prefaulted(capacity, 0), levels: prefaulted(capacity, u32::MAX) }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The level index at the best price.
    #[inline]
    pub(crate) fn best(&self) -> Option<u32> {
        self.levels.last().copied()
    }

    /// `(key, level index)` at `position` (0 is the worst price).
    #[inline]
    pub(crate) fn get(&self, position: usize) -> (u64, u32) {
        (self.keys[position], self.levels[position])
    }

    /// Finds `key` as `slice::binary_search` would: `Ok(position)` or `Err(insertion point)`.
    ///
    /// Shallow sides are scanned from the best end, eight keys at a time with a branch-free
    /// count inside each group: orders cluster near the touch, so the first group usually
    /// decides. Deep sides are bisected.
    #[inline]
    pub(crate) fn find(&self, key: u64) -> Result<usize, usize> {
        const GROUP: usize = 8;
        if self.keys.len() > LINEAR_SEARCH_LEVELS_MAX {
            return self.keys.binary_search(&key);
        }
        let mut end = self.keys.len();
        while end > 0 {
            let start = end.saturating_sub(GROUP);
            if start == 0 || self.keys[start] <= key {
                let group = &self.keys[start..end];
                let position = start + group.iter().filter(|&&found| found < key).count();
                return if self.keys.get(position) == Some(&key) {
                    Ok(position)
                } else {
                    Err(position)
                };
            }
            end = start;
        }
        Err(0)
    }

    #[inline]
    pub(crate) fn insert(&mut self, position: usize, key: u64, level: u32) {
        assert!(self.keys.len() < self.keys.capacity(), "side capacity checked by the caller");
        self.keys.insert(position, key);
        self.levels.insert(position, level);
    }

    #[inline]
    pub(crate) fn remove(&mut self, position: usize) {
        self.keys.remove(position);
        self.levels.remove(position);
    }

    /// Appends a level during a snapshot restore, which reads levels best first: the caller
    /// pushes them in that order and calls [`SideLevels::reverse`] once the side is complete, so
    /// that restoring a side is linear instead of shifting every level on each insert.
    pub(crate) fn push_restored(&mut self, key: u64, level: u32) {
        assert!(self.keys.len() < self.keys.capacity(), "side capacity checked by the caller");
        self.keys.push(key);
        self.levels.push(level);
    }

    /// Turns a side pushed best first into the ascending order every other method expects.
    pub(crate) fn reverse(&mut self) {
        self.keys.reverse();
        self.levels.reverse();
    }

    /// `(key, level index)` pairs, best price first.
    pub(crate) fn best_first(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.keys.iter().copied().zip(self.levels.iter().copied()).rev()
    }

    /// Whether keys ascend strictly: no two levels share a price and priority is consistent.
    pub(crate) fn is_strictly_sorted(&self) -> bool {
        self.keys.windows(2).all(|pair| pair[0] < pair[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_binary_search_shallow_and_deep() {
        for len in [0usize, 1, 2, 63, 64, 65, 200] {
            let mut side = SideLevels::with_capacity(256);
            for index in 0..len {
                let key = (index as u64) * 3 + 10;
                side.insert(index, key, u32::try_from(index).unwrap());
            }
            let keys: Vec<u64> = (0..len).map(|index| side.get(index).0).collect();
            for probe in 0..(len as u64 * 3 + 20) {
                assert_eq!(side.find(probe), keys.binary_search(&probe), "len {len} probe {probe}");
            }
            assert!(side.is_strictly_sorted());
        }
    }
}
