//! Durable state of the order entry that the journals do not hold: which session and ClOrdID
//! each submitted request came from (stored before its commands are submitted), how far
//! reports have been delivered, and snapshots of the whole order table so that a restart
//! replays only the journal after the newest one.
//!
//! Requests and delivered marks go to an append-only request log (a journal of the
//! sequencer's kind, `requests-<first record>.journal` in the store's directory): storing one
//! is a copy into the page cache, and [`OrderStore::flush`], which the bridge calls once per
//! pass before it submits any of the pass's commands, costs nothing more unless the policy
//! fsyncs. Snapshots, large and rare, go to a RocksDB database in the `snapshots`
//! subdirectory, values in postcard's compact binary form behind a format byte:
//!
//! ```text
//! request log record payload, zero padded to a multiple of 8 bytes:
//!  0      1          4            8               16
//!  +------+----------+------------+---------------+---------------------------+
//!  | kind | 0 0 0    | length     | number (u64)  | bytes (`length` of them)  |
//!  |      |          | (u32)      |               |                           |
//!  +------+----------+------------+---------------+---------------------------+
//!  kind 3 REQUEST    number = request number; bytes = the Request, postcard
//!  kind 1 REQUEST    the same, the Request as JSON (logs written before the binary form)
//!  kind 2 DELIVERED  number = seq: reports of every command up to it were delivered
//!
//! snapshots (RocksDB):
//! 's' | seq (u64 big-endian)  -> EntrySnapshot as of the end of command seq:
//!  0        1
//!  +--------+--------------------------------------------+
//!  | 0x01   | the snapshot, postcard                     |
//!  +--------+--------------------------------------------+
//!  or, as stores written before the binary form hold them, the snapshot as JSON (from '{')
//! ```
//!
//! The binary form is about a third of the JSON's size and several times quicker to write:
//! a snapshot holds every live and retired order (over 100,000 at the default window), and at
//! 50,000 orders a second one is stored every two seconds, on the FIX thread's core.
//!
//! A snapshot makes every request numbered below its `next_request` redundant: reads skip
//! them from then on, and log segments holding nothing newer are deleted. Every new segment
//! starts with the current delivered mark, so deleting older ones never loses it. Of the
//! snapshots, the newest and the one before it are kept (in case the newest turns out
//! unreadable).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use sequencer::journal::{
    read_all, scan_from, DetachedSegments, Durability, Journal, JournalConfig, JournalError,
    SeqOrder,
};

use super::{EntrySnapshot, Request};

const SNAPSHOT: u8 = b's';
/// The first byte of a snapshot value in postcard's form; JSON ones start with `{`.
const SNAPSHOT_POSTCARD: u8 = 1;
/// Snapshots kept: the newest and one fallback.
const SNAPSHOTS_KEPT: usize = 2;

/// The request log's journal name.
const LOG_NAME: &str = "requests";
/// How often the request log's flusher syncs it when the node's policy does not sync every
/// write; only deleting segments waits for it.
const LOG_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Segment size of the request log.
pub const LOG_SEGMENT_BYTES: u64 = 16 << 20;
/// A request as JSON, as logs written before the binary form hold them.
const REQUEST_JSON: u8 = 1;
/// A request in postcard's binary form: encoding one is a fraction of its JSON's cost, on the
/// FIX thread, for every order.
const REQUEST: u8 = 3;
const DELIVERED: u8 = 2;
const RECORD_HEADER: usize = 16;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderStoreError {
    #[error("order store {path}: {source}")]
    Rocks { path: PathBuf, source: rocksdb::Error },
    #[error("order store {path}: {source}")]
    Log { path: PathBuf, source: JournalError },
    #[error("order store {path}: undecodable record {record}: {reason}")]
    Decode { path: PathBuf, record: u64, reason: String },
    #[error(
        "{path} holds an order store in RocksDB, written by an earlier version; this version \
         keeps requests in an append-only log and cannot read it. Run the earlier version, or \
         start from a new data directory"
    )]
    Legacy { path: PathBuf },
}

/// The request log and what the store remembers of it, behind the store's lock.
struct RequestLog {
    journal: Journal,
    /// The record number the next append gets.
    next_record: u64,
    /// Records appended since the last flush.
    dirty: bool,
    delivered: Option<u64>,
    /// Number and log record of every request not yet made redundant by a snapshot.
    requests: VecDeque<(u64, u64)>,
    /// Requests numbered below this are redundant (the newest snapshot's `next_request`).
    redundant_below: u64,
    /// A record being built, reused.
    payload: Vec<u8>,
    /// A request's JSON, reused.
    encoded: Vec<u8>,
}

impl RequestLog {
    fn append(&mut self, kind: u8, number: u64, bytes: &[u8]) -> Result<u64, JournalError> {
        if !self.journal.fits(RECORD_HEADER + bytes.len().next_multiple_of(8)) {
            self.start_segment()?;
        }
        self.append_here(kind, number, bytes)
    }

    /// Starts a new segment that opens with the delivered mark, so that older ones can go.
    /// Nothing is synced here, on the acceptor's thread: the log's group commit does that on
    /// its flusher thread, and [`RequestLog::prune`] deletes only segments that are durable.
    fn start_segment(&mut self) -> Result<(), JournalError> {
        self.journal.roll_over_now()?;
        if let Some(delivered) = self.delivered {
            self.append_here(DELIVERED, delivered, &[])?;
        }
        self.journal.commit()?;
        Ok(())
    }

    fn append_here(&mut self, kind: u8, number: u64, bytes: &[u8]) -> Result<u64, JournalError> {
        let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.payload.clear();
        self.payload.extend_from_slice(&[kind, 0, 0, 0]);
        self.payload.extend_from_slice(&length.to_le_bytes());
        self.payload.extend_from_slice(&number.to_le_bytes());
        self.payload.extend_from_slice(bytes);
        self.payload.resize((RECORD_HEADER + bytes.len()).next_multiple_of(8), 0);
        let record = self.next_record;
        self.journal.append(record, &self.payload)?;
        self.next_record += 1;
        self.dirty = true;
        Ok(record)
    }

    /// Forgets requests below `next_request` and detaches the segments only they were in, for
    /// the caller to delete once it has let go of the lock.
    fn prune(&mut self, next_request: u64) -> DetachedSegments {
        self.redundant_below = self.redundant_below.max(next_request);
        let redundant = self.requests.partition_point(|&(number, _)| number < self.redundant_below);
        self.requests.drain(..redundant);
        let keep_from = self.requests.front().map_or(self.next_record, |&(_, record)| record);
        // Only segments before the durable part's end go: the oldest segment kept has a
        // durable start, which is the delivered mark of its time, so the newest durable mark
        // always survives a crash of the machine too.
        let durable_end = self.journal.durable_seq() + 1;
        self.journal.detach_segments_before(keep_from.min(durable_end))
    }
}

/// A stored snapshot in either form; `None` if it does not decode (the caller falls back to an
/// older one).
fn decode_snapshot(value: &[u8]) -> Option<EntrySnapshot> {
    match value.split_first()? {
        (&SNAPSHOT_POSTCARD, binary) => postcard::from_bytes(binary).ok(),
        (b'{', _) => serde_json::from_slice(value).ok(),
        _ => None,
    }
}

/// A stored request in either form.
fn decode_request(kind: u8, bytes: &[u8]) -> Result<Request, String> {
    if kind == REQUEST_JSON {
        serde_json::from_slice(bytes).map_err(|error| error.to_string())
    } else {
        postcard::from_bytes(bytes).map_err(|error| error.to_string())
    }
}

/// One record of the request log, decoded.
fn decode_record(payload: &[u8]) -> Option<(u8, u64, &[u8])> {
    let header = payload.get(..RECORD_HEADER)?;
    let length = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    let number = u64::from_le_bytes(header[8..16].try_into().ok()?);
    Some((header[0], number, payload.get(RECORD_HEADER..RECORD_HEADER.checked_add(length)?)?))
}

/// The order entry's store: the request log and the snapshot database.
pub struct OrderStore {
    db: DB,
    path: PathBuf,
    /// Whether writes are fsynced.
    sync: bool,
    log: Mutex<RequestLog>,
    /// Where snapshots are encoded, kept between them: a fresh buffer of tens of megabytes
    /// would be zeroed page by page by the kernel every time.
    snapshot_buffer: Mutex<Vec<u8>>,
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
        OrderStore::open_with(directory, sync, LOG_SEGMENT_BYTES)
    }

    /// Opens the store with request-log segments of `segment_bytes` (small ones let tests
    /// roll over).
    pub fn open_with(
        directory: &Path,
        sync: bool,
        segment_bytes: u64,
    ) -> Result<OrderStore, OrderStoreError> {
        if directory.join("CURRENT").exists() {
            // Starting without the requests and snapshots an earlier version kept would
            // restart the order ids, which the journals already hold.
            return Err(OrderStoreError::Legacy { path: directory.to_owned() });
        }
        let snapshots = directory.join("snapshots");
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, &snapshots)
            .map_err(|source| OrderStoreError::Rocks { path: snapshots.clone(), source })?;
        let log_error = |source| OrderStoreError::Log { path: directory.to_owned(), source };
        let (journal, report) = Journal::open(JournalConfig {
            directory: directory.to_owned(),
            name: LOG_NAME.to_owned(),
            segment_bytes,
            order: SeqOrder::Strict,
            durability: if sync {
                Durability::SyncEachCommit
            } else {
                Durability::GroupCommit { interval: LOG_SYNC_INTERVAL, records: u64::MAX }
            },
            // After a crash of the machine the tail of the log may be damaged anywhere past its
            // last sync: the requests that survived are used; commands whose requests were
            // lost are sequenced but reported to no session.
            truncate_corrupt: true,
            staging: sequencer::staging::default_root(),
            // Written by the FIX thread like the session log, and as quickly filled.
            spares: 2,
        })
        .map_err(log_error)?;
        if let Some((segment, offset, bytes)) = &report.truncated_corruption {
            eprintln!(
                "fix: request log {} was damaged at {offset} (a crash of the machine?); {bytes} \
                 bytes and the segments after it dropped",
                segment.display()
            );
        }
        let log = RequestLog {
            next_record: report.last_seq.map_or(journal.segment_first_seq(), |last| last + 1),
            journal,
            dirty: false,
            delivered: None,
            requests: VecDeque::new(),
            redundant_below: 0,
            payload: Vec::with_capacity(512),
            encoded: Vec::with_capacity(512),
        };
        let store = OrderStore {
            db,
            path: directory.to_owned(),
            sync,
            log: Mutex::new(log),
            snapshot_buffer: Mutex::new(Vec::new()),
        };
        let redundant_below = store.latest_snapshot()?.map_or(0, |snapshot| snapshot.next_request);
        let mut log = store.lock();
        log.redundant_below = redundant_below;
        let mut defect = None;
        read_all(directory, LOG_NAME, SeqOrder::Strict, |record, payload| {
            match decode_record(payload) {
                Some((REQUEST | REQUEST_JSON, number, _)) => {
                    if number >= redundant_below {
                        log.requests.push_back((number, record));
                    }
                }
                Some((DELIVERED, seq, _)) => log.delivered = Some(seq),
                _ => {
                    defect.get_or_insert(record);
                }
            }
            Ok(())
        })
        .map_err(log_error)?;
        if let Some(record) = defect {
            let reason = "not a request log record".to_owned();
            return Err(OrderStoreError::Decode { path: directory.to_owned(), record, reason });
        }
        if report.last_seq.is_some() {
            // A crash may have cut the last segment short before its delivered mark: writing
            // resumes in a new segment that opens with it.
            log.start_segment().map_err(log_error)?;
        }
        drop(log);
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, RequestLog> {
        // Never contended: the bridge alone writes, on the acceptor's thread.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rocks(&self) -> impl FnOnce(rocksdb::Error) -> OrderStoreError + '_ {
        |source| OrderStoreError::Rocks { path: self.path.join("snapshots"), source }
    }

    fn log_error(&self) -> impl FnOnce(JournalError) -> OrderStoreError + '_ {
        |source| OrderStoreError::Log { path: self.path.clone(), source }
    }

    /// Makes the requests and marks appended since the last flush stored as the policy
    /// defines it (fsynced under the sync policy): call before submitting their commands.
    pub fn flush(&self) -> Result<(), OrderStoreError> {
        let mut log = self.lock();
        if !log.dirty {
            return Ok(());
        }
        log.journal.commit().map_err(self.log_error())?;
        log.dirty = false;
        Ok(())
    }

    /// Stores a request ([`OrderStore::flush`] before submitting its commands).
    pub fn put_request(&self, request: &Request) -> Result<(), OrderStoreError> {
        let mut log = self.lock();
        // Encoded into a buffer kept between requests: no allocation per order.
        let mut encoded = std::mem::take(&mut log.encoded);
        encoded.clear();
        let encoded = postcard::to_extend(request, encoded).expect("requests always serialize");
        let appended = log.append(REQUEST, request.number, &encoded);
        log.encoded = encoded;
        let record = appended.map_err(self.log_error())?;
        log.requests.push_back((request.number, record));
        Ok(())
    }

    /// Every stored request numbered `from` or later that no snapshot has made redundant, in
    /// number order. Reads the log: for recovery, not for the order path.
    pub fn requests_from(&self, from: u64) -> Result<Vec<Request>, OrderStoreError> {
        let (from, first_record) = {
            let log = self.lock();
            let from = from.max(log.redundant_below);
            let position = log.requests.partition_point(|&(number, _)| number < from);
            match log.requests.get(position) {
                Some(&(_, record)) => (from, record),
                None => return Ok(Vec::new()),
            }
        };
        let mut requests = Vec::new();
        let mut defect = None;
        scan_from(&self.path, LOG_NAME, SeqOrder::Strict, first_record, |record, payload| {
            if let Some((kind @ (REQUEST | REQUEST_JSON), number, bytes)) = decode_record(payload) {
                if number >= from {
                    match decode_request(kind, bytes) {
                        Ok(request) => requests.push(request),
                        Err(reason) => {
                            defect = Some((record, reason));
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .map_err(self.log_error())?;
        if let Some((record, reason)) = defect {
            return Err(OrderStoreError::Decode { path: self.path.clone(), record, reason });
        }
        requests.sort_by_key(|request| request.number);
        Ok(requests)
    }

    /// Stores a snapshot, prunes older snapshots and the requests it makes redundant:
    /// [`OrderStore::write_snapshot`], then [`OrderStore::prune_log`] and the deletion of the
    /// segments it detached.
    pub fn put_snapshot(&self, snapshot: &EntrySnapshot) -> Result<(), OrderStoreError> {
        self.write_snapshot(snapshot)?;
        self.delete_segments(self.prune_log(snapshot.next_request))
    }

    /// Deletes log segments that [`OrderStore::prune_log`] detached.
    pub fn delete_segments(&self, detached: DetachedSegments) -> Result<(), OrderStoreError> {
        detached.delete().map_err(self.log_error())
    }

    /// Stores a snapshot and deletes the older ones beyond those kept; the request log is left
    /// alone, so this takes none of its lock.
    ///
    /// It may run on a thread of its own while requests are stored: it needs no flush of the
    /// log, since every request the snapshot makes redundant was flushed before its commands
    /// were submitted (or is among the snapshot's pending ones).
    pub fn write_snapshot(&self, snapshot: &EntrySnapshot) -> Result<(), OrderStoreError> {
        let mut buffer = self.snapshot_buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut value = std::mem::take(&mut *buffer);
        value.clear();
        value.push(SNAPSHOT_POSTCARD);
        let value = postcard::to_extend(snapshot, value).expect("snapshots always serialize");
        let mut batch = WriteBatch::default();
        batch.put(key(SNAPSHOT, snapshot.seq), &value);
        *buffer = value;
        drop(buffer);
        let mut older = self.snapshot_seqs()?;
        older.retain(|seq| *seq < snapshot.seq);
        let excess = (older.len() + 1).saturating_sub(SNAPSHOTS_KEPT);
        for seq in &older[..excess] {
            batch.delete(key(SNAPSHOT, *seq));
        }
        // Always synced, whatever the policy: the log segments it makes redundant are deleted
        // next, and a snapshot lost after that would leave its requests nowhere.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options).map_err(self.rocks())
    }

    /// Forgets the requests below `next_request`, which a stored snapshot covers, and detaches
    /// the log segments holding only those, as far as they are synced. Call it on the thread
    /// that stores requests: a niced snapshot thread preempted while it held the log's lock
    /// kept the FIX thread waiting for that lock for tens of milliseconds. The caller deletes
    /// the segments returned, preferably on another thread, outside the lock.
    pub fn prune_log(&self, next_request: u64) -> DetachedSegments {
        self.lock().prune(next_request)
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
    /// sessions (which store them before sending), so a restart sends the later ones. A mark
    /// lost in a crash makes the restart send more reports again, never fewer.
    pub fn put_delivered(&self, seq: u64) -> Result<(), OrderStoreError> {
        let mut log = self.lock();
        log.append(DELIVERED, seq, &[]).map_err(self.log_error())?;
        log.delivered = Some(seq);
        Ok(())
    }

    /// The seq [`OrderStore::put_delivered`] last recorded, if any.
    pub fn delivered(&self) -> Result<Option<u64>, OrderStoreError> {
        Ok(self.lock().delivered)
    }

    /// The newest snapshot that decodes, if any; an undecodable one is skipped, with a warning,
    /// for the one before it. (RocksDB's own checksums turn damage on disk into an error
    /// instead; what does not decode was written in a form this version does not read.) The
    /// requests the newer snapshot made redundant may already be pruned, so after such a
    /// fallback, reports of the commands between the two snapshots cannot be matched to their
    /// sessions: the warning says so.
    pub fn latest_snapshot(&self) -> Result<Option<EntrySnapshot>, OrderStoreError> {
        for seq in self.snapshot_seqs()?.into_iter().rev() {
            let Some(value) = self.db.get(key(SNAPSHOT, seq)).map_err(self.rocks())? else {
                continue;
            };
            if let Some(snapshot) = decode_snapshot(&value) {
                return Ok(Some(snapshot));
            }
            eprintln!(
                "fix: {}: the order-entry snapshot at seq {seq} does not decode; falling back to \
                 an older one (requests it made redundant may be gone)",
                self.path.display()
            );
        }
        Ok(None)
    }
}

impl Drop for OrderStore {
    fn drop(&mut self) {
        // Under the sync policy, whatever was stored since the last flush is synced before the
        // log closes.
        if let Err(error) = self.flush() {
            eprintln!("fix: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{ClOrdId, MassProgress, OrdStatus, Order, RequestKind, Retired, SessionId};
    use super::*;
    use testkit::{damage_segment, segment_count, TempDir};

    fn request(number: u64) -> Request {
        Request {
            number,
            session: SessionId::new("ALICE"),
            // Long, so that few requests fill a segment, within the bound on ClOrdIDs.
            cl_ord_id: ClOrdId::new(&format!("order-{number:03}-{}", "x".repeat(54))).unwrap(),
            kind: RequestKind::New { order_id: 1000 + number },
        }
    }

    #[test]
    fn a_request_log_damaged_before_its_tail_opens_with_the_requests_before_the_damage() {
        let dir = TempDir::new("order-log", "damaged");
        let segment_bytes = 4096;
        {
            let store = OrderStore::open_with(&dir.0, false, segment_bytes).unwrap();
            for number in 1..=100 {
                store.put_request(&request(number)).unwrap();
                store.put_delivered(number).unwrap();
            }
        }
        damage_segment(&dir.0, 2, 64 + 40);
        let store = OrderStore::open_with(&dir.0, false, segment_bytes).unwrap();
        let kept = store.requests_from(0).unwrap();
        let last = kept.last().unwrap().number;
        assert!((2..100).contains(&last), "requests up to the damage: {last}");
        assert_eq!(kept, (1..=last).map(request).collect::<Vec<_>>());
        let delivered = store.delivered().unwrap().unwrap();
        assert!(delivered <= last, "a mark no later than the requests kept: {delivered}");
    }

    /// A snapshot with something in every table, an amended order's chain among them.
    fn full_snapshot(seq: u64) -> EntrySnapshot {
        let id = |text: &str| ClOrdId::new(text).unwrap();
        let order = Order {
            order_id: 7,
            session: SessionId::new("ALICE"),
            account: 1,
            instrument: 2,
            side: '1',
            ord_type: '2',
            tif: '1',
            price: 60_000,
            quantity: 10,
            quote_budget: u128::from(u64::MAX) + 1,
            cum: 4,
            leaves: 6,
            ticks_lots: 240_000,
            cl_ord_id: id("b3r"),
            chain: [id("b3"), id("b3r")].into_iter().collect(),
            status: OrdStatus::PartiallyFilled,
        };
        EntrySnapshot {
            seq,
            next_request: seq + 1,
            next_order: 8,
            reply_counter: 3,
            orders: vec![Arc::new(order)],
            retired: vec![Retired::Order(5), Retired::Key(SessionId::new("BOB"), id("c\"é"))],
            pending: vec![request(seq)],
            mass: vec![(
                4,
                MassProgress { affected: 2, parts_done: 1, parts_rejected: 0, reject_text: None },
            )],
        }
    }

    #[test]
    fn snapshots_are_stored_binary_and_json_ones_of_older_stores_still_read() {
        let dir = TempDir::new("order-log", "snapshot-forms");
        let store = OrderStore::open(&dir.0, false).unwrap();
        // As stores written before the binary form hold them.
        let older = full_snapshot(10);
        let json = serde_json::to_vec(&older).unwrap();
        store.db.put(key(SNAPSHOT, 10), json).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), Some(older.clone()));
        let newer = full_snapshot(20);
        store.put_snapshot(&newer).unwrap();
        let stored = store.db.get(key(SNAPSHOT, 20)).unwrap().unwrap();
        assert_eq!(stored[0], SNAPSHOT_POSTCARD);
        assert!(stored.len() * 2 < serde_json::to_vec(&newer).unwrap().len(), "compact");
        assert_eq!(store.latest_snapshot().unwrap(), Some(newer.clone()));
        // A newest snapshot that does not decode (cut short, or of an unknown form) is passed
        // over for the one before it.
        store.db.put(key(SNAPSHOT, 20), &stored[..stored.len() / 2]).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), Some(older.clone()));
        store.db.put(key(SNAPSHOT, 20), [9, 1, 2]).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), Some(older));
        // The buffer kept between snapshots holds nothing of the last one into the next.
        store.put_snapshot(&EntrySnapshot { seq: 30, ..EntrySnapshot::default() }).unwrap();
        let empty = store.latest_snapshot().unwrap().unwrap();
        assert_eq!(empty, EntrySnapshot { seq: 30, ..EntrySnapshot::default() });
    }

    #[test]
    fn requests_are_stored_binary_and_json_ones_of_older_logs_still_read() {
        let dir = TempDir::new("order-log", "request-forms");
        {
            let store = OrderStore::open(&dir.0, false).unwrap();
            store.put_request(&request(1)).unwrap();
            // As logs written before the binary form hold them.
            let json = serde_json::to_vec(&request(2)).unwrap();
            store.lock().append(REQUEST_JSON, 2, &json).unwrap();
            store.put_request(&request(3)).unwrap();
            store.flush().unwrap();
            let binary = postcard::to_allocvec(&request(3)).unwrap();
            assert!(binary.len() < serde_json::to_vec(&request(3)).unwrap().len());
        }
        let store = OrderStore::open(&dir.0, false).unwrap();
        assert_eq!(store.requests_from(0).unwrap(), (1..=3).map(request).collect::<Vec<_>>());
        assert_eq!(store.requests_from(2).unwrap(), vec![request(2), request(3)]);
    }

    #[test]
    fn a_request_record_that_does_not_decode_is_refused_by_record_number() {
        let dir = TempDir::new("order-log", "undecodable");
        let bad_record = {
            let store = OrderStore::open(&dir.0, false).unwrap();
            store.put_request(&request(1)).unwrap();
            // Whole as far as the journal can tell (its checksum matches), but not a request:
            // a varint that never ends.
            let bad = store.lock().append(REQUEST, 2, &[0xFF; 12]).unwrap();
            store.flush().unwrap();
            bad
        };
        let store = OrderStore::open(&dir.0, false).unwrap();
        match store.requests_from(0) {
            Err(OrderStoreError::Decode { record, .. }) => assert_eq!(record, bad_record),
            other => panic!("expected a decode error naming record {bad_record}: {other:?}"),
        }
        // A record of a kind this version does not know stops the store from opening.
        drop(store);
        let dir = TempDir::new("order-log", "unknown-kind");
        {
            let store = OrderStore::open(&dir.0, false).unwrap();
            store.put_request(&request(1)).unwrap();
            store.lock().append(9, 2, b"from a later version").unwrap();
            store.flush().unwrap();
        }
        let error = OrderStore::open(&dir.0, false).unwrap_err();
        assert!(matches!(error, OrderStoreError::Decode { .. }), "{error}");
        assert!(error.to_string().contains("not a request log record"), "{error}");
    }

    #[test]
    fn an_earlier_versions_rocksdb_store_is_refused_not_ignored() {
        let dir = TempDir::new("order-log", "legacy");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join("CURRENT"), "MANIFEST-000005\n").unwrap();
        let error = OrderStore::open(&dir.0, false).unwrap_err();
        assert!(matches!(error, OrderStoreError::Legacy { .. }), "{error}");
    }

    #[test]
    fn requests_and_the_delivered_mark_survive_reopen_and_a_snapshot_prunes_segments() {
        let dir = TempDir::new("order-log", "prune");
        // Small segments, so that 140 requests of about 100 bytes fill many.
        let segment_bytes = 2048;
        {
            let store = OrderStore::open_with(&dir.0, false, segment_bytes).unwrap();
            assert_eq!(store.delivered().unwrap(), None);
            for number in 1..=100 {
                store.put_request(&request(number)).unwrap();
                store.put_delivered(number * 10).unwrap();
                store.flush().unwrap();
            }
            // Requests with no mark after them fill segments of their own.
            for number in 101..=140 {
                store.put_request(&request(number)).unwrap();
            }
            assert!(segment_count(&dir.0, "requests") > 8);
        }
        let store = OrderStore::open_with(&dir.0, false, segment_bytes).unwrap();
        assert_eq!(store.delivered().unwrap(), Some(1000));
        let numbers = |from| -> Vec<u64> {
            store.requests_from(from).unwrap().iter().map(|request| request.number).collect()
        };
        assert_eq!(numbers(0), (1..=140).collect::<Vec<_>>());
        assert_eq!(store.requests_from(40).unwrap()[0], request(40));
        // A snapshot at request 135 leaves six requests to read. Segments go only up to the
        // log's durable end, the flush after request 100, so the forty requests since keep
        // their segments: three or four of 2 KiB, by the requests' size.
        let snapshot = EntrySnapshot { seq: 7, next_request: 135, ..EntrySnapshot::default() };
        store.put_snapshot(&snapshot).unwrap();
        assert_eq!(numbers(0), (135..=140).collect::<Vec<_>>());
        assert!(
            segment_count(&dir.0, "requests") <= 4,
            "{} segments kept",
            segment_count(&dir.0, "requests")
        );
        drop(store);
        // The last mark was in a deleted segment: the segments after it carry it.
        let store = OrderStore::open_with(&dir.0, false, segment_bytes).unwrap();
        assert_eq!(store.delivered().unwrap(), Some(1000));
        assert_eq!(store.latest_snapshot().unwrap(), Some(snapshot));
        let numbers: Vec<u64> =
            store.requests_from(0).unwrap().iter().map(|request| request.number).collect();
        assert_eq!(numbers, (135..=140).collect::<Vec<_>>());
    }

    #[test]
    fn a_snapshot_written_alone_leaves_the_log_and_pruning_then_deleting_shortens_it() {
        let dir = TempDir::new("order-log", "split");
        // Synced at every flush, so the log's durable end is its last flush when the test
        // prunes. With group commit it is wherever the background sync last got to, and a
        // prune detaches nothing until then (this test failed that way in CI).
        let store = OrderStore::open_with(&dir.0, true, 2048).unwrap();
        for number in 1..=60 {
            store.put_request(&request(number)).unwrap();
            store.flush().unwrap();
        }
        let numbers = || -> Vec<u64> {
            store.requests_from(0).unwrap().iter().map(|request| request.number).collect()
        };
        let segments = segment_count(&dir.0, "requests");
        let snapshot = EntrySnapshot { seq: 9, next_request: 50, ..EntrySnapshot::default() };
        store.write_snapshot(&snapshot).unwrap();
        assert_eq!(store.latest_snapshot().unwrap(), Some(snapshot));
        assert_eq!(numbers(), (1..=60).collect::<Vec<_>>(), "the log is the pruner's to cut");
        let detached = store.prune_log(50);
        assert_eq!(numbers(), (50..=60).collect::<Vec<_>>());
        assert!(!detached.is_empty());
        assert_eq!(segment_count(&dir.0, "requests"), segments, "detached, not yet deleted");
        store.delete_segments(detached).unwrap();
        assert!(segment_count(&dir.0, "requests") < segments);
        assert_eq!(numbers(), (50..=60).collect::<Vec<_>>());
    }
}
