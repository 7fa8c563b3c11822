//! Durable state of the order entry that the journals do not hold: which session and ClOrdID
//! each submitted request came from (stored before its commands are submitted), and snapshots
//! of the whole order table so that a restart replays only the journal after the newest one.
//!
//! One RocksDB database, two key spaces, values as JSON:
//!
//! ```text
//! 'q' | request number (u64 big-endian)  → Request
//! 's' | seq (u64 big-endian)             → EntrySnapshot as of the end of command seq
//! 'd' | 0                                 → seq (u64 big-endian): reports delivered up to here
//! ```
//!
//! Requests and delivered marks are batched: they wait in a pending `WriteBatch` until
//! [`OrderStore::flush`], so that the bridge pays one RocksDB write (one `write`, or one fsync)
//! for all the requests of a pass, before it submits any of their commands. Reads flush first.
//!
//! Big-endian numbers make RocksDB's byte order the numeric order. A snapshot makes every
//! request numbered below its `next_request` redundant, so storing one prunes those requests
//! and all older snapshots but the previous one (kept in case the newest turns out unreadable).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::rocks::append_mostly;
use rocksdb::{Options, WriteBatch, WriteOptions, DB};

use super::{EntrySnapshot, Request};

const REQUEST: u8 = b'q';
const SNAPSHOT: u8 = b's';
const DELIVERED: u8 = b'd';
/// Snapshots kept: the newest and one fallback.
const SNAPSHOTS_KEPT: usize = 2;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderStoreError {
    #[error("order store {path}: {source}")]
    Rocks { path: PathBuf, source: rocksdb::Error },
    #[error("order store {path}: undecodable record {key:?}: {source}")]
    Decode { path: PathBuf, key: Vec<u8>, source: serde_json::Error },
}

/// The order entry's RocksDB store.
pub struct OrderStore {
    db: DB,
    path: PathBuf,
    /// Whether writes are fsynced.
    sync: bool,
    /// Requests and marks not yet written; see the module documentation.
    pending: Mutex<WriteBatch>,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

fn key(space: u8, number: u64) -> [u8; 9] {
    let mut key = [space; 9];
    key[1..].copy_from_slice(&number.to_be_bytes());
    key
}

impl OrderStore {
    /// Opens or creates the store in `directory`. With `sync`, every flush is fsynced, which
    /// matches a journal that fsyncs before release; without it a flushed write survives a
    /// process crash but not a power loss, like a page-cache journal.
    pub fn open(directory: &Path, sync: bool) -> Result<OrderStore, OrderStoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        append_mostly(&mut options);
        let db = DB::open(&options, directory)
            .map_err(|source| OrderStoreError::Rocks { path: directory.to_owned(), source })?;
        let pending = Mutex::new(WriteBatch::default());
        Ok(OrderStore { db, path: directory.to_owned(), sync, pending })
    }

    fn rocks(&self) -> impl FnOnce(rocksdb::Error) -> OrderStoreError + '_ {
        |source| OrderStoreError::Rocks { path: self.path.clone(), source }
    }

    fn write_options(&self) -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        options
    }

    fn stage(&self, stage: impl FnOnce(&mut WriteBatch)) {
        stage(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Writes the pending requests and marks, fsynced under the sync policy. A request is
    /// stored (as the policy defines it) only after the next flush.
    pub fn flush(&self) -> Result<(), OrderStoreError> {
        let batch = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        self.db.write_opt(batch, &self.write_options()).map_err(self.rocks())
    }

    /// Stores a request (pending: [`OrderStore::flush`] before submitting its commands).
    pub fn put_request(&self, request: &Request) -> Result<(), OrderStoreError> {
        let value = serde_json::to_vec(request).expect("requests always serialize");
        self.stage(|batch| batch.put(key(REQUEST, request.number), value));
        Ok(())
    }

    /// Every stored request numbered `from` or later, in number order.
    pub fn requests_from(&self, from: u64) -> Result<Vec<Request>, OrderStoreError> {
        self.flush()?;
        let mut requests = Vec::new();
        let mut iterator = self.db.raw_iterator();
        iterator.seek(key(REQUEST, from));
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            if key.first() != Some(&REQUEST) {
                break;
            }
            let request = serde_json::from_slice(value).map_err(|source| {
                OrderStoreError::Decode { path: self.path.clone(), key: key.to_vec(), source }
            })?;
            requests.push(request);
            iterator.next();
        }
        iterator.status().map_err(self.rocks())?;
        Ok(requests)
    }

    /// Stores a snapshot and prunes what it makes redundant, and flushes.
    pub fn put_snapshot(&self, snapshot: &EntrySnapshot) -> Result<(), OrderStoreError> {
        self.flush()?;
        let value = serde_json::to_vec(snapshot).expect("snapshots always serialize");
        let mut batch = WriteBatch::default();
        batch.put(key(SNAPSHOT, snapshot.seq), value);
        batch.delete_range(key(REQUEST, 0), key(REQUEST, snapshot.next_request));
        let mut older = self.snapshot_seqs()?;
        older.retain(|seq| *seq < snapshot.seq);
        let excess = (older.len() + 1).saturating_sub(SNAPSHOTS_KEPT);
        for seq in &older[..excess] {
            batch.delete(key(SNAPSHOT, *seq));
        }
        self.db.write_opt(batch, &self.write_options()).map_err(self.rocks())
    }

    fn snapshot_seqs(&self) -> Result<Vec<u64>, OrderStoreError> {
        let mut seqs = Vec::new();
        let mut iterator = self.db.raw_iterator();
        iterator.seek(key(SNAPSHOT, 0));
        while let Some(key) = iterator.key() {
            let Some((&SNAPSHOT, number)) = key.split_first() else { break };
            let bytes: [u8; 8] = number.try_into().expect("snapshot keys are nine bytes");
            seqs.push(u64::from_be_bytes(bytes));
            iterator.next();
        }
        iterator.status().map_err(self.rocks())?;
        Ok(seqs)
    }

    /// Records that the reports of every command up to `seq` have been handed to the FIX
    /// sessions (which store them before sending), so a restart sends the later ones. Buffered
    /// like every write: a mark lost in a crash makes the restart send more reports again.
    pub fn put_delivered(&self, seq: u64) -> Result<(), OrderStoreError> {
        self.stage(|batch| batch.put(key(DELIVERED, 0), seq.to_be_bytes()));
        Ok(())
    }

    /// The seq [`OrderStore::put_delivered`] last recorded, if any.
    pub fn delivered(&self) -> Result<Option<u64>, OrderStoreError> {
        self.flush()?;
        let value = self.db.get(key(DELIVERED, 0)).map_err(self.rocks())?;
        Ok(value
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// The newest snapshot that decodes, if any; an undecodable one is skipped for the one
    /// before it, since replaying from further back gives the same state.
    pub fn latest_snapshot(&self) -> Result<Option<EntrySnapshot>, OrderStoreError> {
        self.flush()?;
        for seq in self.snapshot_seqs()?.into_iter().rev() {
            let Some(value) = self.db.get(key(SNAPSHOT, seq)).map_err(self.rocks())? else {
                continue;
            };
            if let Ok(snapshot) = serde_json::from_slice::<EntrySnapshot>(&value) {
                return Ok(Some(snapshot));
            }
        }
        Ok(None)
    }
}

impl Drop for OrderStore {
    fn drop(&mut self) {
        // Whatever was stored since the last flush is written before the database closes.
        if let Err(error) = self.flush() {
            eprintln!("fix: {error}");
        }
    }
}
