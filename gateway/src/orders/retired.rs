//! The window of retired entries (finished orders, cancel ClOrdIDs), oldest first, kept in
//! shared chunks so that a snapshot can take the whole window without copying it.
//!
//! The window is a queue: entries join at the back and leave at the front, and none changes in
//! between. So it is held as a queue of chunks of up to [`CHUNK`] entries each, every chunk
//! behind an [`Arc`]. A snapshot clones the chunk handles (a few dozen reference counts for a
//! window of 100,000) and reads the entries on another thread. The FIX thread copies a chunk
//! only when it must change one a snapshot still holds: the back chunk, on the next push, at
//! most [`CHUNK`] entries once per snapshot.
//!
//! ```text
//!   front (entries before it already left)
//!     v
//! [ x x a b c d ] [ e f g h i j ] [ k l m . . . ]   <- push_back fills the last chunk
//!   chunk 0         chunk 1         chunk 2 (not full)
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use super::Retired;

/// Entries per chunk: small enough that copying one is cheap, large enough that a snapshot of
/// a full window takes few handles.
const CHUNK: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct RetiredWindow {
    chunks: VecDeque<Arc<Vec<Retired>>>,
    /// Entries of the first chunk that have already left the window.
    front: usize,
    len: usize,
    /// The last chunk emptied that no snapshot shared, kept for the next one needed: a chunk
    /// is 4,096 entries, allocated every 4,096 retirements otherwise.
    spare: Option<Arc<Vec<Retired>>>,
}

/// The window as it was when captured; [`RetiredChunks::entries`] reads it out, oldest first.
#[derive(Clone, Debug, Default)]
pub struct RetiredChunks {
    chunks: Vec<Arc<Vec<Retired>>>,
    front: usize,
}

impl RetiredWindow {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push_back(&mut self, entry: Retired) {
        if self.chunks.back().is_none_or(|chunk| chunk.len() == CHUNK) {
            let chunk = self.spare.take().unwrap_or_else(|| Arc::new(Vec::with_capacity(CHUNK)));
            self.chunks.push_back(chunk);
        }
        let back = self.chunks.back_mut().expect("a chunk with room was just ensured");
        Arc::make_mut(back).push(entry);
        self.len += 1;
    }

    pub(super) fn pop_front(&mut self) -> Option<Retired> {
        let first = self.chunks.front_mut()?;
        // Moved out when no snapshot shares the chunk, cloned when one does: the placeholder
        // left behind is never read again, since `front` has passed it.
        let entry = match Arc::get_mut(first) {
            Some(entries) => std::mem::replace(&mut entries[self.front], Retired::Order(0)),
            None => first[self.front].clone(),
        };
        self.front += 1;
        self.len -= 1;
        if self.front == first.len() {
            let mut emptied = self.chunks.pop_front().expect("the front chunk was just read");
            if let Some(entries) = Arc::get_mut(&mut emptied) {
                entries.clear();
                self.spare = Some(emptied);
            }
            self.front = 0;
        }
        Some(entry)
    }

    /// The window now, sharing the chunks.
    pub(super) fn capture(&self) -> RetiredChunks {
        RetiredChunks { chunks: self.chunks.iter().cloned().collect(), front: self.front }
    }
}

impl RetiredChunks {
    /// The captured entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Retired> {
        let front = self.front;
        self.chunks
            .iter()
            .enumerate()
            .flat_map(move |(index, chunk)| chunk[if index == 0 { front } else { 0 }..].iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_ids(entries: impl Iterator<Item = Retired>) -> Vec<u64> {
        entries
            .map(|entry| match entry {
                Retired::Order(id) => id,
                Retired::Key(..) => panic!("only orders were pushed"),
            })
            .collect()
    }

    #[test]
    fn a_capture_keeps_the_window_of_its_time_while_the_window_moves_on() {
        let mut window = RetiredWindow::default();
        let total = 3 * CHUNK as u64 + 7;
        for id in 0..total {
            window.push_back(Retired::Order(id));
        }
        for expected in 0..(CHUNK as u64 + 3) {
            assert_eq!(window.pop_front(), Some(Retired::Order(expected)));
        }
        let captured = window.capture();
        let first_kept = CHUNK as u64 + 3;
        // The window moves on after the capture: the shared chunks are copied or cloned from,
        // never changed under it.
        for id in total..total + 10 {
            window.push_back(Retired::Order(id));
        }
        for expected in first_kept..first_kept + 2 * CHUNK as u64 {
            assert_eq!(window.pop_front(), Some(Retired::Order(expected)));
        }
        let entries = order_ids(captured.entries().cloned());
        assert_eq!(entries, (first_kept..total).collect::<Vec<_>>());
        assert_eq!(window.len() as u64, total + 10 - first_kept - 2 * CHUNK as u64);
        let rest = order_ids(std::iter::from_fn(|| window.pop_front()));
        assert_eq!(rest, (first_kept + 2 * CHUNK as u64..total + 10).collect::<Vec<_>>());
        assert_eq!(window.len(), 0);
        assert_eq!(window.pop_front(), None);
    }

    #[test]
    fn a_window_emptied_and_refilled_reads_in_order() {
        let mut window = RetiredWindow::default();
        for round in 0..3u64 {
            for id in 0..5 {
                window.push_back(Retired::Order(round * 10 + id));
            }
            let captured = window.capture();
            let popped = order_ids(std::iter::from_fn(|| window.pop_front()));
            assert_eq!(popped, order_ids(captured.entries().cloned()));
            assert_eq!(popped, (round * 10..round * 10 + 5).collect::<Vec<_>>());
        }
    }
}
