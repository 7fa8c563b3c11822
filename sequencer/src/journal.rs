//! The journal: append-only segment files written through `memmap2`, each pre-allocated to a
//! configured size and rolled over when full. Every record is framed with its length, its
//! sequence number and a CRC32C, so recovery can tell a torn tail (a crash mid-append: truncated
//! and reported) from corruption before the tail (refused, naming the segment and offset).
//!
//! ```text
//! Segment file `<name>-<first seq, 20 digits>.journal`
//!  0          8        12       16                24                32        36          64
//!  +----------+--------+--------+-----------------+-----------------+---------+-----------+
//!  | magic    | version| order  | first_seq (u64) | segment_bytes   | crc32c  | zero pad  |
//!  | EXJRNL01 | (u32)  | (u32)  |                 | (u64)           | of 0..32|           |
//!  +----------+--------+--------+-----------------+-----------------+---------+-----------+
//!  64: frames, back to back, then zeros to the end of the pre-allocated file.
//!
//! Frame
//!  0          4          8                16
//!  +----------+----------+----------------+----------------------------------+
//!  | length   | crc32c   | seq (u64)      | payload (`length` bytes)          |
//!  | (u32)    | of seq + payload          |                                  |
//!  +----------+----------+----------------+----------------------------------+
//!  A zero length marks the end of the written part.
//! ```
//!
//! `order` says how sequence numbers advance: strictly by one (the command journal: one record
//! per command) or never backwards (the event journal: many events per command). Recovery checks
//! it across segments.
//!
//! Durability is a policy ([`Durability`]); after each flush the journal publishes the highest
//! sequence number it knows to be durable ([`Journal::watermark`]). Output paths release what a
//! command produced only once the watermark has passed it. Under group commit a flusher thread
//! syncs and publishes, so the writer never waits for the disk; a preparer thread keeps the next
//! segment ready for every policy (see `background.rs`).

use std::fs::{self, File, OpenOptions};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::MmapMut;

use crate::background::{
    map_view, populate, prepare_segment, Flusher, Preparer, SegmentFiles, Shared, SpareSegment,
    Stage,
};
use crate::staging;

const MAGIC: &[u8; 8] = b"EXJRNL01";
const VERSION: u32 = 1;
const SEGMENT_HEADER_BYTES: usize = 64;
const FRAME_HEADER_BYTES: usize = 16;
/// The largest payload a frame may claim; anything larger is corruption, not a record.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 16;

/// How sequence numbers advance from one frame to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqOrder {
    /// Each frame's seq is the previous one plus one.
    Strict,
    /// Each frame's seq is at least the previous one.
    NonDecreasing,
}

impl SeqOrder {
    fn code(self) -> u32 {
        match self {
            SeqOrder::Strict => 1,
            SeqOrder::NonDecreasing => 2,
        }
    }

    /// Whether `seq` could appear anywhere after `previous`, with records lost in between.
    fn may_come_after(self, previous: u64, seq: u64) -> bool {
        match self {
            SeqOrder::Strict => seq > previous,
            SeqOrder::NonDecreasing => seq >= previous,
        }
    }

    fn follows(self, previous: u64, seq: u64) -> bool {
        match self {
            SeqOrder::Strict => seq == previous + 1,
            SeqOrder::NonDecreasing => seq >= previous,
        }
    }
}

/// When appended records become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written to the page cache at commit; survives a process crash, not a power cut.
    PageCache,
    /// `fdatasync` on a flusher thread at most every `interval` or every `records` records,
    /// whichever comes first; the writer never waits for it.
    GroupCommit { interval: Duration, records: u64 },
    /// `fdatasync` at every commit, on the writer's thread, before anything is released.
    SyncEachCommit,
}

impl std::str::FromStr for Durability {
    type Err = String;

    /// `page-cache`, `group-commit` (1 ms or 4096 records), `group-commit:<µs>:<records>`,
    /// `sync`.
    fn from_str(text: &str) -> Result<Durability, String> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["page-cache"] => Ok(Durability::PageCache),
            ["sync"] => Ok(Durability::SyncEachCommit),
            ["group-commit"] => {
                Ok(Durability::GroupCommit { interval: Duration::from_millis(1), records: 4096 })
            }
            ["group-commit", micros, records] => {
                let micros: u64 =
                    micros.parse().map_err(|_| format!("bad interval in {text:?}"))?;
                let records: u64 = records.parse().map_err(|_| format!("bad count in {text:?}"))?;
                if records == 0 {
                    return Err("group-commit needs a positive record count".to_owned());
                }
                Ok(Durability::GroupCommit { interval: Duration::from_micros(micros), records })
            }
            _ => Err(format!(
                "unknown durability {text:?}: expected page-cache, group-commit, \
                 group-commit:<µs>:<records> or sync"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub directory: PathBuf,
    /// File name prefix: `commands`, `events`.
    pub name: String,
    /// Size of each pre-allocated segment file.
    pub segment_bytes: u64,
    pub order: SeqOrder,
    pub durability: Durability,
    /// Truncate at the first corrupt frame instead of refusing to open. The report says what
    /// was dropped.
    pub truncate_corrupt: bool,
    /// Under group commit, a tmpfs directory in which the writer's segments are staged, the
    /// flusher writing them to disk (see `staging.rs`): [`staging::default_root`] finds
    /// `/dev/shm`. `None`, or another policy, maps the disk files directly.
    pub staging: Option<PathBuf>,
    /// How many segments the preparer keeps ready ahead of the writer (at least one). A writer
    /// that rolls over while none is ready prepares and syncs its next segment itself, on its
    /// own thread. A journal whose segments fill in under a second wants two: on this VM the
    /// preparer's sync of one new file took 0.6 s while the flushers kept the disk busy, and
    /// the FIX thread then stalled for tens of milliseconds preparing one itself. Each spare
    /// held costs a segment of disk and, staged, of tmpfs.
    pub spares: usize,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a journal segment ({reason})")]
    BadSegment { path: PathBuf, reason: &'static str },
    #[error(
        "{path} at offset {offset}: corrupt record ({reason}); refusing to start \
         (the explicit truncate-corrupt option would drop everything from here)"
    )]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },
    #[error("seq {seq} does not follow {previous} in {path} at offset {offset}")]
    Sequence { path: PathBuf, offset: u64, previous: u64, seq: u64 },
    #[error("payload of {0} bytes: must be a positive multiple of 8 that fits a segment")]
    PayloadSize(usize),
    #[error("append seq {seq} does not follow {previous}")]
    AppendOutOfOrder { previous: u64, seq: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    pub records: u64,
    pub last_seq: Option<u64>,
    /// A partial frame at the end of the last segment, zeroed: `(segment, offset, bytes)`.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// With `truncate_corrupt`: where the corruption was and how many bytes were dropped.
    pub truncated_corruption: Option<(PathBuf, u64, u64)>,
}

struct Segment {
    path: PathBuf,
    first_seq: u64,
}

/// The writing side of one journal.
pub struct Journal {
    config: JournalConfig,
    segments: Vec<Segment>,
    map: MmapMut,
    /// Where the next frame goes in the current segment.
    offset: usize,
    last_seq: Option<u64>,
    /// Records appended since the flusher was last woken (group commit).
    unflushed_records: u64,
    /// The files to sync and the watermark, shared with the flusher.
    shared: Arc<Shared>,
    flusher: Option<Flusher>,
    preparer: Option<Preparer>,
    /// The preparer has been asked for the segment after the current one.
    spare_requested: bool,
    /// Where segments are staged, if they are.
    stage_dir: Option<PathBuf>,
}

impl Drop for Journal {
    fn drop(&mut self) {
        // The mapping is unmapped before the flusher is stopped (fields drop in order), so it is
        // withdrawn first: the flusher must never rearm pages that are no longer this mapping.
        let mut files = self.shared.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        files.mapping = (0, 0);
        drop(files);
        if self.stage_dir.is_some() {
            // The preparer stops first, so that no spare appears in the staging directory after
            // its spare is removed.
            let spares = self.preparer.take().map(Preparer::stop).unwrap_or_default();
            for (staged, _) in spares.into_iter().filter_map(|spare| spare.staged) {
                let _ = fs::remove_file(staged);
            }
            // Everything appended reaches the disk files' page cache, as it would have without
            // staging. On failure the staged copies stay, and the next open merges them.
            match self.shared.unstage(self.offset) {
                Ok(()) => {
                    if let Some(stage_dir) = &self.stage_dir {
                        // Empty unless a spare is still being prepared; the next open makes
                        // the directory again.
                        let _ = staging::remove_stage_dir(stage_dir);
                    }
                }
                Err(error) => {
                    eprintln!("journal {}: staged records not on disk: {error}", self.config.name);
                }
            }
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("name", &self.config.name)
            .field("segments", &self.segments.len())
            .field("offset", &self.offset)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

fn segment_path(directory: &Path, name: &str, first_seq: u64) -> PathBuf {
    directory.join(format!("{name}-{first_seq:020}.journal"))
}

/// The segments of journal `name` in `directory`, oldest first.
fn list_segments(directory: &Path, name: &str) -> Result<Vec<Segment>, JournalError> {
    let mut segments = Vec::new();
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(segments),
        Err(error) => return Err(io(directory)(error)),
    };
    let prefix = format!("{name}-");
    for entry in entries {
        let path = entry.map_err(io(directory))?.path();
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else { continue };
        let Some(rest) = file_name.strip_prefix(&prefix) else { continue };
        let Some(digits) = rest.strip_suffix(".journal") else { continue };
        if let Ok(first_seq) = digits.parse::<u64>() {
            segments.push(Segment { path, first_seq });
        }
    }
    segments.sort_by_key(|segment| segment.first_seq);
    Ok(segments)
}

fn segment_header(
    order: SeqOrder,
    first_seq: u64,
    segment_bytes: u64,
) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&order.code().to_le_bytes());
    header[16..24].copy_from_slice(&first_seq.to_le_bytes());
    header[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..32]);
    header[32..36].copy_from_slice(&crc.to_le_bytes());
    header
}

fn check_header(path: &Path, bytes: &[u8], order: SeqOrder) -> Result<u64, JournalError> {
    let bad = |reason| JournalError::BadSegment { path: path.to_owned(), reason };
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(bad("shorter than its header"));
    }
    if &bytes[0..8] != MAGIC {
        return Err(bad("wrong magic"));
    }
    let word =
        |range: std::ops::Range<usize>| u32::from_le_bytes(bytes[range].try_into().expect("4"));
    if word(32..36) != crc32c::crc32c(&bytes[0..32]) {
        return Err(bad("header checksum mismatch"));
    }
    if word(8..12) != VERSION {
        return Err(bad("unsupported version"));
    }
    if word(12..16) != order.code() {
        return Err(bad("sequence order differs from this journal's"));
    }
    Ok(u64::from_le_bytes(bytes[16..24].try_into().expect("8")))
}

/// One frame read from a segment.
enum Frame<'a> {
    Record { seq: u64, payload: &'a [u8], next: usize },
    End,
    Bad(&'static str),
}

fn read_frame(bytes: &[u8], offset: usize) -> Frame<'_> {
    if offset + 4 > bytes.len() {
        return Frame::End;
    }
    let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4")) as usize;
    if length == 0 {
        return Frame::End;
    }
    if length > PAYLOAD_BYTES_MAX {
        return Frame::Bad("length out of range");
    }
    let end = offset + FRAME_HEADER_BYTES + length;
    if end > bytes.len() {
        return Frame::Bad("frame runs past the end of the segment");
    }
    let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4"));
    if crc != crc32c::crc32c(&bytes[offset + 8..end]) {
        return Frame::Bad("checksum mismatch");
    }
    let seq = u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().expect("8"));
    Frame::Record { seq, payload: &bytes[offset + FRAME_HEADER_BYTES..end], next: end }
}

/// Whether everything from `claimed_end` on is zero.
fn zero_from(bytes: &[u8], offset: usize, claimed_end: usize) -> bool {
    bytes[claimed_end.min(bytes.len()).max(offset)..].iter().all(|&byte| byte == 0)
}

/// Whether the bad frame at `offset` is the remains of an interrupted last append rather than
/// damage to a record that others follow. It is torn only if its length is one the writer could
/// have written, nothing but zeros lies beyond the extent it claims, and no valid frame that
/// continues the sequence starts anywhere inside that extent (frames are 8-byte aligned, so a
/// damaged length cannot hide later records).
fn is_torn_tail(bytes: &[u8], offset: usize, last_seq: Option<u64>, order: SeqOrder) -> bool {
    let claimed = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4")) as usize;
    if claimed > PAYLOAD_BYTES_MAX {
        return false;
    }
    let claimed_end = offset + FRAME_HEADER_BYTES + claimed;
    if !zero_from(bytes, offset, claimed_end) {
        return false;
    }
    let scan_end = claimed_end.min(bytes.len());
    let mut candidate = offset + 8;
    while candidate + FRAME_HEADER_BYTES <= scan_end {
        if let Frame::Record { seq, .. } = read_frame(bytes, candidate) {
            if last_seq.is_none_or(|previous| order.may_come_after(previous, seq)) {
                return false;
            }
        }
        candidate += 8;
    }
    true
}

fn map_file(path: &Path, create_bytes: Option<u64>) -> Result<(File, MmapMut), JournalError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create_bytes.is_some())
        .truncate(false)
        .open(path)
        .map_err(io(path))?;
    if let Some(bytes) = create_bytes {
        file.set_len(bytes).map_err(io(path))?;
    }
    // SAFETY: `map_mut` is unsafe only because another process could change the file under the
    // mapping; a data directory has one owning process, which alone opens its segments.
    #[allow(unsafe_code)]
    let map = unsafe { MmapMut::map_mut(&file) }.map_err(io(path))?;
    Ok((file, map))
}

fn segment_file_name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().expect("segment paths end in a file name")
}

/// Stages the segment a reopened journal goes on writing: a staged copy of its written part
/// (`map[..offset]`, which the disk already has) and the writer's mapping of it.
fn stage_tail(
    stage_dir: &Path,
    disk_path: &Path,
    map: &MmapMut,
    offset: usize,
) -> Result<(Stage, MmapMut), JournalError> {
    let staged_path = stage_dir.join(segment_file_name(disk_path));
    let failed = io(&staged_path);
    let staged = staging::create(&staged_path, map.len() as u64, &map[..offset]);
    let writer_map = staged.and_then(|file| {
        // SAFETY: as in `map_file`: the staged copy belongs to this journal's one writer.
        #[allow(unsafe_code)]
        let map = unsafe { MmapMut::map_mut(&file) };
        map
    });
    let mut writer_map = writer_map.map_err(failed)?;
    populate(&mut writer_map).map_err(io(&staged_path))?;
    let view = map_view(&staged_path).map_err(io(&staged_path))?;
    Ok((Stage::new(staged_path, view, offset), writer_map))
}

/// The bytes of a segment as a reader sees them: its staged copy while the journal stages it
/// (which holds at least what the disk file does), else the disk file.
fn read_segment(stage_dir: Option<&Path>, segment: &Segment) -> Result<Vec<u8>, JournalError> {
    if let Some(staged) = staging::staged_copy(stage_dir, &segment.path) {
        match fs::read(&staged) {
            Ok(bytes) => return Ok(bytes),
            // Synced and removed since it was listed: the disk file has it all now.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&staged)(error)),
        }
    }
    fs::read(&segment.path).map_err(io(&segment.path))
}

/// Like [`read_segment`], mapped instead of copied.
fn map_segment(stage_dir: Option<&Path>, segment: &Segment) -> Result<memmap2::Mmap, JournalError> {
    let map = |path: &Path| {
        let file = File::open(path)?;
        // SAFETY: `map` is unsafe only because another process could change the file under the
        // mapping; a data directory has one owning process, which alone opens its segments.
        #[allow(unsafe_code)]
        let bytes = unsafe { memmap2::Mmap::map(&file) };
        bytes
    };
    if let Some(staged) = staging::staged_copy(stage_dir, &segment.path) {
        match map(&staged) {
            Ok(bytes) => return Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&staged)(error)),
        }
    }
    map(&segment.path).map_err(io(&segment.path))
}

impl Journal {
    /// Opens (or creates) the journal, scanning every segment: checksums, sequence order, and
    /// the tail. A torn tail is zeroed and reported; corruption before it is an error unless
    /// `truncate_corrupt` is set.
    // tidy: long function, recovery reads best as one pass over the segments.
    pub fn open(config: JournalConfig) -> Result<(Journal, OpenReport), JournalError> {
        assert!(config.segment_bytes > (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES) as u64);
        fs::create_dir_all(&config.directory).map_err(io(&config.directory))?;
        // Records a crash of the process left staged go to the disk files before anything
        // reads them.
        staging::reconcile(&config.directory, &config.name).map_err(io(&config.directory))?;
        let stage_dir = match (&config.staging, config.durability) {
            (Some(root), Durability::GroupCommit { .. }) => {
                Some(staging::establish(&config.directory, &config.name, root).map_err(io(root))?)
            }
            _ => {
                staging::forget(&config.directory, &config.name).map_err(io(&config.directory))?;
                None
            }
        };
        let segments = list_segments(&config.directory, &config.name)?;
        let mut report = OpenReport { segments: segments.len(), ..OpenReport::default() };
        let mut last_seq: Option<u64> = None;
        let mut tail: Option<(File, MmapMut, usize)> = None;
        let mut previous: Option<(File, MmapMut, usize)> = None;
        let count = segments.len();
        for (index, segment) in segments.iter().enumerate() {
            let is_last = index + 1 == count;
            let (file, mut map) = map_file(&segment.path, None)?;
            if is_last
                && map.len() >= SEGMENT_HEADER_BYTES
                && zero_from(&map[..SEGMENT_HEADER_BYTES], 0, 0)
            {
                // A prepared segment renamed into place whose header never reached the disk: it
                // was never synced, so nothing in it was ever reported durable. Writing resumes
                // in the segment before it.
                drop(map);
                fs::remove_file(&segment.path).map_err(io(&segment.path))?;
                report.segments = index;
                tail = previous.take();
                break;
            }
            let first_seq = check_header(&segment.path, &map, config.order)?;
            if first_seq != segment.first_seq {
                let reason = "header first seq differs from its file name";
                return Err(JournalError::BadSegment { path: segment.path.clone(), reason });
            }
            let mut offset = SEGMENT_HEADER_BYTES;
            loop {
                match read_frame(&map, offset) {
                    Frame::Record { seq, next, .. } => {
                        let follows =
                            last_seq.is_none_or(|previous| config.order.follows(previous, seq));
                        let opens_segment = offset == SEGMENT_HEADER_BYTES;
                        let ordered = follows && (!opens_segment || seq >= first_seq);
                        if !ordered {
                            return Err(JournalError::Sequence {
                                path: segment.path.clone(),
                                offset: offset as u64,
                                previous: last_seq.unwrap_or(0),
                                seq,
                            });
                        }
                        last_seq = Some(seq);
                        report.records += 1;
                        offset = next;
                    }
                    Frame::End => {
                        // An append interrupted before its length was written leaves bytes
                        // behind the end marker; clear them so they can never be misread.
                        if is_last && !zero_from(&map, offset, offset) {
                            let dropped = (map.len() - offset) as u64;
                            map[offset..].fill(0);
                            map.flush().map_err(io(&segment.path))?;
                            report.torn_tail = Some((segment.path.clone(), offset as u64, dropped));
                        }
                        break;
                    }
                    Frame::Bad(reason) => {
                        let dropped = (map.len() - offset) as u64;
                        if is_last && is_torn_tail(&map, offset, last_seq, config.order) {
                            map[offset..].fill(0);
                            map.flush().map_err(io(&segment.path))?;
                            report.torn_tail = Some((segment.path.clone(), offset as u64, dropped));
                        } else if config.truncate_corrupt {
                            map[offset..].fill(0);
                            map.flush().map_err(io(&segment.path))?;
                            report.truncated_corruption =
                                Some((segment.path.clone(), offset as u64, dropped));
                            for later in &segments[index + 1..] {
                                fs::remove_file(&later.path).map_err(io(&later.path))?;
                            }
                        } else {
                            let path = segment.path.clone();
                            return Err(JournalError::Corrupt {
                                path,
                                offset: offset as u64,
                                reason,
                            });
                        }
                        break;
                    }
                }
            }
            if is_last || report.truncated_corruption.is_some() {
                tail = Some((file, map, offset));
                if report.truncated_corruption.is_some() {
                    report.segments = index + 1;
                    break;
                }
            } else {
                previous = Some((file, map, offset));
            }
        }
        let mut segments = segments;
        segments.truncate(report.segments);
        report.last_seq = last_seq;
        let (files, map, offset) = match tail {
            Some((file, map, offset)) => {
                let path = &segments.last().expect("a tail segment is listed").path;
                let (stage, map) = match &stage_dir {
                    Some(stage_dir) => {
                        let (stage, staged_map) = stage_tail(stage_dir, path, &map, offset)?;
                        (Some(Arc::new(stage)), staged_map)
                    }
                    None => (None, map),
                };
                (SegmentFiles { disk: Arc::new(file), stage }, map, offset)
            }
            None => {
                let first_seq = last_seq.map_or(1, |seq| seq + 1);
                let (segment, files, map) =
                    Journal::create_segment(&config, stage_dir.as_deref(), first_seq, None)?;
                segments.push(segment);
                (files, map, SEGMENT_HEADER_BYTES)
            }
        };
        let watermark = Arc::new(AtomicU64::new(last_seq.unwrap_or(0)));
        let mapping = (map.as_ptr() as usize, map.len());
        let shared =
            Arc::new(Shared::new(config.directory.clone(), files, mapping, offset, watermark));
        let spawn = |error| JournalError::Io { path: config.directory.clone(), source: error };
        let flusher = match config.durability {
            Durability::GroupCommit { interval, .. } => {
                Some(Flusher::start(Arc::clone(&shared), &config.name, interval).map_err(spawn)?)
            }
            Durability::PageCache | Durability::SyncEachCommit => None,
        };
        let preparer = Preparer::start(
            config.directory.clone(),
            stage_dir.clone(),
            &config.name,
            config.segment_bytes,
            config.spares,
        )
        .map_err(spawn)?;
        let journal = Journal {
            config,
            segments,
            map,
            offset,
            last_seq,
            unflushed_records: 0,
            shared,
            flusher,
            preparer: Some(preparer),
            spare_requested: false,
            stage_dir,
        };
        let mut journal = journal;
        if journal.wants_spare() {
            journal.request_spare();
        }
        Ok((journal, report))
    }

    /// A segment whose first record will be `first_seq`: the prepared `spare` renamed into
    /// place, or one created, sized and pre-faulted now. A spare's header and name become
    /// durable with the next sync, before any record in it counts as durable; until then
    /// recovery treats a last segment with a blank header as never started.
    fn create_segment(
        config: &JournalConfig,
        stage_dir: Option<&Path>,
        first_seq: u64,
        spare: Option<SpareSegment>,
    ) -> Result<(Segment, SegmentFiles, MmapMut), JournalError> {
        let path = segment_path(&config.directory, &config.name, first_seq);
        let staged_path = stage_dir.map(|stage_dir| stage_dir.join(segment_file_name(&path)));
        let header = segment_header(config.order, first_seq, config.segment_bytes);
        if let Some(SpareSegment { path: spare_path, file, mut map, staged }) = spare {
            map[..SEGMENT_HEADER_BYTES].copy_from_slice(&header);
            // The staged copy first, so that a reader who finds the disk segment also finds the
            // copy with its header (the disk file's is still blank). A staged copy left without
            // its disk segment by a crash in between holds only a header, and the next open
            // drops it.
            let stage = match (staged, staged_path) {
                (Some((staged, view)), Some(staged_path)) => {
                    fs::rename(&staged, &staged_path).map_err(io(&staged_path))?;
                    Some(Arc::new(Stage::new(staged_path, view, 0)))
                }
                _ => None,
            };
            fs::rename(&spare_path, &path).map_err(io(&path))?;
            let files = SegmentFiles { disk: Arc::new(file), stage };
            return Ok((Segment { path, first_seq }, files, map));
        }
        let (file, mut map, view) = prepare_segment(
            &config.directory,
            &path,
            config.segment_bytes,
            staged_path.as_deref(),
            true,
        )
        .map_err(io(&path))?;
        map[..SEGMENT_HEADER_BYTES].copy_from_slice(&header);
        let stage = match staged_path.zip(view) {
            Some((staged_path, view)) => {
                file.write_all_at(&header, 0).and_then(|()| file.sync_data()).map_err(io(&path))?;
                Some(Arc::new(Stage::new(staged_path, view, SEGMENT_HEADER_BYTES)))
            }
            None => {
                map.flush_range(0, SEGMENT_HEADER_BYTES).map_err(io(&path))?;
                None
            }
        };
        Ok((Segment { path, first_seq }, SegmentFiles { disk: Arc::new(file), stage }, map))
    }

    /// Appends one record. It is durable only after a [`Journal::commit`] says so.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), JournalError> {
        if payload.is_empty() || payload.len() > PAYLOAD_BYTES_MAX || payload.len() % 8 != 0 {
            return Err(JournalError::PayloadSize(payload.len()));
        }
        if let Some(previous) = self.last_seq {
            if !self.config.order.follows(previous, seq) {
                return Err(JournalError::AppendOutOfOrder { previous, seq });
            }
        }
        let frame_bytes = FRAME_HEADER_BYTES + payload.len();
        if self.offset + frame_bytes + 4 > self.map.len() {
            self.roll_over(seq, frame_bytes)?;
        }
        let at = self.offset;
        let length = u32::try_from(payload.len()).expect("bounded by PAYLOAD_BYTES_MAX");
        self.map[at + 8..at + 16].copy_from_slice(&seq.to_le_bytes());
        self.map[at + FRAME_HEADER_BYTES..at + frame_bytes].copy_from_slice(payload);
        let crc = crc32c::crc32c(&self.map[at + 8..at + frame_bytes]);
        self.map[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        // The length goes last: until it is written, recovery sees the end of the journal here.
        self.map[at..at + 4].copy_from_slice(&length.to_le_bytes());
        self.offset += frame_bytes;
        self.last_seq = Some(seq);
        self.unflushed_records += 1;
        if !self.spare_requested && self.wants_spare() {
            self.request_spare();
        }
        Ok(())
    }

    /// Whether the preparer should make the next segment now. A segment mapped directly waits
    /// until the current one is half full, so that preparing it (writing every block) does not
    /// compete with the appends for the disk for long. A staged one is asked for at once: it
    /// costs the disk nothing, and reserving tens of megabytes of memory the host has not
    /// backed yet can take the preparer a second or more on this VM; a spare still missing at
    /// roll-over is prepared by the writer itself, and a run of `bench fix` once stalled for
    /// seconds that way.
    fn wants_spare(&self) -> bool {
        self.stage_dir.is_some() || self.offset > self.map.len() / 2
    }

    /// Asks the preparer for the next segment, once per segment.
    fn request_spare(&mut self) {
        if let Some(preparer) = &self.preparer {
            preparer.refill();
        }
        self.spare_requested = true;
    }

    fn roll_over(&mut self, seq: u64, frame_bytes: usize) -> Result<(), JournalError> {
        if (SEGMENT_HEADER_BYTES + frame_bytes + 4) as u64 > self.config.segment_bytes {
            return Err(JournalError::PayloadSize(frame_bytes));
        }
        let spare = self.preparer.as_ref().and_then(Preparer::take);
        let renamed = spare.is_some();
        let (segment, segment_files, map) =
            Journal::create_segment(&self.config, self.stage_dir.as_deref(), seq, spare)?;
        self.spare_requested = false;
        self.segments.push(segment);
        // The old segment's records are synced by the next flush, with the new one's header:
        // its file moves to the retired list, which every sync covers.
        let mut files = self.shared.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = std::mem::replace(&mut files.current, segment_files);
        files.retired.push((old, self.offset));
        files.directory_dirty |= renamed;
        files.mapping = (map.as_ptr() as usize, map.len());
        self.shared.tail.store(SEGMENT_HEADER_BYTES, Ordering::Release);
        drop(files);
        let old_map = std::mem::replace(&mut self.map, map);
        match &self.preparer {
            Some(preparer) => preparer.retire(old_map),
            None => drop(old_map),
        }
        self.offset = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// Ends a batch: makes its records durable as the policy says and advances the watermark.
    /// Returns the durable sequence number.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        let last = self.last_seq.unwrap_or(0);
        // Release: the flusher copies a staged segment up to the tail it reads, so the frames
        // before it must be visible first.
        self.shared.tail.store(self.offset, Ordering::Release);
        self.shared.committed.store(last, Ordering::Release);
        match self.config.durability {
            Durability::PageCache => self.shared.watermark.store(last, Ordering::Release),
            Durability::SyncEachCommit => self.flush()?,
            Durability::GroupCommit { records, .. } => {
                if self.shared.failed() {
                    return Err(self.flusher_failure());
                }
                if self.unflushed_records >= records {
                    if let Some(flusher) = &self.flusher {
                        flusher.wake();
                    }
                    self.unflushed_records = 0;
                }
            }
        }
        Ok(self.durable_seq())
    }

    fn flusher_failure(&self) -> JournalError {
        match self.shared.take_failure() {
            Some((path, source)) => JournalError::Io { path, source },
            None => JournalError::Io {
                path: self.config.directory.clone(),
                source: std::io::Error::other("the flusher failed earlier"),
            },
        }
    }

    /// Makes everything appended so far durable now, on the caller's thread.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.shared.failed() {
            return Err(self.flusher_failure());
        }
        // The tail first, as at a commit: a staged journal's sync copies up to it, so without it
        // the records since the last commit would be counted durable without reaching the disk.
        self.shared.tail.store(self.offset, Ordering::Release);
        self.shared.committed.store(self.last_seq.unwrap_or(0), Ordering::Release);
        self.unflushed_records = 0;
        self.shared.sync().map_err(|(path, source)| JournalError::Io { path, source })
    }

    /// The highest sequence number durable under the policy (zero before any).
    pub fn durable_seq(&self) -> u64 {
        self.shared.watermark.load(Ordering::Acquire)
    }

    /// A handle other threads read the durable sequence number from.
    pub fn watermark(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.watermark)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The first seq of the segment being written: it changes when an append rolls over.
    pub fn segment_first_seq(&self) -> u64 {
        self.segments.last().map_or(1, |segment| segment.first_seq)
    }

    /// Whether a payload of `bytes` still fits the segment being written.
    pub fn fits(&self, bytes: usize) -> bool {
        self.offset + FRAME_HEADER_BYTES + bytes + 4 <= self.map.len()
    }

    /// Makes the next append start a new segment, so that a journal whose records refer to
    /// earlier ones (the FIX session log) can open every segment with what it needs. Does
    /// nothing while the current segment holds no record.
    ///
    /// # Panics
    ///
    /// For a [`SeqOrder::NonDecreasing`] journal, whose next record may repeat the last seq
    /// and so could not name a segment of its own.
    pub fn roll_over_now(&mut self) -> Result<(), JournalError> {
        assert_eq!(self.config.order, SeqOrder::Strict, "only a strict journal rolls over early");
        let Some(last) = self.last_seq else { return Ok(()) };
        if self.offset == SEGMENT_HEADER_BYTES {
            return Ok(());
        }
        self.roll_over(last + 1, 0)
    }

    /// Deletes the segments all of whose records lie below `seq`, never the one being written;
    /// returns how many went. For a [`SeqOrder::Strict`] journal whose older records later ones
    /// supersede (the FIX session log), not for the command and event journals, which replay
    /// needs whole.
    pub fn remove_segments_before(&mut self, seq: u64) -> Result<usize, JournalError> {
        let detached = self.detach_segments_before(seq);
        let count = detached.len();
        detached.delete()?;
        Ok(count)
    }

    /// Like [`Journal::remove_segments_before`], but leaves deleting the files to the caller,
    /// so that a journal shared under a lock can be pruned without holding it for the deletes
    /// (milliseconds of file-system work, which the writer would wait out). The journal forgets
    /// the segments at once; readers never start in them again, since their records all lie
    /// below `seq`.
    #[must_use = "the segments' files stay until deleted"]
    pub fn detach_segments_before(&mut self, seq: u64) -> DetachedSegments {
        // In a strict journal a segment's records lie below the next segment's first seq.
        let removable = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].first_seq <= seq)
            .count()
            .min(self.segments.len().saturating_sub(1));
        let files = self
            .segments
            .drain(..removable)
            .map(|segment| {
                // The path only: whether the copy still exists is for `delete` to find out,
                // after the caller has let go of its lock.
                let staged =
                    self.stage_dir.as_ref().map(|dir| dir.join(segment_file_name(&segment.path)));
                (segment.path, staged)
            })
            .collect();
        DetachedSegments { files }
    }

    /// A handle with which another thread makes this journal durable up to its last commit.
    pub fn sync_handle(&self) -> JournalSync {
        JournalSync(Arc::clone(&self.shared))
    }
}

/// Segments a journal has let go of, whose files are still to be deleted.
#[derive(Debug, Default)]
pub struct DetachedSegments {
    /// Each segment's file and its staged copy, if one exists.
    files: Vec<(PathBuf, Option<PathBuf>)>,
}

impl DetachedSegments {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Deletes the files. A segment whose file stays after an error is found again by the
    /// next open, with records that are only older than what follows it.
    pub fn delete(self) -> Result<(), JournalError> {
        for (path, staged) in self.files {
            fs::remove_file(&path).map_err(io(&path))?;
            if let Some(staged) = staged {
                // Already copied and synced (it was rolled over from), or about to be in vain;
                // most often gone already.
                let _ = fs::remove_file(staged);
            }
        }
        Ok(())
    }
}

/// Makes a journal durable up to what its writer last committed, from any thread.
#[derive(Clone, Debug)]
pub struct JournalSync(Arc<Shared>);

impl JournalSync {
    /// Syncs everything committed so far and returns the durable seq.
    pub fn sync(&self) -> Result<u64, JournalError> {
        self.0.sync().map_err(|(path, source)| JournalError::Io { path, source })?;
        Ok(self.0.watermark.load(Ordering::Acquire))
    }
}

/// Reads every record of journal `name` in `directory`, oldest first, checking checksums and
/// order as recovery does. For replay, verification and history.
pub fn read_all(
    directory: &Path,
    name: &str,
    order: SeqOrder,
    visit: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<u64, JournalError> {
    Ok(read_from(directory, name, order, 0, visit)?.records)
}

/// What [`read_from`] read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Records read (and visited or not), in the segments that were read.
    pub records: u64,
    /// The last record's seq: the end of the journal, whatever `from_seq` was.
    pub last_seq: Option<u64>,
}

/// Like [`read_all`], but skips whole segments whose records all lie below `from_seq`, so that a
/// replay from a snapshot reads only the journal's tail. Records below `from_seq` in the
/// segments that are read are still checked and passed to `visit`; the caller filters them.
pub fn read_from(
    directory: &Path,
    name: &str,
    order: SeqOrder,
    from_seq: u64,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<ReadSummary, JournalError> {
    let segments = list_segments(directory, name)?;
    let stage_dir = staging::recorded(directory, name);
    // A segment's records lie below the next segment's first seq (or at it, for an order that
    // allows repeats), so every segment before the last one that starts below `from_seq` can go.
    let mut start = segments.windows(2).take_while(|pair| pair[1].first_seq < from_seq).count();
    loop {
        let summary = read_segments(stage_dir.as_deref(), &segments[start..], order, &mut visit)?;
        // A crash right after a rollover can leave the newest segment without records; the end
        // of the journal is then in the segment before it.
        if summary.last_seq.is_some() || start == 0 {
            return Ok(summary);
        }
        start -= 1;
    }
}

/// Visits the records of journal `name` from `from_seq` on, in order, until `visit` breaks:
/// for reading a little of a long journal (a FIX resend), where [`read_from`] would read every
/// later segment whole. Segments are mapped, not copied, so only the pages visited are read.
/// Records below `from_seq` in the first segment read are skipped; checksums and order are
/// checked as recovery does.
pub fn scan_from(
    directory: &Path,
    name: &str,
    order: SeqOrder,
    from_seq: u64,
    mut visit: impl FnMut(u64, &[u8]) -> ControlFlow<()>,
) -> Result<(), JournalError> {
    let segments = list_segments(directory, name)?;
    let stage_dir = staging::recorded(directory, name);
    let start = segments.windows(2).take_while(|pair| pair[1].first_seq <= from_seq).count();
    let mut last_seq: Option<u64> = None;
    let reading = &segments[start..];
    for (index, segment) in reading.iter().enumerate() {
        let bytes = map_segment(stage_dir.as_deref(), segment)?;
        if index + 1 == reading.len() && blank_header(&bytes) {
            break;
        }
        let flow = visit_segment(segment, &bytes, order, &mut last_seq, |seq, payload| {
            Ok(if seq >= from_seq { visit(seq, payload) } else { ControlFlow::Continue(()) })
        })?;
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

/// Checks a segment's header, then visits its frames in order, checking each frame's checksum
/// and that its seq follows `last_seq` (which it advances), until the end or a break.
fn visit_segment(
    segment: &Segment,
    bytes: &[u8],
    order: SeqOrder,
    last_seq: &mut Option<u64>,
    mut visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>, JournalError>,
) -> Result<ControlFlow<()>, JournalError> {
    check_header(&segment.path, bytes, order)?;
    let mut offset = SEGMENT_HEADER_BYTES;
    loop {
        match read_frame(bytes, offset) {
            Frame::Record { seq, payload, next } => {
                if let Some(previous) = *last_seq {
                    if !order.follows(previous, seq) {
                        let path = segment.path.clone();
                        let offset = offset as u64;
                        return Err(JournalError::Sequence { path, offset, previous, seq });
                    }
                }
                *last_seq = Some(seq);
                if visit(seq, payload)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                offset = next;
            }
            Frame::End => return Ok(ControlFlow::Continue(())),
            Frame::Bad(reason) => {
                let path = segment.path.clone();
                return Err(JournalError::Corrupt { path, offset: offset as u64, reason });
            }
        }
    }
}

/// Whether a segment's header is still all zeros: the newest segment, between its rename into
/// place and the writing of its header (or after a crash there, until the next open removes
/// it). It holds no record yet, so a reader treats it as empty rather than as damaged.
fn blank_header(bytes: &[u8]) -> bool {
    bytes.len() >= SEGMENT_HEADER_BYTES && zero_from(&bytes[..SEGMENT_HEADER_BYTES], 0, 0)
}

fn read_segments(
    stage_dir: Option<&Path>,
    segments: &[Segment],
    order: SeqOrder,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), JournalError>,
) -> Result<ReadSummary, JournalError> {
    let mut last_seq: Option<u64> = None;
    let mut records = 0;
    for (index, segment) in segments.iter().enumerate() {
        let bytes = read_segment(stage_dir, segment)?;
        if index + 1 == segments.len() && blank_header(&bytes) {
            break;
        }
        // This visitor never breaks: every record is read.
        let _ = visit_segment(segment, &bytes, order, &mut last_seq, |seq, payload| {
            visit(seq, payload)?;
            records += 1;
            Ok(ControlFlow::Continue(()))
        })?;
    }
    Ok(ReadSummary { records, last_seq })
}
