//! Engine snapshots in RocksDB: the full state at a command boundary, keyed by its sequence
//! number, so that recovery restores the newest one and replays only the journal after it.
//!
//! The engine encodes its own state ([`Engine::write_snapshot`]); this store adds what storage
//! needs: a key that sorts by sequence number, a header naming the layout, and a checksum, so
//! that a damaged snapshot is recognised, reported and passed over in favour of an older one (or
//! of genesis) instead of being restored.
//!
//! ```text
//! Key: seq (u64, big-endian), so that RocksDB's byte order is sequence order.
//!
//! Value
//!  0        4           6          8                16               24         28        32
//!  +--------+-----------+----------+----------------+----------------+----------+---------+
//!  | magic  | version   | zero     | seq (u64)      | length (u64)   | crc32c   | zero    |
//!  | EXSS   | (u16)     | (u16)    | same as key    | of the engine  | of 0..24 | pad     |
//!  |        |           |          |                | snapshot       | + bytes  |         |
//!  +--------+-----------+----------+----------------+----------------+----------+---------+
//!  32: the engine snapshot, `length` bytes (layout in `engine::snapshot`).
//! ```
//!
//! Header fields are little-endian like every other record in the workspace. The checksum
//! covers the header's first 24 bytes as well as the engine bytes, so a flipped bit in the
//! sequence number or the length is caught as surely as one in the state.
//!
//! Every write is synced (RocksDB's write-ahead log is fsynced before `save` returns): a
//! snapshot that `save` reported survives a crash. Writers take RocksDB's lock on the directory;
//! readers (replay, verify, history) open it read-only, which takes no lock, so they can run
//! beside a live node.

use std::path::{Path, PathBuf};

use engine::{Engine, EngineConfig, SnapshotError};
use rocksdb::{DBCompressionType, Options, WriteBatch, WriteOptions, DB};

/// The directory under a data directory that holds the snapshot database.
pub const SNAPSHOTS: &str = "snapshots";

const MAGIC: &[u8; 4] = b"EXSS";
/// The value layout this build writes and reads. Bump it for any change to the header.
pub const STORE_VERSION: u16 = 1;
/// Bytes before the engine snapshot in every value.
pub const HEADER_BYTES: usize = 32;

/// Errors of the store itself: storage that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotStoreError {
    #[error("snapshot store {path}: {source}")]
    Rocks { path: PathBuf, source: rocksdb::Error },
    #[error("no snapshot at seq {0}")]
    Missing(u64),
    #[error("snapshot at seq {seq} is unusable: {defect}")]
    Defect { seq: u64, defect: SnapshotDefect },
}

/// Why a stored snapshot cannot be restored. Recovery skips such a snapshot and reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotDefect {
    #[error("key is {0} bytes, not 8")]
    BadKey(usize),
    #[error("value is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("store format version {0} is not supported; this build reads {STORE_VERSION}")]
    UnsupportedVersion(u16),
    #[error("header says seq {header}, key says {key}")]
    SeqMismatch { key: u64, header: u64 },
    #[error("header says {header} engine bytes, the value holds {stored}")]
    LengthMismatch { header: u64, stored: u64 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("the engine refused it: {0}")]
    Restore(SnapshotError),
    #[error("the restored engine is at seq {engine}, not {key}")]
    EngineSeq { key: u64, engine: u64 },
    /// The snapshot is past the end of the command journal (the journal lost its tail, or was
    /// truncated at corruption): its state includes commands that are not journaled.
    #[error("it is past the end of the command journal (seq {journal_seq})")]
    AheadOfJournal { journal_seq: u64 },
}

/// A snapshot that recovery passed over, and why: a warning for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub seq: u64,
    pub defect: SnapshotDefect,
}

impl std::fmt::Display for SkippedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot at seq {} skipped: {}", self.seq, self.defect)
    }
}

/// The outcome of a search for the newest usable snapshot.
#[derive(Debug, Default)]
pub struct SnapshotSearch {
    /// The restored engine (its `seq()` is the snapshot's), or `None`: start from genesis.
    pub engine: Option<Engine>,
    /// Newer snapshots that were passed over, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// One stored snapshot, as listed: not checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub seq: u64,
    /// The whole stored value, header included.
    pub value_bytes: u64,
}

/// The snapshot database of one data directory.
pub struct SnapshotStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    // The engine bytes are written once and read at most a few times; compressing them would
    // only lengthen the loop's pause, and the bundled-free build need not link a codec.
    options.set_compression_type(DBCompressionType::None);
    options.set_keep_log_file_num(4);
    options
}

fn synced() -> WriteOptions {
    let mut write = WriteOptions::default();
    write.set_sync(true);
    write
}

/// The key of the snapshot at `seq`: big-endian, so that keys sort in sequence order.
pub fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn key_seq(key: &[u8]) -> Result<u64, SnapshotDefect> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| SnapshotDefect::BadKey(key.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn checksum(value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&value[0..24]), &value[HEADER_BYTES..])
}

fn u64_at(value: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(value[at..at + 8].try_into().expect("eight bytes"))
}

/// Checks a stored value against its key and returns the engine bytes.
fn check_value(seq: u64, value: &[u8]) -> Result<&[u8], SnapshotDefect> {
    if value.len() < HEADER_BYTES {
        return Err(SnapshotDefect::Short(value.len()));
    }
    if &value[0..4] != MAGIC {
        return Err(SnapshotDefect::BadMagic);
    }
    let version = u16::from_le_bytes([value[4], value[5]]);
    if version != STORE_VERSION {
        return Err(SnapshotDefect::UnsupportedVersion(version));
    }
    let header = u64_at(value, 8);
    if header != seq {
        return Err(SnapshotDefect::SeqMismatch { key: seq, header });
    }
    let length = u64_at(value, 16);
    let stored = (value.len() - HEADER_BYTES) as u64;
    if length != stored {
        return Err(SnapshotDefect::LengthMismatch { header: length, stored });
    }
    let stored = u32::from_le_bytes(value[24..28].try_into().expect("four bytes"));
    let computed = checksum(value);
    if stored != computed {
        return Err(SnapshotDefect::Checksum { stored, computed });
    }
    Ok(&value[HEADER_BYTES..])
}

/// Checks and restores one stored snapshot.
fn restore(seq: u64, value: &[u8], config: EngineConfig) -> Result<Engine, SnapshotDefect> {
    let bytes = check_value(seq, value)?;
    let engine = Engine::from_snapshot(config, bytes).map_err(SnapshotDefect::Restore)?;
    // The engine's own header names the seq too; all three must agree.
    if engine.seq() != seq {
        return Err(SnapshotDefect::EngineSeq { key: seq, engine: engine.seq() });
    }
    Ok(engine)
}

/// Encodes the engine's full state as a stored snapshot value (header, state, checksum) into
/// `value`, replacing what it held, and returns the state's seq. Reusing `value` keeps the
/// capture free of allocation once it has grown to the state's size.
pub fn encode_value(engine: &Engine, value: &mut Vec<u8>) -> u64 {
    let seq = engine.seq();
    value.clear();
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&STORE_VERSION.to_le_bytes());
    value.extend_from_slice(&[0, 0]);
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend_from_slice(&0u64.to_le_bytes());
    value.extend_from_slice(&[0; 8]);
    assert_eq!(value.len(), HEADER_BYTES);
    engine.write_snapshot(value);
    let length = (value.len() - HEADER_BYTES) as u64;
    value[16..24].copy_from_slice(&length.to_le_bytes());
    let crc = checksum(value);
    value[24..28].copy_from_slice(&crc.to_le_bytes());
    seq
}

impl SnapshotStore {
    /// Opens (or creates) the database in `directory` for writing. One writer per directory:
    /// RocksDB's lock refuses a second.
    pub fn open(directory: &Path) -> Result<SnapshotStore, SnapshotStoreError> {
        let db = DB::open(&options(), directory)
            .map_err(|source| SnapshotStoreError::Rocks { path: directory.to_owned(), source })?;
        Ok(SnapshotStore { db, path: directory.to_owned() })
    }

    /// Opens an existing database for reading only, without its lock, beside a live writer if
    /// there is one. `None` when `directory` holds no database (no snapshot was ever taken).
    pub fn open_read_only(directory: &Path) -> Result<Option<SnapshotStore>, SnapshotStoreError> {
        if !directory.join("CURRENT").exists() {
            return Ok(None);
        }
        let db = DB::open_for_read_only(&options(), directory, false)
            .map_err(|source| SnapshotStoreError::Rocks { path: directory.to_owned(), source })?;
        Ok(Some(SnapshotStore { db, path: directory.to_owned() }))
    }

    fn rocks(&self) -> impl FnOnce(rocksdb::Error) -> SnapshotStoreError + '_ {
        |source| SnapshotStoreError::Rocks { path: self.path.clone(), source }
    }

    /// Stores the engine's full state under its seq, synced, and returns the seq. Call it only
    /// between commands, and only once the journals are durable up to that seq, so that a
    /// snapshot is never ahead of the journal it will be replayed against.
    pub fn save(&self, engine: &Engine) -> Result<u64, SnapshotStoreError> {
        let mut value = Vec::new();
        let seq = encode_value(engine, &mut value);
        self.put(seq, &value)?;
        Ok(seq)
    }

    /// Stores a value [`encode_value`] made, synced. The same rule as [`SnapshotStore::save`]
    /// applies: the journals must be durable up to `seq` first.
    pub fn put(&self, seq: u64, value: &[u8]) -> Result<(), SnapshotStoreError> {
        debug_assert!(check_value(seq, value).is_ok());
        self.db.put_opt(key(seq), value, &synced()).map_err(self.rocks())
    }

    /// The newest snapshot at or below `at_or_below` (any, if `None`) that passes its checks
    /// and restores into an engine under `config`. Newer ones that fail are skipped and
    /// reported; storage errors are returned.
    pub fn newest_valid(
        &self,
        config: EngineConfig,
        at_or_below: Option<u64>,
    ) -> Result<SnapshotSearch, SnapshotStoreError> {
        let mut search = SnapshotSearch::default();
        let mut iterator = self.db.raw_iterator();
        match at_or_below {
            Some(seq) => iterator.seek_for_prev(key(seq)),
            None => iterator.seek_to_last(),
        }
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            match key_seq(key).and_then(|seq| restore(seq, value, config)) {
                Ok(engine) => {
                    search.engine = Some(engine);
                    return Ok(search);
                }
                Err(defect) => {
                    // A malformed key has no seq of its own; report it under zero.
                    let seq = key_seq(key).unwrap_or(0);
                    search.skipped.push(SkippedSnapshot { seq, defect });
                }
            }
            iterator.prev();
        }
        iterator.status().map_err(self.rocks())?;
        Ok(search)
    }

    /// Checks and restores the snapshot at `seq`.
    pub fn load(&self, seq: u64, config: EngineConfig) -> Result<Engine, SnapshotStoreError> {
        let value = self.db.get_pinned(key(seq)).map_err(self.rocks())?;
        let value = value.ok_or(SnapshotStoreError::Missing(seq))?;
        restore(seq, &value, config).map_err(|defect| SnapshotStoreError::Defect { seq, defect })
    }

    /// Every stored snapshot, oldest first, unchecked.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotStoreError> {
        let mut list = Vec::new();
        let mut iterator = self.db.raw_iterator();
        iterator.seek_to_first();
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            if let Ok(seq) = key_seq(key) {
                list.push(SnapshotInfo { seq, value_bytes: value.len() as u64 });
            }
            iterator.next();
        }
        iterator.status().map_err(self.rocks())?;
        Ok(list)
    }

    /// Deletes every snapshot but the newest `keep` (at least one is always kept). Returns how
    /// many were deleted. Checks are not run here: recovery still skips a damaged one.
    pub fn prune(&self, keep: usize) -> Result<usize, SnapshotStoreError> {
        let keep = keep.max(1);
        let mut keys = Vec::new();
        let mut iterator = self.db.raw_iterator();
        iterator.seek_to_first();
        while let Some(key) = iterator.key() {
            keys.push(key.to_vec());
            iterator.next();
        }
        iterator.status().map_err(self.rocks())?;
        let excess = keys.len().saturating_sub(keep);
        self.delete_keys(&keys[..excess])?;
        Ok(excess)
    }

    /// Deletes every snapshot above `seq`. Returns their seqs. Recovery uses it for snapshots
    /// past the end of the command journal: once new commands take those sequence numbers,
    /// such a snapshot would describe a history that never happened.
    pub fn delete_above(&self, seq: u64) -> Result<Vec<u64>, SnapshotStoreError> {
        let above: Vec<u64> =
            self.list()?.into_iter().map(|info| info.seq).filter(|&s| s > seq).collect();
        let keys: Vec<Vec<u8>> = above.iter().map(|&seq| key(seq).to_vec()).collect();
        self.delete_keys(&keys)?;
        Ok(above)
    }

    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<(), SnapshotStoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete(key);
        }
        self.db.write_opt(batch, &synced()).map_err(self.rocks())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
