//! A fixed-capacity hash index from identifiers to slot numbers.
//!
//! `std::collections::HashMap` can grow (allocate) when tombstones pile up and seeds its hasher
//! from the OS. This table is allocated once, never grows, hashes with a fixed multiplier and
//! deletes by backward shifting, so it leaves no tombstones and behaves identically on every run.
//! It is never iterated, so its layout cannot shape output.

/// A key the table can hash. The hash must depend on the value only.
pub trait TableKey: Copy + Eq {
    fn hash64(self) -> u64;
}

impl TableKey for u64 {
    #[inline]
    fn hash64(self) -> u64 {
        // Fibonacci hashing: the high bits of the product are well mixed even for sequential ids.
        self.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl TableKey for u128 {
    #[inline]
    fn hash64(self) -> u64 {
        #[allow(clippy::cast_possible_truncation)] // Folding the halves together is the point.
        let folded = (self as u64) ^ ((self >> 64) as u64).rotate_left(29);
        folded.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

const EMPTY: u32 = u32::MAX;

/// A key and its value side by side, so that a probe touches one cache line, not two.
#[derive(Clone, Copy, Debug)]
struct Entry<K> {
    key: K,
    value: u32,
}

#[derive(Debug)]
pub struct IdTable<K> {
    entries: Vec<Entry<K>>,
    shift: u32,
    mask: usize,
    len: usize,
    len_max: usize,
}

impl<K: TableKey + Default> IdTable<K> {
    /// A table that holds up to `len_max` entries at a load factor of at most one half.
    pub fn with_len_max(len_max: usize) -> IdTable<K> {
        let buckets = (len_max.max(4) * 2).next_power_of_two();
        IdTable {
            entries: vec![Entry { key: K::default(), value: EMPTY }; buckets],
            shift: 64 - buckets.trailing_zeros(),
            mask: buckets - 1,
            len: 0,
            len_max,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, key: K) -> usize {
        #[allow(clippy::cast_possible_truncation)] // `shift` leaves at most log2(buckets) bits.
        let index = (key.hash64() >> self.shift) as usize;
        index
    }

    #[inline]
    pub fn get(&self, key: K) -> Option<u32> {
        let mut index = self.home(key);
        loop {
            let entry = self.entries[index];
            if entry.value == EMPTY {
                return None;
            }
            if entry.key == key {
                return Some(entry.value);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Inserts a key that must not be present. The caller checks capacity first.
    #[inline]
    pub fn insert(&mut self, key: K, value: u32) {
        assert!(value != EMPTY);
        assert!(self.len < self.len_max, "id table full");
        let mut index = self.home(key);
        while self.entries[index].value != EMPTY {
            assert!(self.entries[index].key != key, "id table duplicate key");
            index = (index + 1) & self.mask;
        }
        self.entries[index] = Entry { key, value };
        self.len += 1;
    }

    /// Removes a key and returns its value.
    #[inline]
    pub fn remove(&mut self, key: K) -> Option<u32> {
        let mut index = self.home(key);
        loop {
            let Entry { key: found, value } = self.entries[index];
            if value == EMPTY {
                return None;
            }
            if found == key {
                self.entries[index].value = EMPTY;
                self.len -= 1;
                self.backward_shift(index);
                return Some(value);
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Closes the hole at `hole` by moving later entries of the same probe run into it, so that
    /// every entry stays reachable from its home bucket without tombstones.
    fn backward_shift(&mut self, mut hole: usize) {
        let mut index = hole;
        loop {
            index = (index + 1) & self.mask;
            if self.entries[index].value == EMPTY {
                return;
            }
            let home = self.home(self.entries[index].key);
            // The entry at `index` may move into `hole` only if its home is not cyclically within
            // (hole, index]: otherwise it would sit before its home and become unreachable.
            let home_after_hole = (home.wrapping_sub(hole) & self.mask) != 0
                && (home.wrapping_sub(hole) & self.mask) <= (index.wrapping_sub(hole) & self.mask);
            if !home_after_hole {
                self.entries[hole] = self.entries[index];
                self.entries[index].value = EMPTY;
                hole = index;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_against_a_model() {
        // A small table forces long probe runs and wrap-around.
        let mut table = IdTable::<u64>::with_len_max(40);
        let mut model = std::collections::BTreeMap::new();
        let mut state = 12345u64;
        for step in 0..20_000u32 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let key = (state >> 33) % 97;
            if model.contains_key(&key) {
                assert_eq!(table.remove(key), model.remove(&key));
            } else if model.len() < 40 {
                table.insert(key, step);
                model.insert(key, step);
            }
            for probe in 0..97 {
                assert_eq!(table.get(probe), model.get(&probe).copied());
            }
            assert_eq!(table.len(), model.len());
        }
    }

    #[test]
    fn u128_keys() {
        let mut table = IdTable::<u128>::with_len_max(8);
        table.insert(u128::MAX, 1);
        table.insert(1 << 64, 2);
        table.insert(1, 3);
        assert_eq!(table.get(u128::MAX), Some(1));
        assert_eq!(table.get(1 << 64), Some(2));
        assert_eq!(table.remove(1), Some(3));
        assert_eq!(table.get(1), None);
    }
}
