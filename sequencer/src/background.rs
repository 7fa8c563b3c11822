//! The journal's two helper threads, which keep slow file-system calls off the writer's thread.
//!
//! - The **flusher** (group commit only) makes committed records durable with `fdatasync` and
//!   publishes the durable watermark. The writer only stores the seq it committed and, when a
//!   group reaches its record count, wakes the flusher; the flusher also wakes on its own every
//!   interval. So the policy's bound ("at most every N µs or M records") holds without the writer
//!   ever waiting for the disk: while one sync is in flight, the next group accumulates, and the
//!   group grows with the disk's latency instead of the writer stalling for it (each sync of
//!   this VM's disk takes several milliseconds). After each sync it makes the pages the writer
//!   is about to fill writable again ([`Shared::rearm`]), so that the page faults a sync causes
//!   land on the flusher, not on the writer's thread.
//! - The **preparer** keeps spare segment files ready (as many as the journal asks), asked for
//!   once the current segment is half full: created, sized, written through so every block is
//!   allocated, and synced. A staged spare is created, its tmpfs copy reserved and faulted in,
//!   and left for the flusher to sync once it is in use. At roll-over the writer takes the
//!   oldest, writes the header and renames it, which costs microseconds instead of the tens or
//!   hundreds of milliseconds of preparing a segment of tens of MiB.
//!
//! `fdatasync` on the file is what `msync` does on Linux for a shared mapping (it writes back the
//! file's dirty pages, however they were dirtied), so the flusher needs only the file, never the
//! writer's mapping. When the journal stages its segments (`staging.rs`), the writer's mapping is
//! of a tmpfs copy, and the flusher first writes the committed bytes from it into the disk file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use memmap2::{Mmap, MmapMut};
use rustix::mm::Advice;

/// How far beyond the page being filled [`Shared::rearm`] prepares pages, at most.
const REARM_AHEAD_MAX: usize = 256 * 1024;
/// How much [`Shared::rearm`] prepares per hold of the lock the writer's roll-over takes.
const REARM_CHUNK: usize = 16 * 1024;
/// The most a helper writes or reserves in one system call: tens of microseconds of kernel
/// work, after which the thread returns to user space, where the scheduler can switch to the
/// latency-critical thread sharing its core (the kernel is built without preemption).
pub(crate) const KERNEL_CALL_BYTES: usize = 64 * 1024;

/// The staged copy of a segment (see `staging.rs`), as the flusher copies from it.
#[derive(Debug)]
pub(crate) struct Stage {
    /// The staged file: removed once its segment is rolled over from and synced.
    pub path: PathBuf,
    /// A read-only mapping of it, beside the writer's: the flusher copies from here.
    map: Mmap,
    /// How many bytes from the start the disk file already has.
    copied: AtomicUsize,
}

impl Drop for Stage {
    fn drop(&mut self) {
        // The view is unmapped when the segment is done with: its page tables go first.
        discard_page_tables(&self.map);
    }
}

/// Drops the page tables of a mapping that is about to be unmapped, so that the `munmap`
/// itself is short. `munmap` tears a mapping's page tables down while it holds the process's
/// memory-map lock for writing, which every `mmap`, `mprotect` and contended page fault in the
/// process then waits for; for a populated segment of tens of megabytes that is milliseconds.
/// The helpers that unmap are niced, and one was caught preempted inside such an unmap while
/// three more unmaps, three flushers' page faults and the FIX thread's `mmap` queued behind it:
/// the FIX thread answered nothing for over 100 ms. `MADV_DONTNEED` drops the same page tables
/// under the mapping's own lock (this kernel takes a per-mapping lock for it), and nobody else
/// touches a mapping that is about to go. The file keeps its contents: the mappings are shared,
/// and a dropped dirty page stays dirty in the page cache.
pub(crate) fn discard_page_tables(map: &[u8]) {
    // SAFETY: `map` is a shared file mapping that its owner is dropping: nothing reads it any
    // more, and for a shared mapping MADV_DONTNEED only unmaps pages (a later access would
    // fault the file's pages back in). A failure is only slower: the `munmap` does the work.
    #[allow(unsafe_code)]
    let _ = unsafe {
        advise_in_pieces(
            map.as_ptr().cast_mut(),
            map.len(),
            DISCARD_CALL_BYTES,
            Advice::LinuxDontNeed,
        )
    };
}

/// `madvise(advice)` over `len` bytes from `address`, `piece` bytes per call, so that a long
/// operation returns to user space between pieces: the kernel here preempts no system call.
/// Stops at the first failure.
///
/// # Safety
///
/// `address .. address + len` must be mapped, and `advice` must be one the caller's use of the
/// mapping tolerates (it may drop or fault in pages).
#[allow(unsafe_code)]
unsafe fn advise_in_pieces(
    address: *mut u8,
    len: usize,
    piece: usize,
    advice: Advice,
) -> rustix::io::Result<()> {
    let mut at = 0;
    while at < len {
        let step = piece.min(len - at);
        // SAFETY: `address + at .. + step` lies within the range the caller vouches for.
        unsafe { rustix::mm::madvise(address.add(at).cast(), step, advice)? };
        at += step;
    }
    Ok(())
}

/// The piece [`discard_page_tables`] hands the kernel per call.
const DISCARD_CALL_BYTES: usize = 2 << 20;

impl Stage {
    /// The staged file now at `path`, read through `view` (see [`map_view`]), whose first
    /// `copied` bytes the disk file already has.
    pub fn new(path: PathBuf, view: Mmap, copied: usize) -> Stage {
        Stage { path, map: view, copied: AtomicUsize::new(copied) }
    }

    /// Writes the staged bytes up to `end` that the disk file lacks into it, at the same offsets.
    /// The bytes before `end` are complete frames: the writer published `end` after writing them.
    fn copy_to(&self, disk: &File, end: usize) -> std::io::Result<()> {
        let end = end.min(self.map.len());
        let from = self.copied.load(Ordering::Acquire);
        // In pieces: the kernel here does not preempt a thread inside a system call, and one
        // `pwrite` of the megabytes a log gathers between syncs kept the FIX thread, on the same
        // core, waiting for a millisecond or more. Each return to user space lets it in.
        let mut at = from;
        while at < end {
            let piece = (end - at).min(KERNEL_CALL_BYTES);
            disk.write_all_at(&self.map[at..at + piece], at as u64)?;
            start_write_back(disk, at as u64, piece as u64)?;
            at += piece;
            self.copied.fetch_max(at, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// Starts writing back `len` bytes of `file` from `offset`, without waiting for the disk, so
/// that the `fdatasync` that follows finds little left to submit: submitting the write-back of
/// megabytes in that one call kept the core for milliseconds, and the kernel here does not
/// preempt a system call (see [`KERNEL_CALL_BYTES`]).
fn start_write_back(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: `sync_file_range` reads nothing from this process's memory; the descriptor is
    // `file`'s, open for the duration of the call.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One segment's files as the flusher syncs them.
#[derive(Clone, Debug)]
pub(crate) struct SegmentFiles {
    pub disk: Arc<File>,
    /// The staged copy the writer appends to, if the journal stages.
    pub stage: Option<Arc<Stage>>,
}

impl SegmentFiles {
    /// Brings the disk file up to `end` (staged journals) and syncs it.
    fn sync_to(&self, end: usize) -> std::io::Result<()> {
        let Some(stage) = &self.stage else { return self.disk.sync_data() };
        let synced = stage.copied.load(Ordering::Acquire);
        let result = stage.copy_to(&self.disk, end).and_then(|()| self.disk.sync_data());
        if result.is_err() {
            // What was copied is not known to be on disk (a failed fdatasync may even have
            // marked the pages clean): a later sync copies it again rather than trusting it.
            stage.copied.store(synced, Ordering::Release);
        }
        result
    }
}

/// The files whose records the flusher must make durable.
#[derive(Debug)]
pub(crate) struct SyncFiles {
    /// The segment being written.
    pub current: SegmentFiles,
    /// Segments rolled over from but not yet synced since, each with where its records end.
    pub retired: Vec<(SegmentFiles, usize)>,
    /// A segment was renamed into place: the directory entry must be synced too.
    pub directory_dirty: bool,
    /// Where the writer's mapping of `current` lies: its address and length. Read only by
    /// [`Shared::rearm`], under this lock; the writer changes it under the lock too, before it
    /// unmaps the segment it replaces, and empties it before its own mapping goes at drop.
    pub mapping: (usize, usize),
}

/// What the writer and the flusher share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub directory: PathBuf,
    /// The highest seq the writer has committed; every record up to it is in `files`.
    pub committed: AtomicU64,
    pub files: Mutex<SyncFiles>,
    pub watermark: Arc<AtomicU64>,
    /// Where the writer's next record goes in the current segment, as of its last commit.
    pub tail: AtomicUsize,
    /// `MADV_POPULATE_WRITE` failed as unsupported (a kernel before 5.14); not tried again.
    rearm_unsupported: AtomicBool,
    stop: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<(PathBuf, std::io::Error)>>,
    /// Held for the whole of a sync (see [`Shared::sync`]).
    sync_lock: Mutex<()>,
}

impl Shared {
    pub fn new(
        directory: PathBuf,
        current: SegmentFiles,
        mapping: (usize, usize),
        tail: usize,
        watermark: Arc<AtomicU64>,
    ) -> Shared {
        let committed = AtomicU64::new(watermark.load(Ordering::Acquire));
        Shared {
            directory,
            committed,
            files: Mutex::new(SyncFiles {
                current,
                retired: Vec::new(),
                directory_dirty: false,
                mapping,
            }),
            watermark,
            tail: AtomicUsize::new(tail),
            rearm_unsupported: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            sync_lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncFiles> {
        // A panic while holding the lock leaves the file list intact; keep using it.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes every record committed so far durable and publishes the watermark. Safe to call
    /// from the writer and the flusher at once: the second waits for the first, then syncs what
    /// is left, and the watermark only moves forward.
    pub fn sync(&self) -> Result<(), (PathBuf, std::io::Error)> {
        // One sync at a time: a second one finding the retired list already taken by the first
        // would otherwise publish a watermark covering segments the first has not yet synced.
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let target = self.committed.load(Ordering::Acquire);
        // Take the list under the lock and sync outside it, so that a roll-over on the writer's
        // thread never waits for a sync in flight. The tail read under the lock belongs to
        // `current`: a roll-over replaces both under it, and every record up to `target` lies
        // before it or in a retired segment.
        let (retired, current, tail, directory_dirty) = {
            let mut files = self.lock();
            let retired = std::mem::take(&mut files.retired);
            let dirty = std::mem::replace(&mut files.directory_dirty, false);
            (retired, files.current.clone(), self.tail.load(Ordering::Acquire), dirty)
        };
        let result = (|| {
            for (files, end) in &retired {
                files.sync_to(*end).map_err(|error| (self.directory.clone(), error))?;
            }
            current.sync_to(tail).map_err(|error| (self.directory.clone(), error))?;
            if directory_dirty {
                File::open(&self.directory)
                    .and_then(|directory| directory.sync_all())
                    .map_err(|error| (self.directory.clone(), error))?;
            }
            Ok(())
        })();
        if result.is_err() {
            // Put back what was not synced, so a later attempt covers it.
            let mut files = self.lock();
            files.retired.extend(retired);
            files.directory_dirty |= directory_dirty;
        } else {
            self.watermark.fetch_max(target, Ordering::AcqRel);
            // A retired segment's staged copy has nothing the disk lacks now. A reader that
            // listed it a moment ago falls back to the disk file when it is gone.
            for stage in retired.iter().filter_map(|(files, _)| files.stage.as_ref()) {
                let _ = fs::remove_file(&stage.path);
            }
        }
        result
    }

    /// At the writer's close: copies everything staged into the disk files (the current segment
    /// up to `end`, all the writer appended), without syncing, and removes the staged copies.
    /// Nothing staged is then lost when tmpfs is, and nothing is left in it.
    pub fn unstage(&self, end: usize) -> std::io::Result<()> {
        let _one_at_a_time = self.sync_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let files = self.lock();
        let segments =
            files.retired.iter().cloned().chain(std::iter::once((files.current.clone(), end)));
        for (segment, end) in segments {
            if let Some(stage) = &segment.stage {
                stage.copy_to(&segment.disk, end)?;
                match fs::remove_file(&stage.path) {
                    // Pruned already (`DetachedSegments::delete`).
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error)
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Makes the pages the writer is about to append to writable again after a sync, so that
    /// its appends do not fault; returns the writer's tail as seen, for the next call.
    ///
    /// Writing a page back cleans it, and the kernel then write-protects it in every mapping so
    /// as to see the next write. The writer's next append to it therefore takes a page fault
    /// (`ext4_page_mkwrite`, with an inode time update), several microseconds on this virtual
    /// machine; so does its first append to each page of a fresh segment, which the preparer
    /// synced. Under group commit every sync does this to the page being filled: at a thousand
    /// commands a second the application loop took 1.5 faults per command, two thirds of its
    /// time per command. `MADV_POPULATE_WRITE` takes the same faults here, on the thread that
    /// synced, and leaves the contents alone. An append that lands between a page's write-back
    /// and this call still faults, as before.
    ///
    /// The pages made writable count as dirty even before anything is written to them, and the
    /// next sync writes them whether or not the writer reached them. So beyond the page being
    /// filled this prepares only as far ahead as the writer got since the last call (at most
    /// `REARM_AHEAD_MAX`): pages it will most likely fill before the next sync, which would be
    /// written then anyway.
    ///
    /// The lock that keeps the mapping in place is also the one the writer takes to roll over,
    /// so it is held for one chunk of `REARM_CHUNK` at a time (tens of microseconds), never for
    /// the whole range: a roll-over waits at most that long, and the rest is given up when the
    /// mapping has changed in between.
    pub fn rearm(&self, previous_tail: usize) -> usize {
        if self.rearm_unsupported.load(Ordering::Relaxed) {
            return self.tail.load(Ordering::Acquire);
        }
        let page = rustix::param::page_size();
        // Under the lock the mapping is the writer's current one, and stays mapped: the writer
        // replaces it only under this lock, and unmaps the old one after. The tail read under it
        // belongs to that mapping too: a roll-over resets both under the lock.
        let (mapping, tail, staged) = {
            let files = self.lock();
            (files.mapping, self.tail.load(Ordering::Acquire), files.current.stage.is_some())
        };
        if staged {
            // A staged segment's pages were all faulted in when it was prepared (`populate`),
            // and tmpfs never writes one back, so none is ever write-protected again.
            return tail;
        }
        let (address, length) = mapping;
        // After a roll-over the tail starts again near zero: prepare one page.
        let ahead = tail.saturating_sub(previous_tail).min(REARM_AHEAD_MAX);
        let start = tail / page * page;
        let end = (tail + ahead).div_ceil(page).max(start / page + 1) * page;
        let end = end.min(length);
        let chunk = REARM_CHUNK.div_ceil(page) * page;
        let mut at = start;
        while at < end {
            let files = self.lock();
            if files.mapping != mapping {
                break;
            }
            let len = chunk.min(end - at);
            // SAFETY: `address..address + length` is the writer's live mapping of the segment:
            // it is the published one, checked under the lock held here (see above). `at..at +
            // len` is a page-aligned range within it. MADV_POPULATE_WRITE only faults the pages
            // in writable; it neither changes their contents nor creates a reference to them,
            // so it cannot conflict with the writer's own accesses.
            #[allow(unsafe_code)]
            let result = unsafe {
                rustix::mm::madvise(
                    (address + at) as *mut std::ffi::c_void,
                    len,
                    Advice::LinuxPopulateWrite,
                )
            };
            drop(files);
            if result == Err(rustix::io::Errno::INVAL) {
                self.rearm_unsupported.store(true, Ordering::Relaxed);
                break;
            }
            at += len;
        }
        tail
    }

    /// Whether the flusher has failed; the writer then reports [`Shared::take_failure`].
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn take_failure(&self) -> Option<(PathBuf, std::io::Error)> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn fail(&self, failure: (PathBuf, std::io::Error)) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(failure);
        self.failed.store(true, Ordering::Release);
    }
}

/// The group-commit flusher thread.
#[derive(Debug)]
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(shared: Arc<Shared>, name: &str, interval: Duration) -> std::io::Result<Flusher> {
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new().name(format!("flush-{name}")).spawn(move || {
            crate::priority::set_current_thread_nice(crate::priority::HOUSEKEEPING_NICE);
            flush_loop(&thread_shared, interval);
        })?;
        Ok(Flusher { shared, thread: Some(thread) })
    }

    /// Asks for a sync now: a group reached its record count.
    pub fn wake(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

fn flush_loop(shared: &Shared, interval: Duration) {
    let mut tail = shared.tail.load(Ordering::Acquire);
    loop {
        // The wait comes first: a sync is due an interval after the journal opens, as after
        // every sync, not whenever this thread happens to first run. A flusher started late
        // on a busy machine synced records the moment it ran, which a test that checks what
        // an unsynced journal leaves on disk caught (1 run in about 25).
        // A zero interval means "as soon as possible", not a spinning thread on a small machine.
        thread::park_timeout(interval.max(Duration::from_micros(50)));
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let committed = shared.committed.load(Ordering::Acquire);
        if committed > shared.watermark.load(Ordering::Acquire) {
            if let Err(failure) = shared.sync() {
                // The writer reports it at its next commit; syncing again would fail the same way
                // and an operator must look at the disk.
                shared.fail(failure);
                return;
            }
            tail = shared.rearm(tail);
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A panic in the flusher has already been reported on stderr; nothing to add.
            let _ = thread.join();
        }
    }
}

/// A segment file created, sized, written through and synced, not yet named or headed.
#[derive(Debug)]
pub(crate) struct SpareSegment {
    pub path: PathBuf,
    pub file: File,
    /// What the writer will append through: the disk file's mapping, or the staged copy's.
    pub map: MmapMut,
    /// The staged copy, when the journal stages (under the same spare name in the staging
    /// directory), and the flusher's read-only view of it.
    pub staged: Option<(PathBuf, Mmap)>,
}

/// The file a spare segment waits in; its name matches no segment, so recovery ignores it.
/// Each spare gets a new number, so that preparing the next can never touch a file the writer
/// is renaming.
fn spare_path(directory: &Path, name: &str, number: u64) -> PathBuf {
    directory.join(format!("{name}.spare.{number}"))
}

/// Removes spares an earlier run left, possibly half written.
fn remove_spares(directory: &Path, name: &str) -> std::io::Result<()> {
    let prefix = format!("{name}.spare.");
    let entries = match fs::read_dir(directory) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|file| file.starts_with(&prefix)) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Faults every page of `map` in writable, a piece at a time (`KERNEL_CALL_BYTES`), so that the
/// writer appending through it never takes a page fault: for a staged segment, whose memory
/// `fallocate` reserved, this only fills page tables. Without it the FIX thread took a fault
/// for every 4 KiB its logs grew, 7,700 a second at 50,000 orders a second.
pub(crate) fn populate(map: &mut MmapMut) -> std::io::Result<()> {
    // SAFETY: `map`, which this function borrows mutably, so nothing else touches it meanwhile;
    // MADV_POPULATE_WRITE only faults the pages in writable and leaves their contents alone.
    #[allow(unsafe_code)]
    let result = unsafe {
        advise_in_pieces(map.as_mut_ptr(), map.len(), KERNEL_CALL_BYTES, Advice::LinuxPopulateWrite)
    };
    match result {
        Ok(()) => Ok(()),
        // A kernel before 5.14: the pages fault on first write instead.
        Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// A read-only mapping of the staged file at `path`, for the flusher to copy from. Made where a
/// staged segment is prepared, so that the writer's roll-over maps nothing: mapping takes the
/// process's memory-map lock, which other threads may hold for milliseconds.
pub(crate) fn map_view(path: &Path) -> std::io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: `map` is unsafe only because another process could change the file under the
    // mapping; the staged file belongs to this journal's one writer, which only appends.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }?;
    Ok(map)
}

fn map_writable(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: `map_mut` is unsafe only because another process could change the file under the
    // mapping; a data directory (and its staging directory) has one owning process, which alone
    // opens its segments.
    #[allow(unsafe_code)]
    let map = unsafe { MmapMut::map_mut(file) }?;
    Ok(map)
}

/// Creates a segment file of `bytes` at `path` and, if `sync`, syncs it and its directory
/// entry.
///
/// Mapped directly, every block is written now, so that the writer's appends never wait on the
/// file system for one. With `staged`, the writer's mapping is of a staged copy created there
/// (its memory reserved up front), and the disk file is left sparse: only the flusher writes
/// it, with `pwrite`, and a block it allocates then costs the flusher, not the writer. Writing
/// tens of megabytes of zeros per segment would also compete for the disk with the syncs.
/// Returns the disk file, the writer's mapping and, staged, the flusher's view of the copy.
///
/// A staged spare needs no sync here: under its spare name recovery ignores and removes it,
/// and once renamed into place, the flusher's next sync writes its header and records with
/// `pwrite`, syncs the file (its size with it) and then the directory, before any record in it
/// counts as durable. The preparer's syncs of new files waited on the flushers' traffic for up
/// to 0.6 s on this VM, longer than a FIX-log segment lasts at 50,000 orders a second, so the
/// spares ran out and the FIX thread prepared and synced segments itself (`fsync` stalls of
/// 5-8 ms, several per roll-over).
pub(crate) fn prepare_segment(
    directory: &Path,
    path: &Path,
    bytes: u64,
    staged: Option<&Path>,
    sync: bool,
) -> std::io::Result<(File, MmapMut, Option<Mmap>)> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    file.set_len(bytes)?;
    let (map, view) = match staged {
        Some(staged) => {
            let mut map = map_writable(&crate::staging::create(staged, bytes, &[])?)?;
            populate(&mut map)?;
            (map, Some(map_view(staged)?))
        }
        None => {
            let mut map = map_writable(&file)?;
            map.fill(0);
            map.flush()?;
            (map, None)
        }
    };
    if sync {
        file.sync_all()?;
        File::open(directory).and_then(|directory| directory.sync_all())?;
    }
    Ok((file, map, view))
}

/// The segment preparer thread and the spares it keeps.
#[derive(Debug)]
pub(crate) struct Preparer {
    /// Ready spares, oldest first: the writer takes the front one.
    spares: Arc<Mutex<VecDeque<SpareSegment>>>,
    /// Mappings of segments rolled over from, unmapped here: tearing down tens of MiB of page
    /// tables is not the writer's job either.
    retired: Arc<Mutex<Vec<MmapMut>>>,
    /// Set by the writer when it wants spares (see `Journal::wants_spare`), cleared by the
    /// thread once as many as kept are ready.
    wanted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    /// Starts the thread, which keeps up to `kept` spares (at least one) once asked.
    pub fn start(
        directory: PathBuf,
        stage_dir: Option<PathBuf>,
        name: &str,
        bytes: u64,
        kept: usize,
    ) -> std::io::Result<Preparer> {
        remove_spares(&directory, name)?;
        let name = name.to_owned();
        let kept = kept.max(1);
        let mut number = 0;
        let spares = Arc::new(Mutex::new(VecDeque::with_capacity(kept)));
        let retired = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_spares, thread_stop) = (Arc::clone(&spares), Arc::clone(&stop));
        let thread_retired = Arc::clone(&retired);
        let wanted = Arc::new(AtomicBool::new(false));
        let thread_wanted = Arc::clone(&wanted);
        let thread = thread::Builder::new().name(format!("prepare-{name}")).spawn(move || {
            crate::priority::set_current_thread_nice(crate::priority::HOUSEKEEPING_NICE);
            while !thread_stop.load(Ordering::Acquire) {
                let path = spare_path(&directory, &name, number);
                // Taken out under the lock and unmapped after it is released: the guard of a
                // `drop(take(&mut *lock()))` lives to the end of that statement, so the writer's
                // next `retire` (the loop's or the FIX thread's, at a roll-over) waited for this
                // niced thread to tear down tens of megabytes of page tables.
                let retired: Vec<MmapMut> = std::mem::take(
                    &mut *thread_retired.lock().unwrap_or_else(PoisonError::into_inner),
                );
                for map in &retired {
                    discard_page_tables(map);
                }
                drop(retired);
                let ready = thread_spares.lock().unwrap_or_else(PoisonError::into_inner).len();
                if ready < kept && thread_wanted.load(Ordering::Acquire) {
                    // On failure the writer prepares its next segment itself and reports any
                    // error then, where it can be handled; try again after a pause.
                    let staged = stage_dir.as_ref().map(|stage| spare_path(stage, &name, number));
                    // A spare mapped directly is written through and synced here, so that
                    // the writer's appends never allocate a block; a staged one is synced by
                    // the flusher once it is in use (see `prepare_segment`).
                    let sync = staged.is_none();
                    match prepare_segment(&directory, &path, bytes, staged.as_deref(), sync) {
                        Ok((file, map, view)) => {
                            number += 1;
                            let staged = staged.zip(view);
                            let spare = SpareSegment { path, file, map, staged };
                            let mut spares =
                                thread_spares.lock().unwrap_or_else(PoisonError::into_inner);
                            spares.push_back(spare);
                            if spares.len() >= kept {
                                thread_wanted.store(false, Ordering::Release);
                            }
                            // Round again at once, for the next spare.
                            continue;
                        }
                        // Still wanted: the writer's next roll-over or request retries.
                        Err(_) => thread::sleep(Duration::from_millis(100)),
                    }
                }
                thread::park();
            }
        })?;
        Ok(Preparer { spares, retired, wanted, stop, thread: Some(thread) })
    }

    /// Hands over the mapping of a segment rolled over from, for unmapping on this thread.
    pub fn retire(&self, map: MmapMut) {
        self.retired.lock().unwrap_or_else(PoisonError::into_inner).push(map);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// The oldest spare segment if one is ready. The caller renames it away and then calls
    /// [`Preparer::refill`].
    pub fn take(&self) -> Option<SpareSegment> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// Starts preparing spares until as many as kept are ready.
    pub fn refill(&self) {
        self.wanted.store(true, Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Preparer {
    /// Stops the thread and returns the spares it left.
    pub fn stop(mut self) -> VecDeque<SpareSegment> {
        self.halt();
        std::mem::take(&mut *self.spares.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident size of this process's mapping that starts at `address`, from
    /// `/proc/self/smaps`.
    fn mapping_rss_kib(address: usize) -> usize {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let start = line.split('-').next().and_then(|hex| usize::from_str_radix(hex, 16).ok());
            if start != Some(address) {
                continue;
            }
            for field in lines.by_ref() {
                if let Some(kib) = field.strip_prefix("Rss:") {
                    return kib.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no mapping at {address:#x}");
    }

    #[test]
    fn discarding_a_mappings_page_tables_keeps_what_was_written_through_it() {
        let dir = testkit::TempDir::new("background", "discard");
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("segment");
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        // Several discard pieces and a part piece, so that every piece's bounds are used.
        let bytes = 2 * DISCARD_CALL_BYTES + 4096;
        file.set_len(bytes as u64).unwrap();
        let mut map = map_writable(&file).unwrap();
        let pattern = |index: usize| u8::try_from(index % 251).unwrap();
        for (index, byte) in map.iter_mut().enumerate() {
            *byte = pattern(index);
        }
        let resident = |map: &MmapMut| mapping_rss_kib(map.as_ptr() as usize);
        assert!(resident(&map) >= bytes / 1024, "written pages are mapped");
        discard_page_tables(&map);
        // The page tables are gone: nothing of the mapping is resident in it any more, so the
        // `munmap` that follows has nothing to tear down.
        assert_eq!(resident(&map), 0, "the mapping's pages were dropped");
        // Read back through the mapping (the file's pages fault in again), then from the file
        // once the mapping is gone: the dirty pages were neither lost nor zeroed.
        assert!(map.iter().enumerate().all(|(index, &byte)| byte == pattern(index)));
        drop(map);
        let on_file = fs::read(&path).unwrap();
        assert_eq!(on_file.len(), bytes);
        assert!(on_file.iter().enumerate().all(|(index, &byte)| byte == pattern(index)));
    }
}
