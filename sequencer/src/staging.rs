//! Staged segments: under group commit the writer appends to a copy of each segment kept in a
//! memory-backed file system (tmpfs, `/dev/shm`), and the flusher writes what was committed
//! into the segment file on disk with `pwrite`, then syncs it.
//!
//! Why: a shared mapping of a disk file costs every sync one inter-processor interrupt per page.
//! Writing a page back cleans it, and the kernel write-protects a clean page in every mapping so
//! as to see the next write; that means a TLB shootdown on every core that runs the process,
//! page by page (`folio_mkclean` → `ptep_clear_flush`). On this virtual machine an interrupt
//! costs a hypervisor exit on both sides, and the application loop's core takes one for every
//! page of every journal: at 50,000 orders a second the four journals' flushers spent a third
//! of the shared core in `smp_call_function_many_cond`. tmpfs pages are never written back,
//! and pages written through `pwrite` are mapped by nobody, so neither needs a shootdown.
//!
//! What a record survives is unchanged. Once appended it is in memory the kernel keeps when the
//! process dies (a tmpfs file, like the page cache before), and once synced it is on disk. A
//! crash of the process leaves the staged copies behind; opening the journal again writes what
//! they hold beyond the disk files into them first (`reconcile`). A crash of the machine loses
//! tmpfs and the page cache alike, and recovery then reads what the last sync put on disk.
//!
//! ```text
//! data dir                              staging root (tmpfs)
//!   <name>.staging  ── names ──▶         exchange-<name>-<random>/
//!   <name>-<seq>.journal  ◀── pwrite ──    <name>-<seq>.journal   (the writer's mapping)
//!   <name>.spare.<n>                       <name>.spare.<n>
//! ```
//!
//! The staging directory's name is random and recorded in the data directory, so staged files
//! are only ever merged into the journal they were made for, never into a new journal that
//! reuses a path.
//!
//! A staging directory also names its journal, in a file `owner` written once the data
//! directory's record is durable. A journal that opens removes every staging directory under
//! its root whose owner no longer names it back: its data directory was deleted (a temporary
//! directory of a benchmark, a node wiped by hand), or it was replaced. Before this, each such
//! directory kept a journal's staged segments, a hundred megabytes or more, in tmpfs until the
//! machine restarted. A directory without `owner` is being set up, or was made by an older
//! version, and is left alone.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// tmpfs's `f_type` in `statfs`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// Staging is used by default only where tmpfs has at least this much room: a full tmpfs would
/// refuse to reserve a segment.
const ROOM_BYTES_MIN: u64 = 1 << 30;

/// Where journals under group commit stage their segments unless their configuration says
/// otherwise: the directory named by the environment variable `EXCHANGE_JOURNAL_STAGING`, or
/// none if it says `off`; without it, `/dev/shm` when that is a tmpfs with room to spare.
/// `None`: the writer maps the disk files themselves, as without staging.
pub fn default_root() -> Option<PathBuf> {
    match std::env::var_os("EXCHANGE_JOURNAL_STAGING") {
        Some(value) if value == "off" => None,
        Some(value) if !value.is_empty() => Some(PathBuf::from(value)),
        _ => {
            let root = Path::new("/dev/shm");
            let stat = rustix::fs::statfs(root).ok()?;
            // The fields' widths and signs differ between targets.
            #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
            let (is_tmpfs, room) = (
                stat.f_type as i64 == TMPFS_MAGIC,
                (stat.f_bavail as u64).saturating_mul(stat.f_bsize as u64),
            );
            (is_tmpfs && room >= ROOM_BYTES_MIN).then(|| root.to_owned())
        }
    }
}

fn pointer_path(directory: &Path, name: &str) -> PathBuf {
    directory.join(format!("{name}.staging"))
}

/// The file in a staging directory that names its journal: the data directory, then the name.
const OWNER_FILE: &str = "owner";

/// The prefix of every staging directory's name.
const STAGE_DIR_PREFIX: &str = "exchange-";

/// Removes a staging directory that holds no staged file any more (only, perhaps, its `owner`).
/// Fails, leaving it, if it still holds one.
pub(crate) fn remove_stage_dir(stage_dir: &Path) -> std::io::Result<()> {
    match fs::remove_file(stage_dir.join(OWNER_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    fs::remove_dir(stage_dir)
}

/// Removes the staging directories under `root` whose owner's data directory no longer records
/// them (see the module documentation), with whatever they hold. Returns how many went.
/// Best effort: one that cannot be read or removed is skipped.
pub(crate) fn sweep_orphans(root: &Path) -> usize {
    let Ok(entries) = fs::read_dir(root) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stage_dir = entry.path();
        let is_stage_dir = entry.file_name().to_str().is_some_and(|file| {
            file.starts_with(STAGE_DIR_PREFIX) && entry.file_type().is_ok_and(|kind| kind.is_dir())
        });
        if !is_stage_dir {
            continue;
        }
        let Ok(owner) = fs::read_to_string(stage_dir.join(OWNER_FILE)) else { continue };
        let Some((directory, name)) = owner.split_once('\n') else { continue };
        // Compared resolved, so that two spellings of one root (a symbolic link, a trailing
        // slash) never make a live directory look like another's.
        let named = recorded(Path::new(directory), name.trim_end())
            .and_then(|named| fs::canonicalize(named).ok());
        let this = fs::canonicalize(&stage_dir).ok();
        if this.is_some() && named != this && fs::remove_dir_all(&stage_dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The staging directory recorded for journal `name` in `directory`, if one is.
pub(crate) fn recorded(directory: &Path, name: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(pointer_path(directory, name)).ok()?;
    let path = PathBuf::from(text.trim_end());
    (!path.as_os_str().is_empty()).then_some(path)
}

/// The staged copy of the segment at `disk_path`, if the journal stages and the copy exists.
pub(crate) fn staged_copy(stage_dir: Option<&Path>, disk_path: &Path) -> Option<PathBuf> {
    let path = stage_dir?.join(disk_path.file_name()?);
    path.exists().then_some(path)
}

/// A name no other staging directory has had: the clock, the process id and std's per-process
/// random hash keys, hashed.
fn unique_suffix() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A new staging directory for journal `name` under `root`, recorded (durably) before anything
/// is staged in it.
pub(crate) fn establish(directory: &Path, name: &str, root: &Path) -> std::io::Result<PathBuf> {
    // A new directory every open, never the recorded one: [`reconcile`] has just emptied it,
    // and a copy of this data directory opened beside the original (a restored backup, say)
    // must not stage into the original's files.
    if let Some(previous) = recorded(directory, name) {
        let _ = remove_stage_dir(&previous);
    }
    sweep_orphans(root);
    let stage_dir = root.join(format!("{STAGE_DIR_PREFIX}{name}-{:016x}", unique_suffix()));
    fs::create_dir_all(&stage_dir)?;
    let pointer = pointer_path(directory, name);
    let temporary = directory.join(format!("{name}.staging.new"));
    let text = stage_dir.to_str().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "staging root is not UTF-8")
    })?;
    let mut file = File::create(&temporary)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, &pointer)?;
    File::open(directory)?.sync_all()?;
    // Only now that the record names the staging directory: a sweep by another journal that
    // found the owner but not yet the record would take the directory for an orphan.
    // A data directory whose path is not UTF-8 text, or holds a line break, gets no owner file
    // and is never swept: a misread owner would make a live directory look orphaned.
    let owned = fs::canonicalize(directory)?;
    if let Some(owned) = owned.to_str().filter(|text| !text.contains('\n')) {
        fs::write(stage_dir.join(OWNER_FILE), format!("{owned}\n{name}\n"))?;
    }
    Ok(stage_dir)
}

/// Forgets the staging of journal `name` (it was turned off): removes the recorded directory,
/// which [`reconcile`] has emptied, and the record.
pub(crate) fn forget(directory: &Path, name: &str) -> std::io::Result<()> {
    if let Some(stage_dir) = recorded(directory, name) {
        match remove_stage_dir(&stage_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        fs::remove_file(pointer_path(directory, name))?;
    }
    Ok(())
}

/// Writes into each disk segment of journal `name` what its staged copy holds beyond it (records
/// a crash of the process left unsynced), syncs it, and then removes every staged file. Returns
/// how many segments received bytes. Staged files without a disk segment are left-overs (a
/// spare, or a segment whose disk file was removed) and are dropped.
///
/// A staged copy only ever gains bytes after those the disk file has, and the disk file only
/// ever receives bytes from it, so writing the staged copy's written part over the disk file
/// changes nothing that was already there.
pub(crate) fn reconcile(directory: &Path, name: &str) -> std::io::Result<usize> {
    let Some(stage_dir) = recorded(directory, name) else { return Ok(0) };
    let entries = match fs::read_dir(&stage_dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    };
    let segment_prefix = format!("{name}-");
    let spare_prefix = format!("{name}.spare.");
    let mut merged = 0;
    for entry in entries {
        let staged = entry?.path();
        let Some(file_name) = staged.file_name().and_then(|file| file.to_str()) else { continue };
        let is_segment = file_name.starts_with(&segment_prefix) && file_name.ends_with(".journal");
        if !is_segment && !file_name.starts_with(&spare_prefix) {
            continue;
        }
        let disk = directory.join(file_name);
        if is_segment && disk.exists() {
            let bytes = fs::read(&staged)?;
            // Frames are 8-byte aligned and end in zeros: the written part ends at the last
            // non-zero byte, rounded up to a frame boundary.
            let written = bytes.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1);
            let written = written.next_multiple_of(8).min(bytes.len());
            if written > 0 {
                let file = OpenOptions::new().write(true).open(&disk)?;
                file.write_all_at(&bytes[..written], 0)?;
                file.sync_data()?;
                merged += 1;
            }
        }
        fs::remove_file(&staged)?;
    }
    if merged > 0 {
        // The merged segments' names may not have reached the disk before the crash either.
        File::open(directory)?.sync_all()?;
    }
    Ok(merged)
}

/// Creates the staged copy of a segment at `path`: `bytes` long, every page reserved in tmpfs
/// so that no write through its mapping can ever fail for want of memory (which would be a
/// `SIGBUS`, not an error), and starting with `prefix`.
pub(crate) fn create(path: &Path, bytes: u64, prefix: &[u8]) -> std::io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    // In pieces of a few dozen pages, for the reason `KERNEL_CALL_BYTES` gives.
    let piece = crate::background::KERNEL_CALL_BYTES as u64;
    let mut at = 0;
    while at < bytes {
        let len = piece.min(bytes - at);
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), at, len)?;
        at += len;
    }
    if !prefix.is_empty() {
        file.write_all_at(prefix, 0)?;
    }
    Ok(file)
}
