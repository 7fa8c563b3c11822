//! The application loop: the one thread that owns the sequencer and the engine.
//!
//! Each duty cycle ([`AppLoop::do_work`]) drains in-process control messages, polls the input
//! ring under a fixed limit, sequences and applies every command it finds, commits the batch
//! under the durability policy, and then releases to the output ring the events of every
//! command the release watermark has passed ([`Release`]: the durable watermark, or the
//! written one). It returns how much work it did, and the caller's idle
//! strategy decides whether to spin, yield or park (Agrona's `Agent::doWork`). Events wait in a
//! pre-allocated buffer until they are durable; when that buffer or the output ring is full, the
//! loop stops taking input, so back-pressure reaches the producers as a full input ring rather
//! than as growth or loss here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use engine::Event;

use crate::record::{
    decode_command_origin, encode_command_from, encode_event, EventRecord, Record, ECHO_FLAG,
    RECORD_BYTES,
};
use crate::ring::{IdleStrategy, RingConsumer, RingProducer};
use crate::sequencer::{Sequencer, SequencerError};

/// Requests from other threads, carried by a bounded lock-free queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Finish the current cycle, flush, and stop.
    Shutdown,
    /// Make everything durable now, whatever the policy.
    Flush,
    /// Take a snapshot of the engine's state at the end of this cycle (which flushes too).
    Snapshot,
}

/// What the loop has done so far; cheap to read between cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    pub cycles: u64,
    pub busy_cycles: u64,
    pub commands: u64,
    pub events_released: u64,
    /// Commands that failed to decode: skipped, counted, never sequenced.
    pub malformed: u64,
    pub cycle_ns_max: u64,
    pub busy_ns_total: u64,
    pub durable_seq: u64,
    /// Snapshots taken, periodic and on demand.
    pub snapshots: u64,
    pub shutdown: bool,
}

/// The loop's position, published after every busy cycle for other threads (health, metrics):
/// two relaxed stores per cycle, never per command.
#[derive(Debug, Default)]
pub struct LoopProgress {
    /// The last sequence number assigned.
    pub seq: AtomicU64,
    /// The highest sequence number durable under the policy.
    pub durable_seq: AtomicU64,
    /// Set once the loop has stopped, by shutdown or by an error.
    pub stopped: AtomicBool,
}

/// When a command's output may leave the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Release {
    /// Once the command is durable under the journal's policy: under group commit, after the
    /// fsync that covers it (fsync before release). Nothing released is lost even when the
    /// machine fails.
    #[default]
    Durable,
    /// Once the command is written to the journal (the page cache), whatever the policy still
    /// owes: under group commit the fsync follows within its interval. Nothing released is lost
    /// when the process fails; a failure of the machine may lose what was released within the
    /// last group-commit interval.
    Written,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Release::Durable => "durable",
            Release::Written => "written",
        })
    }
}

impl std::str::FromStr for Release {
    type Err = String;

    /// `durable` or `written`.
    fn from_str(text: &str) -> Result<Release, String> {
        match text {
            "durable" => Ok(Release::Durable),
            "written" => Ok(Release::Written),
            _ => Err(format!("unknown release {text:?}: expected durable or written")),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LoopConfig {
    /// Commands taken from the input ring per cycle.
    pub batch_max: usize,
    /// Events that may wait for durability before the loop stops taking input.
    pub pending_events_max: usize,
    /// Put each command, as sequenced and with its origin, on the output ring ahead of its
    /// events ([`crate::record::decode_output`]), so that producers can match answers to their
    /// requests.
    pub echo_commands: bool,
    /// When output may leave: see [`Release`].
    pub release: Release,
}

impl Default for LoopConfig {
    fn default() -> LoopConfig {
        LoopConfig {
            batch_max: 256,
            pending_events_max: 1 << 16,
            echo_commands: false,
            release: Release::Durable,
        }
    }
}

#[derive(Debug)]
pub struct AppLoop {
    sequencer: Sequencer,
    /// Polled in turn, each up to `batch_max` commands per cycle.
    inputs: Vec<RingConsumer>,
    output: Option<RingProducer>,
    /// Records of `pending` the first output has been given.
    sent: usize,
    /// Further output rings (one per consumer) and how much of `pending` each has been given.
    extra_outputs: Vec<(RingProducer, usize)>,
    control: Arc<ArrayQueue<Control>>,
    progress: Arc<LoopProgress>,
    config: LoopConfig,
    /// Encoded events not yet released, oldest first, with the seq that produced them.
    pending: Vec<(u64, Record)>,
    /// Records at the front of `pending` that every output has.
    pending_released: usize,
    /// Records at the front of `pending` that are durable.
    durable_end: usize,
    stats: LoopStats,
}

impl AppLoop {
    pub fn new(
        sequencer: Sequencer,
        input: RingConsumer,
        output: Option<RingProducer>,
        config: LoopConfig,
    ) -> AppLoop {
        assert_eq!(input.slot_size(), RECORD_BYTES, "input ring slots must be records");
        if let Some(output) = &output {
            assert_eq!(output.slot_size(), RECORD_BYTES, "output ring slots must be records");
        }
        let durable_seq = sequencer.seq();
        AppLoop {
            sequencer,
            inputs: vec![input],
            output,
            control: Arc::new(ArrayQueue::new(64)),
            progress: Arc::new(LoopProgress {
                seq: AtomicU64::new(durable_seq),
                durable_seq: AtomicU64::new(durable_seq),
                stopped: AtomicBool::new(false),
            }),
            config,
            pending: Vec::with_capacity(config.pending_events_max + config.batch_max * 64),
            pending_released: 0,
            durable_end: 0,
            sent: 0,
            extra_outputs: Vec::new(),
            stats: LoopStats { durable_seq, ..LoopStats::default() },
        }
    }

    /// Adds an input ring (one per producer: FIX gateway, HTTP API, simulator).
    pub fn add_input(&mut self, input: RingConsumer) {
        assert_eq!(input.slot_size(), RECORD_BYTES, "input ring slots must be records");
        self.inputs.push(input);
    }

    /// Adds an output ring: every released record goes to every output, in the same order.
    pub fn add_output(&mut self, output: RingProducer) {
        assert_eq!(output.slot_size(), RECORD_BYTES, "output ring slots must be records");
        assert!(self.pending.is_empty(), "outputs are added before the loop runs");
        self.extra_outputs.push((output, 0));
    }

    /// The loop's published position, for other threads.
    pub fn progress(&self) -> Arc<LoopProgress> {
        Arc::clone(&self.progress)
    }

    /// The handle other threads use to send [`Control`] messages.
    pub fn control(&self) -> Arc<ArrayQueue<Control>> {
        Arc::clone(&self.control)
    }

    pub fn stats(&self) -> LoopStats {
        self.stats
    }

    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    pub fn into_sequencer(self) -> Sequencer {
        self.sequencer
    }

    /// One duty cycle; returns the number of commands and events handled.
    pub fn do_work(&mut self) -> Result<usize, SequencerError> {
        let start = Instant::now();
        let mut flush = false;
        let mut snapshot = false;
        while let Some(message) = self.control.pop() {
            match message {
                Control::Shutdown => self.stats.shutdown = true,
                Control::Flush => flush = true,
                Control::Snapshot => snapshot = true,
            }
        }
        // One wall-clock read per cycle stamps the whole batch; the sequencer keeps time from
        // running backwards if the clock steps.
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let now_ns = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        let room = self.config.pending_events_max.saturating_sub(self.pending.len());
        let mut commands = 0;
        if room > 0 && !self.stats.shutdown {
            let Self { sequencer, inputs, pending, stats, config, .. } = self;
            let mut failure = None;
            for input in inputs.iter_mut() {
                commands += input.poll(config.batch_max, |bytes| {
                    if failure.is_some() {
                        return;
                    }
                    let record: &Record = bytes.try_into().expect("slot size checked at start");
                    let Ok((command, origin)) = decode_command_origin(record) else {
                        stats.malformed += 1;
                        return;
                    };
                    match sequencer.submit_from(origin, command.body, now_ns) {
                        Ok((stamped, events)) => {
                            if config.echo_commands {
                                let mut echo = encode_command_from(&stamped, origin);
                                echo[3] = ECHO_FLAG;
                                pending.push((stamped.seq, echo));
                            }
                            pending_events(pending, &stamped, events);
                        }
                        Err(error) => failure = Some(error),
                    }
                });
                if let Some(error) = failure {
                    return Err(error);
                }
            }
        }
        // An idle cycle with events still waiting commits too, so that group commit's time
        // bound holds when input stops: the last batch becomes durable within the interval.
        let waiting = self.pending_events() > 0;
        if commands > 0 || waiting || flush || self.stats.shutdown {
            self.stats.durable_seq = if flush || self.stats.shutdown {
                self.sequencer.flush()?
            } else {
                self.sequencer.commit()?
            };
        }
        // Between batches every command is whole, so this is a command boundary. One asked for
        // is taken now (it flushes both journals first, so it is never ahead of them); a
        // periodic one is only captured here and stored by a writer thread, so that the loop
        // does not stop for the disk.
        if snapshot {
            self.stats.durable_seq = self.sequencer.snapshot()?;
            self.stats.snapshots += 1;
        } else if self.sequencer.snapshot_due()
            && self.sequencer.snapshot_in_background()?.is_some()
        {
            self.stats.snapshots += 1;
        }
        let released = self.release();
        let work = commands + released;
        self.stats.cycles += 1;
        self.stats.commands += commands as u64;
        if work > 0 {
            self.progress.seq.store(self.sequencer.seq(), Ordering::Relaxed);
            self.progress.durable_seq.store(self.stats.durable_seq, Ordering::Relaxed);
            let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.stats.busy_cycles += 1;
            self.stats.busy_ns_total += elapsed;
            self.stats.cycle_ns_max = self.stats.cycle_ns_max.max(elapsed);
        }
        Ok(work)
    }

    /// Moves durable records to every output ring, oldest first, as far as each has room. A
    /// record leaves the pending buffer once every output has it; an output that is full only
    /// holds back itself and the buffer, never the others' order. Each command's records (echo
    /// and events) are published to an output together, so a consumer that has drained its ring
    /// is always at a command boundary.
    fn release(&mut self) -> usize {
        // Every command sequenced so far was committed (written) in this cycle or an earlier one.
        let durable = match self.config.release {
            Release::Durable => self.stats.durable_seq,
            Release::Written => self.sequencer.seq(),
        };
        while self.pending.get(self.durable_end).is_some_and(|(seq, _)| *seq <= durable) {
            self.durable_end += 1;
        }
        let mut low = self.durable_end;
        let extra = self.extra_outputs.iter_mut().map(|(output, sent)| (output, sent));
        let first = self.output.as_mut().map(|output| (output, &mut self.sent));
        for (output, sent) in first.into_iter().chain(extra) {
            *sent = push_whole_commands(output, &self.pending, *sent, self.durable_end);
            low = low.min(*sent);
        }
        let released = low - self.pending_released;
        self.pending_released = low;
        if self.pending_released == self.pending.len() {
            self.pending.clear();
            self.rebase(self.pending_released);
        } else if self.pending_released > self.pending.len() / 2 {
            // Compact rarely: the copy is proportional to what is still waiting.
            self.pending.drain(..self.pending_released);
            self.rebase(self.pending_released);
        }
        self.stats.events_released += released as u64;
        released
    }

    /// Shifts every index into `pending` down by `by`, after that many records left its front.
    fn rebase(&mut self, by: usize) {
        self.pending_released -= by;
        self.durable_end -= by;
        self.sent = self.sent.saturating_sub(by);
        for (_, sent) in &mut self.extra_outputs {
            *sent -= by;
        }
    }

    /// Runs duty cycles until `stop` says so or a shutdown message arrives; then flushes.
    pub fn run(
        &mut self,
        idle: &mut impl IdleStrategy,
        mut stop: impl FnMut(&LoopStats) -> bool,
    ) -> Result<LoopStats, SequencerError> {
        let result = self.run_until(idle, &mut stop);
        self.progress.seq.store(self.sequencer.seq(), Ordering::Relaxed);
        self.progress.durable_seq.store(self.stats.durable_seq, Ordering::Relaxed);
        self.progress.stopped.store(true, Ordering::Release);
        result
    }

    fn run_until(
        &mut self,
        idle: &mut impl IdleStrategy,
        stop: &mut impl FnMut(&LoopStats) -> bool,
    ) -> Result<LoopStats, SequencerError> {
        while !self.stats.shutdown && !stop(&self.stats) {
            let work = self.do_work()?;
            idle.idle(work);
        }
        self.stats.durable_seq = self.sequencer.flush()?;
        self.sequencer.finish_snapshots()?;
        // A periodic snapshot that came due while the writer was busy is taken now, so that a
        // restart never replays more than the configured interval because of a busy disk.
        if self.sequencer.snapshot_due() {
            self.stats.durable_seq = self.sequencer.snapshot()?;
            self.stats.snapshots += 1;
        }
        self.release();
        Ok(self.stats)
    }

    /// Events still waiting for durability or for room in the output ring.
    pub fn pending_events(&self) -> usize {
        self.pending.len() - self.pending_released
    }

    /// Releases every durable event, waiting for the output ring's consumer to make room.
    /// Only for shutdown: it never returns while the consumer is stalled.
    pub fn drain_output(&mut self, idle: &mut impl IdleStrategy) {
        while self.pending_events() > 0 {
            let released = self.release();
            idle.idle(released);
        }
    }
}

/// Pushes `pending[from..to]` to `output`, one command's records at a time and each command
/// whole, as far as the ring has room; returns how far it got. A command with more records than
/// the ring holds can never be whole in it and goes record by record.
fn push_whole_commands(
    output: &mut RingProducer,
    pending: &[(u64, Record)],
    from: usize,
    to: usize,
) -> usize {
    let mut at = from;
    while at < to {
        let seq = pending[at].0;
        let end = at + pending[at..to].iter().take_while(|(other, _)| *other == seq).count();
        let count = end - at;
        if count > output.capacity() {
            if output.try_push(&pending[at].1).is_err() {
                break;
            }
            at += 1;
            continue;
        }
        let Ok(mut claim) = output.try_claim(count) else { break };
        for (index, (_, record)) in pending[at..end].iter().enumerate() {
            claim.slot_mut(index).copy_from_slice(record);
        }
        claim.commit();
        at = end;
    }
    at
}

fn pending_events(pending: &mut Vec<(u64, Record)>, command: &engine::Command, events: &[Event]) {
    for (index, event) in events.iter().enumerate() {
        let index = u32::try_from(index).expect("events per command fit u32");
        let record = EventRecord {
            seq: command.seq,
            timestamp_ns: command.timestamp_ns,
            index,
            event: *event,
        };
        pending.push((command.seq, encode_event(&record)));
    }
}
