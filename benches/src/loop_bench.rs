//! `exchange bench loop`: commands through the input ring, the application loop (sequencer,
//! command journal, engine, event journal) and the output ring, per durability policy.
//!
//! Threads: the application loop ([`AppLoop`], busy-spinning) runs pinned to the last core. One
//! driver thread pinned to the first core is both the producer of the input ring and the
//! consumer of the output ring: on two cores, two busy-spinning threads sharing a core would
//! take turns in scheduler time slices, so one thread interleaves both jobs instead.
//!
//! The stream is the engine benchmark's ([`crate::market`], exchange-core mix): its setup
//! (assets, instruments, funded accounts) is genesis, submitted through
//! [`Sequencer::submit`] and flushed before anything is timed; its warm-up (pre-placed resting
//! orders, then the mix) goes through the rings untimed at the same rate as the measured part.
//!
//! - Latency, open loop: command `i` is due at `t0 + i / rate`. The driver writes the due time
//!   into a side array indexed by command position (the loop re-stamps each command, so the
//!   record cannot carry it), then pushes the command, spinning on a full ring without moving
//!   the due time. On the output ring it takes the FIRST event of each command (events carry
//!   the command's sequence number) and records `now − due`: the event has been released, so
//!   the command is durable under the policy. Coordinated omission is corrected, as in `runner`.
//! - Throughput, closed loop: the driver pushes as fast as the ring takes commands; commands
//!   per second from the first push to the first event of the last command.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use engine::{CommandBody, EngineConfig};
use hdrhistogram::Histogram;
use sequencer::app_loop::{AppLoop, Control, LoopConfig, LoopStats};
use sequencer::journal::Durability;
use sequencer::record::{encode_command, record_seq, Record, RECORD_BYTES};
use sequencer::ring::{BusySpinIdle, Ring, RingConsumer, RingProducer};
use sequencer::sequencer::{Sequencer, SequencerConfig};

use crate::durable::{
    self, describe_pinning, nanos_since, policy_description, policy_name, OpenRun, PolicyReport,
    Schedule, TempDir, Throughput,
};
use crate::engine_bench::PROBE_NS;
use crate::market::{self, MarketShape, Mix};
use crate::report::{self, human_ns, human_rate, percentile_table, Machine};
use crate::runner::{self, Pinning, PlatformNoise};
use crate::BenchError;

/// Each phase starts this long after the driver is ready.
const START_LEAD_NS: u64 = 1_000_000;
/// Events the driver takes from the output ring per poll.
const POLL_LIMIT: usize = 256;
/// A phase whose last event has not arrived this long after its last push has lost events.
const STALL_NS: u64 = 5_000_000_000;

/// Settings of one `exchange bench loop` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopBenchConfig {
    pub instruments: u32,
    pub accounts: u32,
    pub resting_per_instrument: u32,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub rate_per_sec: u64,
    pub policies: Vec<Durability>,
    pub seed: u64,
    pub input_slots: usize,
    pub output_slots: usize,
    /// Each phase stops issuing after this long.
    pub time_limit_ns: u64,
    /// Parent of the temporary data directory (journals): a real file system, not tmpfs.
    pub dir: PathBuf,
    /// Directory of the ring files: `/dev/shm` when present.
    pub ring_dir: PathBuf,
    pub out_dir: PathBuf,
}

impl Default for LoopBenchConfig {
    fn default() -> LoopBenchConfig {
        let shm = PathBuf::from("/dev/shm");
        LoopBenchConfig {
            instruments: 1,
            accounts: 10_000,
            resting_per_instrument: 1_000,
            warmup_commands: 100_000,
            measured_commands: 1_000_000,
            rate_per_sec: 1_000_000,
            policies: durable::all_policies(),
            seed: 1,
            input_slots: 4_096,
            output_slots: 1 << 14,
            time_limit_ns: 4_000_000_000,
            dir: std::env::temp_dir(),
            ring_dir: if shm.is_dir() { shm } else { std::env::temp_dir() },
            out_dir: PathBuf::from("bench-out"),
        }
    }
}

impl LoopBenchConfig {
    pub fn quick() -> LoopBenchConfig {
        LoopBenchConfig {
            accounts: 1_000,
            resting_per_instrument: 100,
            warmup_commands: 5_000,
            measured_commands: 30_000,
            time_limit_ns: 400_000_000,
            ..LoopBenchConfig::default()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: &str| Err(BenchError::InvalidSetting(message.to_string()));
        if self.policies.is_empty() || self.rate_per_sec == 0 || self.time_limit_ns == 0 {
            return invalid("need a durability policy, a positive rate and a time limit");
        }
        if self.measured_commands == 0 || self.instruments == 0 || self.accounts == 0 {
            return invalid("need measured commands, instruments and accounts");
        }
        let rings_ok = sequencer::ring::ring_bytes(self.input_slots, RECORD_BYTES).is_ok()
            && sequencer::ring::ring_bytes(self.output_slots, RECORD_BYTES).is_ok();
        if !rings_ok {
            return invalid("ring slots must be powers of two in 2..=2^30");
        }
        Ok(())
    }

    fn shape(&self) -> MarketShape {
        MarketShape {
            mix: Mix::ExchangeCore,
            instruments: self.instruments,
            accounts: self.accounts,
            resting_per_instrument: self.resting_per_instrument,
            warmup_commands: self.warmup_commands,
            measured_commands: self.measured_commands,
            seed: self.seed,
        }
    }
}

/// The loop run's results. Top-level figures are the first policy's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoopBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub durability: String,
    pub policies: Vec<PolicyReport>,
    pub genesis_commands: usize,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub measured_events_expected: u64,
    pub segment_bytes: u64,
    pub journal_dir: PathBuf,
    pub ring_dir: PathBuf,
    pub plot: Option<PathBuf>,
    pub machine: Machine,
    pub loop_pinning: Pinning,
    pub driver_pinning: Pinning,
    pub platform_noise: PlatformNoise,
    pub idle: &'static str,
}

impl LoopBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

/// The stream, encoded once and shared by every run.
struct Prepared {
    engine: EngineConfig,
    genesis: Vec<CommandBody>,
    /// Unsequenced command records: warm-up, then measured.
    warmup: Vec<Record>,
    measured: Vec<Record>,
    segment_bytes: u64,
}

fn prepare(config: &LoopBenchConfig) -> (Prepared, u64) {
    let stream = market::generate(&config.shape());
    let encode = |command: &engine::Command| {
        encode_command(&engine::Command { seq: 0, timestamp_ns: 0, body: command.body })
    };
    let measured_events = stream.stats.measured_events;
    let commands = (stream.setup.len() + stream.warmup.len() + stream.measured.len()) as u64;
    // Both journals get one segment that holds every event of the run: the measured part's
    // events per command plus one and a tenth, for every command.
    let per_command = measured_events.div_ceil(stream.measured.len().max(1) as u64) + 1;
    let frames = commands * per_command + commands / 10;
    let prepared = Prepared {
        engine: stream.config,
        genesis: stream.setup.iter().map(|command| command.body).collect(),
        warmup: stream.warmup.iter().map(encode).collect(),
        measured: stream.measured.iter().map(encode).collect(),
        segment_bytes: durable::segment_bytes_for(frames, RECORD_BYTES as u64),
    };
    (prepared, measured_events)
}

fn wall_ns() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

fn sequencer_error(error: sequencer::sequencer::SequencerError) -> BenchError {
    BenchError::Sequencer(error.to_string())
}

/// What one phase (warm-up or measured) of the driver saw.
struct Phase {
    issued: u64,
    /// From the phase's start (first due time) to the last command's first event.
    elapsed_ns: u64,
    cut_short: bool,
    /// Commands pushed whose first event never arrived.
    missing: u64,
}

/// The driver's ends of the rings and its running state across phases.
struct Driver {
    producer: RingProducer,
    consumer: RingConsumer,
    start: Instant,
    /// The seq of the last event taken from the output ring.
    last_event_seq: u64,
    time_limit_ns: u64,
}

impl Driver {
    /// Pushes `records` (at `rate`, or as fast as the ring takes them) while taking events, and
    /// records each command's first-event latency in `latency_ns` if given. The records are
    /// sequenced from `first_seq` on.
    // tidy: long function, the driver's duty cycle (push what is due, take events) is one loop.
    fn phase(
        &mut self,
        records: &[Record],
        first_seq: u64,
        rate: Option<u64>,
        mut latency_ns: Option<&mut Histogram<u64>>,
    ) -> Phase {
        // The side array of due times, written before each push; pre-touched so that no page
        // fault lands in the timed part.
        let mut intended = vec![u64::MAX; records.len()];
        let t0 = nanos_since(self.start) + START_LEAD_NS;
        let mut schedule = Schedule::new(t0, rate.unwrap_or(1));
        let (mut next, mut limit, mut cut_short) = (0usize, records.len(), false);
        let mut last_event_ns = t0;
        let mut last_push_ns = t0;
        let last_seq = |limit: usize| first_seq + limit as u64 - 1;
        while nanos_since(self.start) < t0 {
            std::hint::spin_loop();
        }
        loop {
            while next < limit {
                let now_ns = nanos_since(self.start);
                let due_ns = if rate.is_some() { schedule.due_ns() } else { now_ns };
                if now_ns < due_ns {
                    break;
                }
                if now_ns - t0 > self.time_limit_ns {
                    (limit, cut_short) = (next, true);
                    break;
                }
                intended[next] = due_ns;
                if self.producer.try_push(&records[next]).is_err() {
                    break;
                }
                next += 1;
                last_push_ns = now_ns;
                schedule.advance();
            }
            let (start, last_event_seq) = (self.start, &mut self.last_event_seq);
            self.consumer.poll(POLL_LIMIT, |bytes| {
                let record: &Record = bytes.try_into().expect("output slots are records");
                let seq = record_seq(record);
                if seq == *last_event_seq {
                    return;
                }
                *last_event_seq = seq;
                let Some(position) = seq.checked_sub(first_seq) else { return };
                let Some(&due_ns) = intended.get(usize::try_from(position).unwrap_or(usize::MAX))
                else {
                    return;
                };
                let now_ns = nanos_since(start);
                last_event_ns = now_ns;
                if let Some(histogram) = latency_ns.as_deref_mut() {
                    histogram.saturating_record(now_ns.saturating_sub(due_ns).max(1));
                }
            });
            if next == limit {
                if limit == 0 || self.last_event_seq >= last_seq(limit) {
                    break;
                }
                if nanos_since(self.start) - last_push_ns.max(last_event_ns) > STALL_NS {
                    break;
                }
            }
        }
        let seen = self.last_event_seq.saturating_sub(first_seq - 1).min(limit as u64);
        Phase {
            issued: limit as u64,
            elapsed_ns: last_event_ns - t0,
            cut_short,
            missing: limit as u64 - seen,
        }
    }
}

/// One run's outcome: the measured phase, the loop's counters and where each thread ran.
struct Run {
    phase: Phase,
    latency_ns: Histogram<u64>,
    stats: LoopStats,
    loop_pinning: Pinning,
    driver_pinning: Pinning,
    genesis_ns: u64,
}

type LoopResult = Result<(LoopStats, Pinning, u64), BenchError>;

/// Starts the loop thread: opens a sequencer on `data_dir`, applies genesis, and runs the loop
/// until `stop`; sends its control queue once ready.
fn spawn_loop(
    prepared: &Arc<Prepared>,
    data_dir: PathBuf,
    durability: Durability,
    rings: (RingConsumer, RingProducer),
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Arc<ArrayQueue<Control>>>,
) -> Result<std::thread::JoinHandle<LoopResult>, BenchError> {
    let prepared = Arc::clone(prepared);
    let thread = std::thread::Builder::new().name("bench-loop".to_string()).spawn(move || {
        let pinning = durable::pin(true);
        let genesis_start = Instant::now();
        let (mut sequencer, _) = Sequencer::open(&SequencerConfig {
            data_dir,
            engine: prepared.engine,
            durability,
            segment_bytes: prepared.segment_bytes,
            truncate_corrupt: false,
            // A benchmark measures the journal, not snapshot pauses.
            snapshot_every_commands: 0,
            snapshots_kept: 1,
        })
        .map_err(sequencer_error)?;
        for body in &prepared.genesis {
            sequencer.submit(*body, wall_ns()).map_err(sequencer_error)?;
        }
        sequencer.flush().map_err(sequencer_error)?;
        let genesis_ns = nanos_since(genesis_start);
        let (input, output) = rings;
        let mut app = AppLoop::new(sequencer, input, Some(output), LoopConfig::default());
        if ready.send(app.control()).is_err() {
            return Err(BenchError::ThreadPanicked);
        }
        let mut idle = BusySpinIdle;
        let stats =
            app.run(&mut idle, |_| stop.load(Ordering::Acquire)).map_err(sequencer_error)?;
        app.drain_output(&mut idle);
        Ok((stats, pinning, genesis_ns))
    });
    thread.map_err(BenchError::Report)
}

/// One fresh data directory, rings and loop; warm-up then the measured phase at `rate` (or
/// closed loop without one).
// tidy: long function, setting up two threads and their rings, then tearing them down, in order.
fn run_once(
    config: &LoopBenchConfig,
    prepared: &Arc<Prepared>,
    durability: Durability,
    rate: Option<u64>,
) -> Result<Run, BenchError> {
    let data_dir =
        TempDir::create(&config.dir, &format!("loop-{}", durable::policy_stem(durability)))?;
    let pid = std::process::id();
    let input_path = config.ring_dir.join(format!("exchange-bench-loop-input-{pid}"));
    let output_path = config.ring_dir.join(format!("exchange-bench-loop-output-{pid}"));
    let ring_error = |error: sequencer::ring::RingError| BenchError::Sequencer(error.to_string());
    let (producer, input) =
        Ring::create(&input_path, config.input_slots, RECORD_BYTES).map_err(ring_error)?.split();
    let (output, consumer) =
        Ring::create(&output_path, config.output_slots, RECORD_BYTES).map_err(ring_error)?.split();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_sender, ready) = mpsc::channel();
    let loop_thread = spawn_loop(
        prepared,
        data_dir.path().to_path_buf(),
        durability,
        (input, output),
        Arc::clone(&stop),
        ready_sender,
    )?;
    let driver_prepared = Arc::clone(prepared);
    let time_limit_ns = config.time_limit_ns;
    let driver_thread =
        std::thread::Builder::new().name("bench-loop-driver".to_string()).spawn(move || {
            let pinning = durable::pin(false);
            // The loop sends its control queue once genesis is in; nothing else is needed here.
            let _control = ready.recv().ok()?;
            let mut driver = Driver {
                producer,
                consumer,
                start: Instant::now(),
                last_event_seq: 0,
                time_limit_ns,
            };
            let prepared = driver_prepared;
            let genesis = prepared.genesis.len() as u64;
            let warmup = driver.phase(&prepared.warmup, genesis + 1, rate, None);
            let mut latency_ns = runner::latency_histogram();
            let first_seq = genesis + prepared.warmup.len() as u64 + 1;
            let measured = driver.phase(&prepared.measured, first_seq, rate, Some(&mut latency_ns));
            stop.store(true, Ordering::Release);
            // Keep taking events until the loop has released everything and stopped.
            let mut idle_polls = 0u32;
            while idle_polls < 1_000 {
                if driver.consumer.poll(POLL_LIMIT, |_| {}) == 0 {
                    idle_polls += 1;
                    std::thread::yield_now();
                } else {
                    idle_polls = 0;
                }
            }
            Some((warmup, measured, latency_ns, pinning, driver))
        });
    let driver_thread = driver_thread.map_err(BenchError::Report)?;
    let (stats, loop_pinning, genesis_ns) =
        loop_thread.join().map_err(|_| BenchError::ThreadPanicked)??;
    let driven = driver_thread.join().map_err(|_| BenchError::ThreadPanicked)?;
    let (warmup, phase, latency_ns, driver_pinning, _driver) =
        driven.ok_or(BenchError::ThreadPanicked)?;
    let _ = std::fs::remove_file(&input_path);
    let _ = std::fs::remove_file(&output_path);
    assert_eq!(stats.malformed, 0, "the loop rejected a command record");
    assert_eq!(warmup.missing + phase.missing, 0, "commands without any released event");
    assert_eq!(stats.commands, warmup.issued + phase.issued, "the loop sequenced every command");
    Ok(Run { phase, latency_ns, stats, loop_pinning, driver_pinning, genesis_ns })
}

/// Runs the loop benchmark and prints its report to `out`.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(config: &LoopBenchConfig, out: &mut dyn Write) -> Result<LoopBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    writeln!(out, "exchange bench loop")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    let generate_start = Instant::now();
    let (prepared, measured_events) = prepare(config);
    let prepared = Arc::new(prepared);
    writeln!(
        out,
        "stream: exchange-core mix on {} instrument(s), {} funded accounts; {} genesis commands \
         (submitted and flushed before timing), {} warm-up commands through the rings untimed, \
         {} measured ({} events on the shadow engine); generated in {}",
        config.instruments,
        human_rate(f64::from(config.accounts)),
        prepared.genesis.len(),
        human_rate(prepared.warmup.len() as f64),
        human_rate(prepared.measured.len() as f64),
        human_rate(measured_events as f64),
        human_ns(nanos_since(generate_start)),
    )?;
    writeln!(
        out,
        "path: driver → input ring ({} slots) → AppLoop (sequencer, command journal, engine, \
         event journal; batch ≤ 256, commit per cycle, release once durable) → output ring ({} \
         slots) → driver; rings in {}, journals in a temporary directory under {} ({} MiB \
         segments, created before timing)",
        config.input_slots,
        config.output_slots,
        config.ring_dir.display(),
        config.dir.display(),
        prepared.segment_bytes >> 20,
    )?;
    writeln!(
        out,
        "latency = driver takes the FIRST event of a command − the command's intended send time \
         (side array by position); loop busy-spins; the driver pushes and consumes on one thread"
    )?;
    let (platform_noise, _) =
        runner::on_pinned_thread("bench-loop-probe", |_| runner::probe_platform(PROBE_NS))?;
    writeln!(out, "platform noise on the loop's core: {}", platform_noise.describe())?;
    out.flush()?;
    let mut runs: Vec<(Durability, OpenRun)> = Vec::new();
    let mut reports = Vec::new();
    let mut pinnings = None;
    for &durability in &config.policies {
        writeln!(out)?;
        writeln!(out, "== {}: {} ==", policy_name(durability), policy_description(durability))?;
        out.flush()?;
        let closed = run_once(config, &prepared, durability, None)?;
        if pinnings.is_none() {
            writeln!(out, "loop thread: {}", describe_pinning(&closed.loop_pinning, "last"))?;
            writeln!(
                out,
                "driver thread (producer and output consumer): {}",
                describe_pinning(&closed.driver_pinning, "first")
            )?;
            pinnings = Some((closed.loop_pinning.clone(), closed.driver_pinning.clone()));
        }
        writeln!(
            out,
            "genesis (untimed, includes creating both segments): {}",
            human_ns(closed.genesis_ns)
        )?;
        let throughput =
            Throughput { count: closed.phase.issued, elapsed_ns: closed.phase.elapsed_ns };
        let rate = runner::per_sec(throughput.count, throughput.elapsed_ns);
        writeln!(
            out,
            "closed loop: {} commands/s over {} commands{}; loop: {} busy cycles, {:.1} commands \
             per busy cycle, longest cycle {}",
            human_rate(rate),
            human_rate(throughput.count as f64),
            if closed.phase.cut_short { " (stopped at the time limit)" } else { "" },
            human_rate(closed.stats.busy_cycles as f64),
            closed.stats.commands as f64 / closed.stats.busy_cycles.max(1) as f64,
            human_ns(closed.stats.cycle_ns_max),
        )?;
        let open = run_once(config, &prepared, durability, Some(config.rate_per_sec))?;
        let open_run = OpenRun {
            offered_per_sec: config.rate_per_sec,
            issued: open.phase.issued,
            elapsed_ns: open.phase.elapsed_ns,
            cut_short: open.phase.cut_short,
            latency_ns: open.latency_ns,
        };
        writeln!(
            out,
            "open loop at {} commands/s offered (achieved {}/s{}; longest loop cycle {}):",
            human_rate(open_run.offered_per_sec as f64),
            human_rate(open_run.achieved_per_sec()),
            if open_run.sustained() { "" } else { ", NOT sustained" },
            human_ns(open.stats.cycle_ns_max),
        )?;
        write!(out, "{}", percentile_table(&open_run.latency_ns))?;
        reports.push(PolicyReport::new(durability, throughput, &open_run));
        runs.push((durability, open_run));
    }
    writeln!(out)?;
    let pairs: Vec<(Durability, &OpenRun)> = runs.iter().map(|(d, run)| (*d, run)).collect();
    let plot = durable::write_policy_files(
        &config.out_dir,
        "loop",
        "ring → sequencer → journal → engine → ring, per durability policy, open loop",
        &pairs,
        &mut reports,
        out,
    )?;
    let first = reports[0].clone();
    writeln!(
        out,
        "headline: {} at {} commands/s offered: p99 {} (target ≤ 2 µs under page-cache)",
        first.policy,
        human_rate(first.offered_per_sec as f64),
        human_ns(first.p99_ns),
    )?;
    let (loop_pinning, driver_pinning) = pinnings.expect("at least one policy ran");
    Ok(LoopBenchReport {
        bench: "loop",
        commands_per_sec: first.commands_per_sec,
        offered_per_sec: first.offered_per_sec,
        p50_ns: first.p50_ns,
        p99_ns: first.p99_ns,
        p9999_ns: first.p9999_ns,
        max_ns: first.max_ns,
        durability: first.policy.clone(),
        policies: reports,
        genesis_commands: prepared.genesis.len(),
        warmup_commands: prepared.warmup.len(),
        measured_commands: prepared.measured.len(),
        measured_events_expected: measured_events,
        segment_bytes: prepared.segment_bytes,
        journal_dir: config.dir.clone(),
        ring_dir: config.ring_dir.clone(),
        plot: Some(plot),
        machine,
        loop_pinning,
        driver_pinning,
        platform_noise,
        idle: "busy-spin on both threads",
    })
}
