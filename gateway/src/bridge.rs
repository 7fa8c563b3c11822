//! The FIX gateway's bridge to the application loop: the [`Application`] the acceptor drives.
//!
//! Inbound, it hands each application message to the [`OrderEntry`] and stores the resulting
//! request in the [`OrderStore`] (the journals cannot say which session and ClOrdID a command
//! came from). The acceptor reads every ready connection before it calls [`Application::poll`],
//! and there the bridge flushes the store once for all the requests of the pass and only then
//! pushes their commands, each request's all or none, into the gateway's input ring. Outbound, on
//! every acceptor iteration it drains its output ring (echoed commands and their events, released
//! under the node's release policy, so no report ever runs ahead of the journal) into the order
//! entry and sends what comes out to the sessions. All of it runs on the acceptor's I/O thread,
//! never on the engine's.
//!
//! After a restart, [`FixBridge::recover`] restores the order entry from its newest stored
//! snapshot and the requests stored after it, then replays the journals from the snapshot's seq,
//! with output suppressed, up to where the application loop will resume: the same orders,
//! ClOrdIDs and cumulative quantities as before, and nothing reported twice.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use engine::{AccountId, Command, CommandBody};
use sequencer::journal::DetachedSegments;
use sequencer::priority;
use sequencer::record::{decode_output, encode_command_from, Output, Record};
use sequencer::ring::{RingConsumer, RingProducer};
use sequencer::sequencer::{read_output_from, SequencerError};

use crate::fix::{Application, Outbox, SessionConfig, SessionKey};
use crate::message::{FieldError, Message};
use crate::orders::store::{OrderStore, OrderStoreError};
use crate::orders::{
    origin, origin_source, utc_timestamp, EntryCapture, EntrySnapshot, Instruments, OrderEntry,
    OrderEntryConfig, Request, RequestKind, Response, SessionId, Submission, SOURCE_FIX,
};

/// Cancel-on-disconnect commands carry this source: no order-entry request answers to them,
/// and the order entry still reports the cancellations to the owning session.
pub const SOURCE_DISCONNECT: u8 = 3;

/// Records taken from the output ring per acceptor iteration.
const POLL_LIMIT: usize = 4096;

/// The share of the output ring that may wait before the bridge takes no new messages
/// ([`Application::accepts_input`]): an eighth, 8,192 records of the node's 65,536. After a
/// stall of the FIX thread, the orders that queued in the sockets meanwhile arrive in one pass
/// (up to a megabyte), and their reports come back faster than a pass of [`POLL_LIMIT`] records
/// takes them: reading on filled the output ring, which stopped the loop, which filled the
/// input ring, and at 30,000 orders/s a 200 ms stall took a second to recover from although
/// the node's capacity is above 100,000/s. Answers first, then new orders, keeps the output
/// ring from filling: one pass's reads bring at most about 40,000 records, which fit above
/// the mark.
const OUTPUT_BACKLOG_DIVISOR: usize = 8;
/// The acceptor keeps polling for answers at most this long after the last command went in or
/// the last output came back.
const BUSY_MAX_NS: u64 = 100_000_000;
/// A delivered mark waits at most this long in the store's buffer when no request comes to
/// flush it sooner.
const DELIVERED_FLUSH_NS: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Store(#[from] OrderStoreError),
    #[error("replaying the journals for the order entry: {0}")]
    Replay(#[from] SequencerError),
}

/// Counters other threads read for health and metrics.
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    pub sessions_logged_on: AtomicU64,
    pub messages_in: AtomicU64,
    pub reports_out: AtomicU64,
    pub submissions_refused: AtomicU64,
    /// The seq of the last command whose output this bridge has processed.
    pub seq: AtomicU64,
    /// Records waiting in the gateway's rings, as of the last output this bridge took.
    pub input_depth: AtomicU64,
    pub output_depth: AtomicU64,
}

/// A request stored in this pass whose commands wait for the store's flush: the session, the
/// session and MsgSeqNum of the message it answers (for a reject's RefSeqNum), the submission.
type PendingSubmission = (SessionKey, Option<(SessionKey, u64)>, Submission);

/// See the module documentation.
#[derive(Debug)]
pub struct FixBridge {
    entry: OrderEntry,
    /// Shared with the thread that writes snapshots.
    store: Arc<OrderStore>,
    input: RingProducer,
    output: RingConsumer,
    /// Session names by [`SessionKey`], and back.
    names: Vec<SessionId>,
    keys: HashMap<SessionId, SessionKey>,
    accounts: Vec<Vec<AccountId>>,
    disconnect_requests: u64,
    /// Store an order-entry snapshot after this many commands.
    snapshot_every: u64,
    /// The seq of the last snapshot captured, and of the last one known stored.
    snapshot_seq: u64,
    snapshot_stored: u64,
    /// The thread that stores snapshots; `None` until one could be started. It hands each
    /// snapshot back emptied, for the next capture to fill ([`OrderEntry::capture_into`]).
    snapshot_writer: Option<SnapshotWriter>,
    snapshot_spare: EntrySnapshot,
    /// Request-log segments a stored snapshot made redundant, detached here (under the log's
    /// lock, which only this thread then takes) and deleted by the next snapshot's thread.
    pruned: Vec<DetachedSegments>,
    /// Reports of every command up to here are in the outbox or beyond.
    delivered: u64,
    /// What the order store holds as delivered.
    delivered_stored: u64,
    /// Requests stored (not yet flushed) in this pass, with the session and MsgSeqNum of the
    /// message each answers; their commands are pushed after the flush.
    pending: Vec<PendingSubmission>,
    /// The store holds writes that no flush has written yet, since this time.
    unflushed_since_ns: Option<u64>,
    /// Commands pushed, and echoes of them seen, since start: while they differ the answers
    /// are due any moment, and the acceptor should not sleep.
    pushed: u64,
    answered: u64,
    /// When a command last went in or output last came back.
    progress_ns: u64,
    /// The clock as the last poll read it: `busy`, asked right after every poll, uses it
    /// rather than reading the clock again.
    polled_ns: u64,
    /// Cancel-on-disconnect commands that found the input ring full; pushed before anything
    /// else as soon as there is room.
    disconnect_cancels: Vec<(u32, CommandBody)>,
    metrics: Arc<BridgeMetrics>,
}

impl FixBridge {
    /// Restores the order entry (see the module documentation) and returns the bridge. `seq` is
    /// where the application loop resumes: the journals are replayed up to it, and the output
    /// ring carries what follows.
    pub fn recover(
        instruments: Instruments,
        sessions: &[SessionConfig],
        store: OrderStore,
        data_dir: &Path,
        input: RingProducer,
        output: RingConsumer,
    ) -> Result<FixBridge, BridgeError> {
        let snapshot = store.latest_snapshot()?;
        let from = snapshot.as_ref().map_or(1, |snapshot| snapshot.seq + 1);
        let next_request = snapshot.as_ref().map_or(0, |snapshot| snapshot.next_request);
        let requests = store.requests_from(next_request)?;
        let config = OrderEntryConfig::default();
        let mut entry = OrderEntry::restore(instruments, config, snapshot, requests);
        // Reports of commands after the delivered mark never reached the sessions: the node
        // stopped first. The replay sends them now (a crash between handing reports over and
        // recording the mark sends those again: at least once, never lost). With no mark yet,
        // nothing is known to have left, so everything replayed is sent.
        let delivered = store.delivered()?;
        let mut resumed = false;
        read_output_from(data_dir, from, |output| {
            if let Output::Echo { command, .. } = &output {
                if !resumed && delivered.is_none_or(|delivered| command.seq > delivered) {
                    entry.resume_output();
                    resumed = true;
                }
            }
            entry.on_output(&output);
            Ok(())
        })?;
        for lost in entry.finish_recovery() {
            // Stored but never sequenced: the node stopped between the two. The client got no
            // answer and will see none; its ClOrdID is free again.
            eprintln!(
                "fix: request {} of {} ({}) was never sequenced; dropped",
                lost.number, lost.session, lost.cl_ord_id
            );
        }
        let names: Vec<SessionId> =
            sessions.iter().map(|session| SessionId::new(&session.target_comp_id)).collect();
        let keys = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                (name.clone(), SessionKey(u32::try_from(index).expect("sessions fit u32")))
            })
            .collect();
        let accounts = sessions
            .iter()
            .map(|session| session.accounts.iter().copied().map(AccountId).collect())
            .collect();
        let snapshot_seq = entry.seq();
        let store = Arc::new(store);
        // Started now, before the FIX thread serves; see `SnapshotWriter`.
        let snapshot_writer = SnapshotWriter::start(&store)
            .map_err(|error| eprintln!("fix: starting the order-entry snapshot thread: {error}"))
            .ok();
        let metrics = Arc::new(BridgeMetrics::default());
        metrics.seq.store(entry.seq(), Ordering::Relaxed);
        Ok(FixBridge {
            entry,
            store,
            input,
            output,
            names,
            keys,
            accounts,
            disconnect_requests: 0,
            snapshot_every: sequencer::sequencer::SNAPSHOT_EVERY_COMMANDS,
            snapshot_seq,
            snapshot_stored: snapshot_seq,
            snapshot_writer,
            snapshot_spare: EntrySnapshot::default(),
            pruned: Vec::new(),
            delivered: delivered.unwrap_or(0),
            delivered_stored: delivered.unwrap_or(0),
            pending: Vec::new(),
            unflushed_since_ns: None,
            pushed: 0,
            answered: 0,
            progress_ns: 0,
            polled_ns: 0,
            disconnect_cancels: Vec::new(),
            metrics,
        })
    }

    pub fn metrics(&self) -> Arc<BridgeMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Records waiting in the input ring, for health and metrics.
    pub fn input_depth(&self) -> usize {
        self.input.depth()
    }

    /// Pushes every command of a submission, or none when the ring lacks room for all.
    fn push_all(&mut self, commands: &[(u32, CommandBody)]) -> bool {
        let Ok(mut claim) = self.input.try_claim(commands.len()) else { return false };
        for (index, (origin, body)) in commands.iter().enumerate() {
            let record: Record =
                encode_command_from(&Command { seq: 0, timestamp_ns: 0, body: *body }, *origin);
            claim.slot_mut(index).copy_from_slice(&record);
        }
        claim.commit();
        self.pushed += commands.len() as u64;
        self.progress_ns = now_ns();
        true
    }

    /// Pushes the cancels on disconnect that found the ring full, all at once; true when none
    /// wait any more.
    fn push_disconnect_cancels(&mut self) -> bool {
        if self.disconnect_cancels.is_empty() {
            return true;
        }
        let cancels = std::mem::take(&mut self.disconnect_cancels);
        if self.push_all(&cancels) {
            return true;
        }
        self.disconnect_cancels = cancels;
        false
    }

    /// Stores the request (buffered) and queues its commands for [`FixBridge::submit_pending`].
    fn submit(&mut self, session: SessionKey, submission: Submission, outbox: &mut Outbox) {
        if let Err(error) = self.store.put_request(&submission.request) {
            eprintln!("fix: storing request {}: {error}", submission.request.number);
            self.refuse(session, &submission, "gateway storage unavailable; not submitted", outbox);
            return;
        }
        self.unflushed_since_ns.get_or_insert_with(now_ns);
        self.pending.push((session, outbox.handling(), submission));
    }

    /// Flushes the store, then pushes the commands of every queued request: a request is
    /// stored before its commands can be sequenced, so that a restart can always tell whose
    /// they were.
    fn submit_pending(&mut self, outbox: &mut Outbox) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        let flushed = self.flush_store();
        let mut pending = std::mem::take(&mut self.pending);
        let count = pending.len();
        // Once one request finds the ring full, the later ones of the pass are refused too,
        // even if smaller: a client's requests reach the engine in the order it sent them, or
        // not at all.
        // Cancels on disconnect still waiting for room go first, whatever came after them.
        let mut ring_full = !self.push_disconnect_cancels();
        for (session, handling, submission) in pending.drain(..) {
            let text = if !flushed {
                "gateway storage unavailable; not submitted"
            } else if ring_full || !self.push_all(&submission.commands) {
                ring_full = true;
                "exchange busy (input ring full); not submitted, retry"
            } else {
                continue;
            };
            // The reject refers to the message that carried the request, as if sent while it
            // was being handled.
            outbox.set_handling(handling);
            self.refuse(session, &submission, text, outbox);
            outbox.set_handling(None);
        }
        // The queue's allocation is kept for the next pass.
        self.pending = pending;
        count
    }

    fn refuse(
        &mut self,
        session: SessionKey,
        submission: &Submission,
        text: &str,
        out: &mut Outbox,
    ) {
        self.entry.abandon(submission);
        self.metrics.submissions_refused.fetch_add(1, Ordering::Relaxed);
        out.send(session, busy_reject(&submission.request, text));
    }

    fn flush_store(&mut self) -> bool {
        match self.store.flush() {
            Ok(()) => {
                self.unflushed_since_ns = None;
                true
            }
            Err(error) => {
                eprintln!("fix: flushing the order store: {error}");
                false
            }
        }
    }

    /// Moves the order entry's outbound messages to the sessions.
    fn deliver(&mut self, outbox: &mut Outbox) -> usize {
        let mut sent = 0;
        while let Some((name, message)) = self.entry.poll_outbound() {
            if let Some(key) = self.keys.get(&name) {
                outbox.send(*key, message);
                sent += 1;
            }
        }
        if sent > 0 {
            // A shared counter: touched only when something went out, not on every pass.
            self.metrics.reports_out.fetch_add(sent as u64, Ordering::Relaxed);
        }
        sent
    }

    /// Captures a snapshot when one is due and hands it to a thread of its own to sort, encode
    /// and store. Encoding the whole order table (the retired window included) takes hundreds
    /// of milliseconds; on the FIX thread that stalled every session. Here the FIX thread only
    /// collects references to the orders. One snapshot is stored at a time: while the last
    /// one is still being written, a due one waits.
    fn snapshot_if_due(&mut self) {
        let seq = self.entry.seq();
        if seq < self.snapshot_seq.saturating_add(self.snapshot_every) {
            return;
        }
        if self.snapshot_writer.as_mut().is_some_and(SnapshotWriter::busy) {
            return;
        }
        self.join_snapshot_writer();
        if self.snapshot_writer.is_none() {
            // The thread could not be started before, or died with a snapshot: try again.
            match SnapshotWriter::start(&self.store) {
                Ok(writer) => self.snapshot_writer = Some(writer),
                Err(error) => {
                    eprintln!("fix: starting the order-entry snapshot at {seq}: {error}");
                    // Not again before another `snapshot_every` commands.
                    self.snapshot_seq = seq;
                    return;
                }
            }
        }
        let capture = self.entry.capture_into(std::mem::take(&mut self.snapshot_spare));
        let pruned = std::mem::take(&mut self.pruned);
        let writer = self.snapshot_writer.as_mut().expect("started above");
        writer.submit(SnapshotJob { capture, pruned });
        self.snapshot_seq = seq;
    }

    /// Waits for the snapshot being stored, if any. A failed one is tried again after another
    /// `snapshot_every` commands, not at once: against a store that keeps failing, retrying at
    /// once would cost the FIX thread a capture (milliseconds) on every pass. Until one
    /// succeeds, the request log keeps what the failed ones would have pruned, and a restart
    /// replays from the last stored snapshot: slower, nothing lost.
    fn join_snapshot_writer(&mut self) {
        let Some(writer) = self.snapshot_writer.as_mut() else { return };
        let Some(written) = writer.wait() else { return };
        let stored = written.map(|(stored, spare)| {
            self.snapshot_spare = spare;
            stored
        });
        if stored.is_err() {
            // The thread is gone; the next snapshot starts another.
            self.snapshot_writer = None;
        }
        match stored {
            Ok(Ok((seq, next_request))) => {
                self.snapshot_stored = seq;
                self.pruned.push(self.store.prune_log(next_request));
            }
            Ok(Err(error)) => {
                eprintln!(
                    "fix: storing the order-entry snapshot at {}: {error}",
                    self.snapshot_seq
                );
            }
            Err(_) => {
                eprintln!("fix: the order-entry snapshot at {} panicked", self.snapshot_seq);
            }
        }
    }

    /// Stores order-entry snapshots after this many commands (by default as often as the
    /// application loop snapshots the engine); 0 stores none, as for the engine.
    pub fn set_snapshot_every(&mut self, commands: u64) {
        self.snapshot_every = if commands == 0 { u64::MAX } else { commands };
    }

    /// The order entry's store, for reading what it holds.
    pub fn order_store(&self) -> &OrderStore {
        &self.store
    }

    /// The seq of the newest snapshot this bridge has stored, waiting for one being written.
    pub fn finish_snapshot(&mut self) -> u64 {
        self.join_snapshot_writer();
        self.snapshot_stored
    }
}

impl Drop for FixBridge {
    fn drop(&mut self) {
        // A snapshot being written is finished, not abandoned halfway through a stop, and the
        // segments it made redundant go now rather than at the next start's first snapshot.
        self.join_snapshot_writer();
        delete_pruned(&self.store, std::mem::take(&mut self.pruned));
    }
}

/// Deletes request-log segments a stored snapshot made redundant. A failure only leaves files
/// behind: the next start reads them, skips their requests as redundant, and prunes them again.
fn delete_pruned(store: &OrderStore, pruned: Vec<DetachedSegments>) {
    for detached in pruned {
        if let Err(error) = store.delete_segments(detached) {
            eprintln!("fix: deleting request-log segments a snapshot made redundant: {error}");
        }
    }
}

/// What the snapshot thread hands back for each snapshot: the stored snapshot's seq and first
/// request number not covered, and the snapshot emptied for the next capture.
type SnapshotWritten = (Result<(u64, u64), OrderStoreError>, EntrySnapshot);

/// One snapshot for the snapshot thread: the capture to finish and store, and the request-log
/// segments the previous one made redundant, to delete.
struct SnapshotJob {
    capture: EntryCapture,
    pruned: Vec<DetachedSegments>,
}

/// The thread that stores order-entry snapshots, started once and handed one snapshot at a
/// time. A thread per snapshot cost the FIX thread a `pthread_create` every snapshot, whose
/// stack mapping takes the process's memory-map lock for writing; the FIX thread was caught
/// waiting for that lock in `mmap` for 2.4 s (`perf record -e sched:sched_switch`, a run at
/// 50,000 orders a second whose median went to 0.9 s).
struct SnapshotWriter {
    /// Dropped to stop the thread.
    jobs: Option<SyncSender<SnapshotJob>>,
    results: Receiver<SnapshotWritten>,
    thread: Option<JoinHandle<()>>,
    /// A snapshot was handed over and its result not yet taken.
    in_flight: bool,
    /// Its result, when [`SnapshotWriter::busy`] found it before it was waited for.
    ready: Option<SnapshotWritten>,
}

impl SnapshotWriter {
    fn start(store: &Arc<OrderStore>) -> std::io::Result<SnapshotWriter> {
        // One job and one result at a time: the bridge hands over the next snapshot only after
        // taking the last one's result.
        let (jobs, job_receiver) = sync_channel::<SnapshotJob>(1);
        let (result_sender, results) = sync_channel(1);
        let store = Arc::clone(store);
        let thread =
            std::thread::Builder::new().name("entry-snapshot".into()).spawn(move || {
                priority::set_current_thread_nice(priority::BACKGROUND_NICE);
                while let Ok(SnapshotJob { capture, pruned }) = job_receiver.recv() {
                    delete_pruned(&store, pruned);
                    let snapshot = capture.finish();
                    let stored = store
                        .write_snapshot(&snapshot)
                        .map(|()| (snapshot.seq, snapshot.next_request));
                    if result_sender.send((stored, snapshot.recycle())).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SnapshotWriter {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
            in_flight: false,
            ready: None,
        })
    }

    /// Hands a snapshot over. The caller has taken the last one's result
    /// ([`SnapshotWriter::wait`]). A thread that died meanwhile loses it; the wait says so.
    fn submit(&mut self, job: SnapshotJob) {
        debug_assert!(!self.in_flight, "one snapshot at a time");
        if let Some(jobs) = &self.jobs {
            // A send fails only if the thread has died; `wait` then reports it.
            let _ = jobs.send(job);
        }
        self.in_flight = true;
    }

    /// Whether the snapshot handed over is still being stored. Never blocks.
    fn busy(&mut self) -> bool {
        if !self.in_flight || self.ready.is_some() {
            return false;
        }
        match self.results.try_recv() {
            Ok(written) => {
                self.ready = Some(written);
                false
            }
            Err(TryRecvError::Empty) => true,
            Err(TryRecvError::Disconnected) => false,
        }
    }

    /// Waits for the snapshot handed over, if any: `None` if there is none, `Some(Err(()))` if
    /// the thread died (it panicked) without storing it.
    fn wait(&mut self) -> Option<Result<SnapshotWritten, ()>> {
        if !std::mem::take(&mut self.in_flight) {
            return None;
        }
        Some(self.ready.take().map_or_else(|| self.results.recv().map_err(drop), Ok))
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // Without a sender the thread's `recv` fails once the queue is empty, and it ends.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SnapshotWriter").field("in_flight", &self.in_flight).finish()
    }
}

/// A BusinessMessageReject (j) for a request the gateway could not submit, naming the
/// message type (372) and ClOrdID (379) it answers.
fn busy_reject(request: &Request, text: &str) -> Message {
    let msg_type = match request.kind {
        RequestKind::New { .. } => "D",
        RequestKind::Cancel { .. } => "F",
        RequestKind::Replace { .. } => "G",
        RequestKind::MassCancel { .. } => "q",
    };
    Message::new("j")
        .with(372, msg_type)
        .with(379, request.cl_ord_id.as_str())
        .with(380, 0)
        .with(58, text)
        .with(60, utc_timestamp(now_ns()))
}

/// A session-level Reject (3) for a field the order entry could not read. The session layer
/// fills RefSeqNum (45) from the message being processed.
fn field_reject(message: &Message, error: &FieldError) -> Message {
    Message::new("3")
        .with(371, error.tag())
        .with(372, &message.msg_type)
        .with(373, error.session_reject_reason())
        .with(58, error.to_string())
}

fn now_ns() -> u64 {
    crate::fix::acceptor::now_ns()
}

impl Application for FixBridge {
    fn on_logon(&mut self, _session: SessionKey, _config: &SessionConfig, _outbox: &mut Outbox) {
        self.metrics.sessions_logged_on.fetch_add(1, Ordering::Relaxed);
    }

    fn on_message(
        &mut self,
        session: SessionKey,
        _config: &SessionConfig,
        message: Message,
        outbox: &mut Outbox,
    ) {
        self.metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        let index = session.0 as usize;
        // Borrowed field by field, so that the session's name and accounts are not copied for
        // every message on the order path.
        let Self { names, accounts, entry, .. } = self;
        let (Some(name), Some(accounts)) = (names.get(index), accounts.get(index)) else {
            return;
        };
        let response = entry.on_message(name, accounts, &message, now_ns());
        match response {
            Ok(Response::Reply(reply)) => outbox.send(session, reply),
            Ok(Response::Submit(submission)) => self.submit(session, submission, outbox),
            Err(error) => outbox.send(session, field_reject(&message, &error)),
        }
        self.deliver(outbox);
    }

    fn on_logout(&mut self, session: SessionKey, config: &SessionConfig, outbox: &mut Outbox) {
        self.metrics.sessions_logged_on.fetch_sub(1, Ordering::Relaxed);
        // Orders the session sent before it went must reach the engine before the cancel.
        self.submit_pending(outbox);
        if !config.cancel_on_disconnect {
            return;
        }
        let commands: Vec<(u32, CommandBody)> = config
            .accounts
            .iter()
            .map(|&account| {
                self.disconnect_requests += 1;
                let body =
                    CommandBody::MassCancel { account: Some(AccountId(account)), instrument: None };
                (origin(SOURCE_DISCONNECT, self.disconnect_requests), body)
            })
            .collect();
        self.disconnect_cancels.extend(commands);
        if !self.push_disconnect_cancels() {
            eprintln!(
                "fix: cancel on disconnect of {} waits: input ring full",
                self.names[session.0 as usize]
            );
        }
    }

    fn poll(&mut self, outbox: &mut Outbox) -> usize {
        // One clock read for the pass's bookkeeping: it is called on every acceptor pass.
        let now = now_ns();
        self.polled_ns = now;
        self.push_disconnect_cancels();
        let submitted = self.submit_pending(outbox);
        // What the last poll put in the outbox the acceptor has since numbered and stored, so
        // it is safe to record as delivered now.
        if self.delivered > self.delivered_stored {
            match self.store.put_delivered(self.delivered) {
                Ok(()) => {
                    self.delivered_stored = self.delivered;
                    self.unflushed_since_ns.get_or_insert(now);
                }
                Err(error) => eprintln!("fix: recording delivered seq {}: {error}", self.delivered),
            }
        }
        let due = |since: u64| now.saturating_sub(since) >= DELIVERED_FLUSH_NS;
        if self.unflushed_since_ns.is_some_and(due) {
            self.flush_store();
        }
        let Self { output, entry, answered, pushed, .. } = self;
        let taken = output.poll(POLL_LIMIT, |bytes| {
            let record: &Record = bytes.try_into().expect("output slots are records");
            match decode_output(record) {
                Ok(output) => {
                    if let Output::Echo { origin, .. } = &output {
                        let source = origin_source(*origin);
                        if source == SOURCE_FIX || source == SOURCE_DISCONNECT {
                            // Capped: an echo of a command pushed before a restart answers
                            // nothing this process is waiting for.
                            *answered = (*answered + 1).min(*pushed);
                        }
                    }
                    entry.on_output(&output)
                }
                Err(error) => eprintln!("fix: undecodable output record: {error}"),
            }
        });
        if taken < POLL_LIMIT {
            // The loop publishes each command whole, so a drained ring ends at a command
            // boundary: the last command can be finished now rather than at the next echo.
            self.entry.flush();
            self.delivered = self.entry.seq();
            // Only here is the order entry between commands: a snapshot taken while the ring
            // still held the rest of a command would close that command early.
            if taken > 0 {
                self.snapshot_if_due();
            }
        }
        if taken > 0 {
            self.progress_ns = now;
            self.metrics.seq.store(self.entry.seq(), Ordering::Relaxed);
            let depth = |depth: usize| u64::try_from(depth).unwrap_or(u64::MAX);
            self.metrics.input_depth.store(depth(self.input.depth()), Ordering::Relaxed);
            self.metrics.output_depth.store(depth(self.output.depth()), Ordering::Relaxed);
        }
        submitted + taken + self.deliver(outbox)
    }

    fn accepts_input(&self) -> bool {
        self.output.depth() < (self.output.capacity() / OUTPUT_BACKLOG_DIVISOR).max(1)
    }

    fn busy(&self) -> bool {
        // Bounded, so that a loop that has stopped answering does not keep the I/O thread
        // spinning on a shared core.
        let waiting = self.answered < self.pushed || !self.disconnect_cancels.is_empty();
        let recent = self.polled_ns.saturating_sub(self.progress_ns) < BUSY_MAX_NS;
        (waiting && recent) || !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_snapshot_thread_stores_snapshot_after_snapshot_and_ends_with_its_writer() {
        let dir = testkit::TempDir::new("gateway-bridge", "snapshot-writer");
        let store = Arc::new(OrderStore::open(&dir.0, false).unwrap());
        let config = OrderEntryConfig { retired_max: 16, ..OrderEntryConfig::default() };
        let mut entry = OrderEntry::new(Instruments::new([]), config);
        let mut writer = SnapshotWriter::start(&store).unwrap();
        assert!(writer.wait().is_none(), "nothing handed over yet");
        let mut spare = EntrySnapshot::default();
        for _ in 0..3 {
            let capture = entry.capture_into(std::mem::take(&mut spare));
            writer.submit(SnapshotJob { capture, pruned: Vec::new() });
            let (stored, recycled) = writer.wait().expect("one in flight").expect("stored");
            assert_eq!(stored.unwrap().0, entry.seq());
            spare = recycled;
            assert!(!writer.busy(), "its result was taken");
            // The same thread waits for the next snapshot; one per snapshot would have ended.
            assert!(!writer.thread.as_ref().unwrap().is_finished());
        }
        assert_eq!(store.latest_snapshot().unwrap().map(|snapshot| snapshot.seq), Some(0));
        // Dropping the writer stops and joins its thread: a thread that kept waiting for jobs
        // would hang this test here.
        drop(writer);
    }
}
