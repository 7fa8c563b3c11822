//! The binary's global allocator: mimalloc, except that large blocks are aligned to 2 MiB and
//! marked for transparent huge pages.
//!
//! The engine allocates all of its tables once at start (order slab, id index, price levels,
//! balances), tens of megabytes touched at random by every command. With 4 KiB pages nearly every
//! table access also misses the TLB; with 2 MiB pages the same tables need a few hundred TLB
//! entries instead of thousands. Measured on the engine benchmark (BENCHMARKS.md), this is worth
//! 25-30% of throughput. Kernels set to `transparent_hugepage=madvise` (Debian's default) only
//! give huge pages to memory that asks, hence the `madvise`. Everything here runs at allocation
//! time, which for the engine means start-up, never the hot path.
//!
//! Large blocks are also faulted in at allocation (`MADV_POPULATE_WRITE`). Tables sized up front
//! (the engine's, the order entry's) are otherwise touched page by page as they fill, and on this
//! virtual machine the first write to a huge page took milliseconds (the host backing it too):
//! the FIX thread and the load generator stalled for 20-30 ms at a time mid-run. Now that cost
//! is paid where the block is allocated, at start-up for those tables. A node stops it once it
//! serves ([`stop_prefaulting`]): faulting in a block holds the process's memory-map lock for
//! reading, and a snapshot thread growing a buffer of megabytes then kept the FIX thread
//! waiting for that lock (to grow its own heap) for 5-12 ms at a time.
//!
//! Underneath is mimalloc, not glibc's allocator. glibc grows a thread's arena one `mprotect`
//! per page, each taking the memory-map lock for writing; the FIX thread, whose order tables
//! grow while it serves, made 4,700 such calls in a 12 s run at 50,000 orders a second, and was
//! caught asleep in one for over 200 ms behind helpers that held the lock. glibc also shares
//! arenas, and their locks, between threads once there are more threads than arenas. mimalloc
//! gives every thread a heap of its own and reserves memory in arenas of a gigabyte, committed
//! at reservation where the kernel overcommits (Linux's default), so a growing heap calls the
//! kernel only for a new arena. It would still return freed memory to the kernel
//! (`MADV_DONTNEED`, on whichever thread allocates next) after a delay; [`configure`] turns that
//! off, since a node's memory high-water mark is its working size anyway.

#![allow(unsafe_code)] // A global allocator is unsafe by definition; each block says why it holds.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// mimalloc v2's `mi_option_purge_delay` (its `mi_option_t` enum, which the sys crate's
/// constants do not all cover): milliseconds before freed memory is returned to the kernel, or
/// -1 for never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocators' options; call it first thing in `main`, before any thread starts.
///
/// Rust's allocations go to mimalloc; C and C++ code (RocksDB, which copies each order-entry
/// snapshot, several megabytes, more than once) still allocates from glibc. glibc gives such
/// blocks mappings of their own and unmaps them when freed, and grows and trims its heaps a
/// page at a time: each a call under the memory-map lock, made by a niced snapshot thread.
/// One such `munmap` was seen to take 128 ms, most of it waiting for or holding that lock. So
/// glibc keeps one heap, grows it 64 MiB at a time, never trims it, and maps only blocks of
/// 32 MiB (its largest threshold) or more on their own.
pub fn configure() {
    // SAFETY: setting an option is a plain store into mimalloc's option table; no thread that
    // could read it concurrently exists yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    for (option, value) in [
        (libc::M_ARENA_MAX, 1),
        (libc::M_TOP_PAD, 64 << 20),
        (libc::M_TRIM_THRESHOLD, libc::c_int::MAX),
        (libc::M_MMAP_THRESHOLD, 32 << 20),
    ] {
        // SAFETY: `mallopt` only sets glibc's malloc parameters; called before any thread
        // starts. A value it refuses (it returns 0) leaves glibc's default, which is correct,
        // only slower.
        unsafe { libc::mallopt(option, value) };
    }
}

/// The purge delay in force, for the test that the option's number is the right one.
#[cfg(test)]
fn purge_delay() -> libc::c_long {
    // SAFETY: reading an option is a plain load from mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Whether large blocks are faulted in at allocation; see the module documentation.
static PREFAULT: AtomicBool = AtomicBool::new(true);

/// Large blocks allocated from now on are faulted in when first written, not at allocation.
pub fn stop_prefaulting() {
    PREFAULT.store(false, Ordering::Relaxed);
}

/// Blocks at least this large get huge-page treatment.
const HUGE_PAGE_BYTES: usize = 2 << 20;

#[derive(Debug)]
pub struct HugePageAllocator;

/// The layout actually requested from mimalloc for `layout`: large blocks are rounded up to
/// whole huge pages and aligned to one, so that `madvise` covers exactly the block.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() < HUGE_PAGE_BYTES {
        return layout;
    }
    let size = layout.size().div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
    let align = layout.align().max(HUGE_PAGE_BYTES);
    Layout::from_size_align(size, align).unwrap_or(layout)
}

fn advise(pointer: *mut u8, layout: Layout) {
    if !pointer.is_null() && layout.size() >= HUGE_PAGE_BYTES {
        // SAFETY: `pointer` starts a live allocation of `layout.size()` bytes that we own.
        // MADV_HUGEPAGE only changes how the kernel backs those pages; failure (an old kernel,
        // THP disabled) leaves ordinary pages, which is correct, just slower.
        // MADV_POPULATE_WRITE faults every page in writable and leaves the contents alone (a
        // fresh block's are unspecified or already zero); a kernel without it (before 5.14)
        // refuses, and the pages are faulted when first written, as before. One huge page per
        // call: this kernel does not preempt a system call, and a thread allocating tens of
        // megabytes (a snapshot's buffer) must not hold its core for that long in one.
        unsafe {
            libc::madvise(pointer.cast(), layout.size(), libc::MADV_HUGEPAGE);
            if !PREFAULT.load(Ordering::Relaxed) {
                return;
            }
            for offset in (0..layout.size()).step_by(HUGE_PAGE_BYTES) {
                let len = HUGE_PAGE_BYTES.min(layout.size() - offset);
                if libc::madvise(pointer.add(offset).cast(), len, libc::MADV_POPULATE_WRITE) != 0 {
                    break;
                }
            }
        }
    }
}

// SAFETY: every method forwards to `MiMalloc` with the same adjusted layout for a given caller
// layout, so allocation and deallocation always agree; `system_layout` only grows size and
// alignment, which satisfies the caller's layout.
unsafe impl GlobalAlloc for HugePageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let layout = system_layout(layout);
        // SAFETY: forwarded contract; `layout` has non-zero size because the caller's had.
        let pointer = unsafe { MiMalloc.alloc(layout) };
        advise(pointer, layout);
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let layout = system_layout(layout);
        // SAFETY: as in `alloc`.
        let pointer = unsafe { MiMalloc.alloc_zeroed(layout) };
        advise(pointer, layout);
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `alloc` or `alloc_zeroed` with the same caller layout, so
        // the same system layout.
        unsafe { MiMalloc.dealloc(pointer, system_layout(layout)) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = system_layout(layout);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = system_layout(new_layout);
        if old == layout && new == new_layout {
            // SAFETY: both layouts are small and unadjusted: plain mimalloc realloc.
            return unsafe { MiMalloc.realloc(pointer, layout, new_size) };
        }
        // SAFETY: a fresh block of the new layout, filled from the old one, which is then freed
        // with the layout it was allocated with.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                std::ptr::copy_nonoverlapping(pointer, fresh, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_configured() {
        // mimalloc's default purge delay is 10 ms; no neighbouring option defaults to 10, so a
        // wrong option number shows here.
        assert_eq!(purge_delay(), 10);
        configure();
        assert_eq!(purge_delay(), -1);
    }

    #[test]
    fn large_layouts_are_rounded_to_huge_pages() {
        let small = Layout::from_size_align(4096, 8).unwrap();
        assert_eq!(system_layout(small), small);
        let large = Layout::from_size_align(HUGE_PAGE_BYTES + 1, 8).unwrap();
        let adjusted = system_layout(large);
        assert_eq!(adjusted.size(), 2 * HUGE_PAGE_BYTES);
        assert_eq!(adjusted.align(), HUGE_PAGE_BYTES);
    }

    #[test]
    fn blocks_grow_and_shrink_across_the_threshold() {
        // This test binary runs on the allocator, so ordinary vectors exercise every path.
        let mut bytes: Vec<u8> = Vec::new();
        for round in 0..3 {
            bytes.resize(HUGE_PAGE_BYTES * 3, 7);
            assert!(bytes.iter().all(|&byte| byte == 7), "round {round}");
            bytes.truncate(10);
            bytes.shrink_to_fit();
            assert_eq!(bytes, vec![7; 10]);
        }
    }
}
