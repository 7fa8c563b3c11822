//! The sequencer proper: it stamps each command with the next sequence number and a timestamp,
//! journals it, hands it to the engine and journals the engine's events; and at start it
//! recovers the engine from the journals.
//!
//! Recovery replays the command journal through a fresh engine and checks every regenerated
//! event against the event journal, byte for byte. The event journal may end early, even in the
//! middle of a command's events (the process died between the two appends): the missing events
//! are appended from the replay. Anything else that differs is an error, because it means the
//! journals disagree with the engine.

use std::path::{Path, PathBuf};

use engine::{Command, CommandBody, Engine, EngineConfig, Event};

use crate::journal::{
    read_all, Durability, Journal, JournalConfig, JournalError, OpenReport, SeqOrder,
};
use crate::record::{
    decode_command, decode_event, encode_command, encode_event, EventRecord, Record, RecordError,
    RECORD_BYTES,
};

pub const COMMANDS: &str = "commands";
pub const EVENTS: &str = "events";

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub truncate_corrupt: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequencerError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{journal} journal, seq {seq}: {source}")]
    Record { journal: &'static str, seq: u64, source: RecordError },
    #[error("{journal} journal record {seq} is not {expected} bytes")]
    RecordSize { journal: &'static str, seq: u64, expected: usize },
    #[error("command journal starts at seq {0}, not 1")]
    Start(u64),
    #[error("event {index} of command {seq} differs between the event journal and the replay")]
    EventMismatch { seq: u64, index: u32 },
    #[error("the event journal has events of command {event_seq}, past the last, {command_seq}")]
    EventsAhead { event_seq: u64, command_seq: u64 },
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    pub commands: OpenReport,
    pub events: OpenReport,
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
}

fn journal_config(config: &SequencerConfig, name: &str, order: SeqOrder) -> JournalConfig {
    JournalConfig {
        directory: config.data_dir.join("journal"),
        name: name.to_owned(),
        segment_bytes: config.segment_bytes,
        order,
        durability: config.durability,
        truncate_corrupt: config.truncate_corrupt,
    }
}

fn as_record(journal: &'static str, seq: u64, payload: &[u8]) -> Result<Record, SequencerError> {
    payload.try_into().map_err(|_| SequencerError::RecordSize {
        journal,
        seq,
        expected: RECORD_BYTES,
    })
}

/// Every command in the journal of `data_dir`, in order, decoded.
pub fn read_commands(
    data_dir: &Path,
    mut visit: impl FnMut(Command) -> Result<(), SequencerError>,
) -> Result<u64, SequencerError> {
    let mut failure = None;
    let mut expected = 1;
    let outcome =
        read_all(&data_dir.join("journal"), COMMANDS, SeqOrder::Strict, |seq, payload| {
            let result =
                as_record(COMMANDS, seq, payload).and_then(|record| {
                    let command = decode_command(&record).map_err(|source| {
                        SequencerError::Record { journal: COMMANDS, seq, source }
                    })?;
                    if command.seq != expected {
                        return Err(SequencerError::Start(command.seq));
                    }
                    expected += 1;
                    visit(command)
                });
            result.map_err(|error| {
                failure = Some(error);
                JournalError::PayloadSize(0)
            })
        });
    match (outcome, failure) {
        (_, Some(error)) => Err(error),
        (Ok(count), None) => Ok(count),
        (Err(error), None) => Err(error.into()),
    }
}

/// Every event in the event journal of `data_dir`, in order, decoded.
pub fn read_events(
    data_dir: &Path,
    mut visit: impl FnMut(EventRecord) -> Result<(), SequencerError>,
) -> Result<u64, SequencerError> {
    let mut failure = None;
    let outcome =
        read_all(&data_dir.join("journal"), EVENTS, SeqOrder::NonDecreasing, |seq, payload| {
            let result = as_record(EVENTS, seq, payload).and_then(|record| {
                let event = decode_event(&record).map_err(|source| SequencerError::Record {
                    journal: EVENTS,
                    seq,
                    source,
                })?;
                visit(event)
            });
            result.map_err(|error| {
                failure = Some(error);
                JournalError::PayloadSize(0)
            })
        });
    match (outcome, failure) {
        (_, Some(error)) => Err(error),
        (Ok(count), None) => Ok(count),
        (Err(error), None) => Err(error.into()),
    }
}

impl Sequencer {
    /// Opens the data directory, recovering the engine from its journals (or starting an empty
    /// one), and repairs an event journal that ended early.
    pub fn open(config: &SequencerConfig) -> Result<(Sequencer, Recovery), SequencerError> {
        let (commands, command_report) =
            Journal::open(journal_config(config, COMMANDS, SeqOrder::Strict))?;
        let (events, event_report) =
            Journal::open(journal_config(config, EVENTS, SeqOrder::NonDecreasing))?;
        let mut journaled: Vec<Record> = Vec::new();
        read_events(&config.data_dir, |record| {
            journaled.push(encode_event(&record));
            Ok(())
        })?;
        let mut sequencer = Sequencer {
            engine: Engine::new(config.engine),
            commands,
            events,
            scratch: Vec::with_capacity(1 << 16),
            timestamp_ns: 0,
        };
        let mut recovery =
            Recovery { commands: command_report, events: event_report, ..Recovery::default() };
        let mut next_event = 0usize;
        read_commands(&config.data_dir, |command| {
            sequencer.scratch.clear();
            sequencer.engine.handle(&command, &mut sequencer.scratch);
            sequencer.timestamp_ns = command.timestamp_ns;
            recovery.commands_replayed += 1;
            for (index, event) in sequencer.scratch.iter().enumerate() {
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
                    sequencer.events.append(command.seq, &bytes)?;
                    recovery.events_appended += 1;
                }
            }
            Ok(())
        })?;
        if let Some(extra) = journaled.get(next_event) {
            let event_seq = crate::record::record_seq(extra);
            return Err(SequencerError::EventsAhead {
                event_seq,
                command_seq: sequencer.engine.seq(),
            });
        }
        sequencer.events.flush()?;
        sequencer.commands.flush()?;
        Ok((sequencer, recovery))
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
        // Time never runs backwards in the journal, whatever the wall clock does.
        self.timestamp_ns = self.timestamp_ns.max(timestamp_ns);
        let command = Command { seq: self.engine.seq() + 1, timestamp_ns: self.timestamp_ns, body };
        self.commands.append(command.seq, &encode_command(&command))?;
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
            self.events.append(command.seq, &encode_event(&record))?;
        }
        Ok((command, &self.scratch))
    }

    /// Ends a batch: both journals commit under the durability policy. Returns the highest
    /// sequence number whose command and events are both durable.
    pub fn commit(&mut self) -> Result<u64, SequencerError> {
        let commands = self.commands.commit()?;
        let events = self.events.commit()?;
        // Every command's events are appended right after it, so when the event journal is
        // durable to its end, every event of every durable command is too. Otherwise the lower
        // of the two is what is safe to release.
        let events_complete = self.events.last_seq().is_none_or(|last| last == events);
        Ok(if events_complete { commands } else { commands.min(events) })
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
    let mut events = Vec::with_capacity(1 << 16);
    read_commands(data_dir, |command| {
        if to_seq.is_some_and(|to_seq| command.seq > to_seq) {
            return Ok(());
        }
        events.clear();
        engine.handle(&command, &mut events);
        progress(command.seq);
        Ok(())
    })?;
    Ok(engine)
}
