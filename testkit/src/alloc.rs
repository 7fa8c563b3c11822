//! A global allocator for tests that assert the hot path allocates nothing: it forwards to the
//! system allocator and counts, on threads that opted in, every allocation and reallocation.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: CountingAllocator = CountingAllocator;` (one per binary,
//! which is why such tests have a file to itself) and wraps the measured work in [`counted`].
//! The counters are per thread, so tests running in parallel never see each other's
//! allocations.

// `GlobalAlloc` is an unsafe trait; this allocator only forwards to the system one.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// See the module documentation.
#[derive(Debug)]
pub struct CountingAllocator;

thread_local! {
    // Const-initialised `Cell`s need no allocation and no destructor, so touching them inside
    // the allocator cannot recurse into it.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
    }
}

/// Allocations counted on this thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `work` with counting on for this thread; returns its result and what it allocated.
pub fn counted<R>(work: impl FnOnce() -> R) -> (R, u64) {
    let before = allocations();
    let was = COUNTING.with(|counting| counting.replace(true));
    let result = work();
    COUNTING.with(|counting| counting.set(was));
    (result, allocations() - before)
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only const thread-locals.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}
