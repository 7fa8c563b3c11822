//! Single-producer, single-consumer rings of fixed-size records in shared memory, and the idle
//! strategies of the threads that poll them.
//!
//! A ring connects one producer (a gateway I/O thread, the wallet API) to one consumer (the
//! application loop). It lives in a file, normally under `/dev/shm`, mapped with `memmap2` by
//! both parties, so they can be two threads today and two processes later. Everything is
//! allocated and written once when the ring is created; afterwards neither side allocates,
//! locks, blocks or makes a syscall. A full ring is back-pressure: [`RingProducer::try_push`]
//! returns [`RingFull`] and the producer decides what to do (retry, reject upstream); nothing is
//! ever dropped or overwritten.
//!
//! # Layout
//!
//! Native byte order (little-endian on every target we build for). The header is three 128-byte
//! blocks, so each position sits alone on its cache line with its neighbour line empty too:
//! x86's adjacent-line prefetcher pulls lines in 128-byte pairs, and a position sharing a pair
//! with anything the other side writes would bounce between cores (as Agrona's
//! `OneToOneRingBuffer` and the LMAX Disruptor pad theirs).
//!
//! ```text
//!  offset  size
//!       0     8  magic             b"XRINGv01" as a u64; stored last, with release ordering
//!       8     4  version           1
//!      12     4  slot_size         bytes per record: a multiple of 8, 8..=65536
//!      16     8  capacity          slots: a power of two, 2..=2^30
//!      24   104  (zero)
//!     128     8  producer position records ever published (AtomicU64), written by the producer
//!     136   120  (zero)
//!     256     8  consumer position records ever consumed (AtomicU64), written by the consumer
//!     264   120  (zero)
//!     384        slot 0, slot 1, … slot capacity − 1, each slot_size bytes
//!
//!  file length = 384 + capacity × slot_size
//! ```
//!
//! # Protocol
//!
//! Positions only grow (a `u64` of records outlives any deployment); the slot of position `p` is
//! `p & (capacity − 1)`. The producer owns slots from the producer position up to the consumer
//! position plus capacity; the consumer owns slots from the consumer position up to the producer
//! position. Each side publishes its position with a release store after it has finished with
//! the slots it hands over, and reads the other side's position with an acquire load, so the
//! slot bytes written (or read) before a release are complete before the other side touches the
//! slot. Each side keeps a private copy of the other's position and reloads it only when that
//! copy says there is no room (producer) or fewer records than the poll may take (consumer): the
//! producer touches the consumer's line once per lap of the ring rather than once per record, and
//! the consumer reads the producer's line once per poll, not once per record.
//!
//! A position read from the other side is checked (producer ≥ consumer, difference ≤ capacity)
//! and a violation panics, so that even a corrupted or misbehaving peer can never make a party
//! read or write outside its own slots. Slot indices are always masked, so no input can make an
//! access leave the mapping.
//!
//! # Testing
//!
//! Loom cannot model memory-mapped files and Miri cannot execute `mmap`, so the protocol code is
//! written once against a raw base pointer and [`Ring::create_in_memory`] runs the same code over
//! a heap allocation of the same layout. The unit tests at the bottom use only that variant and
//! no file I/O, so `cargo miri test -p sequencer ring` can check them (Miri is not installed on
//! the build machine yet). Loom would need the atomics swapped for `loom` types throughout; the
//! protocol is the textbook two-position SPSC ring (Lamport, with cached positions as in rigtorp's
//! `SPSCQueue`), and the cross-thread stress test in `tests/ring.rs` checks order, loss and
//! duplication over millions of records.
//!
//! Single producer and single consumer are enforced by the type system within one [`Ring`]: it
//! splits into one [`RingProducer`] and one [`RingConsumer`], which are `Send` but not `Clone`.
//! Two [`Ring::open`] calls on one file yield independent handles; using one producer and one
//! consumer per file across handles and processes is the caller's contract.
//!
//! ```compile_fail
//! fn two_producers(producer: sequencer::ring::RingProducer) {
//!     let second = producer.clone();
//! }
//! ```

// Atomics over mapped memory and raw slot copies cannot be written without `unsafe`; every block
// says why it holds. The rest of the workspace denies it.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::{MmapMut, MmapOptions};

/// `b"XRINGv01"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"XRINGv01");
pub const VERSION: u32 = 1;
/// Header bytes before slot 0: three 128-byte blocks (see the layout above).
pub const HEADER_BYTES: usize = 384;
pub const SLOT_SIZE_MIN: usize = 8;
pub const SLOT_SIZE_MAX: usize = 65_536;
pub const SLOTS_MIN: usize = 2;
pub const SLOTS_MAX: usize = 1 << 30;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 8;
const SLOT_SIZE_OFFSET: usize = 12;
const CAPACITY_OFFSET: usize = 16;
const PRODUCER_POSITION_OFFSET: usize = 128;
const CONSUMER_POSITION_OFFSET: usize = 256;
/// Padding blocks: both positions are 128-byte aligned and 128 bytes apart from everything else.
const PADDING_BYTES: usize = 128;

const _: () = assert!(PRODUCER_POSITION_OFFSET % PADDING_BYTES == 0);
const _: () = assert!(CONSUMER_POSITION_OFFSET - PRODUCER_POSITION_OFFSET == PADDING_BYTES);
const _: () = assert!(HEADER_BYTES - CONSUMER_POSITION_OFFSET == PADDING_BYTES);
const _: () = assert!(CAPACITY_OFFSET + 8 <= PRODUCER_POSITION_OFFSET);
const _: () = assert!(HEADER_BYTES % PADDING_BYTES == 0);

/// The ring had no free slot (or not as many as claimed): back-pressure, to be handled by the
/// producer. Nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ring full")]
pub struct RingFull;

/// Failures to create or open a ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    #[error("ring file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ring file {path} has a bad header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("invalid ring size: {0}")]
    BadSize(String),
}

/// The bytes a ring of `slots` slots of `slot_size` bytes occupies, header included.
pub fn ring_bytes(slots: usize, slot_size: usize) -> Result<usize, RingError> {
    if !slots.is_power_of_two() || !(SLOTS_MIN..=SLOTS_MAX).contains(&slots) {
        return Err(RingError::BadSize(format!(
            "{slots} slots: need a power of two in {SLOTS_MIN}..={SLOTS_MAX}"
        )));
    }
    if slot_size % 8 != 0 || !(SLOT_SIZE_MIN..=SLOT_SIZE_MAX).contains(&slot_size) {
        return Err(RingError::BadSize(format!(
            "slot size {slot_size}: need a multiple of 8 in {SLOT_SIZE_MIN}..={SLOT_SIZE_MAX}"
        )));
    }
    slots
        .checked_mul(slot_size)
        .and_then(|bytes| bytes.checked_add(HEADER_BYTES))
        .filter(|&bytes| isize::try_from(bytes).is_ok())
        .ok_or_else(|| {
            RingError::BadSize(format!("{slots} slots of {slot_size} bytes overflow memory"))
        })
}

/// One 128-byte block of the heap-backed variant, so slots and positions keep the alignment the
/// mapped variant gets from the page.
#[derive(Clone, Copy)]
#[repr(C, align(128))]
struct Block([u8; PADDING_BYTES]);

/// What keeps the ring's memory alive.
enum Memory {
    /// Held only to keep the mapping alive; accessed through `Shared::base`.
    Mapped { _map: MmapMut },
    /// A leaked `Box<[Block]>` (pointer and block count), freed in `Drop`. Held as a raw pointer
    /// rather than a `Box` so that moving the owner never asserts uniqueness over memory both
    /// handles access.
    Heap(*mut Block, usize),
}

/// The memory and geometry both handles share.
struct Shared {
    memory: Memory,
    base: *mut u8,
    capacity: u64,
    /// `capacity` as a `usize`.
    slots: usize,
    mask: u64,
    slot_size: usize,
    path: Option<PathBuf>,
}

// SAFETY: `base` points into `memory`, which `Shared` owns and frees only when the last handle
// drops it. Concurrent access goes through `AtomicU64` positions or through slots that the
// protocol gives to exactly one side at a time (see the module documentation), so sharing the
// pointer between the producer's and the consumer's threads is sound.
unsafe impl Send for Shared {}
// SAFETY: as for `Send`: `&Shared` only exposes atomics and geometry; slot access needs a
// handle, and each slot is owned by one handle at a time.
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Memory::Heap(blocks, count) = self.memory {
            // SAFETY: `blocks` and `count` came from `Box::into_raw` of a `Box<[Block]>` of
            // `count` blocks in `create_in_memory`, and nothing uses them after this drop.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(blocks, count)) });
        }
    }
}

impl Shared {
    fn new(memory: Memory, base: *mut u8, bytes: usize, path: Option<PathBuf>) -> Shared {
        // Geometry is read once from the header (written by `write_header` or validated by
        // `validate_header` before this) and kept here, where a peer cannot change it.
        let mut shared =
            Shared { memory, base, capacity: 0, slots: 0, mask: 0, slot_size: 0, path };
        let header = shared.header_bytes();
        let capacity = read_u64(header, CAPACITY_OFFSET);
        let slot_size = read_u32(header, SLOT_SIZE_OFFSET) as usize;
        assert!(capacity.is_power_of_two());
        assert_eq!(HEADER_BYTES as u64 + capacity * slot_size as u64, bytes as u64);
        shared.capacity = capacity;
        shared.slots = usize::try_from(capacity).expect("validated ≤ 2^30");
        shared.mask = capacity - 1;
        shared.slot_size = slot_size;
        shared
    }

    /// A copy of the header's first block (metadata, never written after creation).
    fn header_bytes(&self) -> [u8; PADDING_BYTES] {
        let mut header = [0u8; PADDING_BYTES];
        // SAFETY: the memory is at least `HEADER_BYTES` long (checked by every constructor) and
        // its first block is written only before the `Shared` exists.
        unsafe { std::ptr::copy_nonoverlapping(self.base, header.as_mut_ptr(), PADDING_BYTES) };
        header
    }

    fn atomic(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= HEADER_BYTES && offset % 8 == 0);
        // SAFETY: `offset` is one of the 8-aligned position offsets inside the header; `base`
        // is at least 128-byte aligned (a page, or a `Block`), so the pointer is aligned for
        // `AtomicU64`, and the memory lives as long as `&self`. These 8 bytes are only ever
        // accessed atomically once the ring is shared.
        unsafe { &*self.base.add(offset).cast::<AtomicU64>() }
    }

    fn producer_position(&self) -> &AtomicU64 {
        self.atomic(PRODUCER_POSITION_OFFSET)
    }

    fn consumer_position(&self) -> &AtomicU64 {
        self.atomic(CONSUMER_POSITION_OFFSET)
    }

    /// The first byte of the slot of `position`.
    #[inline]
    fn slot_ptr(&self, position: u64) -> *mut u8 {
        // Masked, so below `capacity`; `capacity × slot_size` fits `usize` (checked at creation).
        #[allow(clippy::cast_possible_truncation)]
        let index = (position & self.mask) as usize;
        // SAFETY: `HEADER_BYTES + index × slot_size + slot_size ≤ bytes`, so the result stays
        // inside the allocation.
        unsafe { self.base.add(HEADER_BYTES + index * self.slot_size) }
    }
}

fn read_u32(header: [u8; PADDING_BYTES], offset: usize) -> u32 {
    u32::from_ne_bytes(header[offset..offset + 4].try_into().expect("four bytes"))
}

fn read_u64(header: [u8; PADDING_BYTES], offset: usize) -> u64 {
    u64::from_ne_bytes(header[offset..offset + 8].try_into().expect("eight bytes"))
}

/// Writes the header of a fresh, zeroed ring, magic last.
fn write_header(base: *mut u8, slots: usize, slot_size: usize) {
    let mut header = [0u8; PADDING_BYTES];
    header[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&VERSION.to_ne_bytes());
    let slot_size = u32::try_from(slot_size).expect("slot size validated ≤ 65536");
    header[SLOT_SIZE_OFFSET..SLOT_SIZE_OFFSET + 4].copy_from_slice(&slot_size.to_ne_bytes());
    header[CAPACITY_OFFSET..CAPACITY_OFFSET + 8].copy_from_slice(&(slots as u64).to_ne_bytes());
    // SAFETY: `base` points to at least `HEADER_BYTES` writable bytes that no other handle in
    // this process uses yet. The magic (offset 0, still zero) is skipped and stored atomically
    // below, so an opener that sees the magic also sees the rest.
    unsafe {
        std::ptr::copy_nonoverlapping(header.as_ptr().add(8), base.add(8), PADDING_BYTES - 8);
    }
    // SAFETY: offset 0 of a page- or 128-byte-aligned allocation is aligned for `AtomicU64`.
    let magic = unsafe { &*base.add(MAGIC_OFFSET).cast::<AtomicU64>() };
    magic.store(MAGIC, Ordering::Release);
}

/// Checks a mapped header against the file length, naming the first thing wrong.
fn validate_header(
    shared_header: [u8; PADDING_BYTES],
    magic: u64,
    bytes: usize,
) -> Result<(), String> {
    if magic != MAGIC {
        return Err(format!("magic {magic:#018x}, expected {MAGIC:#018x}"));
    }
    let version = read_u32(shared_header, VERSION_OFFSET);
    if version != VERSION {
        return Err(format!("version {version}, expected {VERSION}"));
    }
    let slot_size = read_u32(shared_header, SLOT_SIZE_OFFSET) as usize;
    let capacity = usize::try_from(read_u64(shared_header, CAPACITY_OFFSET)).unwrap_or(0);
    let expected = ring_bytes(capacity, slot_size).map_err(|error| error.to_string())?;
    if expected != bytes {
        return Err(format!(
            "file is {bytes} bytes, {capacity} slots of {slot_size} bytes need {expected}"
        ));
    }
    Ok(())
}

/// A ring before it is split into its producer and consumer.
pub struct Ring {
    shared: Arc<Shared>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("path", &self.shared.path)
            .field("capacity", &self.shared.capacity)
            .field("slot_size", &self.shared.slot_size)
            .finish()
    }
}

impl Ring {
    /// Creates the ring file at `path` with `slots` slots of `slot_size` bytes, writes every
    /// byte of it (so neither side takes a page fault later) and maps it. An existing file at
    /// `path` is unlinked first: a process still mapping it keeps the old ring, not a truncated
    /// one.
    pub fn create(path: &Path, slots: usize, slot_size: usize) -> Result<Ring, RingError> {
        let bytes = ring_bytes(slots, slot_size)?;
        let io_error = |source| RingError::Io { path: path.to_path_buf(), source };
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(io_error(error)),
            _ => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_error)?;
        file.set_len(bytes as u64).map_err(io_error)?;
        let mut map = map_file(&file, bytes).map_err(io_error)?;
        // Touch every page for writing now (tmpfs allocates on first write); the file was just
        // created, so the zeros are what it already reads as.
        map.fill(0);
        let base = map.as_mut_ptr();
        write_header(base, slots, slot_size);
        Ok(Ring {
            shared: Arc::new(Shared::new(
                Memory::Mapped { _map: map },
                base,
                bytes,
                Some(path.into()),
            )),
        })
    }

    /// Maps an existing ring file, after checking its magic, version, geometry and positions.
    pub fn open(path: &Path) -> Result<Ring, RingError> {
        let io_error = |source| RingError::Io { path: path.to_path_buf(), source };
        let bad = |reason: String| RingError::BadHeader { path: path.to_path_buf(), reason };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io_error)?;
        let length = file.metadata().map_err(io_error)?.len();
        let bytes = usize::try_from(length)
            .ok()
            .filter(|&bytes| bytes >= HEADER_BYTES)
            .ok_or_else(|| bad(format!("file is {length} bytes, shorter than the header")))?;
        let mut map = map_file(&file, bytes).map_err(io_error)?;
        let base = map.as_mut_ptr();
        // SAFETY: offset 0 of a page-aligned mapping of at least `HEADER_BYTES` bytes is aligned
        // and in bounds for `AtomicU64`; the creator stores the magic atomically.
        let magic = unsafe { &*base.add(MAGIC_OFFSET).cast::<AtomicU64>() }.load(Ordering::Acquire);
        let mut header = [0u8; PADDING_BYTES];
        header.copy_from_slice(&map[..PADDING_BYTES]);
        validate_header(header, magic, bytes).map_err(bad)?;
        let shared = Shared::new(Memory::Mapped { _map: map }, base, bytes, Some(path.into()));
        let producer = shared.producer_position().load(Ordering::Acquire);
        let consumer = shared.consumer_position().load(Ordering::Acquire);
        if consumer > producer || producer - consumer > shared.capacity {
            return Err(bad(format!(
                "positions out of order: producer {producer}, consumer {consumer}, capacity {}",
                shared.capacity
            )));
        }
        Ok(Ring { shared: Arc::new(shared) })
    }

    /// The same ring on the heap, for in-process use and for testing the protocol where memory
    /// maps are unavailable (Miri). Same layout, same code.
    pub fn create_in_memory(slots: usize, slot_size: usize) -> Result<Ring, RingError> {
        let bytes = ring_bytes(slots, slot_size)?;
        let count = bytes.div_ceil(PADDING_BYTES);
        let blocks: Box<[Block]> = vec![Block([0; PADDING_BYTES]); count].into_boxed_slice();
        let blocks = Box::into_raw(blocks).cast::<Block>();
        let base = blocks.cast::<u8>();
        write_header(base, slots, slot_size);
        let shared = Shared::new(Memory::Heap(blocks, count), base, bytes, None);
        Ok(Ring { shared: Arc::new(shared) })
    }

    /// The producer and the consumer of this ring.
    pub fn split(self) -> (RingProducer, RingConsumer) {
        let consumer = RingConsumer::new(Arc::clone(&self.shared));
        (RingProducer::new(self.shared), consumer)
    }

    /// This handle's producer, for a process that only writes.
    pub fn into_producer(self) -> RingProducer {
        RingProducer::new(self.shared)
    }

    /// This handle's consumer, for a process that only reads.
    pub fn into_consumer(self) -> RingConsumer {
        RingConsumer::new(self.shared)
    }

    pub fn capacity(&self) -> usize {
        self.shared.slots
    }

    pub fn slot_size(&self) -> usize {
        self.shared.slot_size
    }

    /// The backing file; `None` for a heap ring.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }
}

fn map_file(file: &File, bytes: usize) -> io::Result<MmapMut> {
    // SAFETY: `memmap2` requires that no one truncates or resizes the file while it is mapped.
    // Ring files are created at their final size and never resized; `create` replaces a file by
    // unlinking it, which leaves existing mappings intact. Concurrent writes by the other party
    // go through the protocol in the module documentation.
    unsafe { MmapOptions::new().len(bytes).populate().map_mut(file) }
}

/// The writing end of a ring: `Send`, not `Clone`.
pub struct RingProducer {
    shared: Arc<Shared>,
    /// Records published so far (this side's own position, never read back from memory).
    position: u64,
    /// The consumer position last read: a lower bound of the real one.
    consumer_cached: u64,
}

impl fmt::Debug for RingProducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingProducer")
            .field("path", &self.shared.path)
            .field("position", &self.position)
            .field("consumer_cached", &self.consumer_cached)
            .finish()
    }
}

impl RingProducer {
    fn new(shared: Arc<Shared>) -> RingProducer {
        let position = shared.producer_position().load(Ordering::Acquire);
        let consumer_cached = shared.consumer_position().load(Ordering::Acquire);
        RingProducer { shared, position, consumer_cached }
    }

    /// Room for `count` more records, reloading the consumer position only when the cached one
    /// says there is not.
    #[inline]
    fn has_room(&mut self, count: u64) -> bool {
        let capacity = self.shared.capacity;
        if self.position - self.consumer_cached + count <= capacity {
            return true;
        }
        let consumer = self.shared.consumer_position().load(Ordering::Acquire);
        assert!(consumer >= self.consumer_cached, "ring consumer position went backwards");
        assert!(consumer <= self.position, "ring consumer position passed the producer");
        self.consumer_cached = consumer;
        self.position - consumer + count <= capacity
    }

    /// Copies `record` (exactly `slot_size` bytes) into the next slot and publishes it, or
    /// returns [`RingFull`] having written nothing.
    #[inline]
    pub fn try_push(&mut self, record: &[u8]) -> Result<(), RingFull> {
        assert_eq!(record.len(), self.shared.slot_size, "a ring record fills its slot exactly");
        if !self.has_room(1) {
            return Err(RingFull);
        }
        let slot = self.shared.slot_ptr(self.position);
        // SAFETY: `has_room` proved the consumer is done with this slot (its release store of a
        // position past it happened before our acquire load), the consumer reads it only after
        // our release store below, and `slot_ptr` keeps `slot_size` bytes in bounds; `record`
        // is a separate Rust slice, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(record.as_ptr(), slot, record.len()) };
        self.position += 1;
        self.shared.producer_position().store(self.position, Ordering::Release);
        Ok(())
    }

    /// Claims the next `count` slots for writing in place; nothing is visible to the consumer
    /// until [`Claim::commit`], which publishes all of them with one store. Dropping the claim
    /// abandons it. Claimed slots hold stale bytes: the caller overwrites each in full.
    pub fn try_claim(&mut self, count: usize) -> Result<Claim<'_>, RingFull> {
        assert!(count as u64 <= self.shared.capacity, "a claim larger than the ring never fits");
        if !self.has_room(count as u64) {
            return Err(RingFull);
        }
        Ok(Claim { producer: self, count })
    }

    /// Records published and not yet consumed, for metrics.
    pub fn depth(&self) -> usize {
        let consumer = self.shared.consumer_position().load(Ordering::Acquire);
        // At most `capacity` (≤ 2^30) once the positions are consistent.
        #[allow(clippy::cast_possible_truncation)]
        let depth = self.position.saturating_sub(consumer) as usize;
        depth
    }

    /// Records published so far over the life of the ring.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn capacity(&self) -> usize {
        self.shared.slots
    }

    pub fn slot_size(&self) -> usize {
        self.shared.slot_size
    }
}

/// Slots claimed by [`RingProducer::try_claim`], not yet visible to the consumer.
pub struct Claim<'a> {
    producer: &'a mut RingProducer,
    count: usize,
}

impl fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("position", &self.producer.position)
            .field("count", &self.count)
            .finish()
    }
}

impl Claim<'_> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The `index`-th claimed slot, `slot_size` bytes.
    pub fn slot_mut(&mut self, index: usize) -> &mut [u8] {
        assert!(index < self.count, "slot {index} outside a claim of {}", self.count);
        let shared = &self.producer.shared;
        let slot = shared.slot_ptr(self.producer.position + index as u64);
        // SAFETY: the claim proved room for `count` slots past the producer position, so the
        // consumer does not read this slot until a commit publishes it; the returned borrow is
        // tied to `&mut self`, so no two slices of the claim are alive at once; `slot_ptr` keeps
        // `slot_size` bytes in bounds.
        unsafe { std::slice::from_raw_parts_mut(slot, shared.slot_size) }
    }

    /// Publishes every claimed slot at once.
    pub fn commit(self) {
        self.producer.position += self.count as u64;
        self.producer.shared.producer_position().store(self.producer.position, Ordering::Release);
    }
}

/// The reading end of a ring: `Send`, not `Clone`.
pub struct RingConsumer {
    shared: Arc<Shared>,
    /// Records consumed so far (this side's own position).
    position: u64,
    /// The producer position last read: a lower bound of the real one.
    producer_cached: u64,
}

impl fmt::Debug for RingConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingConsumer")
            .field("path", &self.shared.path)
            .field("position", &self.position)
            .field("producer_cached", &self.producer_cached)
            .finish()
    }
}

impl RingConsumer {
    fn new(shared: Arc<Shared>) -> RingConsumer {
        let position = shared.consumer_position().load(Ordering::Acquire);
        let producer_cached = shared.producer_position().load(Ordering::Acquire);
        RingConsumer { shared, position, producer_cached }
    }

    /// Hands up to `limit` records, oldest first, to `handler` and returns how many it handled.
    /// The slots are released to the producer after the last one, with one store. If `handler`
    /// panics, the batch is not released and would be read again by a later poll.
    #[inline]
    pub fn poll(&mut self, limit: usize, mut handler: impl FnMut(&[u8])) -> usize {
        let mut available = self.producer_cached - self.position;
        // Reload only when the cached position cannot fill this poll: a backlog of at least
        // `limit` records is drained without touching the producer's cache line.
        if available < limit as u64 {
            let producer = self.shared.producer_position().load(Ordering::Acquire);
            assert!(producer >= self.producer_cached, "ring producer position went backwards");
            assert!(
                producer - self.position <= self.shared.capacity,
                "ring producer position ran past the consumer"
            );
            self.producer_cached = producer;
            available = producer - self.position;
            if available == 0 {
                return 0;
            }
        }
        // At most `capacity` (≤ 2^30).
        #[allow(clippy::cast_possible_truncation)]
        let count = (available as usize).min(limit);
        let slot_size = self.shared.slot_size;
        for offset in 0..count as u64 {
            let slot = self.shared.slot_ptr(self.position + offset);
            // SAFETY: the producer published this slot (its release store of a position past it
            // happened before our acquire load) and will not write it again until our release
            // store below; `slot_ptr` keeps `slot_size` bytes in bounds; the slice does not
            // outlive this iteration (the handler cannot keep it).
            let record = unsafe { std::slice::from_raw_parts(slot, slot_size) };
            handler(record);
        }
        self.position += count as u64;
        self.shared.consumer_position().store(self.position, Ordering::Release);
        count
    }

    /// Records published and not yet consumed, for metrics.
    pub fn depth(&self) -> usize {
        let producer = self.shared.producer_position().load(Ordering::Acquire);
        // At most `capacity` (≤ 2^30) once the positions are consistent.
        #[allow(clippy::cast_possible_truncation)]
        let depth = producer.saturating_sub(self.position) as usize;
        depth
    }

    /// Records consumed so far over the life of the ring.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn capacity(&self) -> usize {
        self.shared.slots
    }

    pub fn slot_size(&self) -> usize {
        self.shared.slot_size
    }
}

/// What a polling thread does after a pass over its inputs: `work_count` is how much work the
/// pass did; zero means it found nothing and may back off (Agrona's `IdleStrategy`).
pub trait IdleStrategy {
    fn idle(&mut self, work_count: usize);
    /// Forget any backoff: the next idle pass starts from the cheapest wait.
    fn reset(&mut self);
}

/// Spins on the CPU: lowest wake-up latency, one core burnt per thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusySpinIdle;

impl IdleStrategy for BusySpinIdle {
    #[inline]
    fn idle(&mut self, work_count: usize) {
        if work_count == 0 {
            std::hint::spin_loop();
        }
    }

    fn reset(&mut self) {}
}

/// Gives the core to any other runnable thread, then comes straight back.
#[derive(Clone, Copy, Debug, Default)]
pub struct YieldIdle;

impl IdleStrategy for YieldIdle {
    #[inline]
    fn idle(&mut self, work_count: usize) {
        if work_count == 0 {
            std::thread::yield_now();
        }
    }

    fn reset(&mut self) {}
}

/// Settings of [`BackoffIdle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Idle passes that spin before yielding.
    pub spins_max: u32,
    /// Idle passes that yield before parking.
    pub yields_max: u32,
    /// The first park; each following one doubles, up to `park_ns_max`.
    pub park_ns_min: u64,
    pub park_ns_max: u64,
}

impl Default for BackoffConfig {
    /// Agrona's `BackoffIdleStrategy` defaults, with more spins: 100 spins, 10 yields, parks
    /// from 1 µs to 1 ms.
    fn default() -> BackoffConfig {
        BackoffConfig { spins_max: 100, yields_max: 10, park_ns_min: 1_000, park_ns_max: 1_000_000 }
    }
}

/// Where a [`BackoffIdle`] is in its escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffPhase {
    Spinning,
    Yielding,
    /// Parking for this many nanoseconds on the next idle pass.
    Parking(u64),
}

/// Spins, then yields, then parks with exponentially growing timeouts, and starts over as soon
/// as a pass does work.
#[derive(Clone, Copy, Debug)]
pub struct BackoffIdle {
    config: BackoffConfig,
    spins: u32,
    yields: u32,
    park_ns: u64,
}

impl BackoffIdle {
    pub fn new(config: BackoffConfig) -> BackoffIdle {
        assert!(config.park_ns_min > 0, "a park of zero is a yield");
        assert!(config.park_ns_min <= config.park_ns_max);
        BackoffIdle { config, spins: 0, yields: 0, park_ns: config.park_ns_min }
    }

    /// What the next idle pass will do.
    pub fn phase(&self) -> BackoffPhase {
        if self.spins < self.config.spins_max {
            BackoffPhase::Spinning
        } else if self.yields < self.config.yields_max {
            BackoffPhase::Yielding
        } else {
            BackoffPhase::Parking(self.park_ns)
        }
    }
}

impl IdleStrategy for BackoffIdle {
    fn idle(&mut self, work_count: usize) {
        if work_count > 0 {
            self.reset();
            return;
        }
        match self.phase() {
            BackoffPhase::Spinning => {
                self.spins += 1;
                std::hint::spin_loop();
            }
            BackoffPhase::Yielding => {
                self.yields += 1;
                std::thread::yield_now();
            }
            BackoffPhase::Parking(park_ns) => {
                // `unpark` ends it early; a spurious early return only shortens one wait.
                std::thread::park_timeout(Duration::from_nanos(park_ns));
                self.park_ns = park_ns.saturating_mul(2).min(self.config.park_ns_max);
            }
        }
    }

    fn reset(&mut self) {
        self.spins = 0;
        self.yields = 0;
        self.park_ns = self.config.park_ns_min;
    }
}

/// An idle strategy chosen by configuration. Text form (see [`FromStr`]): `busy-spin`, `yield`,
/// `backoff`, or `backoff:spins=100,yields=10,park-ns-min=1000,park-ns-max=1000000` with any
/// subset of the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleConfig {
    BusySpin,
    Yield,
    Backoff(BackoffConfig),
}

impl IdleConfig {
    pub fn build(self) -> Idle {
        match self {
            IdleConfig::BusySpin => Idle::BusySpin(BusySpinIdle),
            IdleConfig::Yield => Idle::Yield(YieldIdle),
            IdleConfig::Backoff(config) => Idle::Backoff(BackoffIdle::new(config)),
        }
    }
}

impl fmt::Display for IdleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdleConfig::BusySpin => write!(f, "busy-spin"),
            IdleConfig::Yield => write!(f, "yield"),
            IdleConfig::Backoff(config) => write!(
                f,
                "backoff:spins={},yields={},park-ns-min={},park-ns-max={}",
                config.spins_max, config.yields_max, config.park_ns_min, config.park_ns_max
            ),
        }
    }
}

/// An idle strategy text that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad idle strategy {text:?}: {reason}")]
pub struct IdleConfigError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for IdleConfig {
    type Err = IdleConfigError;

    fn from_str(text: &str) -> Result<IdleConfig, IdleConfigError> {
        let error = |reason| IdleConfigError { text: text.to_string(), reason };
        let (name, settings) = text.trim().split_once(':').unwrap_or((text.trim(), ""));
        match name {
            "busy-spin" | "busy_spin" | "spin" if settings.is_empty() => {
                return Ok(IdleConfig::BusySpin)
            }
            "yield" if settings.is_empty() => return Ok(IdleConfig::Yield),
            "backoff" => {}
            "busy-spin" | "busy_spin" | "spin" | "yield" => {
                return Err(error("only backoff takes settings"))
            }
            _ => return Err(error("expected busy-spin, yield or backoff[:key=value,…]")),
        }
        let mut config = BackoffConfig::default();
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) =
                setting.split_once('=').ok_or_else(|| error("expected key=value"))?;
            let number =
                |value: &str| value.trim().parse::<u64>().map_err(|_| error("not a number"));
            match key.trim() {
                "spins" => {
                    config.spins_max =
                        u32::try_from(number(value)?).map_err(|_| error("spins too large"))?
                }
                "yields" => {
                    config.yields_max =
                        u32::try_from(number(value)?).map_err(|_| error("yields too large"))?
                }
                "park-ns-min" => config.park_ns_min = number(value)?,
                "park-ns-max" => config.park_ns_max = number(value)?,
                _ => return Err(error("keys are spins, yields, park-ns-min, park-ns-max")),
            }
        }
        if config.park_ns_min == 0 || config.park_ns_min > config.park_ns_max {
            return Err(error("need 0 < park-ns-min ≤ park-ns-max"));
        }
        Ok(IdleConfig::Backoff(config))
    }
}

/// The idle strategy built from an [`IdleConfig`]: one type for any configured thread, with a
/// match instead of a virtual call.
#[derive(Clone, Copy, Debug)]
pub enum Idle {
    BusySpin(BusySpinIdle),
    Yield(YieldIdle),
    Backoff(BackoffIdle),
}

impl IdleStrategy for Idle {
    #[inline]
    fn idle(&mut self, work_count: usize) {
        match self {
            Idle::BusySpin(idle) => idle.idle(work_count),
            Idle::Yield(idle) => idle.idle(work_count),
            Idle::Backoff(idle) => idle.idle(work_count),
        }
    }

    fn reset(&mut self) {
        match self {
            Idle::BusySpin(idle) => idle.reset(),
            Idle::Yield(idle) => idle.reset(),
            Idle::Backoff(idle) => idle.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Heap-backed rings only: no file I/O, so Miri can run these.

    use super::*;

    fn record(slot_size: usize, value: u64) -> Vec<u8> {
        let mut record = vec![0u8; slot_size];
        record[..8].copy_from_slice(&value.to_le_bytes());
        if slot_size > 8 {
            record[slot_size - 1] = value.to_le_bytes()[0];
        }
        record
    }

    fn value(record: &[u8]) -> u64 {
        if record.len() > 8 {
            assert_eq!(record[record.len() - 1], record[0]);
        }
        u64::from_le_bytes(record[..8].try_into().unwrap())
    }

    #[test]
    fn sizes_are_validated() {
        assert_eq!(ring_bytes(4, 128).unwrap(), HEADER_BYTES + 512);
        assert!(matches!(ring_bytes(3, 128), Err(RingError::BadSize(_))));
        assert!(matches!(ring_bytes(1, 128), Err(RingError::BadSize(_))));
        assert!(matches!(ring_bytes(4, 12), Err(RingError::BadSize(_))));
        assert!(matches!(ring_bytes(4, 0), Err(RingError::BadSize(_))));
        assert!(matches!(ring_bytes(4, SLOT_SIZE_MAX + 8), Err(RingError::BadSize(_))));
        assert!(Ring::create_in_memory(6, 8).is_err());
    }

    #[test]
    fn positions_sit_on_their_own_cache_lines() {
        let ring = Ring::create_in_memory(2, 8).unwrap();
        let base = ring.shared.base as usize;
        assert_eq!(base % 128, 0);
        assert_eq!(ring.shared.producer_position().as_ptr() as usize - base, 128);
        assert_eq!(ring.shared.consumer_position().as_ptr() as usize - base, 256);
        assert_eq!(ring.shared.slot_ptr(0) as usize - base, HEADER_BYTES);
        assert_eq!(ring.shared.slot_ptr(3) as usize - base, HEADER_BYTES + 8);
        assert_eq!(read_u64(ring.shared.header_bytes(), MAGIC_OFFSET), MAGIC);
    }

    #[test]
    fn records_wrap_around_in_order() {
        let (mut producer, mut consumer) = Ring::create_in_memory(4, 16).unwrap().split();
        let (mut sent, mut received) = (0u64, 0u64);
        for round in 0..50u64 {
            // 0 to 5 pushes per round: the sixth and seventh find the ring full.
            for _ in 0..round % 6 {
                let room = sent - received < 4;
                let pushed = producer.try_push(&record(16, sent));
                assert_eq!(pushed.is_ok(), room);
                sent += u64::from(pushed.is_ok());
            }
            let limit = usize::try_from(round % 3 + 1).unwrap();
            consumer.poll(limit, |slot| {
                assert_eq!(value(slot), received);
                received += 1;
            });
            assert_eq!(consumer.depth() as u64, sent - received);
        }
        consumer.poll(usize::MAX, |slot| {
            assert_eq!(value(slot), received);
            received += 1;
        });
        assert_eq!(received, sent);
        assert!(sent > 4 * 10, "the ring wrapped many times");
    }

    #[test]
    fn full_ring_pushes_back_and_frees_one_slot_per_record_consumed() {
        let (mut producer, mut consumer) = Ring::create_in_memory(8, 8).unwrap().split();
        for value in 0..8 {
            producer.try_push(&record(8, value)).unwrap();
        }
        assert_eq!(producer.try_push(&record(8, 8)), Err(RingFull));
        assert_eq!(producer.depth(), 8);
        let mut seen = Vec::new();
        assert_eq!(consumer.poll(1, |slot| seen.push(value(slot))), 1);
        producer.try_push(&record(8, 8)).unwrap();
        assert_eq!(producer.try_push(&record(8, 9)), Err(RingFull));
        assert_eq!(consumer.poll(100, |slot| seen.push(value(slot))), 8);
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
        assert_eq!(consumer.poll(100, |_| panic!("empty ring delivered a record")), 0);
    }

    #[test]
    fn claims_publish_on_commit_only() {
        let (mut producer, mut consumer) = Ring::create_in_memory(4, 8).unwrap().split();
        producer.try_push(&record(8, 0)).unwrap();
        {
            let mut claim = producer.try_claim(3).unwrap();
            for index in 0..3 {
                claim.slot_mut(index).copy_from_slice(&record(8, 100 + index as u64));
            }
            // Dropped without commit: abandoned.
        }
        assert_eq!(producer.try_claim(4).unwrap_err(), RingFull);
        let mut claim = producer.try_claim(3).unwrap();
        assert_eq!(claim.len(), 3);
        for index in 0..3 {
            claim.slot_mut(index).copy_from_slice(&record(8, 1 + index as u64));
        }
        assert_eq!(consumer.depth(), 1);
        claim.commit();
        let mut seen = Vec::new();
        consumer.poll(2, |slot| seen.push(value(slot)));
        // Wraps: positions 4 and 5 land in slots 0 and 1.
        let mut claim = producer.try_claim(2).unwrap();
        claim.slot_mut(0).copy_from_slice(&record(8, 4));
        claim.slot_mut(1).copy_from_slice(&record(8, 5));
        claim.commit();
        consumer.poll(10, |slot| seen.push(value(slot)));
        assert_eq!(seen, (0..6).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "fills its slot exactly")]
    fn short_records_are_refused() {
        let (mut producer, _consumer) = Ring::create_in_memory(4, 16).unwrap().split();
        let _ = producer.try_push(&[0u8; 8]);
    }

    #[test]
    fn heap_ring_crosses_threads() {
        let records = if cfg!(miri) { 500 } else { 200_000u64 };
        let (mut producer, mut consumer) = Ring::create_in_memory(16, 16).unwrap().split();
        let writer = std::thread::spawn(move || {
            for value in 0..records {
                while producer.try_push(&record(16, value)).is_err() {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0u64;
        while next < records {
            let count = consumer.poll(7, |slot| {
                assert_eq!(value(slot), next);
                next += 1;
            });
            if count == 0 {
                std::thread::yield_now();
            }
        }
        writer.join().unwrap();
        assert_eq!(consumer.depth(), 0);
    }

    #[test]
    fn backoff_escalates_and_resets() {
        let config = BackoffConfig { spins_max: 2, yields_max: 1, park_ns_min: 1, park_ns_max: 4 };
        let mut idle = BackoffIdle::new(config);
        let mut phases = Vec::new();
        for _ in 0..7 {
            phases.push(idle.phase());
            idle.idle(0);
        }
        use BackoffPhase::{Parking, Spinning, Yielding};
        assert_eq!(
            phases,
            [Spinning, Spinning, Yielding, Parking(1), Parking(2), Parking(4), Parking(4)]
        );
        idle.idle(3);
        assert_eq!(idle.phase(), Spinning);
        idle.idle(0);
        idle.reset();
        assert_eq!(idle.phase(), Spinning);
    }

    #[test]
    fn idle_configs_parse_and_print() {
        assert_eq!("busy-spin".parse(), Ok(IdleConfig::BusySpin));
        assert_eq!("yield".parse(), Ok(IdleConfig::Yield));
        assert_eq!("backoff".parse(), Ok(IdleConfig::Backoff(BackoffConfig::default())));
        let custom: IdleConfig = "backoff:spins=5, park-ns-max=2000".parse().unwrap();
        let expected =
            BackoffConfig { spins_max: 5, park_ns_max: 2_000, ..BackoffConfig::default() };
        assert_eq!(custom, IdleConfig::Backoff(expected));
        for config in [IdleConfig::BusySpin, IdleConfig::Yield, custom] {
            assert_eq!(config.to_string().parse(), Ok(config));
        }
        for bad in [
            "",
            "sleep",
            "yield:spins=1",
            "backoff:spins",
            "backoff:naps=3",
            "backoff:park-ns-min=0",
            "backoff:park-ns-min=5,park-ns-max=4",
        ] {
            assert!(bad.parse::<IdleConfig>().is_err(), "{bad:?} parsed");
        }
        let mut idle = IdleConfig::Yield.build();
        idle.idle(0);
        idle.reset();
    }

    /// Small enough for Miri (`cargo +nightly miri test -p sequencer --lib ring`), which checks
    /// the unsafe slot access and the acquire/release pairs for data races across two threads.
    #[test]
    fn two_threads_exchange_records_in_order() {
        const RECORDS: u64 = 500;
        let (mut producer, mut consumer) = Ring::create_in_memory(8, 16).unwrap().split();
        let writer = std::thread::spawn(move || {
            let mut next = 0;
            while next < RECORDS {
                if next % 5 == 0 && next + 3 <= RECORDS {
                    if let Ok(mut claim) = producer.try_claim(3) {
                        for index in 0..3 {
                            claim.slot_mut(index).copy_from_slice(&record(16, next + index as u64));
                        }
                        claim.commit();
                        next += 3;
                    }
                } else if producer.try_push(&record(16, next)).is_ok() {
                    next += 1;
                }
                std::thread::yield_now();
            }
        });
        let mut expected = 0;
        while expected < RECORDS {
            consumer.poll(4, |bytes| {
                assert_eq!(value(bytes), expected);
                expected += 1;
            });
            std::thread::yield_now();
        }
        writer.join().unwrap();
        assert_eq!(consumer.depth(), 0);
    }
}
