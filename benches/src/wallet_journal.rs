//! `exchange bench wallet --journal`: the wallet benchmark's transfers through the
//! [`Sequencer`], so every transfer command and its event are journaled, under group-commit
//! fsync, on one thread pinned to the last core. A transfer counts only once the durable
//! watermark covers it.
//!
//! - Throughput, closed loop: genesis (asset, accounts, deposits) and the warm-up are submitted
//!   and flushed untimed; then the measured transfers are submitted back to back with a commit
//!   every [`COMMIT_EVERY`], and a final flush, timed, makes the last of them durable. Durable
//!   transfers per second = measured transfers ÷ time until the watermark covers the last.
//! - Latency, open loop: transfer `i` is due at `t0 + i / rate`. The thread submits what is due,
//!   then commits (as the application loop commits each cycle's batch) and, while nothing is
//!   due, keeps committing so the group-commit interval can fire. Each transfer's latency is the
//!   time from its due time until the watermark covered it: the time until a client could be
//!   told it is durable, coordinated omission corrected.

use std::io::Write;
use std::time::Instant;

use sequencer::journal::Durability;
use sequencer::record::RECORD_BYTES;
use sequencer::sequencer::{Sequencer, SequencerConfig};

use crate::durable::{
    self, nanos_since, policy_description, policy_name, OpenRun, PolicyReport, Schedule, TempDir,
    Throughput, COMMIT_EVERY,
};
use crate::engine_bench::PROBE_NS;
use crate::report::{self, human_ns, human_rate, percentile_table, Machine};
use crate::runner::{self, Pinning, PlatformNoise};
use crate::wallet::{self, WalletBenchConfig, WalletStream, WalletStreamStats};
use crate::BenchError;

const START_LEAD_NS: u64 = 1_000_000;
/// Each timed run stops submitting after this long, so a slow disk cannot stretch a run to
/// minutes; the report then says how many transfers it covered.
pub const TIME_LIMIT_NS: u64 = 4_000_000_000;

/// The journaled wallet run's results.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalletJournalReport {
    pub bench: &'static str,
    /// Durable transfer commands per second, closed loop.
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub durability: String,
    pub policies: Vec<PolicyReport>,
    pub accounts: u32,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub stream: WalletStreamStats,
    pub commit_every: usize,
    pub segment_bytes: u64,
    pub journal_dir: std::path::PathBuf,
    pub plot: Option<std::path::PathBuf>,
    pub machine: Machine,
    pub pinning: Pinning,
    pub platform_noise: PlatformNoise,
}

impl WalletJournalReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

fn sequencer_error(error: sequencer::sequencer::SequencerError) -> BenchError {
    BenchError::Sequencer(error.to_string())
}

/// A fresh sequencer in `dir` that has handled setup and warm-up, flushed.
fn prepared_sequencer(
    stream: &WalletStream,
    dir: &TempDir,
    durability: Durability,
    segment_bytes: u64,
) -> Result<Sequencer, BenchError> {
    let (mut sequencer, _) = Sequencer::open(&SequencerConfig {
        data_dir: dir.path().to_path_buf(),
        engine: stream.config,
        durability,
        segment_bytes,
        truncate_corrupt: false,
        // A benchmark measures the journal, not snapshot pauses.
        snapshot_every_commands: 0,
        snapshots_kept: 1,
    })
    .map_err(sequencer_error)?;
    for command in stream.setup.iter().chain(&stream.warmup) {
        sequencer.submit(command.body, command.timestamp_ns).map_err(sequencer_error)?;
    }
    sequencer.flush().map_err(sequencer_error)?;
    Ok(sequencer)
}

fn closed_loop(
    stream: &WalletStream,
    dir: &TempDir,
    durability: Durability,
    segment_bytes: u64,
) -> Result<Throughput, BenchError> {
    let mut sequencer = prepared_sequencer(stream, dir, durability, segment_bytes)?;
    let start = Instant::now();
    let mut count = 0u64;
    for (index, command) in stream.measured.iter().enumerate() {
        sequencer.submit(command.body, command.timestamp_ns).map_err(sequencer_error)?;
        count += 1;
        if (index + 1) % COMMIT_EVERY == 0 {
            sequencer.commit().map_err(sequencer_error)?;
            if nanos_since(start) > TIME_LIMIT_NS {
                break;
            }
        }
    }
    let durable = sequencer.flush().map_err(sequencer_error)?;
    let elapsed_ns = nanos_since(start);
    assert_eq!(durable, sequencer.seq(), "the watermark covers every transfer");
    Ok(Throughput { count, elapsed_ns })
}

fn open_loop(
    stream: &WalletStream,
    dir: &TempDir,
    durability: Durability,
    segment_bytes: u64,
    rate: u64,
) -> Result<OpenRun, BenchError> {
    let mut sequencer = prepared_sequencer(stream, dir, durability, segment_bytes)?;
    let first_seq = sequencer.seq() + 1;
    let mut count = stream.measured.len();
    let mut cut_short = false;
    // Due times by position, kept until the watermark covers the transfer.
    let mut due = vec![u64::MAX; count];
    let mut latency_ns = runner::latency_histogram();
    let start = Instant::now();
    let mut schedule = Schedule::new(START_LEAD_NS, rate);
    let (mut next, mut acknowledged) = (0usize, 0usize);
    let mut now_ns = 0;
    while acknowledged < count {
        let mut submitted = false;
        if next < count && now_ns > START_LEAD_NS + TIME_LIMIT_NS {
            (count, cut_short) = (next, true);
        }
        while next < count && schedule.due_ns() <= now_ns {
            let command = &stream.measured[next];
            due[next] = schedule.due_ns();
            sequencer.submit(command.body, command.timestamp_ns).map_err(sequencer_error)?;
            (next, submitted) = (next + 1, true);
            schedule.advance();
            if next % COMMIT_EVERY == 0 {
                break;
            }
        }
        let durable = if next == count && !submitted {
            sequencer.flush().map_err(sequencer_error)?
        } else {
            sequencer.commit().map_err(sequencer_error)?
        };
        now_ns = nanos_since(start);
        let covered = usize::try_from((durable + 1).saturating_sub(first_seq)).unwrap_or(count);
        while acknowledged < covered.min(next) {
            latency_ns.saturating_record(now_ns.saturating_sub(due[acknowledged]).max(1));
            acknowledged += 1;
        }
    }
    Ok(OpenRun {
        offered_per_sec: rate,
        issued: count as u64,
        elapsed_ns: now_ns - START_LEAD_NS,
        cut_short,
        latency_ns,
    })
}

struct Measurement {
    stats: WalletStreamStats,
    closed: Throughput,
    open: OpenRun,
}

fn measure(
    config: &WalletBenchConfig,
    durability: Durability,
    dir: &std::path::Path,
    segment_bytes: u64,
) -> Result<Measurement, BenchError> {
    let stream = wallet::generate(config);
    let closed = {
        let temp = TempDir::create(dir, "wallet-journal-closed")?;
        closed_loop(&stream, &temp, durability, segment_bytes)?
    };
    let temp = TempDir::create(dir, "wallet-journal-open")?;
    let rate = config.rates_per_sec[0];
    let open = open_loop(&stream, &temp, durability, segment_bytes, rate)?;
    Ok(Measurement { stats: stream.stats, closed, open })
}

/// Runs the journaled wallet benchmark under `durability` with journals under `dir`.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(
    config: &WalletBenchConfig,
    durability: Durability,
    dir: &std::path::Path,
    out: &mut dyn Write,
) -> Result<WalletJournalReport, BenchError> {
    if config.rates_per_sec.is_empty() || config.rates_per_sec.contains(&0) {
        return Err(BenchError::InvalidSetting("need a positive offered rate".to_string()));
    }
    if config.measured_commands == 0 || config.accounts < 2 {
        return Err(BenchError::InvalidSetting("need transfers and two accounts".to_string()));
    }
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    let commands = 1
        + 2 * u64::from(config.accounts)
        + (config.warmup_commands + config.measured_commands) as u64;
    // One event per command: both journals fit one segment.
    let segment_bytes = durable::segment_bytes_for(commands, RECORD_BYTES as u64);
    writeln!(out, "exchange bench wallet --journal")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    writeln!(out, "durability: {}: {}", policy_name(durability), policy_description(durability))?;
    writeln!(
        out,
        "path: Sequencer::submit (stamp, command journal, engine, event journal) and commit \
         every {COMMIT_EVERY} transfers (closed loop) or after each due batch (open loop), on one \
         thread; journals in a temporary directory under {} ({} MiB segments, created before \
         timing)",
        dir.display(),
        segment_bytes >> 20
    )?;
    writeln!(out, "latency = watermark covers the transfer − intended start (time until durable)")?;
    let (platform_noise, _) =
        runner::on_pinned_thread("bench-wallet-probe", |_| runner::probe_platform(PROBE_NS))?;
    writeln!(out, "platform noise on the pinned core: {}", platform_noise.describe())?;
    out.flush()?;
    let settings = config.clone();
    let journal_dir = dir.to_path_buf();
    let (measurement, pinning) = runner::on_pinned_thread("bench-wallet-journal", move |_| {
        measure(&settings, durability, &journal_dir, segment_bytes)
    })?;
    let Measurement { stats, closed, open } = measurement?;
    writeln!(out, "sequencer thread: {}", pinning.describe())?;
    writeln!(
        out,
        "stream: {} measured transfer commands after {} warm-up, {} funded accounts ({} new, \
         {} unchanged retries, {} conflicting retries)",
        human_rate(config.measured_commands as f64),
        human_rate(config.warmup_commands as f64),
        human_rate(f64::from(config.accounts)),
        human_rate(stats.transfers as f64),
        human_rate(stats.retries as f64),
        human_rate(stats.conflicting_retries as f64),
    )?;
    let rate = runner::per_sec(closed.count, closed.elapsed_ns);
    writeln!(
        out,
        "closed loop: {} durable transfers/s ({:.1} ns/transfer, final flush included) over {} \
         transfers{}",
        human_rate(rate),
        1e9 / rate,
        human_rate(closed.count as f64),
        if closed.count < config.measured_commands as u64 {
            " (stopped at the time limit)"
        } else {
            ""
        },
    )?;
    writeln!(
        out,
        "open loop at {} transfers/s offered (achieved {}/s{}), time until durable:",
        human_rate(open.offered_per_sec as f64),
        human_rate(open.achieved_per_sec()),
        if open.sustained() { "" } else { ", NOT sustained" },
    )?;
    write!(out, "{}", percentile_table(&open.latency_ns))?;
    let mut reports = vec![PolicyReport::new(durability, closed, &open)];
    let runs: [(Durability, &OpenRun); 1] = [(durability, &open)];
    let plot = durable::write_policy_files(
        &config.out_dir,
        "wallet-journal",
        "journaled wallet transfers, time until durable, open loop",
        &runs,
        &mut reports,
        out,
    )?;
    writeln!(
        out,
        "headline: {} durable transfers/s under {} (target ≥ 1M/s with group commit); p99 until \
         durable {}",
        human_rate(rate),
        policy_name(durability),
        human_ns(reports[0].p99_ns)
    )?;
    let first = reports[0].clone();
    Ok(WalletJournalReport {
        bench: "wallet-journal",
        commands_per_sec: first.commands_per_sec,
        offered_per_sec: first.offered_per_sec,
        p50_ns: first.p50_ns,
        p99_ns: first.p99_ns,
        p9999_ns: first.p9999_ns,
        max_ns: first.max_ns,
        durability: first.policy,
        policies: reports,
        accounts: config.accounts,
        warmup_commands: config.warmup_commands,
        measured_commands: config.measured_commands,
        stream: stats,
        commit_every: COMMIT_EVERY,
        segment_bytes,
        journal_dir: dir.to_path_buf(),
        plot: Some(plot),
        machine,
        pinning,
        platform_noise,
    })
}
