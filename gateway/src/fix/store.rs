//! Per-session persistence: the next inbound and outbound sequence numbers and every outbound
//! message, so that a counterparty reconnecting after a restart of the node continues its
//! session and can ask for a resend of messages sent before the restart.
//!
//! [`SessionStore`] is what the session state machine needs; [`MemoryStore`] keeps it in
//! memory (tests, and sessions that need not survive a restart) and [`FixStore`] hands out
//! [`LogSessionStore`]s over one append-only log shared by all sessions.
//!
//! # The session log
//!
//! The log is a journal of the sequencer's kind (`sequencer::journal`: memory-mapped segment
//! files, every record framed with its length and a CRC32C, torn tails repaired on open) named
//! `fix` in the store's directory. Storing a message is a copy into the mapping, so it is in
//! the page cache, where it survives a crash of the process, before the acceptor sends a byte
//! of it, and it costs no system call. A flusher thread syncs the log every 100 ms: a crash of
//! the machine may lose the messages since, which the counterparty then sees as a sequence
//! gap and recovers by ResendRequest; the node's durability story is the journal, not this.
//! (The RocksDB store this replaces cost a `write` system call and a memtable insert per pass,
//! about a third of the FIX path's CPU. A directory still holding one is refused, not silently
//! ignored.)
//!
//! Record payloads, zero padded to a multiple of 8 bytes:
//!
//! ```text
//!  0      1      2          4              8                16
//!  +------+------+----------+--------------+----------------+---------------------------+
//!  | kind | 0    | length   | session      | number (u64)   | bytes (`length` of them)  |
//!  |      |      | (u16)    | (u32)        |                |                           |
//!  +------+------+----------+--------------+----------------+---------------------------+
//!  kind 1 DECLARE     the session's CompIDs: bytes = SenderCompID SOH TargetCompID
//!  kind 2 INBOUND     number = the next inbound MsgSeqNum
//!  kind 3 OUTBOUND    number = MsgSeqNum; bytes = the encoded message
//!  kind 4 RESET       both sequences restart at 1, earlier messages are gone
//!  kind 5 CHECKPOINT  number = the next inbound MsgSeqNum; bytes = next outbound (u64 LE)
//! ```
//!
//! Opening the store reads the whole log once and keeps, per session, its sequence numbers
//! and a sparse index from MsgSeqNum to log record; a resend reads the log from the indexed
//! record on. Whenever the log moves to a new segment, every session is declared and
//! checkpointed at its start, before any other record, so older segments matter only for the
//! outbound messages still in them: segments that no session can be asked to resend from any
//! more (every session has reset since) are deleted.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sequencer::journal::{
    read_all, scan_from, Durability, Journal, JournalConfig, JournalError, SeqOrder,
    PAYLOAD_BYTES_MAX,
};

/// The log's journal name: its segments are `fix-<first record>.journal`.
const LOG_NAME: &str = "fix";
/// Segment size of the session log.
pub const LOG_SEGMENT_BYTES: u64 = 16 << 20;
/// The sparse index keeps the record of every this many'th outbound message.
const INDEX_EVERY: u64 = 64;

const DECLARE: u8 = 1;
const INBOUND: u8 = 2;
const OUTBOUND: u8 = 3;
const RESET: u8 = 4;
const CHECKPOINT: u8 = 5;
const RECORD_HEADER: usize = 16;
/// The journal's own frame header (length, CRC32C, seq) before each record.
const JOURNAL_FRAME_HEADER: usize = 16;

/// A store operation that failed; the session that hit it is disconnected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("FIX session log in {path}: {source}")]
    Log { path: PathBuf, source: JournalError },
    #[error("FIX session log in {path}: record {record} is not a session record ({reason})")]
    Corrupt { path: PathBuf, record: u64, reason: &'static str },
    #[error("FIX session log: a message of {0} bytes is larger than a log record may be")]
    TooLarge(usize),
    #[error(
        "FIX session log in {path}: a segment cannot hold the declarations of {sessions} sessions"
    )]
    SegmentTooSmall { path: PathBuf, sessions: usize },
    #[error(
        "{path} holds a FIX session store in RocksDB, written by an earlier version; this \
         version keeps sessions in an append-only log and cannot read it. Move the directory \
         away to start every session afresh at sequence number 1 (counterparties must reset \
         too), or run the earlier version"
    )]
    Legacy { path: PathBuf },
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

/// One record of the log, decoded.
struct Record<'a> {
    kind: u8,
    session: u32,
    number: u64,
    bytes: &'a [u8],
}

fn decode_record(payload: &[u8]) -> Option<Record<'_>> {
    let header = payload.get(..RECORD_HEADER)?;
    let length = usize::from(u16::from_le_bytes([header[2], header[3]]));
    Some(Record {
        kind: header[0],
        session: u32::from_le_bytes(header[4..8].try_into().ok()?),
        number: u64::from_le_bytes(header[8..16].try_into().ok()?),
        bytes: payload.get(RECORD_HEADER..RECORD_HEADER + length)?,
    })
}

/// What the log knows of one session.
#[derive(Debug)]
struct SessionState {
    sender_comp_id: String,
    target_comp_id: String,
    next_inbound: u64,
    next_outbound: u64,
    /// MsgSeqNum and log record of the session's first outbound message since its last reset,
    /// then of every [`INDEX_EVERY`]th: a resend starts reading at the entry before its first
    /// message.
    index: Vec<(u64, u64)>,
}

impl SessionState {
    fn new(sender_comp_id: &str, target_comp_id: &str) -> SessionState {
        SessionState {
            sender_comp_id: sender_comp_id.to_owned(),
            target_comp_id: target_comp_id.to_owned(),
            next_inbound: 1,
            next_outbound: 1,
            index: Vec::new(),
        }
    }

    fn outbound(&mut self, seq: u64, record: u64) {
        // Numbers only rise between resets; one that went back starts the index afresh, so
        // that it stays sorted for the resend's binary search.
        if self.index.last().is_some_and(|&(last, _)| seq < last) {
            self.index.clear();
        }
        if self.index.last().is_none_or(|&(last, _)| seq >= last + INDEX_EVERY) {
            self.index.push((seq, record));
        }
        self.next_outbound = seq + 1;
    }

    fn reset(&mut self) {
        self.next_inbound = 1;
        self.next_outbound = 1;
        self.index.clear();
    }
}

/// The log and what it says, behind the store's lock.
struct Log {
    journal: Journal,
    /// The record number the next append gets.
    next_record: u64,
    sessions: Vec<SessionState>,
    ids: HashMap<(String, String), u32>,
    /// An outbound message was appended since the last [`FixStore::flush`].
    outbound: bool,
    /// Segments to delete once a newer segment's declarations are durable.
    superseded: Option<Superseded>,
    /// A record being built, reused.
    payload: Vec<u8>,
}

impl Log {
    /// Appends one record; when it would not fit the current segment, starts a new one with
    /// every session declared and checkpointed first (see the module documentation).
    fn append(&mut self, kind: u8, session: u32, number: u64, bytes: &[u8]) -> Result<u64, Fail> {
        if RECORD_HEADER + bytes.len() > PAYLOAD_BYTES_MAX {
            return Err(Fail::TooLarge(bytes.len()));
        }
        if !self.journal.fits(RECORD_HEADER + bytes.len().next_multiple_of(8)) {
            self.start_segment()?;
        }
        self.append_here(kind, session, number, bytes)
    }

    fn append_here(
        &mut self,
        kind: u8,
        session: u32,
        number: u64,
        bytes: &[u8],
    ) -> Result<u64, Fail> {
        let length = u16::try_from(bytes.len()).map_err(|_| Fail::TooLarge(bytes.len()))?;
        let padded = (RECORD_HEADER + bytes.len()).next_multiple_of(8);
        self.payload.clear();
        self.payload.extend_from_slice(&[kind, 0]);
        self.payload.extend_from_slice(&length.to_le_bytes());
        self.payload.extend_from_slice(&session.to_le_bytes());
        self.payload.extend_from_slice(&number.to_le_bytes());
        self.payload.extend_from_slice(bytes);
        self.payload.resize(padded, 0);
        let record = self.next_record;
        self.journal.append(record, &self.payload).map_err(Fail::Log)?;
        self.next_record += 1;
        Ok(record)
    }

    /// Starts a new segment with every session declared and checkpointed, so that no older
    /// segment is needed for them; the segments no resend can reach are deleted once that is on
    /// disk ([`Log::remove_superseded`]).
    ///
    /// The log's group commit syncs it on the journal's flusher thread, never on the acceptor's:
    /// a sync here would stall every session for the time the disk takes to write the segment.
    /// A crash of the process in the middle leaves a segment with only some of the declarations
    /// and no other record; opening starts a new segment, so that one is never the oldest kept
    /// (no resend needs a segment without outbound messages).
    fn start_segment(&mut self) -> Result<(), Fail> {
        self.journal.roll_over_now().map_err(Fail::Log)?;
        let first = self.journal.segment_first_seq();
        for id in 0..self.sessions.len() {
            self.declare(u32::try_from(id).expect("session ids fit u32"))?;
        }
        if self.journal.segment_first_seq() != first {
            return Err(Fail::SegmentTooSmall(self.sessions.len()));
        }
        let needed = self
            .sessions
            .iter()
            .filter_map(|session| session.index.first().map(|&(_, record)| record))
            .fold(first, u64::min);
        self.superseded = Some(Superseded { before: needed, durable_from: self.next_record - 1 });
        self.journal.commit().map_err(Fail::Log)?;
        Ok(())
    }

    /// Deletes the segments a new segment superseded, once the flusher has made its
    /// declarations durable (and with them every record before them): only then can a crash
    /// of the machine no longer need the older segments.
    fn remove_superseded(&mut self) -> Result<(), Fail> {
        let Some(superseded) = self.superseded else { return Ok(()) };
        if self.journal.durable_seq() < superseded.durable_from {
            return Ok(());
        }
        self.superseded = None;
        self.journal.remove_segments_before(superseded.before).map_err(Fail::Log)?;
        Ok(())
    }

    /// Adds a session and declares it, in the current segment if both records fit, otherwise
    /// in a new segment that declares every session.
    fn add_session(&mut self, sender_comp_id: &str, target_comp_id: &str) -> Result<u32, Fail> {
        let id = u32::try_from(self.sessions.len()).expect("session ids fit u32");
        let key = (sender_comp_id.to_owned(), target_comp_id.to_owned());
        self.sessions.push(SessionState::new(sender_comp_id, target_comp_id));
        self.ids.insert(key, id);
        // Room for the declaration, the checkpoint's frame header and the checkpoint.
        let declaration = RECORD_HEADER + sender_comp_id.len() + 1 + target_comp_id.len();
        let both = declaration.next_multiple_of(8) + JOURNAL_FRAME_HEADER + RECORD_HEADER + 8;
        // A failure leaves the session known, declared or not: the acceptor refuses to start
        // on it (sessions are added when it binds), and a declaration in the log keeps its id.
        if self.journal.fits(both) {
            self.declare(id)?;
        } else {
            self.start_segment()?;
        }
        Ok(id)
    }

    fn declare(&mut self, id: u32) -> Result<(), Fail> {
        let session = &self.sessions[id as usize];
        let names = format!("{}\u{1}{}", session.sender_comp_id, session.target_comp_id);
        let (next_inbound, next_outbound) = (session.next_inbound, session.next_outbound);
        self.append_here(DECLARE, id, 0, names.as_bytes())?;
        self.append_here(CHECKPOINT, id, next_inbound, &next_outbound.to_le_bytes())?;
        Ok(())
    }

    /// Applies one record read back from the log.
    fn replay(&mut self, record: u64, payload: &[u8]) -> Result<(), &'static str> {
        let decoded = decode_record(payload).ok_or("too short for its length")?;
        let id = decoded.session;
        if decoded.kind == DECLARE {
            let text = std::str::from_utf8(decoded.bytes).map_err(|_| "CompIDs not UTF-8")?;
            let (sender, target) = text.split_once('\u{1}').ok_or("no CompID separator")?;
            if id as usize != self.sessions.len() {
                // Declared again at a segment start: already known.
                return self.ids.get(&(sender.to_owned(), target.to_owned())).map_or(
                    Err("session declared out of order"),
                    |&known| if known == id { Ok(()) } else { Err("session id mismatch") },
                );
            }
            self.sessions.push(SessionState::new(sender, target));
            self.ids.insert((sender.to_owned(), target.to_owned()), id);
            return Ok(());
        }
        let session = self.sessions.get_mut(id as usize).ok_or("undeclared session")?;
        match decoded.kind {
            INBOUND => session.next_inbound = decoded.number,
            OUTBOUND => session.outbound(decoded.number, record),
            RESET => session.reset(),
            CHECKPOINT => {
                let next = decoded.bytes.try_into().map_err(|_| "checkpoint without outbound")?;
                session.next_inbound = decoded.number;
                session.next_outbound = u64::from_le_bytes(next);
            }
            _ => return Err("unknown kind"),
        }
        Ok(())
    }
}

/// Segments that a newer one made redundant: those before record `before`, to be deleted
/// once the log is durable up to `durable_from`.
#[derive(Clone, Copy, Debug)]
struct Superseded {
    before: u64,
    durable_from: u64,
}

/// How often the session log's flusher syncs it: a sync is needed only before superseded
/// segments can go, so rarely is enough, and the disk is left to the journals' group commit.
const LOG_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A failure inside the lock, given the store's path outside it.
enum Fail {
    Log(JournalError),
    TooLarge(usize),
    SegmentTooSmall(usize),
}

fn store_error(path: &Path, fail: Fail) -> StoreError {
    match fail {
        Fail::Log(source) => StoreError::Log { path: path.to_owned(), source },
        Fail::TooLarge(bytes) => StoreError::TooLarge(bytes),
        Fail::SegmentTooSmall(sessions) => {
            StoreError::SegmentTooSmall { path: path.to_owned(), sessions }
        }
    }
}

/// The session log holding every session's state; cloning it shares the log.
#[derive(Clone)]
pub struct FixStore {
    log: Arc<Mutex<Log>>,
    path: PathBuf,
}

impl std::fmt::Debug for FixStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FixStore {
    /// Opens (creating if needed) the session log in directory `path`.
    pub fn open(path: &Path) -> Result<FixStore, StoreError> {
        FixStore::open_with(path, LOG_SEGMENT_BYTES)
    }

    /// Opens the log with segments of `segment_bytes` (small ones let tests roll over).
    pub fn open_with(path: &Path, segment_bytes: u64) -> Result<FixStore, StoreError> {
        let fail = |source| StoreError::Log { path: path.to_owned(), source };
        if path.join("CURRENT").exists() {
            // Starting without the sessions an earlier version kept would restart every
            // counterparty's sequence numbers behind its back.
            return Err(StoreError::Legacy { path: path.to_owned() });
        }
        let config = JournalConfig {
            directory: path.to_owned(),
            name: LOG_NAME.to_owned(),
            segment_bytes,
            order: SeqOrder::Strict,
            durability: Durability::GroupCommit { interval: LOG_SYNC_INTERVAL, records: u64::MAX },
            // After a crash of the machine the tail of the log may be damaged anywhere past its
            // last sync; the sessions continue from what survived, and the counterparties'
            // ResendRequests and sequence resets do the rest.
            truncate_corrupt: true,
            staging: sequencer::staging::default_root(),
            // A segment lasts under a second at 50,000 orders a second, and a spare's sync
            // can take longer than that: two spares keep the acceptor from preparing one.
            spares: 2,
        };
        let (journal, report) = Journal::open(config).map_err(fail)?;
        if let Some((segment, offset, bytes)) = &report.truncated_corruption {
            eprintln!(
                "fix: session log {} was damaged at {offset} (a crash of the machine?); {bytes} \
                 bytes and the segments after it dropped: sessions continue from before it",
                segment.display()
            );
        }
        if let Some((segment, offset, bytes)) = &report.torn_tail {
            eprintln!(
                "fix: session log {} ended in a torn record at {offset}; {bytes} bytes cleared",
                segment.display()
            );
        }
        let mut log = Log {
            next_record: report.last_seq.map_or(journal.segment_first_seq(), |last| last + 1),
            journal,
            sessions: Vec::new(),
            ids: HashMap::new(),
            outbound: false,
            superseded: None,
            payload: Vec::with_capacity(1024),
        };
        let mut defect = None;
        read_all(path, LOG_NAME, SeqOrder::Strict, |record, payload| {
            if defect.is_none() {
                defect = log.replay(record, payload).err().map(|reason| (record, reason));
            }
            Ok(())
        })
        .map_err(fail)?;
        if let Some((record, reason)) = defect {
            return Err(StoreError::Corrupt { path: path.to_owned(), record, reason });
        }
        if report.last_seq.is_some() {
            // Whatever the last run left (a segment cut short by a crash while its
            // declarations were being written, say), writing resumes in a complete segment.
            log.start_segment().map_err(|fail| store_error(path, fail))?;
        }
        Ok(FixStore { log: Arc::new(Mutex::new(log)), path: path.to_owned() })
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // Never contended: all sessions live on the acceptor's thread.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, fail: Fail) -> StoreError {
        store_error(&self.path, fail)
    }

    /// Ends a pass. Everything appended is in the page cache already, where it survives a
    /// crash of the process, so this only clears [`FixStore::has_outbound`]; the acceptor
    /// calls it before sending what the pass stored.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut log = self.lock();
        log.outbound = false;
        log.journal.commit().map_err(|source| self.error(Fail::Log(source)))?;
        log.remove_superseded().map_err(|fail| self.error(fail))
    }

    /// Syncs the log now, on the caller's thread, and deletes what that lets go: for shutdown
    /// and tests, not for the order path.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut log = self.lock();
        log.journal.flush().map_err(|source| self.error(Fail::Log(source)))?;
        log.remove_superseded().map_err(|fail| self.error(fail))
    }

    /// Whether an outbound message was stored since the last flush: the acceptor then flushes
    /// in that pass even if nothing goes on the wire (its session is not connected), so that
    /// the bridge's delivered mark, recorded at the next poll, never gets ahead of it.
    pub fn has_outbound(&self) -> bool {
        self.lock().outbound
    }

    /// The store of the session between our `sender_comp_id` and their `target_comp_id`,
    /// declared in the log the first time it is asked for.
    pub fn session(
        &self,
        sender_comp_id: &str,
        target_comp_id: &str,
    ) -> Result<LogSessionStore, StoreError> {
        let mut log = self.lock();
        let key = (sender_comp_id.to_owned(), target_comp_id.to_owned());
        let id = match log.ids.get(&key) {
            Some(&id) => id,
            None => {
                log.add_session(sender_comp_id, target_comp_id).map_err(|fail| self.error(fail))?
            }
        };
        Ok(LogSessionStore { store: self.clone(), id })
    }
}

/// One session's view of a [`FixStore`].
pub struct LogSessionStore {
    store: FixStore,
    id: u32,
}

impl std::fmt::Debug for LogSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSessionStore").field("id", &self.id).finish_non_exhaustive()
    }
}

impl LogSessionStore {
    /// Appends a record without bytes and, once it is in the log, updates the session's state:
    /// one lock for both.
    fn record(
        &self,
        kind: u8,
        number: u64,
        update: impl FnOnce(&mut SessionState),
    ) -> Result<(), StoreError> {
        let mut log = self.store.lock();
        log.append(kind, self.id, number, &[]).map_err(|fail| self.store.error(fail))?;
        update(&mut log.sessions[self.id as usize]);
        Ok(())
    }
}

impl SessionStore for LogSessionStore {
    fn sequence_numbers(&self) -> Result<(u64, u64), StoreError> {
        let log = self.store.lock();
        let session = &log.sessions[self.id as usize];
        Ok((session.next_inbound, session.next_outbound))
    }

    fn set_next_inbound(&mut self, next: u64) -> Result<(), StoreError> {
        self.record(INBOUND, next, |session| session.next_inbound = next)
    }

    fn append_outbound(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let mut log = self.store.lock();
        let record =
            log.append(OUTBOUND, self.id, seq, bytes).map_err(|fail| self.store.error(fail))?;
        log.sessions[self.id as usize].outbound(seq, record);
        log.outbound = true;
        Ok(())
    }

    fn outbound_range(
        &self,
        begin: u64,
        end: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), StoreError> {
        let from = {
            let log = self.store.lock();
            let index = &log.sessions[self.id as usize].index;
            // The last indexed message at or before `begin`, or the first one.
            let position = index.partition_point(|&(seq, _)| seq <= begin).saturating_sub(1);
            match index.get(position) {
                Some(&(_, record)) => record,
                None => return Ok(()),
            }
        };
        let path = &self.store.path;
        let mut defect = None;
        // Stops at the first of this session's messages past `end`, so a resend of recent
        // messages reads only the end of the log.
        scan_from(path, LOG_NAME, SeqOrder::Strict, from, |record, payload| {
            let Some(decoded) = decode_record(payload) else {
                defect = Some((record, "too short for its length"));
                return ControlFlow::Break(());
            };
            if decoded.session != self.id || decoded.kind != OUTBOUND {
                return ControlFlow::Continue(());
            }
            if decoded.number > end {
                return ControlFlow::Break(());
            }
            if decoded.number >= begin {
                visit(decoded.number, decoded.bytes);
            }
            ControlFlow::Continue(())
        })
        .map_err(|source| StoreError::Log { path: path.clone(), source })?;
        match defect {
            Some((record, reason)) => {
                Err(StoreError::Corrupt { path: path.clone(), record, reason })
            }
            None => Ok(()),
        }
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.record(RESET, 0, SessionState::reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::{damage_segment, segment_count, TempDir};

    /// Segments small enough that a test's messages roll over many of them.
    const SMALL_SEGMENT_BYTES: u64 = 4096;

    /// An outbound message of about 120 bytes that names its sequence number.
    fn body(seq: u64) -> Vec<u8> {
        format!("message {seq:04} {}", "x".repeat(100)).into_bytes()
    }

    fn messages(session: &LogSessionStore, begin: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        session
            .outbound_range(begin, end, &mut |seq, bytes| seen.push((seq, bytes.to_vec())))
            .unwrap();
        seen
    }

    /// Replays the segment being written on its own and checks it yields every session's
    /// sequence numbers: what deleting the segments before it relies on.
    fn assert_current_segment_stands_alone(store: &FixStore) {
        let (first, expected) = {
            let log = store.lock();
            let numbers = log.sessions.iter().map(|s| (s.next_inbound, s.next_outbound));
            (log.journal.segment_first_seq(), numbers.collect::<Vec<_>>())
        };
        let mut replayed: Vec<Option<(u64, u64)>> = vec![None; expected.len()];
        scan_from(&store.path, LOG_NAME, SeqOrder::Strict, first, |record, payload| {
            let decoded = decode_record(payload).unwrap();
            let slot = &mut replayed[decoded.session as usize];
            match decoded.kind {
                DECLARE => *slot = Some((1, 1)),
                CHECKPOINT => {
                    let next = u64::from_le_bytes(decoded.bytes.try_into().unwrap());
                    *slot = Some((decoded.number, next));
                }
                kind => {
                    let numbers = slot.as_mut().unwrap_or_else(|| {
                        panic!("record {record} (kind {kind}) of a session not declared before it")
                    });
                    match kind {
                        INBOUND => numbers.0 = decoded.number,
                        OUTBOUND => numbers.1 = decoded.number + 1,
                        _ => *numbers = (1, 1),
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        let replayed: Vec<(u64, u64)> =
            replayed.into_iter().map(|numbers| numbers.expect("every session declared")).collect();
        assert_eq!(replayed, expected);
    }

    #[test]
    fn a_stored_message_is_readable_at_once_and_marks_the_pass_until_flushed() {
        let dir = TempDir::new("fix-log", "pass");
        let store = FixStore::open(&dir.0).unwrap();
        let mut session = store.session("EXCH", "C1").unwrap();
        session.append_outbound(1, b"one").unwrap();
        session.set_next_inbound(4).unwrap();
        // A resend asked for in the same pass as the message was stored must still find it.
        assert_eq!(messages(&session, 1, 1), vec![(1, b"one".to_vec())]);
        assert_eq!(session.sequence_numbers().unwrap(), (4, 2));
        assert!(store.has_outbound());
        store.flush().unwrap();
        assert!(!store.has_outbound());
        // Sequence numbers alone do not make a pass flush.
        session.set_next_inbound(5).unwrap();
        assert!(!store.has_outbound());
    }

    #[test]
    fn sequences_and_messages_survive_a_reopen_and_a_reset_forgets_them() {
        let dir = TempDir::new("fix-log", "reopen");
        {
            let store = FixStore::open(&dir.0).unwrap();
            let mut session = store.session("EXCH", "C1").unwrap();
            let mut other = store.session("EXCH", "C10").unwrap();
            session.append_outbound(1, b"one").unwrap();
            session.append_outbound(2, b"two").unwrap();
            other.append_outbound(1, b"other").unwrap();
            session.set_next_inbound(5).unwrap();
        }
        let store = FixStore::open(&dir.0).unwrap();
        let mut session = store.session("EXCH", "C1").unwrap();
        assert_eq!(session.sequence_numbers().unwrap(), (5, 3));
        assert_eq!(messages(&session, 2, 9), vec![(2, b"two".to_vec())]);
        session.reset().unwrap();
        assert_eq!(session.sequence_numbers().unwrap(), (1, 1));
        assert!(messages(&session, 0, u64::MAX).is_empty());
        let other = store.session("EXCH", "C10").unwrap();
        assert_eq!(other.sequence_numbers().unwrap(), (1, 2));
        assert_eq!(messages(&other, 1, 1), vec![(1, b"other".to_vec())]);
        drop((session, other, store));
        let store = FixStore::open(&dir.0).unwrap();
        assert_eq!(store.session("EXCH", "C1").unwrap().sequence_numbers().unwrap(), (1, 1));
    }

    #[test]
    fn a_log_damaged_before_its_tail_opens_with_what_came_before_the_damage() {
        let dir = TempDir::new("fix-log", "damaged");
        let segment_bytes = SMALL_SEGMENT_BYTES;
        {
            let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
            let mut session = store.session("EXCH", "C1").unwrap();
            for seq in 1..=100 {
                session.append_outbound(seq, &body(seq)).unwrap();
            }
        }
        // A crash of the machine left garbage in the first record of the third segment.
        damage_segment(&dir.0, 2, 64 + 40);
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        let mut session = store.session("EXCH", "C1").unwrap();
        let (_, next) = session.sequence_numbers().unwrap();
        assert!((2..100).contains(&next), "continues from before the damage: {next}");
        let kept = messages(&session, 1, 100);
        assert_eq!(kept.len() as u64, next - 1);
        assert!(kept.iter().all(|(seq, bytes)| *bytes == body(*seq)));
        // The session goes on from there, and the log opens again.
        session.append_outbound(next, b"after").unwrap();
        drop((session, store));
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        let session = store.session("EXCH", "C1").unwrap();
        assert_eq!(session.sequence_numbers().unwrap(), (1, next + 1));
    }

    #[test]
    fn an_earlier_versions_rocksdb_store_is_refused_not_ignored() {
        let dir = TempDir::new("fix-log", "legacy");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("CURRENT"), "MANIFEST-000005\n").unwrap();
        let error = FixStore::open(&dir.0).unwrap_err();
        assert!(matches!(error, StoreError::Legacy { .. }), "{error}");
        assert!(error.to_string().contains("earlier version"), "{error}");
    }

    #[test]
    fn reopening_starts_a_complete_segment_and_a_new_session_fits_where_it_can() {
        let dir = TempDir::new("fix-log", "reopen-segment");
        let segment_bytes = SMALL_SEGMENT_BYTES;
        {
            let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
            let mut first = store.session("EXCH", "FIRST").unwrap();
            first.append_outbound(1, b"one").unwrap();
        }
        assert_eq!(segment_count(&dir.0, "fix"), 1);
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        assert_eq!(segment_count(&dir.0, "fix"), 2, "writing resumes in a new segment");
        // Fill the segment until a late session's declaration no longer fits: it and every other
        // session must then be declared at the start of the next segment.
        let mut first = store.session("EXCH", "FIRST").unwrap();
        let declaration = RECORD_HEADER + "EXCH".len() + 1 + "LATE".len();
        let both = declaration.next_multiple_of(8) + JOURNAL_FRAME_HEADER + RECORD_HEADER + 8;
        let mut seq = 2;
        while store.lock().journal.fits(both) {
            first.append_outbound(seq, b"x").unwrap();
            seq += 1;
        }
        let before = store.lock().journal.segment_first_seq();
        assert_current_segment_stands_alone(&store);
        let mut late = store.session("EXCH", "LATE").unwrap();
        assert_ne!(store.lock().journal.segment_first_seq(), before, "declared in a new segment");
        assert_current_segment_stands_alone(&store);
        late.append_outbound(1, b"late one").unwrap();
        assert_current_segment_stands_alone(&store);
        drop((first, late, store));
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        let first = store.session("EXCH", "FIRST").unwrap();
        assert_eq!(first.sequence_numbers().unwrap(), (1, seq));
        assert_eq!(messages(&first, 1, 1), vec![(1, b"one".to_vec())]);
        let late = store.session("EXCH", "LATE").unwrap();
        assert_eq!(messages(&late, 1, 1), vec![(1, b"late one".to_vec())]);
        // More sessions than a segment can declare is an error, not a log that cannot open.
        let many = (0..100).map(|index| format!("MANY{index:03}{}", "m".repeat(40)));
        let refused = many.map(|name| store.session("EXCH", &name)).find_map(Result::err);
        assert!(matches!(refused, Some(StoreError::SegmentTooSmall { .. })), "{refused:?}");
    }

    #[test]
    fn new_segments_carry_every_session_and_segments_no_resend_needs_are_deleted() {
        let dir = TempDir::new("fix-log", "segments");
        let segment_bytes = SMALL_SEGMENT_BYTES;
        {
            let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
            let mut busy = store.session("EXCH", "BUSY").unwrap();
            let mut quiet = store.session("EXCH", "QUIET").unwrap();
            quiet.set_next_inbound(7).unwrap();
            quiet.append_outbound(1, b"quiet one").unwrap();
            for seq in 1..=200 {
                busy.append_outbound(seq, &body(seq)).unwrap();
                busy.set_next_inbound(seq + 1).unwrap();
            }
            assert_current_segment_stands_alone(&store);
            // Nothing was deleted: the quiet session may still be asked for its message.
            assert!(segment_count(&dir.0, "fix") > 5);
            assert_eq!(messages(&quiet, 1, 1), vec![(1, b"quiet one".to_vec())]);
        }
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        let mut busy = store.session("EXCH", "BUSY").unwrap();
        let mut quiet = store.session("EXCH", "QUIET").unwrap();
        assert_eq!(busy.sequence_numbers().unwrap(), (201, 201));
        assert_eq!(quiet.sequence_numbers().unwrap(), (7, 2));
        let resent = messages(&busy, 95, 130);
        assert_eq!(resent.len(), 36);
        assert!(resent.iter().all(|(seq, bytes)| *bytes == body(*seq)));
        assert_eq!(messages(&quiet, 1, 1), vec![(1, b"quiet one".to_vec())]);
        // Once both have reset, the segments before the reset can go.
        let before = segment_count(&dir.0, "fix");
        quiet.reset().unwrap();
        busy.reset().unwrap();
        for seq in 1..=60 {
            busy.append_outbound(seq, &body(seq)).unwrap();
        }
        // Superseded segments go once the log is synced (by its flusher, or here).
        store.sync().unwrap();
        assert!(
            segment_count(&dir.0, "fix") < before / 2,
            "{} of {before} segments kept",
            segment_count(&dir.0, "fix")
        );
        drop((busy, quiet, store));
        let store = FixStore::open_with(&dir.0, segment_bytes).unwrap();
        let busy = store.session("EXCH", "BUSY").unwrap();
        assert_eq!(busy.sequence_numbers().unwrap(), (1, 61));
        assert_eq!(messages(&busy, 1, 60).len(), 60);
        assert_eq!(store.session("EXCH", "QUIET").unwrap().sequence_numbers().unwrap(), (1, 1));
    }
}
