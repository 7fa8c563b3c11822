//! The sequencer proper: it stamps each command with the next sequence number and a timestamp,
//! journals it, hands it to the engine and journals the engine's events; and at start it
//! recovers the engine from the journals.
//!
//! Recovery restores the newest valid snapshot ([`crate::snapshot_store`]; genesis if there is
//! none), replays the command journal after it, and checks every regenerated event against the
//! event journal, byte for byte. The event journal may end early, even in the middle of a
//! command's events (the process died between the two appends): the missing events are appended
//! from the replay. Anything else that differs is an error, because it means the journals
//! disagree with the engine.
//!
//! Snapshots are taken at command boundaries, every `snapshot_every_commands` commands and on
//! demand, and only after both journals are flushed to the snapshot's seq: a snapshot is never
//! ahead of the journal, so the events of every command it covers are already journaled and
//! recovery compares only the events of the commands it replays.
//!
//! What is durable is the command journal: the event journal is the engine's output for it,
//! which a replay regenerates byte for byte and recovery appends when it ended early. So a
//! command counts as durable, and its answers may be released under the durable policy, once the
//! command journal has it, whatever the event journal's state; and under group commit the event
//! journal is synced on a coarser interval of its own ([`events_durability`]). That halves the
//! syncs (each a write to the disk and its inode's block, and on a virtual machine a notification
//! of the hypervisor per sync): at 50,000 orders a second the event journal's flusher took about
//! 6% of the core the FIX thread shares. A crash of the machine can take up to that interval of
//! events, which the next start rebuilds from the commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Command, CommandBody, Engine, EngineConfig, Event};

use crate::journal::{
    read_from, Durability, Journal, JournalConfig, JournalError, OpenReport, ReadSummary, SeqOrder,
};
use crate::record::{
    decode_command, decode_command_origin, decode_event, encode_command_from, encode_event,
    from_journal_payload, journal_payload, EventRecord, Output, Record, RecordError, RECORD_BYTES,
};
use crate::snapshot_store::{
    SkippedSnapshot, SnapshotDefect, SnapshotStore, SnapshotStoreError, SNAPSHOTS,
};
use crate::snapshot_writer::SnapshotWriter;

pub const COMMANDS: &str = "commands";
pub const EVENTS: &str = "events";
/// Under group commit, the event journal is synced at least this seldom (see the module
/// documentation): a bound on the events a crash of the machine leaves to the replay.
pub const EVENTS_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The event journal's policy for a node whose policy is `durability`: under group commit it
/// syncs every [`EVENTS_SYNC_INTERVAL`] (or the command journal's interval, if longer), with no
/// record count bringing it forward; the other policies apply as they are.
pub fn events_durability(durability: Durability) -> Durability {
    match durability {
        Durability::GroupCommit { interval, .. } => Durability::GroupCommit {
            interval: interval.max(EVENTS_SYNC_INTERVAL),
            records: u64::MAX,
        },
        other => other,
    }
}

/// A snapshot every this many commands unless configured otherwise.
pub const SNAPSHOT_EVERY_COMMANDS: u64 = 100_000;
/// Snapshots kept after each new one unless configured otherwise.
pub const SNAPSHOTS_KEPT: usize = 3;

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub truncate_corrupt: bool,
    /// Take a snapshot once this many commands have been sequenced since the last one; zero
    /// takes them only on demand.
    pub snapshot_every_commands: u64,
    /// Snapshots kept after each new one; older ones are deleted. At least one is kept.
    pub snapshots_kept: usize,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{journal} journal, seq {seq}: {source}")]
    Record { journal: &'static str, seq: u64, source: RecordError },
    #[error("{journal} journal record {seq} is longer than {expected} bytes")]
    RecordSize { journal: &'static str, seq: u64, expected: usize },
    #[error("command journal starts at seq {0}, not 1")]
    Start(u64),
    #[error("command journal jumps from seq {previous} to {seq}")]
    Gap { previous: u64, seq: u64 },
    #[error(transparent)]
    Snapshot(#[from] SnapshotStoreError),
    #[error("event {index} of command {seq} differs between the event journal and the replay")]
    EventMismatch { seq: u64, index: u32 },
    #[error("the event journal has events of command {event_seq}, past the last, {command_seq}")]
    EventsAhead { event_seq: u64, command_seq: u64 },
    #[error("background snapshot: {0}")]
    Background(String),
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    pub commands: OpenReport,
    pub events: OpenReport,
    /// The seq of the snapshot recovery started from; `None` for genesis.
    pub snapshot_seq: Option<u64>,
    /// Snapshots passed over (damaged, refused by the engine, or past the journal), newest
    /// first: warnings for the operator. Those past the journal have been deleted.
    pub snapshots_skipped: Vec<SkippedSnapshot>,
    /// Commands replayed after the snapshot (or from genesis).
    pub commands_replayed: u64,
    pub events_appended: u64,
}

/// Owns the engine and both journals. One per data directory and process.
#[derive(Debug)]
pub struct Sequencer {
    engine: Engine,
    commands: Journal,
    events: Journal,
    scratch: Vec<Event>,
    timestamp_ns: u64,
    snapshots: Arc<SnapshotStore>,
    /// Started by the first background snapshot.
    writer: Option<SnapshotWriter>,
    /// The seq of the newest snapshot taken or restored (zero: none).
    snapshot_seq: u64,
    snapshot_every_commands: u64,
    snapshots_kept: usize,
}

fn journal_config(config: &SequencerConfig, name: &str, order: SeqOrder) -> JournalConfig {
    JournalConfig {
        directory: config.data_dir.join("journal"),
        name: name.to_owned(),
        segment_bytes: config.segment_bytes,
        order,
        durability: if name == EVENTS {
            events_durability(config.durability)
        } else {
            config.durability
        },
        truncate_corrupt: config.truncate_corrupt,
        staging: crate::staging::default_root(),
        // Segments of tens of megabytes last seconds at the loop's rates: one spare is ahead.
        spares: 1,
    }
}

fn as_record(journal: &'static str, seq: u64, payload: &[u8]) -> Result<Record, SequencerError> {
    from_journal_payload(payload).ok_or(SequencerError::RecordSize {
        journal,
        seq,
        expected: RECORD_BYTES,
    })
}

/// Reads journal `journal` of `data_dir` from `from_seq` on (whole segments below it are not
/// read), passing each record at or above `from_seq` to `visit`.
fn read_records(
    data_dir: &Path,
    journal: &'static str,
    order: SeqOrder,
    from_seq: u64,
    mut visit: impl FnMut(u64, &Record) -> Result<(), SequencerError>,
) -> Result<ReadSummary, SequencerError> {
    let mut failure = None;
    let outcome = read_from(&data_dir.join("journal"), journal, order, from_seq, |seq, payload| {
        if seq < from_seq {
            return Ok(());
        }
        as_record(journal, seq, payload).and_then(|record| visit(seq, &record)).map_err(|error| {
            // The journal reader's error type cannot carry ours; keep it aside and stop.
            failure = Some(error);
            JournalError::PayloadSize(0)
        })
    });
    match (outcome, failure) {
        (_, Some(error)) => Err(error),
        (Ok(summary), None) => Ok(summary),
        (Err(error), None) => Err(error.into()),
    }
}

/// Every command in the journal of `data_dir`, in order, decoded. Returns how many.
pub fn read_commands(
    data_dir: &Path,
    visit: impl FnMut(Command) -> Result<(), SequencerError>,
) -> Result<u64, SequencerError> {
    Ok(read_commands_from(data_dir, 1, visit)?.records)
}

/// The commands of the journal of `data_dir` from `from_seq` on, in order, decoded, checking
/// that none is missing from `from_seq` to the end. The summary's `last_seq` is the journal's
/// end.
pub fn read_commands_from(
    data_dir: &Path,
    from_seq: u64,
    mut visit: impl FnMut(Command) -> Result<(), SequencerError>,
) -> Result<ReadSummary, SequencerError> {
    let from_seq = from_seq.max(1);
    let mut expected = from_seq;
    read_records(data_dir, COMMANDS, SeqOrder::Strict, from_seq, |seq, record| {
        let command = decode_command(record).map_err(|source| SequencerError::Record {
            journal: COMMANDS,
            seq,
            source,
        })?;
        // The journal checked that frame seqs rise by one; the first one read must be the one
        // asked for, and each record must carry its frame's seq.
        if command.seq != expected || seq != expected {
            return Err(if expected == 1 {
                SequencerError::Start(command.seq)
            } else {
                SequencerError::Gap { previous: expected - 1, seq: command.seq }
            });
        }
        expected += 1;
        visit(command)
    })
}

/// The journals of `data_dir` from `from_seq` on as an application loop with echoed commands
/// would have put them on an output ring: each command with its origin, then its events. For
/// consumers rebuilding their state after a restart. Holds the commands in memory while it reads
/// the events, so `from_seq` should be recent (a consumer's own snapshot).
pub fn read_output_from(
    data_dir: &Path,
    from_seq: u64,
    mut visit: impl FnMut(Output) -> Result<(), SequencerError>,
) -> Result<u64, SequencerError> {
    let from_seq = from_seq.max(1);
    let mut commands = Vec::new();
    let mut expected = from_seq;
    read_records(data_dir, COMMANDS, SeqOrder::Strict, from_seq, |seq, record| {
        let (command, origin) = decode_command_origin(record)
            .map_err(|source| SequencerError::Record { journal: COMMANDS, seq, source })?;
        if command.seq != expected {
            return Err(SequencerError::Gap { previous: expected - 1, seq: command.seq });
        }
        expected += 1;
        commands.push(Output::Echo { command, origin });
        Ok(())
    })?;
    let mut echoes = commands.into_iter().peekable();
    let mut last = from_seq - 1;
    read_events_from(data_dir, from_seq, |event| {
        while let Some(Output::Echo { command, .. }) = echoes.peek() {
            if command.seq > event.seq {
                break;
            }
            last = command.seq;
            visit(echoes.next().expect("peeked"))?;
        }
        if event.seq != last {
            return Err(SequencerError::EventsAhead { event_seq: event.seq, command_seq: last });
        }
        visit(Output::Event(event))
    })?;
    for echo in echoes {
        if let Output::Echo { command, .. } = &echo {
            last = command.seq;
        }
        visit(echo)?;
    }
    Ok(last)
}

/// Every event in the event journal of `data_dir`, in order, decoded.
pub fn read_events(
    data_dir: &Path,
    visit: impl FnMut(EventRecord) -> Result<(), SequencerError>,
) -> Result<u64, SequencerError> {
    Ok(read_events_from(data_dir, 0, visit)?.records)
}

/// The events of commands from `from_seq` on, in order, decoded.
pub fn read_events_from(
    data_dir: &Path,
    from_seq: u64,
    mut visit: impl FnMut(EventRecord) -> Result<(), SequencerError>,
) -> Result<ReadSummary, SequencerError> {
    read_records(data_dir, EVENTS, SeqOrder::NonDecreasing, from_seq, |seq, record| {
        let event = decode_event(record).map_err(|source| SequencerError::Record {
            journal: EVENTS,
            seq,
            source,
        })?;
        visit(event)
    })
}

/// The newest snapshot recovery may start from, or a genesis engine. Snapshots past the end of
/// the command journal are deleted first: once new commands take their sequence numbers, they
/// would describe a history that never happened.
fn restore_newest(
    config: &SequencerConfig,
    snapshots: &SnapshotStore,
    journal_seq: u64,
    recovery: &mut Recovery,
) -> Result<Engine, SequencerError> {
    for seq in snapshots.delete_above(journal_seq)? {
        let defect = SnapshotDefect::AheadOfJournal { journal_seq };
        recovery.snapshots_skipped.push(SkippedSnapshot { seq, defect });
    }
    let search = snapshots.newest_valid(config.engine, Some(journal_seq))?;
    recovery.snapshots_skipped.extend(search.skipped);
    recovery.snapshot_seq = search.engine.as_ref().map(Engine::seq);
    Ok(search.engine.unwrap_or_else(|| Engine::new(config.engine)))
}

impl Sequencer {
    /// Opens the data directory, recovering the engine from the newest valid snapshot and the
    /// journals after it (or from the journals alone), and repairs an event journal that ended
    /// early.
    pub fn open(config: &SequencerConfig) -> Result<(Sequencer, Recovery), SequencerError> {
        let (commands, command_report) =
            Journal::open(journal_config(config, COMMANDS, SeqOrder::Strict))?;
        let (events, event_report) =
            Journal::open(journal_config(config, EVENTS, SeqOrder::NonDecreasing))?;
        let snapshots = SnapshotStore::open(&config.data_dir.join(SNAPSHOTS))?;
        let mut recovery =
            Recovery { commands: command_report, events: event_report, ..Recovery::default() };
        let journal_seq = commands.last_seq().unwrap_or(0);
        let engine = restore_newest(config, &snapshots, journal_seq, &mut recovery)?;
        let mut sequencer = Sequencer {
            timestamp_ns: engine.timestamp_ns(),
            snapshot_seq: engine.seq(),
            engine,
            commands,
            events,
            scratch: Vec::with_capacity(1 << 16),
            snapshots: Arc::new(snapshots),
            writer: None,
            snapshot_every_commands: config.snapshot_every_commands,
            snapshots_kept: config.snapshots_kept.max(1),
        };
        sequencer.replay_journal(&config.data_dir, &mut recovery)?;
        sequencer.events.flush()?;
        sequencer.commands.flush()?;
        Ok((sequencer, recovery))
    }

    /// Replays the commands after the engine's seq and checks their events against the event
    /// journal, appending the ones it lacks at its end.
    fn replay_journal(
        &mut self,
        data_dir: &Path,
        recovery: &mut Recovery,
    ) -> Result<(), SequencerError> {
        let from_seq = self.engine.seq() + 1;
        // Events of commands the snapshot covers are already journaled (a snapshot is taken only
        // after a flush) and the replay does not regenerate them: compare only the tail's.
        let mut journaled: Vec<Record> = Vec::new();
        read_events_from(data_dir, from_seq, |record| {
            journaled.push(encode_event(&record));
            Ok(())
        })?;
        let mut next_event = 0usize;
        read_commands_from(data_dir, from_seq, |command| {
            self.scratch.clear();
            self.engine.handle(&command, &mut self.scratch);
            self.timestamp_ns = command.timestamp_ns;
            recovery.commands_replayed += 1;
            for (index, event) in self.scratch.iter().enumerate() {
                let index = u32::try_from(index).expect("events per command fit u32");
                let record = EventRecord {
                    seq: command.seq,
                    timestamp_ns: command.timestamp_ns,
                    index,
                    event: *event,
                };
                let bytes = encode_event(&record);
                if let Some(journaled) = journaled.get(next_event) {
                    if *journaled != bytes {
                        return Err(SequencerError::EventMismatch { seq: command.seq, index });
                    }
                    next_event += 1;
                } else {
                    self.events.append(command.seq, journal_payload(&bytes))?;
                    recovery.events_appended += 1;
                }
            }
            Ok(())
        })?;
        if let Some(extra) = journaled.get(next_event) {
            let event_seq = crate::record::record_seq(extra);
            return Err(SequencerError::EventsAhead { event_seq, command_seq: self.engine.seq() });
        }
        Ok(())
    }

    /// Takes a snapshot now: flushes both journals, stores the engine's state under its seq
    /// (synced), and prunes old snapshots down to the configured count. Every method of the
    /// sequencer returns at a command boundary, so any moment between calls is a valid one.
    /// Returns the snapshot's seq, which is also durable in both journals.
    pub fn snapshot(&mut self) -> Result<u64, SequencerError> {
        let durable = self.flush()?;
        // The snapshot must never be ahead of the journal it will be replayed against.
        assert_eq!(durable, self.engine.seq(), "flush makes every command durable");
        let seq = self.snapshots.save(&self.engine)?;
        self.snapshots.prune(self.snapshots_kept)?;
        self.snapshot_seq = seq;
        Ok(seq)
    }

    /// Starts the thread that stores background snapshots, if it is not running. The first
    /// background snapshot starts it otherwise, on the caller's thread and with that thread's
    /// CPU affinity; a node calls this before it pins the application loop, so that the writer
    /// never shares the loop's core.
    pub fn start_snapshot_writer(&mut self) -> Result<(), SequencerError> {
        if self.writer.is_none() {
            let journals = [self.commands.sync_handle(), self.events.sync_handle()];
            let writer =
                SnapshotWriter::start(Arc::clone(&self.snapshots), journals, self.snapshots_kept)
                    .map_err(|error| SequencerError::Background(error.to_string()))?;
            self.writer = Some(writer);
        }
        Ok(())
    }

    /// Takes a snapshot without waiting for storage: commits the batch, encodes the engine's
    /// state into a reused buffer, and leaves syncing the journals and the synced RocksDB write
    /// to a writer thread. Returns the snapshot's seq, or `None` if the previous background
    /// snapshot is still being written. Errors of earlier background snapshots surface here or
    /// in [`Sequencer::finish_snapshots`].
    pub fn snapshot_in_background(&mut self) -> Result<Option<u64>, SequencerError> {
        self.commit()?;
        self.start_snapshot_writer()?;
        let writer = self.writer.as_mut().expect("started above");
        let seq = writer.capture(&self.engine)?;
        if let Some(seq) = seq {
            self.snapshot_seq = seq;
        }
        Ok(seq)
    }

    /// Waits for the background snapshot in flight, if any; returns its error if it failed.
    pub fn finish_snapshots(&mut self) -> Result<(), SequencerError> {
        match &mut self.writer {
            Some(writer) => writer.finish(),
            None => Ok(()),
        }
    }

    /// The seq of the newest snapshot a background write has stored (zero: none).
    pub fn background_snapshot_seq(&self) -> u64 {
        self.writer.as_ref().map_or(0, SnapshotWriter::stored_seq)
    }

    /// Whether `snapshot_every_commands` commands have been sequenced since the last snapshot.
    /// One subtraction and a compare: cheap enough for every duty cycle.
    pub fn snapshot_due(&self) -> bool {
        self.snapshot_every_commands > 0
            && self.engine.seq() - self.snapshot_seq >= self.snapshot_every_commands
    }

    /// Takes a snapshot if one is due; returns its seq if it did.
    pub fn snapshot_if_due(&mut self) -> Result<Option<u64>, SequencerError> {
        if self.snapshot_due() {
            return self.snapshot().map(Some);
        }
        Ok(None)
    }

    /// The seq of the newest snapshot taken or restored; zero if none.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot_seq
    }

    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Sequences one command: stamps it, journals it, applies it and journals its events.
    /// Returns the command as stamped and its events. Nothing is durable before [`commit`].
    ///
    /// [`commit`]: Sequencer::commit
    pub fn submit(
        &mut self,
        body: CommandBody,
        timestamp_ns: u64,
    ) -> Result<(Command, &[Event]), SequencerError> {
        self.submit_from(0, body, timestamp_ns)
    }

    /// [`Sequencer::submit`] for a command whose producer tagged it with `origin`; the tag is
    /// journaled with the command and never reaches the engine.
    pub fn submit_from(
        &mut self,
        origin: u32,
        body: CommandBody,
        timestamp_ns: u64,
    ) -> Result<(Command, &[Event]), SequencerError> {
        // Time never runs backwards in the journal, whatever the wall clock does.
        self.timestamp_ns = self.timestamp_ns.max(timestamp_ns);
        let command = Command { seq: self.engine.seq() + 1, timestamp_ns: self.timestamp_ns, body };
        self.commands
            .append(command.seq, journal_payload(&encode_command_from(&command, origin)))?;
        self.scratch.clear();
        self.engine.handle(&command, &mut self.scratch);
        for (index, event) in self.scratch.iter().enumerate() {
            let index = u32::try_from(index).expect("events per command fit u32");
            let record = EventRecord {
                seq: command.seq,
                timestamp_ns: command.timestamp_ns,
                index,
                event: *event,
            };
            self.events.append(command.seq, journal_payload(&encode_event(&record)))?;
        }
        Ok((command, &self.scratch))
    }

    /// Ends a batch: both journals commit under their policies. Returns the highest sequence
    /// number whose command is durable: its events follow from it (see the module
    /// documentation).
    pub fn commit(&mut self) -> Result<u64, SequencerError> {
        let commands = self.commands.commit()?;
        // Its own failures (a sync that failed) still stop the loop.
        self.events.commit()?;
        Ok(commands)
    }

    /// Makes everything durable now, whatever the policy.
    pub fn flush(&mut self) -> Result<u64, SequencerError> {
        self.commands.flush()?;
        self.events.flush()?;
        Ok(self.engine.seq())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The command journal's durable watermark, for health reports on other threads.
    pub fn durable_watermark(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.commands.watermark()
    }

    pub fn seq(&self) -> u64 {
        self.engine.seq()
    }
}

/// Rebuilds the engine from the command journal alone, from genesis, up to `to_seq` (or the
/// end). `progress` is called with each replayed seq.
pub fn replay(
    data_dir: &Path,
    engine_config: EngineConfig,
    to_seq: Option<u64>,
    mut progress: impl FnMut(u64),
) -> Result<Engine, SequencerError> {
    let mut engine = Engine::new(engine_config);
    replay_onto(&mut engine, data_dir, to_seq, &mut progress)?;
    Ok(engine)
}

/// Applies the journal's commands after the engine's seq, up to `to_seq` (or the end). Returns
/// what was read; its `last_seq` is the end of the journal.
fn replay_onto(
    engine: &mut Engine,
    data_dir: &Path,
    to_seq: Option<u64>,
    progress: &mut impl FnMut(u64),
) -> Result<ReadSummary, SequencerError> {
    let mut events = Vec::with_capacity(1 << 16);
    read_commands_from(data_dir, engine.seq() + 1, |command| {
        if to_seq.is_some_and(|to_seq| command.seq > to_seq) {
            return Ok(());
        }
        events.clear();
        engine.handle(&command, &mut events);
        progress(command.seq);
        Ok(())
    })
}

/// A state rebuilt by [`replay_from_snapshot`], and where it started.
#[derive(Debug)]
pub struct Replayed {
    pub engine: Engine,
    /// The snapshot the replay started from; `None` for genesis.
    pub snapshot_seq: Option<u64>,
    /// Newer snapshots passed over, with the reason: warnings for the operator.
    pub skipped: Vec<SkippedSnapshot>,
    /// The last command in the journal.
    pub journal_seq: u64,
}

/// Rebuilds the engine from the newest valid snapshot at or below `to_seq` (any, if `None`) and
/// the command journal after it, up to `to_seq` (or the end); from genesis if no snapshot
/// serves. Reads the snapshot store without its lock, so it can run beside a live node, and
/// changes nothing: a snapshot past the end of the journal is skipped, not deleted.
pub fn replay_from_snapshot(
    data_dir: &Path,
    engine_config: EngineConfig,
    to_seq: Option<u64>,
    mut progress: impl FnMut(u64),
) -> Result<Replayed, SequencerError> {
    let store = SnapshotStore::open_read_only(&data_dir.join(SNAPSHOTS))?;
    let mut bound = to_seq;
    let mut skipped = Vec::new();
    loop {
        let search = match &store {
            Some(store) => store.newest_valid(engine_config, bound)?,
            None => crate::snapshot_store::SnapshotSearch::default(),
        };
        skipped.extend(search.skipped);
        let snapshot_seq = search.engine.as_ref().map(Engine::seq);
        let mut engine = search.engine.unwrap_or_else(|| Engine::new(engine_config));
        let summary = replay_onto(&mut engine, data_dir, to_seq, &mut progress)?;
        let journal_seq = summary.last_seq.unwrap_or(0);
        match snapshot_seq {
            // Nothing was replayed onto it, since the journal ends before it: look below.
            Some(seq) if seq > journal_seq => {
                let defect = SnapshotDefect::AheadOfJournal { journal_seq };
                skipped.push(SkippedSnapshot { seq, defect });
                bound = Some(journal_seq);
            }
            _ => return Ok(Replayed { engine, snapshot_seq, skipped, journal_seq }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_event_journal_alone_takes_the_coarser_policy() {
        let node = Durability::GroupCommit { interval: Duration::from_millis(1), records: 4096 };
        let config = SequencerConfig {
            data_dir: PathBuf::from("/nonexistent"),
            engine: EngineConfig::default(),
            durability: node,
            segment_bytes: 1 << 20,
            truncate_corrupt: false,
            snapshot_every_commands: 0,
            snapshots_kept: 1,
        };
        let commands = journal_config(&config, COMMANDS, SeqOrder::Strict).durability;
        let events = journal_config(&config, EVENTS, SeqOrder::NonDecreasing).durability;
        assert_eq!(commands, node, "the command journal keeps the node's policy");
        assert_eq!(events, events_durability(node));
        assert_ne!(events, node, "the event journal syncs less often");
    }
}
