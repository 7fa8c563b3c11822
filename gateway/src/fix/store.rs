//! Per-session persistence: the next inbound and outbound sequence numbers and every outbound
//! message, so that a counterparty reconnecting after a restart of the node continues its
//! session and can ask for a resend of messages sent before the restart.
//!
//! [`SessionStore`] is what the session state machine needs; [`MemoryStore`] keeps it in
//! memory (tests, and sessions that need not survive a restart) and [`FixStore`] hands out
//! [`RocksSessionStore`]s over one RocksDB database shared by all sessions.
//!
//! Writes are batched: every session's writes go into one pending `WriteBatch`, and the
//! acceptor calls [`FixStore::flush`] once per pass, before it sends anything. Every message a
//! counterparty has received was thus in the write-ahead log file (the page cache) first, and
//! one RocksDB write (one `write` system call) carries a whole pass's messages instead of one
//! per message. A read flushes the pending batch first, so it always sees every write.
//!
//! Key layout, per session, with `prefix` = `s` SenderCompID `/` TargetCompID `/`:
//!
//! ```text
//! prefix "in"                 -> next inbound MsgSeqNum, u64 big-endian
//! prefix "out"                -> next outbound MsgSeqNum, u64 big-endian
//! prefix "m" seq (u64 BE)     -> the encoded outbound message with that MsgSeqNum
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::rocks::append_mostly;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

/// A store operation that failed; the session that hit it is disconnected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("FIX session store at {path}: {source}")]
    Rocks { path: PathBuf, source: rocksdb::Error },
    #[error("FIX session store: corrupt value under key {key:?}")]
    Corrupt { key: String },
}

/// Where a session keeps its sequence numbers and outbound messages.
pub trait SessionStore: std::fmt::Debug + Send {
    /// The next inbound and outbound sequence numbers, `(1, 1)` for a new session.
    fn sequence_numbers(&self) -> Result<(u64, u64), StoreError>;
    /// Records the next expected inbound sequence number.
    fn set_next_inbound(&mut self, next: u64) -> Result<(), StoreError>;
    /// Records an outbound message sent with `seq`; the next outbound number becomes
    /// `seq + 1`.
    fn append_outbound(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError>;
    /// Visits the stored outbound messages with `begin <= seq <= end`, in order.
    fn outbound_range(
        &self,
        begin: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), StoreError>;
    /// Forgets all messages and restarts both sequences at 1.
    fn reset(&mut self) -> Result<(), StoreError>;
}

/// A store that lives as long as the process.
#[derive(Debug)]
pub struct MemoryStore {
    next_inbound: u64,
    next_outbound: u64,
    messages: BTreeMap<u64, Vec<u8>>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore { next_inbound: 1, next_outbound: 1, messages: BTreeMap::new() }
    }
}

impl SessionStore for MemoryStore {
    fn sequence_numbers(&self) -> Result<(u64, u64), StoreError> {
        Ok((self.next_inbound, self.next_outbound))
    }

    fn set_next_inbound(&mut self, next: u64) -> Result<(), StoreError> {
        self.next_inbound = next;
        Ok(())
    }

    fn append_outbound(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.messages.insert(seq, bytes.to_vec());
        self.next_outbound = seq + 1;
        Ok(())
    }

    fn outbound_range(
        &self,
        begin: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), StoreError> {
        for (seq, bytes) in self.messages.range(begin..=end) {
            visit(*seq, bytes);
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        *self = MemoryStore::default();
        Ok(())
    }
}

/// The RocksDB database holding every session's state.
#[derive(Clone)]
pub struct FixStore {
    db: Arc<DB>,
    path: PathBuf,
    /// Writes not yet given to RocksDB; every handle of the store shares them. The lock is
    /// never contended: all sessions live on the acceptor's thread.
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    batch: WriteBatch,
    /// The batch holds an outbound message (not only sequence numbers).
    outbound: bool,
}

impl std::fmt::Debug for FixStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FixStore {
    /// Opens (creating if needed) the database in directory `path`.
    pub fn open(path: &Path) -> Result<FixStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        append_mostly(&mut options);
        let db = DB::open(&options, path)
            .map_err(|source| StoreError::Rocks { path: path.to_path_buf(), source })?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        Ok(FixStore { db: Arc::new(db), path: path.to_path_buf(), pending })
    }

    /// Writes the pending batch to the database. Not synced: a write survives a crash of the
    /// process, and a crash of the machine may lose the last few outbound messages, which the
    /// counterparty then sees as a sequence gap and recovers by ResendRequest; the node's
    /// durability story is the journal, not this. Call before sending what was stored.
    ///
    /// A write that fails leaves the batch pending, so that the next flush tries it again:
    /// the sessions have already numbered what it holds.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.batch.is_empty() {
            return Ok(());
        }
        // RocksDB takes the batch by value; a copy of its bytes puts it back on failure.
        let kept = pending.batch.data().to_vec();
        let batch = std::mem::take(&mut pending.batch);
        let mut options = WriteOptions::default();
        options.set_sync(false);
        match self.db.write_opt(batch, &options) {
            Ok(()) => {
                pending.outbound = false;
                Ok(())
            }
            Err(source) => {
                pending.batch = WriteBatch::from_data(&kept);
                Err(StoreError::Rocks { path: self.path.clone(), source })
            }
        }
    }

    /// Whether an outbound message waits to be written: the acceptor then flushes in that
    /// pass even if nothing goes on the wire (its session is not connected), so that the
    /// bridge's delivered mark, recorded at the next poll, never gets ahead of it.
    pub fn has_outbound(&self) -> bool {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).outbound
    }

    fn stage(&self, stage: impl FnOnce(&mut WriteBatch)) {
        stage(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner).batch);
    }

    /// The store of the session between our `sender_comp_id` and their `target_comp_id`.
    pub fn session(&self, sender_comp_id: &str, target_comp_id: &str) -> RocksSessionStore {
        let prefix = format!("s{sender_comp_id}/{target_comp_id}/").into_bytes();
        let mut store = RocksSessionStore {
            store: self.clone(),
            in_key: Vec::new(),
            out_key: Vec::new(),
            message_key: Vec::new(),
            prefix,
        };
        (store.in_key, store.out_key) = (store.key(b"in"), store.key(b"out"));
        store.message_key = store.key(b"m");
        store
    }
}

impl Drop for FixStore {
    fn drop(&mut self) {
        // A store dropped without a last flush (a test, an error path) still keeps what it was
        // given; each handle flushes, which costs nothing when nothing is pending.
        if let Err(error) = self.flush() {
            eprintln!("fix: {error}");
        }
    }
}

/// One session's view of a [`FixStore`].
pub struct RocksSessionStore {
    store: FixStore,
    prefix: Vec<u8>,
    /// The keys written on every message, built once.
    in_key: Vec<u8>,
    out_key: Vec<u8>,
    /// `prefix "m"` and room for a seq: reused for every outbound message's key.
    message_key: Vec<u8>,
}

impl std::fmt::Debug for RocksSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksSessionStore")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

impl RocksSessionStore {
    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + suffix.len() + 8);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(suffix);
        key
    }

    fn message_key(&self, seq: u64) -> Vec<u8> {
        let mut key = self.key(b"m");
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    fn rocks(&self) -> impl Fn(rocksdb::Error) -> StoreError + '_ {
        |source| StoreError::Rocks { path: self.store.path.clone(), source }
    }

    fn read_u64(&self, suffix: &[u8]) -> Result<u64, StoreError> {
        self.store.flush()?;
        let key = self.key(suffix);
        match self.store.db.get(&key).map_err(self.rocks())? {
            None => Ok(1),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt { key: String::from_utf8_lossy(&key).into() }),
        }
    }
}

impl SessionStore for RocksSessionStore {
    fn sequence_numbers(&self) -> Result<(u64, u64), StoreError> {
        Ok((self.read_u64(b"in")?, self.read_u64(b"out")?))
    }

    fn set_next_inbound(&mut self, next: u64) -> Result<(), StoreError> {
        self.store.stage(|batch| batch.put(&self.in_key, next.to_be_bytes()));
        Ok(())
    }

    fn append_outbound(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let prefix_len = self.prefix.len() + 1;
        self.message_key.truncate(prefix_len);
        self.message_key.extend_from_slice(&seq.to_be_bytes());
        let (message_key, out_key) = (&self.message_key, &self.out_key);
        self.store.stage(|batch| {
            batch.put(message_key, bytes);
            batch.put(out_key, (seq + 1).to_be_bytes());
        });
        self.store.pending.lock().unwrap_or_else(PoisonError::into_inner).outbound = true;
        Ok(())
    }

    fn outbound_range(
        &self,
        begin: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), StoreError> {
        self.store.flush()?;
        let first = self.message_key(begin);
        let message_prefix = self.key(b"m");
        let iterator = self.store.db.iterator(IteratorMode::From(&first, Direction::Forward));
        for item in iterator {
            let (key, value) = item.map_err(self.rocks())?;
            let Some(seq_bytes) = key.strip_prefix(message_prefix.as_slice()) else { break };
            let seq = <[u8; 8]>::try_from(seq_bytes)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt { key: String::from_utf8_lossy(&key).into() })?;
            if seq > end {
                break;
            }
            visit(seq, &value);
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        let (first, last) = (self.message_key(0), self.message_key(u64::MAX));
        let (in_key, out_key) = (self.key(b"in"), self.key(b"out"));
        self.store.stage(|batch| {
            batch.delete_range(&first, &last);
            batch.delete(&last);
            batch.put(in_key, 1u64.to_be_bytes());
            batch.put(out_key, 1u64.to_be_bytes());
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_writes_that_no_flush_has_written_yet() {
        let dir = std::env::temp_dir().join(format!("fix-store-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FixStore::open(&dir).unwrap();
        let mut session = store.session("EXCH", "C1");
        session.append_outbound(1, b"one").unwrap();
        session.set_next_inbound(4).unwrap();
        // A resend asked for in the same pass as the message was stored must still find it.
        let mut seen = Vec::new();
        session.outbound_range(1, 1, &mut |seq, bytes| seen.push((seq, bytes.to_vec()))).unwrap();
        assert_eq!(seen, vec![(1, b"one".to_vec())]);
        assert_eq!(session.sequence_numbers().unwrap(), (4, 2));
        // Sequence numbers alone may wait for the acceptor's idle flush; a message may not.
        assert!(!store.has_outbound(), "the reads flushed everything");
        session.set_next_inbound(5).unwrap();
        assert!(!store.has_outbound());
        session.append_outbound(2, b"two").unwrap();
        assert!(store.has_outbound());
        store.flush().unwrap();
        assert!(!store.has_outbound());
        drop((session, store));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rocks_store_keeps_sequences_and_messages_across_reopen() {
        let dir = std::env::temp_dir().join(format!("fix-store-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = FixStore::open(&dir).unwrap();
            let mut session = store.session("EXCH", "C1");
            let mut other = store.session("EXCH", "C10");
            session.append_outbound(1, b"one").unwrap();
            session.append_outbound(2, b"two").unwrap();
            other.append_outbound(1, b"other").unwrap();
            session.set_next_inbound(5).unwrap();
        }
        let store = FixStore::open(&dir).unwrap();
        let mut session = store.session("EXCH", "C1");
        assert_eq!(session.sequence_numbers().unwrap(), (5, 3));
        let mut seen = Vec::new();
        session.outbound_range(2, 9, &mut |seq, bytes| seen.push((seq, bytes.to_vec()))).unwrap();
        assert_eq!(seen, vec![(2, b"two".to_vec())]);
        session.reset().unwrap();
        assert_eq!(session.sequence_numbers().unwrap(), (1, 1));
        let mut count = 0;
        session.outbound_range(0, u64::MAX, &mut |_, _| count += 1).unwrap();
        assert_eq!(count, 0);
        assert_eq!(store.session("EXCH", "C10").sequence_numbers().unwrap(), (1, 2));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
